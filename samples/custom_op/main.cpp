// A user-defined op from start to end: smooth_abs(x) = sqrt(x² + δ²), an |x|
// without the kink at 0.
//
// 1. The forward is a plain loop over the elements.
// 2. The backward is written with tapegrad's own ops, so it can itself be
//    differentiated (second order).
// 3. TG_REGISTER_OP gives the registry sample inputs: the sweep
//    (tg::check_sample, samples/gradcheck_all) then checks the op like any
//    library op.
// Then the same op with a wrong backward, and the report a user gets for it.
#include <cmath>
#include <cstdio>

#include <tapegrad/tapegrad.hpp>

namespace {

constexpr double delta = 0.1;

tg::Tensor smooth_abs(const tg::Tensor& x)
{
    tg::Tensor out = tg::Tensor::empty(x.shape(), x.dtype());
    TG_DISPATCH_FLOATING(x.dtype(), "smooth_abs", [&] {
        const scalar_t* in = x.data<scalar_t>();
        scalar_t* y = out.data<scalar_t>();
        for (int64_t i = 0; i < x.numel(); ++i) y[i] = std::sqrt(in[i] * in[i] + scalar_t(delta * delta));
    });
    // d/dx sqrt(x² + δ²) = x / y. The rule reads x and the output back.
    return tg::record("smooth_abs", out, {x}, {x, out}, [](const tg::BackwardArgs& g) -> tg::tensor_list {
        return {g.grad * g.saved[0] / g.saved[1]};
    });
}

TG_REGISTER_OP("smooth_abs", {
    tg::OpSample{"[3,5]", {tg::real("x", {3, 5})}, [](const tg::tensor_list& x) { return smooth_abs(x[0]); }},
    tg::OpSample{"0-d", {tg::real("x", {})}, [](const tg::tensor_list& x) { return smooth_abs(x[0]); }},
});

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
