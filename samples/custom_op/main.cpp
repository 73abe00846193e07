// A user-defined op from start to end: smooth_abs(x) = sqrt(x² + δ²), an |x|
// without the kink at 0, as one op definition (engine/core/op.hpp):
//
// 1. The forward is a plain loop over the elements.
// 2. The backward is written with tapegrad's own ops, so it can itself be
//    differentiated (second order).
// 3. The samples give the registry inputs to check it with: the sweep
//    (tg::check_sample, samples/gradcheck_all) then checks the op like any
//    library op, and the whole-model gradcheck can replay it.
// Then the same op with a wrong backward, written the quick way (a bare rule
// through tg::record), and the report a user gets for it.
#include <cmath>
#include <cstdio>

#include <tapegrad/tapegrad.hpp>

namespace {

constexpr double delta = 0.1;

struct SmoothAbs : tg::Op<SmoothAbs> {
    static constexpr const char* name = "smooth_abs";
    static constexpr tg::Saves saves = tg::save_input(0) | tg::save_output;  // what the backward reads back
    static tg::Tensor forward(tg::TensorRefs in)
    {
        const tg::Tensor& x = in[0];
        tg::Tensor out = tg::Tensor::empty(x.shape(), x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), "smooth_abs", [&] {
            const scalar_t* v = x.data<scalar_t>();
            scalar_t* y = out.data<scalar_t>();
            for (int64_t i = 0; i < x.numel(); ++i) y[i] = std::sqrt(v[i] * v[i] + scalar_t(delta * delta));
        });
        return out;
    }
    // d/dx sqrt(x² + δ²) = x / y.
    static tg::tensor_list backward(const tg::BackwardArgs& g) { return {g.grad * g.input(0) / g.output()}; }
    static std::vector<tg::OpSample> samples()
    {
        return {sample("[3,5]", {tg::real("x", {3, 5})}), sample("0-d", {tg::real("x", {})})};
    }
};
TG_REGISTER_OP(SmoothAbs);

tg::Tensor smooth_abs(const tg::Tensor& x) { return SmoothAbs::call({x}); }

// The same op with a classic slip: the division by the output is forgotten.
tg::Tensor smooth_abs_wrong(const tg::Tensor& x)
{
    tg::Tensor out;
    {
        tg::NoGradGuard off;  // the forward of smooth_abs, off the tape
        out = smooth_abs(x);
    }
    return tg::record("smooth_abs_wrong", out, {x}, {x}, [](const tg::BackwardArgs& g) -> tg::tensor_list {
        return {g.grad * g.saved[0]};
    });
}

}  // namespace

int main()
{
    tg::Generator gen(1);
    tg::Tensor x = tg::randn({4, 3}, tg::float64, &gen).requires_grad_();
    tg::GradcheckOptions options;
    options.names = {"x"};
    options.second_order = true;

    std::printf("== smooth_abs, checked directly (first and second order)\n");
    tg::GradcheckResult good = tg::gradcheck([](const tg::tensor_list& v) { return smooth_abs(v[0]); }, {x}, options);
    std::printf("%s\n", good.to_string().c_str());

    std::printf("== smooth_abs through its registered samples\n");
    bool samples_ok = true;
    for (const tg::OpSample& sample : tg::find_op("smooth_abs")->samples) {
        tg::SampleCheck sc = tg::check_sample(*tg::find_op("smooth_abs"), sample);
        std::printf("  %-8s %s (%.2f ms)\n", sample.label.c_str(), sc.verdict().c_str(), sc.seconds * 1e3);
        samples_ok = samples_ok && sc.passed();
    }

    std::printf("\n== smooth_abs_wrong: the backward forgets to divide by the output (expected failure)\n");
    options.second_order = false;
    tg::GradcheckResult bad = tg::gradcheck([](const tg::tensor_list& v) { return smooth_abs_wrong(v[0]); }, {x}, options);
    std::printf("%s", bad.to_string().c_str());

    bool as_expected = good.passed() && samples_ok && !bad.passed();
    std::printf("\n%s\n", as_expected ? "as expected: smooth_abs passes, smooth_abs_wrong fails"
                                      : "UNEXPECTED: the checker did not tell the right op from the wrong one");
    return as_expected ? 0 : 1;
}
