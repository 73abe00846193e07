// Elementwise ops. Each op: its forward loop, its backward rule in tapegrad
// ops, and the samples the registry sweep gradchecks it with.
#include "ops/elementwise.hpp"

#include <cmath>

#include "engine/autograd.hpp"
#include "engine/registry.hpp"
#include "ops/kernels.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

void check_binary(const char* op, const Tensor& a, const Tensor& b)
{
    TG_CHECK(a.defined() && b.defined(), op, ": undefined operand");
    TG_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch, ", dtype_name(a.dtype()), " ",
             a.shape(), " and ", dtype_name(b.dtype()), " ", b.shape(),
             " (convert one with .to(dtype))");
}

// out = f(a, b) with broadcasting, not recorded.
template <class F>
Tensor binary_forward(const char* op, const Tensor& a, const Tensor& b, F f)
{
    check_binary(op, a, b);
    shape_type shape = kernels::broadcast_shapes(a.shape(), b.shape(), op);
    Tensor out = Tensor::empty(shape, a.dtype());
    TG_DISPATCH_FLOATING(a.dtype(), op, [&] {
        kernels::map_binary(a.data<scalar_t>(), a.shape(), b.data<scalar_t>(), b.shape(),
                            out.data<scalar_t>(), shape, f);
    });
    return out;
}

template <class F>
Tensor unary_forward(const char* op, const Tensor& x, F f)
{
    TG_CHECK(x.defined(), op, ": undefined operand");
    Tensor out = Tensor::empty(x.shape(), x.dtype());
    TG_DISPATCH_FLOATING(x.dtype(), op, [&] {
        kernels::map_unary(x.data<scalar_t>(), out.data<scalar_t>(), x.numel(), f);
    });
    return out;
}

Tensor like(const Tensor& t, double v) { return scalar(v, t.dtype()); }

// The samples every broadcasting binary op is checked with.
std::vector<OpSample> binary_samples(OpFn fn, Domain a_domain = Domain::real,
                                     Domain b_domain = Domain::real)
{
    auto in = [](const char* name, shape_type s, Domain d) { return InputSpec{name, s, d, 0}; };
    return {
        {"same shape [3,5]", {in("a", {3, 5}, a_domain), in("b", {3, 5}, b_domain)}, fn},
        {"broadcast [3,1] x [1,4]", {in("a", {3, 1}, a_domain), in("b", {1, 4}, b_domain)}, fn},
        {"broadcast [2,3,4] x [4]", {in("a", {2, 3, 4}, a_domain), in("b", {4}, b_domain)}, fn},
        {"broadcast [1] x [2,1,3]", {in("a", {1}, a_domain), in("b", {2, 1, 3}, b_domain)}, fn},
        {"0-d x [5]", {in("a", {}, a_domain), in("b", {5}, b_domain)}, fn},
    };
}

std::vector<OpSample> unary_samples(OpFn fn, Domain domain = Domain::real, std::string note = "")
{
    if (!note.empty()) note += ", ";
    return {
        {note + "[3,5]", {InputSpec{"x", {3, 5}, domain, 0}}, fn},
        {note + "[2,3,4]", {InputSpec{"x", {2, 3, 4}, domain, 0}}, fn},
        {note + "0-d", {InputSpec{"x", {}, domain, 0}}, fn},
    };
}

}  // namespace

// --- add, sub, mul, div ---------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b)
{
    Tensor out = binary_forward("add", a, b, [](auto x, auto y) { return x + y; });
    return record("add", out, {a, b}, {}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> tensor_list {
        return {g.needs_grad(0) ? sum_to(g.grad, sa) : Tensor(),
                g.needs_grad(1) ? sum_to(g.grad, sb) : Tensor()};
    });
}
TG_REGISTER_OP("add", binary_samples([](const tensor_list& x) { return add(x[0], x[1]); }));

Tensor sub(const Tensor& a, const Tensor& b)
{
    Tensor out = binary_forward("sub", a, b, [](auto x, auto y) { return x - y; });
    return record("sub", out, {a, b}, {}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> tensor_list {
        return {g.needs_grad(0) ? sum_to(g.grad, sa) : Tensor(),
                g.needs_grad(1) ? sum_to(neg(g.grad), sb) : Tensor()};
    });
}
TG_REGISTER_OP("sub", binary_samples([](const tensor_list& x) { return sub(x[0], x[1]); }));

Tensor mul(const Tensor& a, const Tensor& b)
{
    Tensor out = binary_forward("mul", a, b, [](auto x, auto y) { return x * y; });
    return record("mul", out, {a, b}, {a, b}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor &a = g.saved[0], &b = g.saved[1];
        return {g.needs_grad(0) ? sum_to(mul(g.grad, b), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(mul(g.grad, a), b.shape()) : Tensor()};
    });
}
TG_REGISTER_OP("mul", binary_samples([](const tensor_list& x) { return mul(x[0], x[1]); }));

Tensor div(const Tensor& a, const Tensor& b)
{
    Tensor out = binary_forward("div", a, b, [](auto x, auto y) { return x / y; });
    return record("div", out, {a, b}, {a, b}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor &a = g.saved[0], &b = g.saved[1];
        return {g.needs_grad(0) ? sum_to(div(g.grad, b), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(neg(div(mul(g.grad, a), mul(b, b))), b.shape()) : Tensor()};
    });
}
TG_REGISTER_OP("div", binary_samples([](const tensor_list& x) { return div(x[0], x[1]); },
                                     Domain::real, Domain::positive));

// --- pow, maximum, minimum ---------------------------------------------------------------

Tensor pow(const Tensor& a, const Tensor& b)
{
    Tensor out = binary_forward("pow", a, b, [](auto x, auto y) { return std::pow(x, y); });
    return record("pow", out, {a, b}, {a, b, out}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor &a = g.saved[0], &b = g.saved[1], &out = g.saved[2];
        return {g.needs_grad(0) ? sum_to(mul(g.grad, mul(b, pow(a, sub(b, like(b, 1))))), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(mul(g.grad, mul(out, log(a))), b.shape()) : Tensor()};
    });
}
Tensor pow(const Tensor& base, double exponent) { return pow(base, like(base, exponent)); }
TG_REGISTER_OP("pow", binary_samples([](const tensor_list& x) { return pow(x[0], x[1]); },
                                     Domain::positive, Domain::real));
TG_REGISTER_OP("pow", unary_samples([](const tensor_list& x) { return pow(x[0], 3.0); }, Domain::real,
                                    "exponent 3"));
TG_REGISTER_OP("pow", unary_samples([](const tensor_list& x) { return pow(x[0], -1.5); },
                                    Domain::positive, "exponent -1.5"));

namespace {
// Share of the gradient that goes to `a` in maximum(a, b): 1 where a wins, 1/2 on ties.
Tensor winner_share(const Tensor& a, const Tensor& b, bool greater)
{
    return binary_forward(greater ? "maximum" : "minimum", a, b, [greater](auto x, auto y) {
        using T = decltype(x);
        if (x == y) return T(0.5);
        return (greater ? x > y : x < y) ? T(1) : T(0);
    });
}

Tensor extremum(const char* op, const Tensor& a, const Tensor& b, bool greater)
{
    Tensor out = greater ? binary_forward(op, a, b, [](auto x, auto y) { return x >= y ? x : y; })
                         : binary_forward(op, a, b, [](auto x, auto y) { return x <= y ? x : y; });
    return record(op, out, {a, b}, {a, b}, [greater](const BackwardArgs& g) -> tensor_list {
        const Tensor &a = g.saved[0], &b = g.saved[1];
        Tensor share = winner_share(a, b, greater);
        return {g.needs_grad(0) ? sum_to(mul(g.grad, share), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(mul(g.grad, sub(like(share, 1), share)), b.shape()) : Tensor()};
    });
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum("maximum", a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum("minimum", a, b, false); }
TG_REGISTER_OP("maximum", binary_samples([](const tensor_list& x) { return maximum(x[0], x[1]); }));
TG_REGISTER_OP("minimum", binary_samples([](const tensor_list& x) { return minimum(x[0], x[1]); }));

// --- unary -----------------------------------------------------------------------------------

Tensor neg(const Tensor& x)
{
    Tensor out = unary_forward("neg", x, [](auto v) { return -v; });
    return record("neg", out, {x}, {}, [](const BackwardArgs& g) -> tensor_list { return {neg(g.grad)}; });
}
TG_REGISTER_OP("neg", unary_samples([](const tensor_list& x) { return neg(x[0]); }));

Tensor exp(const Tensor& x)
{
    Tensor out = unary_forward("exp", x, [](auto v) { return std::exp(v); });
    return record("exp", out, {x}, {out}, [](const BackwardArgs& g) -> tensor_list {
        return {mul(g.grad, g.saved[0])};
    });
}
TG_REGISTER_OP("exp", unary_samples([](const tensor_list& x) { return exp(x[0]); }));

Tensor log(const Tensor& x)
{
    Tensor out = unary_forward("log", x, [](auto v) { return std::log(v); });
    return record("log", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {div(g.grad, g.saved[0])};
    });
}
TG_REGISTER_OP("log", unary_samples([](const tensor_list& x) { return log(x[0]); }, Domain::positive));

Tensor log1p(const Tensor& x)
{
    Tensor out = unary_forward("log1p", x, [](auto v) { return std::log1p(v); });
    return record("log1p", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {div(g.grad, add(g.saved[0], like(g.saved[0], 1)))};
    });
}
TG_REGISTER_OP("log1p", unary_samples([](const tensor_list& x) { return log1p(x[0]); }, Domain::positive));

Tensor sqrt(const Tensor& x)
{
    Tensor out = unary_forward("sqrt", x, [](auto v) { return std::sqrt(v); });
    return record("sqrt", out, {x}, {out}, [](const BackwardArgs& g) -> tensor_list {
        return {div(g.grad, mul(g.saved[0], like(g.saved[0], 2)))};
    });
}
TG_REGISTER_OP("sqrt", unary_samples([](const tensor_list& x) { return sqrt(x[0]); }, Domain::positive));

Tensor abs(const Tensor& x)
{
    Tensor out = unary_forward("abs", x, [](auto v) { return std::abs(v); });
    return record("abs", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {mul(g.grad, sign(g.saved[0]))};
    });
}
TG_REGISTER_OP("abs", unary_samples([](const tensor_list& x) { return abs(x[0]); }, Domain::away_from_zero));

Tensor sin(const Tensor& x)
{
    Tensor out = unary_forward("sin", x, [](auto v) { return std::sin(v); });
    return record("sin", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {mul(g.grad, cos(g.saved[0]))};
    });
}
TG_REGISTER_OP("sin", unary_samples([](const tensor_list& x) { return sin(x[0]); }));

Tensor cos(const Tensor& x)
{
    Tensor out = unary_forward("cos", x, [](auto v) { return std::cos(v); });
    return record("cos", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {neg(mul(g.grad, sin(g.saved[0])))};
    });
}
TG_REGISTER_OP("cos", unary_samples([](const tensor_list& x) { return cos(x[0]); }));

Tensor tanh(const Tensor& x)
{
    Tensor out = unary_forward("tanh", x, [](auto v) { return std::tanh(v); });
    return record("tanh", out, {x}, {out}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor& y = g.saved[0];
        return {mul(g.grad, sub(like(y, 1), mul(y, y)))};
    });
}
TG_REGISTER_OP("tanh", unary_samples([](const tensor_list& x) { return tanh(x[0]); }));

Tensor sigmoid(const Tensor& x)
{
    // 1 / (1 + e^-x) overflows e^-x for very negative x; this form does not.
    Tensor out = unary_forward("sigmoid", x, [](auto v) {
        using T = decltype(v);
        if (v >= 0) return T(1) / (T(1) + std::exp(-v));
        T e = std::exp(v);
        return e / (T(1) + e);
    });
    return record("sigmoid", out, {x}, {out}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor& y = g.saved[0];
        return {mul(g.grad, mul(y, sub(like(y, 1), y)))};
    });
}
TG_REGISTER_OP("sigmoid", unary_samples([](const tensor_list& x) { return sigmoid(x[0]); }));

Tensor relu(const Tensor& x)
{
    Tensor out = unary_forward("relu", x, [](auto v) { return v > 0 ? v : decltype(v)(0); });
    return record("relu", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {relu_backward(g.grad, g.saved[0])};
    });
}
TG_REGISTER_OP("relu", unary_samples([](const tensor_list& x) { return relu(x[0]); }, Domain::away_from_zero));

// One pass instead of mul(grad, gt(x, 0)): two passes and a mask as large as x.
Tensor relu_backward(const Tensor& grad, const Tensor& x)
{
    check_binary("relu_backward", grad, x);
    if (grad.shape() != x.shape()) return mul(grad, gt(x, 0.0));
    Tensor out = binary_forward("relu_backward", grad, x, [](auto g, auto v) { return v > 0 ? g : decltype(g)(0); });
    return record("relu_backward", out, {grad, x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        // Zero almost everywhere in x.
        return {g.needs_grad(0) ? relu_backward(g.grad, g.saved[0]) : Tensor(), Tensor()};
    });
}
TG_REGISTER_OP("relu_backward", {
    {"[3,5]", {real("grad", {3, 5}), away_from_zero("x", {3, 5})},
     [](const tensor_list& x) { return relu_backward(x[0], x[1]); }},
    {"0-d", {real("grad", {}), away_from_zero("x", {})}, [](const tensor_list& x) { return relu_backward(x[0], x[1]); }},
});

// --- composites: their gradients come from the primitives above ----------------------------

Tensor square(const Tensor& x) { return mul(x, x); }
TG_REGISTER_OP("square", unary_samples([](const tensor_list& x) { return square(x[0]); }));

Tensor leaky_relu(const Tensor& x, double negative_slope)
{
    Tensor slope = add(mul(gt(x, 0.0), like(x, 1 - negative_slope)), like(x, negative_slope));
    return mul(x, slope);
}
TG_REGISTER_OP("leaky_relu", unary_samples([](const tensor_list& x) { return leaky_relu(x[0], 0.1); },
                                           Domain::away_from_zero));

Tensor softplus(const Tensor& x) { return add(relu(x), log1p(exp(neg(abs(x))))); }
TG_REGISTER_OP("softplus", unary_samples([](const tensor_list& x) { return softplus(x[0]); },
                                         Domain::away_from_zero));

Tensor clamp(const Tensor& x, double low, double high)
{
    TG_CHECK(low <= high, "clamp: low ", low, " is above high ", high);
    return minimum(maximum(x, like(x, low)), like(x, high));
}
TG_REGISTER_OP("clamp", unary_samples([](const tensor_list& x) { return clamp(x[0], -0.7, 0.9); }));

// --- masks and sign ------------------------------------------------------------------------

#define TG_COMPARISON(name, expr)                                                              \
    Tensor name(const Tensor& a, const Tensor& b)                                              \
    {                                                                                          \
        return binary_forward(#name, a, b, [](auto x, auto y) {                                \
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
    return unary_forward("sign", x, [](auto v) {
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

}  // namespace tg
