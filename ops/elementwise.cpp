// Elementwise ops. Each op: its forward loop, its backward rule in tapegrad
// ops, and the samples the registry sweep gradchecks it with.
#include "ops/elementwise.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/autograd.hpp"
#include "engine/registry.hpp"
#include "engine/replay.hpp"
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

// --- replay (the model gradcheck's partial re-evaluation, engine/replay.hpp) -------------

auto unary_replay(Tensor (*op)(const Tensor&))
{
    return [op](const tensor_list& in) { return op(in[0]); };
}
auto binary_replay(Tensor (*op)(const Tensor&, const Tensor&))
{
    return [op](const tensor_list& in) { return op(in[0], in[1]); };
}

// y = f(x) again where x changed.
template <class F>
auto unary_delta(F f)
{
    return [f](DeltaArgs& d) {
        const ReplayInput& x = d.inputs[0];
        const double* xv = x.data();
        for (int64_t i : *x.changed) {
            double y = f(xv[i]);
            if (std::memcmp(&y, &d.out[i], sizeof y) == 0) continue;
            d.out[i] = y;
            d.touch(i);
        }
        return true;
    };
}

// out = f(a, b) again at every output element a changed element of a or b
// reaches (all its broadcast copies).
template <class F>
auto binary_delta(F f)
{
    return [f](DeltaArgs& d) {
        const shape_type& so = d.base_out.shape();
        const int rank = int(so.size());
        const double* av = d.inputs[0].data();
        const double* bv = d.inputs[1].data();
        shape_type sh[2] = {d.inputs[0].base->shape(), d.inputs[1].base->shape()};
        // Per output axis: each operand's stride (0 where it broadcasts).
        int64_t out_stride[8], stride[2][8];
        if (rank > 8) return false;
        for (int op = 0; op < 2; ++op) {
            int64_t st = 1;
            for (int ax = rank - 1; ax >= 0; --ax) {
                int src = ax - (rank - int(sh[op].size()));
                int64_t dim = src >= 0 ? sh[op][size_t(src)] : 1;
                stride[op][ax] = dim == 1 ? 0 : st;
                st *= dim;
            }
        }
        for (int64_t st = 1, ax = rank - 1; ax >= 0; --ax) {
            out_stride[ax] = st;
            st *= so[size_t(ax)];
        }
        auto index_in = [&](int op, int64_t o) {  // operand op's element read by output o
            int64_t at = 0;
            for (int ax = 0; ax < rank; ++ax) {
                at += (o / out_stride[ax]) % so[size_t(ax)] * stride[op][ax];
            }
            return at;
        };
        auto set = [&](int64_t o, int64_t ia, int64_t ib) {
            double y = f(av[ia], bv[ib]);
            if (std::memcmp(&y, &d.out[o], sizeof y) == 0) return;
            d.out[o] = y;
            d.touch(o);
        };
        const int64_t budget = d.base_out.numel();
        int64_t work = 0;
        for (int op = 0; op < 2; ++op) {
            const ReplayInput& x = d.inputs[size_t(op)];
            if (x.unchanged()) continue;
            if (sh[op] == so) {  // the element is read by one output element only
                for (int64_t o : *x.changed) set(o, index_in(0, o), index_in(1, o));
                continue;
            }
            // The element's coordinates on the axes it has; it is read by every
            // combination of the axes it is broadcast along.
            for (int64_t flat : *x.changed) {
                int64_t coord[8], free_dims[8];
                int free_axes[8], nfree = 0;
                int64_t r = flat;
                for (int ax = rank - 1; ax >= 0; --ax) {
                    int src = ax - (rank - int(sh[op].size()));
                    int64_t dim = src >= 0 ? sh[op][size_t(src)] : 1;
                    coord[ax] = r % dim;
                    r /= dim;
                    if (dim == 1 && so[size_t(ax)] > 1) {
                        free_axes[nfree] = ax;
                        free_dims[nfree++] = so[size_t(ax)];
                    }
                }
                int64_t combos = 1;
                for (int k = 0; k < nfree; ++k) combos *= free_dims[k];
                work += combos;
                if (work > budget / 2) return false;  // a full replay is as cheap
                for (int64_t c = 0; c < combos; ++c) {
                    int64_t rem = c;
                    for (int k = nfree - 1; k >= 0; --k) {
                        coord[free_axes[k]] = rem % free_dims[k];
                        rem /= free_dims[k];
                    }
                    int64_t o = 0, ia = 0, ib = 0;
                    for (int ax = 0; ax < rank; ++ax) {
                        o += coord[ax] * out_stride[ax];
                        ia += coord[ax] * stride[0][ax];
                        ib += coord[ax] * stride[1][ax];
                    }
                    set(o, ia, ib);
                }
            }
        }
        return true;
    };
}

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
    auto f = [](auto x, auto y) { return x + y; };
    Tensor out = binary_forward("add", a, b, f);
    return record("add", out, {a, b}, {}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> tensor_list {
        return {g.needs_grad(0) ? sum_to(g.grad, sa) : Tensor(),
                g.needs_grad(1) ? sum_to(g.grad, sb) : Tensor()};
    }, binary_replay(add), binary_delta(f));
}
TG_REGISTER_OP("add", binary_samples([](const tensor_list& x) { return add(x[0], x[1]); }));

Tensor sub(const Tensor& a, const Tensor& b)
{
    auto f = [](auto x, auto y) { return x - y; };
    Tensor out = binary_forward("sub", a, b, f);
    return record("sub", out, {a, b}, {}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> tensor_list {
        return {g.needs_grad(0) ? sum_to(g.grad, sa) : Tensor(),
                g.needs_grad(1) ? sum_to(neg(g.grad), sb) : Tensor()};
    }, binary_replay(sub), binary_delta(f));
}
TG_REGISTER_OP("sub", binary_samples([](const tensor_list& x) { return sub(x[0], x[1]); }));

Tensor mul(const Tensor& a, const Tensor& b)
{
    auto f = [](auto x, auto y) { return x * y; };
    Tensor out = binary_forward("mul", a, b, f);
    return record("mul", out, {a, b}, {a, b}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor &a = g.saved[0], &b = g.saved[1];
        return {g.needs_grad(0) ? sum_to(mul(g.grad, b), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(mul(g.grad, a), b.shape()) : Tensor()};
    }, binary_replay(mul), binary_delta(f));
}
TG_REGISTER_OP("mul", binary_samples([](const tensor_list& x) { return mul(x[0], x[1]); }));

Tensor div(const Tensor& a, const Tensor& b)
{
    auto f = [](auto x, auto y) { return x / y; };
    Tensor out = binary_forward("div", a, b, f);
    return record("div", out, {a, b}, {a, b}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor &a = g.saved[0], &b = g.saved[1];
        return {g.needs_grad(0) ? sum_to(div(g.grad, b), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(neg(div(mul(g.grad, a), mul(b, b))), b.shape()) : Tensor()};
    }, binary_replay(div), binary_delta(f));
}
TG_REGISTER_OP("div", binary_samples([](const tensor_list& x) { return div(x[0], x[1]); },
                                     Domain::real, Domain::positive));

// --- pow, maximum, minimum ---------------------------------------------------------------

Tensor pow(const Tensor& a, const Tensor& b)
{
    auto f = [](auto x, auto y) { return std::pow(x, y); };
    Tensor out = binary_forward("pow", a, b, f);
    return record("pow", out, {a, b}, {a, b, out}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor &a = g.saved[0], &b = g.saved[1], &out = g.saved[2];
        return {g.needs_grad(0) ? sum_to(mul(g.grad, mul(b, pow(a, sub(b, like(b, 1))))), a.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(mul(g.grad, mul(out, log(a))), b.shape()) : Tensor()};
    }, binary_replay(pow), binary_delta(f));
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
    }, [greater](const tensor_list& in) { return greater ? maximum(in[0], in[1]) : minimum(in[0], in[1]); },
    binary_delta([greater](double x, double y) { return greater ? (x >= y ? x : y) : (x <= y ? x : y); }));
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum("maximum", a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum("minimum", a, b, false); }
TG_REGISTER_OP("maximum", binary_samples([](const tensor_list& x) { return maximum(x[0], x[1]); }));
TG_REGISTER_OP("minimum", binary_samples([](const tensor_list& x) { return minimum(x[0], x[1]); }));

// --- unary -----------------------------------------------------------------------------------

Tensor neg(const Tensor& x)
{
    auto f = [](auto v) { return -v; };
    Tensor out = unary_forward("neg", x, f);
    return record("neg", out, {x}, {}, [](const BackwardArgs& g) -> tensor_list { return {neg(g.grad)}; },
                  unary_replay(neg), unary_delta(f));
}
TG_REGISTER_OP("neg", unary_samples([](const tensor_list& x) { return neg(x[0]); }));

Tensor exp(const Tensor& x)
{
    auto f = [](auto v) { return std::exp(v); };
    Tensor out = unary_forward("exp", x, f);
    return record("exp", out, {x}, {out}, [](const BackwardArgs& g) -> tensor_list {
        return {mul(g.grad, g.saved[0])};
    }, unary_replay(exp), unary_delta(f));
}
TG_REGISTER_OP("exp", unary_samples([](const tensor_list& x) { return exp(x[0]); }));

Tensor log(const Tensor& x)
{
    auto f = [](auto v) { return std::log(v); };
    Tensor out = unary_forward("log", x, f);
    return record("log", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {div(g.grad, g.saved[0])};
    }, unary_replay(log), unary_delta(f));
}
TG_REGISTER_OP("log", unary_samples([](const tensor_list& x) { return log(x[0]); }, Domain::positive));

Tensor log1p(const Tensor& x)
{
    auto f = [](auto v) { return std::log1p(v); };
    Tensor out = unary_forward("log1p", x, f);
    return record("log1p", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {div(g.grad, add(g.saved[0], like(g.saved[0], 1)))};
    }, unary_replay(log1p), unary_delta(f));
}
TG_REGISTER_OP("log1p", unary_samples([](const tensor_list& x) { return log1p(x[0]); }, Domain::positive));

Tensor sqrt(const Tensor& x)
{
    auto f = [](auto v) { return std::sqrt(v); };
    Tensor out = unary_forward("sqrt", x, f);
    return record("sqrt", out, {x}, {out}, [](const BackwardArgs& g) -> tensor_list {
        return {div(g.grad, mul(g.saved[0], like(g.saved[0], 2)))};
    }, unary_replay(sqrt), unary_delta(f));
}
TG_REGISTER_OP("sqrt", unary_samples([](const tensor_list& x) { return sqrt(x[0]); }, Domain::positive));

Tensor abs(const Tensor& x)
{
    auto f = [](auto v) { return std::abs(v); };
    Tensor out = unary_forward("abs", x, f);
    return record("abs", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {mul(g.grad, sign(g.saved[0]))};
    }, unary_replay(abs), unary_delta(f));
}
TG_REGISTER_OP("abs", unary_samples([](const tensor_list& x) { return abs(x[0]); }, Domain::away_from_zero));

Tensor sin(const Tensor& x)
{
    auto f = [](auto v) { return std::sin(v); };
    Tensor out = unary_forward("sin", x, f);
    return record("sin", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {mul(g.grad, cos(g.saved[0]))};
    }, unary_replay(sin), unary_delta(f));
}
TG_REGISTER_OP("sin", unary_samples([](const tensor_list& x) { return sin(x[0]); }));

Tensor cos(const Tensor& x)
{
    auto f = [](auto v) { return std::cos(v); };
    Tensor out = unary_forward("cos", x, f);
    return record("cos", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {neg(mul(g.grad, sin(g.saved[0])))};
    }, unary_replay(cos), unary_delta(f));
}
TG_REGISTER_OP("cos", unary_samples([](const tensor_list& x) { return cos(x[0]); }));

Tensor tanh(const Tensor& x)
{
    auto f = [](auto v) { return std::tanh(v); };
    Tensor out = unary_forward("tanh", x, f);
    return record("tanh", out, {x}, {out}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor& y = g.saved[0];
        return {mul(g.grad, sub(like(y, 1), mul(y, y)))};
    }, unary_replay(tanh), unary_delta(f));
}
TG_REGISTER_OP("tanh", unary_samples([](const tensor_list& x) { return tanh(x[0]); }));

Tensor sigmoid(const Tensor& x)
{
    // 1 / (1 + e^-x) overflows e^-x for very negative x; this form does not.
    auto f = [](auto v) {
        using T = decltype(v);
        if (v >= 0) return T(1) / (T(1) + std::exp(-v));
        T e = std::exp(v);
        return e / (T(1) + e);
    };
    Tensor out = unary_forward("sigmoid", x, f);
    return record("sigmoid", out, {x}, {out}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor& y = g.saved[0];
        return {mul(g.grad, mul(y, sub(like(y, 1), y)))};
    }, unary_replay(sigmoid), unary_delta(f));
}
TG_REGISTER_OP("sigmoid", unary_samples([](const tensor_list& x) { return sigmoid(x[0]); }));

namespace {
// relu's first-order rule when the incoming gradient is a temporary nothing
// else holds (in a CNN, max_pool2d_backward's output) and no graph is being
// built: the mask is applied in the gradient's own buffer, so no fresh buffer
// as large as x is written. Undefined when that does not apply.
Tensor relu_backward_in_place(const Tensor& grad, const Tensor& x)
{
    if (grad_enabled() || grad.requires_grad() || grad.grad_fn() || grad.shape() != x.shape() ||
        grad.dtype() != x.dtype())
        return Tensor();
    const std::shared_ptr<TensorImpl>& impl = grad.impl_ptr();
    if (impl.use_count() != 1 || impl->storage.use_count() != 1 || impl->storage->owner) return Tensor();
    Tensor out = grad;
    TG_DISPATCH_FLOATING(out.dtype(), "relu_backward", [&] {
        // Distinct buffers (nothing else holds the gradient's): restrict lets
        // the loop vectorise without an overlap check.
        scalar_t* gd = out.data<scalar_t>();
        const scalar_t* xd = x.data<scalar_t>();
        parallel_for(out.numel(), kernels::elementwise_grain, [gd, xd](int64_t b, int64_t e) {
            scalar_t* __restrict g = gd;
            const scalar_t* __restrict v = xd;
            for (int64_t i = b; i < e; ++i) g[i] = v[i] > 0 ? g[i] : scalar_t(0);
        });
    });
    out.bump_version();
    return out;
}
}  // namespace

Tensor relu(const Tensor& x)
{
    auto f = [](auto v) { return v > 0 ? v : decltype(v)(0); };
    Tensor out = unary_forward("relu", x, f);
    return record("relu", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        if (Tensor d = relu_backward_in_place(g.grad, g.saved[0]); d.defined()) return {d};
        return {relu_backward(g.grad, g.saved[0])};
    }, unary_replay(relu), unary_delta(f));
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
    }, binary_replay(relu_backward), binary_delta([](double g, double v) { return v > 0 ? g : 0.0; }));
}
TG_REGISTER_OP("relu_backward", {
    {"[3,5]", {real("grad", {3, 5}), away_from_zero("x", {3, 5})},
     [](const tensor_list& x) { return relu_backward(x[0], x[1]); }},
    {"0-d", {real("grad", {}), away_from_zero("x", {})}, [](const tensor_list& x) { return relu_backward(x[0], x[1]); }},
});

Tensor softplus(const Tensor& x)
{
    // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): e^x never overflows, and the
    // small term is not lost for very negative x. A primitive rather than a
    // composite of relu and abs, whose derivatives at exactly 0 add up to 0
    // instead of σ(0) = 1/2.
    auto f = [](auto v) {
        using T = decltype(v);
        return std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v)));
    };
    Tensor out = unary_forward("softplus", x, f);
    return record("softplus", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {mul(g.grad, sigmoid(g.saved[0]))};
    }, unary_replay(softplus), unary_delta(f));
}
TG_REGISTER_OP("softplus", [] {
    auto fn = [](const tensor_list& x) { return softplus(x[0]); };
    std::vector<OpSample> samples = unary_samples(fn);
    // Far out on both sides, where the naive log(1 + e^x) overflows or rounds to
    // 0, next to elements near 0 (there the second derivative is not ~1e-22).
    samples.push_back({"x ± 50 and near 0, [2,4]", {InputSpec{"x", {2, 4}, Domain::real, 0}}, [](const tensor_list& x) {
                           Tensor shift = from_values({50, -50, 0, 0, -50, 50, 0, 0}, {2, 4}, x[0].dtype());
                           return softplus(add(x[0], shift));
                       }});
    return samples;
}());

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
