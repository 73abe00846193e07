// A program outside the tree, built against an installed tapegrad: it adds an
// op of its own (softsign, an elementwise op), trains a small network that
// uses it, and checks the gradients: its own op's registry samples, the
// network as a function of its parameters, and the whole model. It also
// checks that the registry holds the library's ops next to its own, which a
// static libtapegrad.a would lose without the umbrella header's reference.
//
//   app [LIBRARY_OPS]    LIBRARY_OPS: how many ops the library registers
//                        (scripts/consumer_check.sh passes the tree's count)
// Exits with 1 if any check fails.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <tapegrad/ops/elementwise_op.hpp>
#include <tapegrad/tapegrad.hpp>
#include <tapegrad/xtensor.hpp>

#include <xtensor/xmath.hpp>

namespace {

// softsign(x) = x / (1 + |x|); its derivative 1 / (1 + |x|)² is written in
// tapegrad ops, so it differentiates again. |x| has a kink at 0, so the
// samples stay away from it.
struct Softsign : tg::UnaryOp<Softsign> {
    static constexpr const char* name = "softsign";
    static constexpr tg::Saves saves = tg::save_input(0);
    static constexpr tg::Domain domain = tg::Domain::away_from_zero;
    static auto f(auto x) { return x / (1 + std::abs(x)); }
    static tg::tensor_list backward(const tg::BackwardArgs& a)
    {
        tg::Tensor d = 1.0 + tg::abs(a.input(0));
        return {a.grad / (d * d)};
    }
};
TG_REGISTER_OP(Softsign);

tg::Tensor softsign(const tg::Tensor& x) { return Softsign::call({x}); }

// The same function as an op written in xtensor (first order).
struct SoftsignXt : tg::XtensorOp<SoftsignXt> {
    static constexpr const char* name = "softsign_xt";
    static constexpr tg::Saves saves = tg::save_input(0);
    template <class T>
    static void forward_xt(tg::XtForward<T>& f)
    {
        auto x = f.input(0);
        f.set_output(x / (T(1) + xt::abs(x)));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b)
    {
        b.set_grad(0, b.grad() / xt::square(T(1) + xt::abs(b.input(0))));
    }
};

class SoftsignLayer : public tg::nn::Module {
public:
    tg::Tensor forward(const tg::Tensor& x) override { return softsign(x); }
    std::string describe() const override { return "Softsign"; }
};

bool all_ok = true;

void expect(bool ok, const std::string& what)
{
    std::printf("  %-60s %s\n", what.c_str(), ok ? "ok" : "FAILED");
    all_ok = all_ok && ok;
}

}  // namespace

int main(int argc, char** argv)
{
    std::printf("== the registry\n");
    const size_t ops = tg::registered_ops().size();
    expect(tg::find_op("softsign") != nullptr, "softsign, this program's op, is registered");
    // One op from each library file whose ops this program never calls.
    for (const char* op : {"conv2d", "max_pool2d", "log_softmax"})
        expect(tg::find_op(op) != nullptr, std::string(op) + ", an op the program never calls, is registered");
    if (argc > 1) {
        const size_t library_ops = std::strtoul(argv[1], nullptr, 10);
        expect(ops == library_ops + 1, std::to_string(ops) + " ops: the library's " + std::to_string(library_ops) +
                                           " and softsign");
    }

    std::printf("== softsign through its registry samples (1st, 2nd order, float32)\n");
    const tg::OpInfo& info = *tg::find_op("softsign");
    for (const tg::OpSample& sample : info.samples) {
        tg::SampleCheck sc = tg::check_sample(info, sample);
        expect(sc.passed(), "sample " + sample.label + ": " + sc.verdict());
    }

    std::printf("== a small network with softsign, trained on y = sin(x0) + x1 / 2\n");
    tg::manual_seed(0);
    auto model = tg::nn::make<tg::nn::Sequential>(std::initializer_list<std::shared_ptr<tg::nn::Module>>{
        tg::nn::make<tg::nn::Linear>(2, 16), tg::nn::make<SoftsignLayer>(), tg::nn::make<tg::nn::Linear>(16, 1)});
    tg::Tensor x = tg::randn({64, 2});
    tg::Tensor y = tg::reshape(tg::sin(tg::slice(x, 1, 0, 1)) + 0.5 * tg::slice(x, 1, 1, 2), {64, 1});
    tg::optim::SGD opt(model->named_parameters(), {.lr = 0.1, .momentum = 0.9});
    double first = 0, last = 0;
    for (int step = 0; step < 200; ++step) {
        tg::Tensor loss = tg::mse_loss((*model)(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        last = loss.item();
        if (step == 0) first = last;
    }
    std::printf("  mse %.4f after 1 step, %.4f after 200\n", first, last);
    expect(last < 0.25 * first, "the loss goes down to under a quarter");

    std::printf("== gradients against finite differences (float64)\n");
    tg::Tensor w = tg::randn({2, 3}, tg::float64).requires_grad_();
    tg::Tensor xs = tg::randn({5, 2}, tg::float64);
    tg::GradcheckOptions options;
    options.second_order = true;
    tg::GradcheckResult r = tg::gradcheck(
        [&](const tg::tensor_list& in) { return tg::sum(softsign(tg::matmul(xs, in[0]))); }, {w}, options);
    expect(r.passed(), "sum(softsign(x @ w)) wrt w, 1st and 2nd order");
    if (!r.passed()) std::printf("%s\n", r.to_string().c_str());

    tg::Batch batch{tg::randn({8, 2}), tg::randn({8, 1})};
    tg::GradcheckResult whole = tg::gradcheck(
        *model, [](tg::nn::Module& m, const tg::Batch& b) { return tg::mse_loss(m(b.x), b.y); }, batch);
    expect(whole.passed(), "the whole trained model, every parameter element");
    if (!whole.passed()) std::printf("%s\n", whole.to_string().c_str());

    std::printf("== xtensor: a tensor from an expression, a view, an op written in xtensor\n");
    xt::xarray<double> grid = {{-2.0, -0.5}, {0.5, 3.0}};
    tg::Tensor from_expr = tg::from_xtensor(grid * 2.0).requires_grad_();
    tg::Tensor out = SoftsignXt::call({from_expr});
    expect(xt::allclose(tg::as_xtensor<double>(out), tg::as_xtensor<double>(softsign(from_expr))),
           "softsign_xt equals softsign");
    tg::GradcheckResult xr =
        tg::gradcheck([](const tg::tensor_list& in) { return SoftsignXt::call({in[0]}); }, {from_expr});
    expect(xr.passed(), "softsign_xt's backward, every element");

    std::printf("%s\n", all_ok ? "all checks passed" : "SOME CHECKS FAILED");
    return all_ok ? 0 : 1;
}
