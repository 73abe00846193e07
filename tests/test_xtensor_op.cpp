// Custom ops written in xtensor (tg::XtensorOp, engine/io/xtensor_op.hpp):
// recorded, registered, swept and gradchecked like any op; first order only,
// and said so when differentiated again; bad gradients and inputs named.
#include <doctest/doctest.h>
#include <tapegrad/xtensor.hpp>

#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

namespace {

// softplus(x) = log(1 + e^x), in the form that does not overflow.
struct XtSoftplus : tg::XtensorOp<XtSoftplus> {
    static constexpr const char* name = "test_xt_softplus";
    static constexpr tg::Saves saves = tg::save_input(0);
    template <class T>
    static void forward_xt(tg::XtForward<T>& f)
    {
        auto x = f.input(0);  // a named view: set_output evaluates while it lives
        f.set_output(xt::maximum(x, T(0)) + xt::log1p(xt::exp(-xt::abs(x))));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b)
    {
        b.set_grad(0, b.grad() / (T(1) + xt::exp(-b.input(0))));
    }
    static std::vector<tg::OpSample> samples()
    {
        return {sample("[7, 3]", {tg::real("x", {7, 3})}), sample("0-d", {tg::real("x", {})})};
    }
};
TG_REGISTER_OP(XtSoftplus);

// scale · a · b with broadcasting; the gradients come back in the output's
// shape and are summed to each input's.
struct XtScaledMul : tg::XtensorOp<XtScaledMul> {
    static constexpr const char* name = "test_xt_scaled_mul";
    struct Attrs {
        double scale = 1;
    };
    static constexpr tg::Saves saves = tg::save_input(0) | tg::save_input(1);
    template <class T>
    static void forward_xt(tg::XtForward<T>& f, const Attrs& a)
    {
        f.set_output(T(a.scale) * f.input(0) * f.input(1));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b, const Attrs& a)
    {
        b.set_grad(0, T(a.scale) * b.grad() * b.input(1));
        b.set_grad(1, T(a.scale) * b.grad() * b.input(0));
    }
    static std::vector<tg::OpSample> samples()
    {
        return {sample("[4, 5] x [4, 5]", {tg::real("a", {4, 5}), tg::real("b", {4, 5})}, {2.5}),
                sample("broadcast [3, 1] x [5]", {tg::real("a", {3, 1}), tg::real("b", {5})}, {-0.5})};
    }
};
TG_REGISTER_OP(XtScaledMul);

// log Σ_j exp(x_ij) along the last axis of a matrix: a reduction, whose
// forward keeps the softmax its backward needs.
struct XtRowLogSumExp : tg::XtensorOp<XtRowLogSumExp> {
    static constexpr const char* name = "test_xt_row_logsumexp";
    template <class T>
    static void forward_xt(tg::XtForward<T>& f)
    {
        auto x = f.input(0);
        TG_CHECK(x.dimension() == 2, name, ": needs a matrix, got shape ", f.tensor(0).shape());
        auto col = [](auto&& v) { return xt::view(std::forward<decltype(v)>(v), xt::all(), xt::newaxis()); };
        xt::xarray<T> m = xt::amax(x, {1});
        xt::xarray<T> out = m + xt::log(xt::sum(xt::exp(x - col(m)), {1}));
        f.keep(xt::exp(x - col(out)));
        f.set_output(std::move(out));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b)
    {
        b.set_grad(0, xt::view(b.grad(), xt::all(), xt::newaxis()) * b.kept(0));
    }
    static std::vector<tg::OpSample> samples()
    {
        return {sample("[5, 7]", {tg::real("x", {5, 7})}), sample("[1, 1]", {tg::real("x", {1, 1})})};
    }
};
TG_REGISTER_OP(XtRowLogSumExp);

// Not registered: a softplus whose backward is wrong for x < -1 only.
struct XtSoftplusWrongBranch : tg::XtensorOp<XtSoftplusWrongBranch> {
    static constexpr const char* name = "test_xt_softplus_wrong_branch";
    static constexpr tg::Saves saves = tg::save_input(0);
    template <class T>
    static void forward_xt(tg::XtForward<T>& f)
    {
        XtSoftplus::forward_xt(f);
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b)
    {
        auto x = b.input(0);
        auto sigma = T(1) / (T(1) + xt::exp(-x));
        b.set_grad(0, b.grad() * xt::where(x < T(-1), T(1.01) * sigma, sigma));
    }
};

// Not registered: a backward that hands back a gradient of the wrong shape.
struct XtWrongGradShape : tg::XtensorOp<XtWrongGradShape> {
    static constexpr const char* name = "test_xt_wrong_grad_shape";
    template <class T>
    static void forward_xt(tg::XtForward<T>& f)
    {
        f.set_output(T(2) * f.input(0));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b)
    {
        b.set_grad(0, xt::sum(b.grad(), {0}));
    }
};

// Not registered: a row sum whose backward hands back the output's shape,
// which the input [rows, cols] does not broadcast to.
struct XtRowSumOutputShapedGrad : tg::XtensorOp<XtRowSumOutputShapedGrad> {
    static constexpr const char* name = "test_xt_row_sum_output_shaped_grad";
    template <class T>
    static void forward_xt(tg::XtForward<T>& f)
    {
        f.set_output(xt::sum(f.input(0), {1}));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b)
    {
        b.set_grad(0, b.grad());
    }
};

struct XtNoOutput : tg::XtensorOp<XtNoOutput> {
    static constexpr const char* name = "test_xt_no_output";
    template <class T>
    static void forward_xt(tg::XtForward<T>&)
    {
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>&)
    {
    }
};

double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }

}  // namespace

TEST_CASE_TEMPLATE("xtensor op: forward and backward agree with the formulas", T, float, double)
{
    const tg::Dtype dtype = tg::dtype_of<T>();
    const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-15;
    tg::Tensor x = tg::from_values({-800, -3, -0.5, 0, 0.5, 3, 800}, {7}, dtype).requires_grad_();
    tg::Tensor y = XtSoftplus::call({x});
    REQUIRE(y.dtype() == dtype);
    REQUIRE(y.grad_fn() != nullptr);
    tg::sum(y).backward();
    std::vector<double> xs = x.to_vector(), ys = y.to_vector(), gs = x.grad().to_vector();
    for (size_t i = 0; i < xs.size(); ++i) {
        INFO("x = ", xs[i]);
        // Relative, down to the exact 0 at -800 (softplus and sigmoid underflow there).
        const double want_y = softplus(xs[i]), want_g = 1 / (1 + std::exp(-xs[i]));
        CHECK(std::abs(ys[i] - want_y) <= tol * want_y);
        CHECK(std::abs(gs[i] - want_g) <= tol * want_g);
    }

    // A broadcast input's gradient is summed back to its shape.
    tg::Tensor a = tg::from_values({1, 2, 3}, {3, 1}, dtype).requires_grad_();
    tg::Tensor b = tg::from_values({10, 20}, {2}, dtype).requires_grad_();
    tg::Tensor z = XtScaledMul::call({a, b}, {0.5});
    CHECK(z.shape() == tg::shape_type{3, 2});
    CHECK(z.to_vector() == std::vector<double>{5, 10, 10, 20, 15, 30});
    tg::sum(z).backward();
    CHECK(a.grad().shape() == tg::shape_type{3, 1});
    CHECK(a.grad().to_vector() == std::vector<double>{15, 15, 15});
    CHECK(b.grad().to_vector() == std::vector<double>{3, 3});
}

TEST_CASE("xtensor op: tg::gradcheck passes correct ones and names the elements of a wrong branch")
{
    tg::manual_seed(3);
    tg::Tensor x = tg::randn({6, 5}, tg::float64).mul_(2).requires_grad_();
    tg::Tensor m = tg::randn({6, 5}, tg::float64).requires_grad_();
    CHECK(tg::gradcheck([](const tg::tensor_list& in) { return XtSoftplus::call({in[0]}); }, {x}).passed());
    CHECK(tg::gradcheck([](const tg::tensor_list& in) { return XtRowLogSumExp::call({in[0]}); }, {m}).passed());
    CHECK(tg::gradcheck([](const tg::tensor_list& in) { return XtScaledMul::call({in[0], in[1]}, {3.0}); }, {x, m})
              .passed());

    tg::GradcheckResult r =
        tg::gradcheck([](const tg::tensor_list& in) { return XtSoftplusWrongBranch::call({in[0]}); }, {x});
    CHECK_FALSE(r.passed());
    // Exactly the elements below -1 are named.
    const std::vector<double> xs = x.to_vector();
    int64_t below = 0;
    for (double v : xs) below += v < -1;
    REQUIRE(below > 0);
    REQUIRE(r.inputs.size() == 1);
    CHECK(r.inputs[0].failures == below);
    for (const tg::ElementReport& e : r.inputs[0].worst)
        if (e.verdict == tg::ElementVerdict::fail) CHECK(e.value < -1);
}

TEST_CASE("xtensor op: in the registry with first-order samples, and the sweep passes them")
{
    for (const char* name : {"test_xt_softplus", "test_xt_scaled_mul", "test_xt_row_logsumexp"}) {
        INFO(name);
        const tg::OpInfo* op = tg::find_op(name);
        REQUIRE(op != nullptr);
        REQUIRE(!op->samples.empty());
        for (const tg::OpSample& s : op->samples) {
            INFO(s.label);
            CHECK_FALSE(s.second_order);
            tg::SampleCheck c = tg::check_sample(*op, s);
            CHECK(c.first.passed());
            CHECK(c.float32.passed);
            CHECK(c.passed());
        }
    }
}

TEST_CASE("xtensor op: differentiating its backward again is an error naming the op")
{
    tg::Tensor x = tg::from_values({-1, 0.5, 2}, {3}, tg::float64).requires_grad_();
    tg::Tensor y = tg::sum(XtSoftplus::call({x}));
    tg::tensor_list g = tg::grad({y}, {x}, {}, tg::GradOptions{.create_graph = true, .retain_graph = {}});
    // The first-order gradient is right under create_graph too ...
    std::vector<double> gs = g[0].to_vector();
    CHECK(gs[1] == doctest::Approx(1 / (1 + std::exp(-0.5))).epsilon(1e-15));
    // ... and going through it once more says why it cannot.
    REQUIRE(g[0].requires_grad());
    CHECK_THROWS_WITH_AS(tg::grad({tg::sum(g[0])}, {x}),
                         doctest::Contains("test_xt_softplus: its backward is written in xtensor (first order only)"),
                         tg::Error);
}

TEST_CASE("xtensor op: a gradient of the wrong shape, inputs of mixed dtypes, no output: errors naming the op")
{
    tg::Tensor x = tg::ones({3, 4}, tg::float64).requires_grad_();
    tg::Tensor y = XtWrongGradShape::call({x});
    CHECK_THROWS_WITH_AS(tg::sum(y).backward(),
                         doctest::Contains("test_xt_wrong_grad_shape: the gradient of input 0 has shape [4]; it needs "
                                           "the input's shape [3, 4] (or the output's, [3, 4], when the input was "
                                           "broadcast)"),
                         tg::Error);

    tg::Tensor r = tg::ones({3, 4}, tg::float64).requires_grad_();
    CHECK_THROWS_WITH_AS(tg::sum(XtRowSumOutputShapedGrad::call({r})).backward(),
                         doctest::Contains("test_xt_row_sum_output_shaped_grad: the gradient of input 0 has shape [3]; "
                                           "it needs the input's shape [3, 4]"),
                         tg::Error);

    tg::Tensor f = tg::ones({2}, tg::float32);
    CHECK_THROWS_WITH_AS(XtScaledMul::call({x, f}),
                         "tapegrad: test_xt_scaled_mul: input 1 is float32 of shape [2]; the op runs in float64",
                         tg::Error);
    CHECK_THROWS_WITH_AS(XtSoftplus::call({tg::zeros({2}, tg::int64)}), doctest::Contains("needs a float32 or float64 input"),
                         tg::Error);
    CHECK_THROWS_WITH_AS(XtNoOutput::call({x}), "tapegrad: test_xt_no_output: forward_xt did not call set_output",
                         tg::Error);
    // Shapes that do not broadcast: xtensor's own error, on one line, naming the op.
    tg::Tensor a = tg::ones({5, 5}, tg::float64), b = tg::ones({4, 5}, tg::float64);
    std::string what;
    try {
        XtScaledMul::call({a, b});
    } catch (const tg::Error& e) {
        what = e.what();
    }
    CHECK(what.rfind("tapegrad: test_xt_scaled_mul: ", 0) == 0);
    CHECK(what.find('\n') == std::string::npos);
    CHECK(tg::detail::one_line("Incompatible dimension of arrays:\n LHS shape = (5, 5, )\n RHS shape = (4, 5, )\n") ==
          "Incompatible dimension of arrays: LHS shape = (5, 5, ) RHS shape = (4, 5, )");
}
