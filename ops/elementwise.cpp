// Elementwise ops. Each op: its scalar function, its backward rule in
// tapegrad ops, and where its samples draw their inputs (ops/elementwise_op.hpp
// derives the loop, the replay rule and the samples from them).
#include "ops/elementwise.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "engine/core/parallel.hpp"
#include "ops/elementwise_op.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {
Tensor like(const Tensor& t, double v) { return scalar(v, t.dtype()); }
}  // namespace

// --- add, sub, mul, div ---------------------------------------------------------------

namespace {
struct Add : BinaryOp<Add> {
    static constexpr const char* name = "add";
    static auto f(auto x, auto y) { return x + y; }
    static tensor_list backward(const BackwardArgs& a)
    {
        return {a.needs_grad(0) ? sum_to(a.grad, a.input_shape(0)) : Tensor(),
                a.needs_grad(1) ? sum_to(a.grad, a.input_shape(1)) : Tensor()};
    }
};
}  // namespace
Tensor add(const Tensor& a, const Tensor& b) { return Add::call({a, b}); }
TG_REGISTER_OP(Add);

namespace {
struct Sub : BinaryOp<Sub> {
    static constexpr const char* name = "sub";
    static auto f(auto x, auto y) { return x - y; }
    static tensor_list backward(const BackwardArgs& a)
    {
        return {a.needs_grad(0) ? sum_to(a.grad, a.input_shape(0)) : Tensor(),
                a.needs_grad(1) ? sum_to(neg(a.grad), a.input_shape(1)) : Tensor()};
    }
};
}  // namespace
Tensor sub(const Tensor& a, const Tensor& b) { return Sub::call({a, b}); }
TG_REGISTER_OP(Sub);

namespace {
struct Mul : BinaryOp<Mul> {
    static constexpr const char* name = "mul";
    static constexpr Saves saves = save_input(0) | save_input(1);
    static auto f(auto x, auto y) { return x * y; }
    static tensor_list backward(const BackwardArgs& g)
    {
        const Tensor &a = g.input(0), &b = g.input(1);
        return {g.needs_grad(0) ? sum_to(mul(g.grad, b), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(mul(g.grad, a), b.shape()) : Tensor()};
    }
};
}  // namespace
Tensor mul(const Tensor& a, const Tensor& b) { return Mul::call({a, b}); }
TG_REGISTER_OP(Mul);

namespace {
struct Div : BinaryOp<Div> {
    static constexpr const char* name = "div";
    static constexpr Saves saves = save_input(0) | save_input(1);
    static constexpr Domain b_domain = Domain::positive;
    static auto f(auto x, auto y) { return x / y; }
    static tensor_list backward(const BackwardArgs& g)
    {
        const Tensor &a = g.input(0), &b = g.input(1);
        return {g.needs_grad(0) ? sum_to(div(g.grad, b), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(neg(div(mul(g.grad, a), mul(b, b))), b.shape()) : Tensor()};
    }
};
}  // namespace
Tensor div(const Tensor& a, const Tensor& b) { return Div::call({a, b}); }
TG_REGISTER_OP(Div);

// --- pow, maximum, minimum ---------------------------------------------------------------

namespace {
struct Pow : BinaryOp<Pow> {
    static constexpr const char* name = "pow";
    static constexpr Saves saves = save_input(0) | save_input(1) | save_output;
    static constexpr Domain a_domain = Domain::positive;
    static auto f(auto x, auto y) { return std::pow(x, y); }
    static tensor_list backward(const BackwardArgs& g)
    {
        const Tensor &a = g.input(0), &b = g.input(1), &out = g.output();
        return {g.needs_grad(0) ? sum_to(mul(g.grad, mul(b, pow(a, sub(b, like(b, 1))))), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(mul(g.grad, mul(out, log(a))), b.shape()) : Tensor()};
    }
    static std::vector<OpSample> samples()
    {
        std::vector<OpSample> s = samples_of<Pow>(binary_inputs(a_domain, b_domain));
        // A constant exponent, either sign (the overload pow(x, double)).
        for (auto [exponent, domain, note] : {std::tuple{3.0, Domain::real, "exponent 3"},
                                              std::tuple{-1.5, Domain::positive, "exponent -1.5"}}) {
            const double e = exponent;  // (a structured binding cannot be captured before C++20 in clang 14)
            std::vector<OpSample> c = samples_of(unary_inputs(domain, note), [e](const tensor_list& x) { return pow(x[0], e); });
            s.insert(s.end(), c.begin(), c.end());
        }
        return s;
    }
};
}  // namespace
Tensor pow(const Tensor& a, const Tensor& b) { return Pow::call({a, b}); }
Tensor pow(const Tensor& base, double exponent)
{
    TG_CHECK(base.defined(), "pow: undefined operand");
    return pow(base, like(base, exponent));
}
TG_REGISTER_OP(Pow);

// maximum and minimum, as PyTorch: a NaN on either side is the result; the
// winner takes the gradient, equal operands get half each, and where either
// is NaN both get all of it (PyTorch's masks: neither side loses).
namespace {
template <class D, bool Greater>
struct Extremum : BinaryOp<D> {
    static constexpr Saves saves = save_input(0) | save_input(1);
    static auto f(auto x, auto y)
    {
        if (x != x || y != y) return x != x ? x : y;
        return Greater ? (x >= y ? x : y) : (x <= y ? x : y);
    }
    // The share of the operand x of (x, y): 0 where it loses, 1/2 on equality, else 1.
    static auto share(auto x, auto y)
    {
        using T = decltype(x);
        if (x == y) return T(0.5);
        return (Greater ? x < y : x > y) ? T(0) : T(1);
    }
    static tensor_list backward(const BackwardArgs& g)
    {
        const Tensor &a = g.input(0), &b = g.input(1);
        auto shares = [&](const Tensor& x, const Tensor& y) {
            return map_binary(D::name, x, y, [](auto u, auto v) { return share(u, v); });
        };
        return {g.needs_grad(0) ? sum_to(mul(g.grad, shares(a, b)), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(mul(g.grad, shares(b, a)), b.shape()) : Tensor()};
    }
};
struct Maximum : Extremum<Maximum, true> {
    static constexpr const char* name = "maximum";
};
struct Minimum : Extremum<Minimum, false> {
    static constexpr const char* name = "minimum";
};
}  // namespace
Tensor maximum(const Tensor& a, const Tensor& b) { return Maximum::call({a, b}); }
Tensor minimum(const Tensor& a, const Tensor& b) { return Minimum::call({a, b}); }
TG_REGISTER_OP(Maximum);
TG_REGISTER_OP(Minimum);

// --- unary -----------------------------------------------------------------------------------

namespace {
struct Neg : UnaryOp<Neg> {
    static constexpr const char* name = "neg";
    static auto f(auto x) { return -x; }
    static tensor_list backward(const BackwardArgs& a) { return {neg(a.grad)}; }
};
}  // namespace
Tensor neg(const Tensor& x) { return Neg::call({x}); }
TG_REGISTER_OP(Neg);

namespace {
struct Exp : UnaryOp<Exp> {
    static constexpr const char* name = "exp";
    static constexpr Saves saves = save_output;
    static auto f(auto x) { return std::exp(x); }
    static tensor_list backward(const BackwardArgs& a) { return {mul(a.grad, a.output())}; }
};
}  // namespace
Tensor exp(const Tensor& x) { return Exp::call({x}); }
TG_REGISTER_OP(Exp);

namespace {
struct Log : UnaryOp<Log> {
    static constexpr const char* name = "log";
    static constexpr Saves saves = save_input(0);
    static constexpr Domain domain = Domain::positive;
    static auto f(auto x) { return std::log(x); }
    static tensor_list backward(const BackwardArgs& a) { return {div(a.grad, a.input(0))}; }
};
}  // namespace
Tensor log(const Tensor& x) { return Log::call({x}); }
TG_REGISTER_OP(Log);

namespace {
struct Log1p : UnaryOp<Log1p> {
    static constexpr const char* name = "log1p";
    static constexpr Saves saves = save_input(0);
    static constexpr Domain domain = Domain::positive;
    static auto f(auto x) { return std::log1p(x); }
    static tensor_list backward(const BackwardArgs& a) { return {div(a.grad, add(a.input(0), like(a.grad, 1)))}; }
};
}  // namespace
Tensor log1p(const Tensor& x) { return Log1p::call({x}); }
TG_REGISTER_OP(Log1p);

namespace {
struct Sqrt : UnaryOp<Sqrt> {
    static constexpr const char* name = "sqrt";
    static constexpr Saves saves = save_output;
    static constexpr Domain domain = Domain::positive;
    static auto f(auto x) { return std::sqrt(x); }
    static tensor_list backward(const BackwardArgs& a) { return {div(a.grad, mul(a.output(), like(a.grad, 2)))}; }
};
}  // namespace
Tensor sqrt(const Tensor& x) { return Sqrt::call({x}); }
TG_REGISTER_OP(Sqrt);

namespace {
struct Abs : UnaryOp<Abs> {
    static constexpr const char* name = "abs";
    static constexpr Saves saves = save_input(0);
    static constexpr Domain domain = Domain::away_from_zero;
    static auto f(auto x) { return std::abs(x); }
    static tensor_list backward(const BackwardArgs& a) { return {mul(a.grad, sign(a.input(0)))}; }
};
}  // namespace
Tensor abs(const Tensor& x) { return Abs::call({x}); }
TG_REGISTER_OP(Abs);

namespace {
struct Sin : UnaryOp<Sin> {
    static constexpr const char* name = "sin";
    static constexpr Saves saves = save_input(0);
    static auto f(auto x) { return std::sin(x); }
    static tensor_list backward(const BackwardArgs& a) { return {mul(a.grad, cos(a.input(0)))}; }
};
}  // namespace
Tensor sin(const Tensor& x) { return Sin::call({x}); }
TG_REGISTER_OP(Sin);

namespace {
struct Cos : UnaryOp<Cos> {
    static constexpr const char* name = "cos";
    static constexpr Saves saves = save_input(0);
    static auto f(auto x) { return std::cos(x); }
    static tensor_list backward(const BackwardArgs& a) { return {neg(mul(a.grad, sin(a.input(0))))}; }
};
}  // namespace
Tensor cos(const Tensor& x) { return Cos::call({x}); }
TG_REGISTER_OP(Cos);

namespace {
struct Tanh : UnaryOp<Tanh> {
    static constexpr const char* name = "tanh";
    static constexpr Saves saves = save_output;
    static auto f(auto x) { return std::tanh(x); }
    static tensor_list backward(const BackwardArgs& a)
    {
        const Tensor& y = a.output();
        return {mul(a.grad, sub(like(y, 1), mul(y, y)))};
    }
};
}  // namespace
Tensor tanh(const Tensor& x) { return Tanh::call({x}); }
TG_REGISTER_OP(Tanh);

namespace {
struct Sigmoid : UnaryOp<Sigmoid> {
    static constexpr const char* name = "sigmoid";
    static constexpr Saves saves = save_output;
    // 1 / (1 + e^-x) overflows e^-x for very negative x; this form does not.
    static auto f(auto x)
    {
        using T = decltype(x);
        if (x >= 0) return T(1) / (T(1) + std::exp(-x));
        T e = std::exp(x);
        return e / (T(1) + e);
    }
    static tensor_list backward(const BackwardArgs& a)
    {
        const Tensor& y = a.output();
        return {mul(a.grad, mul(y, sub(like(y, 1), y)))};
    }
};
}  // namespace
Tensor sigmoid(const Tensor& x) { return Sigmoid::call({x}); }
TG_REGISTER_OP(Sigmoid);

// One pass instead of mul(grad, gt(x, 0)): two passes and a mask as large as x.
namespace {
struct ReluBackward : BinaryOp<ReluBackward> {
    static constexpr const char* name = "relu_backward";
    static constexpr Saves saves = save_input(1);
    static auto f(auto g, auto x) { return x <= 0 ? decltype(g)(0) : g; }  // NaN passes g, as PyTorch
    // Zero almost everywhere in x.
    static tensor_list backward(const BackwardArgs& a)
    {
        return {a.needs_grad(0) ? relu_backward(a.grad, a.input(1)) : Tensor(), Tensor()};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[3,5]", {real("grad", {3, 5}), away_from_zero("x", {3, 5})}),
                sample("0-d", {real("grad", {}), away_from_zero("x", {})})};
    }
};
}  // namespace
Tensor relu_backward(const Tensor& grad, const Tensor& x)
{
    TG_CHECK(grad.defined() && x.defined(), "relu_backward: undefined operand");
    if (grad.shape() != x.shape()) return mul(grad, sub(like(x, 1), le(x, like(x, 0))));  // 1 - (x <= 0): NaN passes
    return ReluBackward::call({grad, x});
}
TG_REGISTER_OP(ReluBackward);

namespace {
struct Relu : UnaryOp<Relu> {
    static constexpr const char* name = "relu";
    static constexpr Saves saves = save_input(0);
    static constexpr Domain domain = Domain::away_from_zero;
    static auto f(auto x) { return x < 0 ? decltype(x)(0) : x; }  // NaN stays NaN, -0 stays -0, as PyTorch
    static tensor_list backward(const BackwardArgs& a) { return {relu_backward(a.grad, a.input(0))}; }
    // When the incoming gradient is a temporary nothing else holds (in a CNN,
    // max_pool2d's backward output), the mask is applied in its own buffer: no
    // fresh buffer as large as x.
    static tensor_list fused_backward(const BackwardArgs& a)
    {
        const Tensor &g = a.grad, &x = a.input(0);
        const std::shared_ptr<TensorImpl>& impl = g.impl_ptr();
        if (g.requires_grad() || g.shape() != x.shape() || g.dtype() != x.dtype() || impl.use_count() != 1 ||
            impl->storage.use_count() != 1 || impl->storage->owner)
            return backward(a);
        Tensor out = g;
        TG_DISPATCH_FLOATING(out.dtype(), "relu_backward", [&] {
            // Distinct buffers (nothing else holds the gradient's): restrict lets
            // the loop vectorise without an overlap check.
            scalar_t* gd = out.data<scalar_t>();
            const scalar_t* xd = x.data<scalar_t>();
            parallel_for(out.numel(), kernels::elementwise_grain, [gd, xd](int64_t b, int64_t e) {
                scalar_t* __restrict gp = gd;
                const scalar_t* __restrict v = xd;
                for (int64_t i = b; i < e; ++i) gp[i] = v[i] <= 0 ? scalar_t(0) : gp[i];
            });
        });
        out.bump_version();
        return {out};
    }
};
}  // namespace
Tensor relu(const Tensor& x) { return Relu::call({x}); }
TG_REGISTER_OP(Relu);

namespace {
struct Softplus : UnaryOp<Softplus> {
    static constexpr const char* name = "softplus";
    static constexpr Saves saves = save_input(0);
    // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): e^x never overflows, and the
    // small term is not lost for very negative x. A primitive rather than a
    // composite of relu and abs, whose derivatives at exactly 0 add up to 0
    // instead of σ(0) = 1/2.
    static auto f(auto x)
    {
        using T = decltype(x);
        return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x)));
    }
    static tensor_list backward(const BackwardArgs& a) { return {mul(a.grad, sigmoid(a.input(0)))}; }
    static std::vector<OpSample> samples()
    {
        std::vector<OpSample> s = samples_of<Softplus>(unary_inputs());
        // Far out on both sides, where the naive log(1 + e^x) overflows or rounds to
        // 0, next to elements near 0 (there the second derivative is not ~1e-22).
        s.push_back(tg::sample("x ± 50 and near 0, [2,4]", {real("x", {2, 4})}, [](const tensor_list& x) {
            Tensor shift = from_values({50, -50, 0, 0, -50, 50, 0, 0}, {2, 4}, x[0].dtype());
            return softplus(add(x[0], shift));
        }));
        return s;
    }
};
}  // namespace
Tensor softplus(const Tensor& x) { return Softplus::call({x}); }
TG_REGISTER_OP(Softplus);

// --- composites: their gradients come from the primitives above ----------------------------

Tensor square(const Tensor& x) { return mul(x, x); }
TG_REGISTER_SAMPLES("square", samples_of(unary_inputs(), [](const tensor_list& x) { return square(x[0]); }));

Tensor leaky_relu(const Tensor& x, double negative_slope)
{
    TG_CHECK(x.defined(), "leaky_relu: undefined operand");
    TG_CHECK(is_floating(x.dtype()), "leaky_relu: expected a float32 or float64 tensor, got ", dtype_name(x.dtype()));
    Tensor slope = add(mul(gt(x, 0.0), like(x, 1 - negative_slope)), like(x, negative_slope));
    return mul(x, slope);
}
TG_REGISTER_SAMPLES("leaky_relu", samples_of(unary_inputs(Domain::away_from_zero),
                                              [](const tensor_list& x) { return leaky_relu(x[0], 0.1); }));

namespace {
// x limited to [low, high], NaN kept: the forward of clamp and of hardtanh,
// which differ in their gradients at the bounds.
Tensor clamped(const char* op, const Tensor& x, double low, double high)
{
    TG_CHECK(x.defined(), op, ": undefined operand");
    TG_CHECK(low <= high, op, ": low ", low, " is above high ", high);  // NaN is neither
    return map_unary(op, x, [low, high](auto v) {
        using T = decltype(v);
        return v < T(low) ? T(low) : v > T(high) ? T(high) : v;  // NaN: neither, itself
    });
}
}  // namespace

// Not minimum(maximum(x, low), high): that halves the gradient at the bounds.
// As PyTorch: the gradient passes for low <= x <= high, bounds included (in
// x's dtype); NaN stays NaN and gets none.
namespace {
struct Clamp : Op<Clamp> {
    static constexpr const char* name = "clamp";
    static constexpr Saves saves = save_input(0);
    struct Attrs {
        double low, high;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        return clamped("clamp", in[0], a.low, a.high);
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        Tensor inside = map_unary("clamp", g.input(0), [lo = a.low, hi = a.high](auto v) {
            using T = decltype(v);
            return v >= T(lo) && v <= T(hi) ? T(1) : T(0);
        });
        return {mul(g.grad, inside)};
    }
    static std::vector<OpSample> samples()
    {
        std::vector<OpSample> s;
        for (const SampleInputs& in : unary_inputs()) s.push_back(sample(in.label, in.inputs, Attrs{-0.7, 0.9}));
        return s;
    }
};
TG_REGISTER_OP(Clamp);
}  // namespace

Tensor clamp(const Tensor& x, double low, double high)
{
    return Clamp::call({x}, {low, high});
}

// --- the activations of PyTorch's torch.nn.functional --------------------------------------

namespace {
struct Erf : UnaryOp<Erf> {
    static constexpr const char* name = "erf";
    static constexpr Saves saves = save_input(0);
    static auto f(auto x) { return std::erf(x); }
    static tensor_list backward(const BackwardArgs& a)  // 2/√π · e^(−x²)
    {
        const Tensor& x = a.input(0);
        return {mul(a.grad, mul(exp(neg(mul(x, x))), like(x, 2 / std::sqrt(M_PI))))};
    }
};
}  // namespace
Tensor erf(const Tensor& x) { return Erf::call({x}); }
TG_REGISTER_OP(Erf);

// PyTorch's formulas, in its order: x·½·(1 + erf(x/√2)), and
// ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
Tensor gelu(const Tensor& x, GeluApproximate approximate)
{
    TG_CHECK(x.defined(), "gelu: undefined operand");
    TG_CHECK(is_floating(x.dtype()), "gelu: expected a float32 or float64 tensor, got ", dtype_name(x.dtype()));
    switch (approximate) {
    case GeluApproximate::none: return mul(mul(x, like(x, 0.5)), add(erf(mul(x, like(x, M_SQRT1_2))), like(x, 1)));
    case GeluApproximate::tanh: {
        Tensor inner = mul(add(x, mul(mul(mul(x, x), x), like(x, 0.044715))), like(x, std::sqrt(2 / M_PI)));
        return mul(mul(x, like(x, 0.5)), add(tanh(inner), like(x, 1)));
    }
    }
    fail("gelu: approximate ", int(approximate), " is neither none nor tanh");
}
TG_REGISTER_SAMPLES("gelu", [] {
    std::vector<OpSample> s = samples_of(unary_inputs(Domain::real, "exact"),
                                         [](const tensor_list& x) { return gelu(x[0]); });
    for (OpSample& t : samples_of(unary_inputs(Domain::real, "tanh"),
                                  [](const tensor_list& x) { return gelu(x[0], GeluApproximate::tanh); }))
        s.push_back(std::move(t));
    return s;
}());

Tensor silu(const Tensor& x)
{
    TG_CHECK(x.defined(), "silu: undefined operand");
    return mul(x, sigmoid(x));
}
TG_REGISTER_SAMPLES("silu", samples_of(unary_inputs(), [](const tensor_list& x) { return silu(x[0]); }));

namespace {
// α·eˣ for x < 0, else 0 (NaN included): elu's slope below 0, its own derivative.
struct EluCurve : Op<EluCurve> {
    static constexpr const char* name = "elu_curve";
    static constexpr Saves saves = save_input(0);
    struct Attrs {
        double alpha;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        TG_CHECK(in[0].defined(), "elu_curve: undefined operand");
        return map_unary("elu_curve", in[0], [alpha = a.alpha](auto v) {
            using T = decltype(v);
            return v < T(0) ? T(alpha) * std::exp(v) : T(0);
        });
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {mul(g.grad, EluCurve::call({g.input(0)}, {a.alpha}))};
    }
    static std::vector<OpSample> samples()
    {
        std::vector<OpSample> s;
        for (const SampleInputs& in : unary_inputs(Domain::away_from_zero, "alpha 0.3"))
            s.push_back(sample(in.label, in.inputs, Attrs{0.3}));
        return s;
    }
};
TG_REGISTER_OP(EluCurve);

// x for x > 0, α·(eˣ − 1) otherwise. As PyTorch: the slope at 0 is α, and
// NaN passes the gradient (it is not <= 0).
struct Elu : Op<Elu> {
    static constexpr const char* name = "elu";
    static constexpr Saves saves = save_input(0);
    struct Attrs {
        double alpha;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        TG_CHECK(in[0].defined(), "elu: undefined operand");
        TG_CHECK(std::isfinite(a.alpha), "elu: alpha ", a.alpha, " is not finite");
        return map_unary("elu", in[0], [alpha = a.alpha](auto v) {
            using T = decltype(v);
            return v <= T(0) ? T(alpha) * std::expm1(v) : v;
        });
    }
    // g·(p + z·α + elu_curve(x)), with constant masks p = (x > 0 or NaN)
    // and z = (x == 0): NaN and ±inf get PyTorch's slopes (1, 1, 0) with no
    // 0·∞, and the second derivative at 0 is PyTorch's (0, from the right).
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        const Tensor& x = g.input(0);
        Tensor at_most_0 = le(x, like(x, 0));
        Tensor positive = sub(like(x, 1), at_most_0), at_0 = sub(at_most_0, lt(x, like(x, 0)));
        Tensor slope = add(add(positive, mul(at_0, like(x, a.alpha))), EluCurve::call({x}, {a.alpha}));
        return {mul(g.grad, slope)};
    }
    static std::vector<OpSample> samples()
    {
        std::vector<OpSample> s;
        for (const SampleInputs& in : unary_inputs(Domain::away_from_zero, "alpha 1"))
            s.push_back(sample(in.label, in.inputs, Attrs{1.0}));
        for (const SampleInputs& in : unary_inputs(Domain::away_from_zero, "alpha 0.3"))
            s.push_back(sample(in.label, in.inputs, Attrs{0.3}));
        return s;
    }
};

// clamp(x, low, high) whose gradient, as PyTorch's, stops at the bounds
// (low < x < high passes, bounds excluded); NaN passes it.
struct Hardtanh : Op<Hardtanh> {
    static constexpr const char* name = "hardtanh";
    static constexpr Saves saves = save_input(0);
    struct Attrs {
        double low, high;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        return clamped("hardtanh", in[0], a.low, a.high);
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        Tensor inside = map_unary("hardtanh", g.input(0), [lo = a.low, hi = a.high](auto v) {
            using T = decltype(v);
            return v <= T(lo) || v >= T(hi) ? T(0) : T(1);
        });
        return {mul(g.grad, inside)};
    }
    static std::vector<OpSample> samples()
    {
        std::vector<OpSample> s;
        for (const SampleInputs& in : unary_inputs()) s.push_back(sample(in.label, in.inputs, Attrs{-0.7, 0.9}));
        return s;
    }
};
}  // namespace

Tensor elu(const Tensor& x, double alpha) { return Elu::call({x}, {alpha}); }
TG_REGISTER_OP(Elu);
Tensor hardtanh(const Tensor& x, double min_val, double max_val) { return Hardtanh::call({x}, {min_val, max_val}); }
TG_REGISTER_OP(Hardtanh);
Tensor relu6(const Tensor& x) { return hardtanh(x, 0, 6); }

// --- masks and sign ------------------------------------------------------------------------

#define TG_COMPARISON(name, expr)                                                              \
    Tensor name(const Tensor& a, const Tensor& b)                                              \
    {                                                                                          \
        return map_binary(#name, a, b, [](auto x, auto y) {                                   \
            using T = decltype(x);                                                             \
            return (expr) ? T(1) : T(0);                                                       \
        });                                                                                    \
    }
TG_COMPARISON(gt, x > y)
TG_COMPARISON(ge, x >= y)
TG_COMPARISON(lt, x < y)
TG_COMPARISON(le, x <= y)
TG_COMPARISON(eq, x == y)
#undef TG_COMPARISON
Tensor gt(const Tensor& a, double b) { return gt(a, like(a, b)); }
Tensor lt(const Tensor& a, double b) { return lt(a, like(a, b)); }

Tensor sign(const Tensor& x)
{
    return map_unary("sign", x, [](auto v) {
        using T = decltype(v);
        return v > 0 ? T(1) : v < 0 ? T(-1) : T(0);
    });
}

// --- operators -------------------------------------------------------------------------------

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double b) { return add(a, like(a, b)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, like(a, b)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, like(a, b)); }
Tensor operator/(const Tensor& a, double b) { return div(a, like(a, b)); }
Tensor operator+(double a, const Tensor& b) { return add(like(b, a), b); }
Tensor operator-(double a, const Tensor& b) { return sub(like(b, a), b); }
Tensor operator*(double a, const Tensor& b) { return mul(like(b, a), b); }
Tensor operator/(double a, const Tensor& b) { return div(like(b, a), b); }

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_elementwise_ops() {}
}  // namespace detail

}  // namespace tg
