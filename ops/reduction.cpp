// Reductions: forward loops over [outer, n, inner] views, backward rules, samples.
#include "ops/reduction.hpp"

#include <algorithm>
#include <cmath>

#include "engine/core/op.hpp"
#include "ops/elementwise.hpp"
#include "ops/elementwise_op.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/indexing.hpp"
#include "ops/indexing.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

// Sorted, distinct, non-negative axes; all axes when `axes` is empty.
axes_type reduction_axes(const Tensor& x, const axes_type& axes, const char* op)
{
    TG_CHECK(x.defined(), op, ": undefined operand");
    axes_type out;
    if (axes.empty()) {
        for (int64_t d = 0; d < x.dim(); ++d) out.push_back(d);
        return out;
    }
    for (int64_t a : axes) {
        int64_t r = std::max<int64_t>(x.dim(), 1);
        TG_CHECK(a >= -r && a < r, op, ": axis ", a, " is out of range for shape ", x.shape());
        int64_t n = normalize_axis(a, x.dim(), op);
        if (x.dim() == 0) continue;  // axis 0 of a 0-d tensor: nothing to reduce
        TG_CHECK(std::find(out.begin(), out.end(), n) == out.end(), op, ": axis ", a,
                 " repeated in ", axes, " for shape ", x.shape());
        out.push_back(n);
    }
    std::sort(out.begin(), out.end());
    return out;
}

shape_type dropped_shape(const shape_type& shape, const axes_type& axes)
{
    shape_type s;
    for (int64_t d = 0; d < int64_t(shape.size()); ++d)
        if (std::find(axes.begin(), axes.end(), d) == axes.end()) s.push_back(shape[size_t(d)]);
    return s;
}

// Reduces one axis: out[o, i] = combine over k of x[o, k, i].
template <class T, class Combine>
void reduce_axis(const T* x, T* out, const kernels::AxisSplit& s, T init, Combine combine)
{
    if (s.inner == 1) {
        parallel_for(s.outer, std::max<int64_t>(1, kernels::elementwise_grain / std::max<int64_t>(s.n, 1)),
                     [&](int64_t o0, int64_t o1) {
            for (int64_t o = o0; o < o1; ++o) {
                const T* row = x + o * s.n;
                T acc = init;
                for (int64_t k = 0; k < s.n; ++k) acc = combine(acc, row[k]);
                out[o] = acc;
            }
        });
        return;
    }
    parallel_for(s.outer, std::max<int64_t>(1, kernels::elementwise_grain / std::max<int64_t>(s.n * s.inner, 1)),
                 [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; ++o) {
            T* dst = out + o * s.inner;
            std::fill(dst, dst + s.inner, init);
            for (int64_t k = 0; k < s.n; ++k) {
                const T* src = x + (o * s.n + k) * s.inner;
                for (int64_t i = 0; i < s.inner; ++i) dst[i] = combine(dst[i], src[i]);
            }
        }
    });
}

// Applies reduce_axis over each axis in turn (last first); keeps dims.
template <class Combine>
Tensor reduce(const Tensor& x, const axes_type& axes, double init, const char* op, Combine combine)
{
    Tensor cur = x;
    if (axes.empty()) return cur.clone().detach();
    for (size_t i = axes.size(); i-- > 0;) {
        int64_t a = axes[i];
        shape_type shape = cur.shape();
        kernels::AxisSplit s = kernels::split_at(shape, a);
        shape[size_t(a)] = 1;
        Tensor next = Tensor::empty(shape, x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), op, [&] {
            reduce_axis(cur.data<scalar_t>(), next.data<scalar_t>(), s, scalar_t(init),
                        [&](scalar_t acc, scalar_t v) { return combine(acc, v); });
        });
        cur = next;
    }
    return cur;
}

// The attributes of a reduction over axes (all when empty).
struct ReductionAttrs {
    axes_type axes;  // normalised and sorted by forward
    bool keepdims;
};

// The reduced tensor `kept` (the reduced axes kept as size 1) as the op returns it.
Tensor reduced(const Tensor& kept, const Tensor& x, const ReductionAttrs& a)
{
    return a.keepdims ? kept : reshape(kept, dropped_shape(x.shape(), a.axes));
}

}  // namespace

namespace {
struct Sum : Op<Sum> {
    static constexpr const char* name = "sum";
    using Attrs = ReductionAttrs;
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), "sum: undefined operand");
        a.axes = reduction_axes(x, a.axes, "sum");
        Tensor kept;
        if (a.axes.size() == size_t(x.dim()) && x.dim() > 0 && x.dtype() != int64) {
            // Over everything: one pass with a double accumulator for accuracy.
            kept = Tensor::empty(shape_type(size_t(x.dim()), 1), x.dtype());
            TG_DISPATCH_FLOATING(x.dtype(), "sum", [&] {
                const scalar_t* p = x.data<scalar_t>();
                double total = 0;
                for (int64_t i = 0; i < x.numel(); ++i) total += double(p[i]);
                kept.data<scalar_t>()[0] = scalar_t(total);
            });
        } else {
            kept = reduce(x, a.axes, 0.0, "sum", [](auto acc, auto v) { return acc + v; });
        }
        return reduced(kept, x, a);
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        const shape_type& from = g.input_shape(0);
        shape_type keep = from;
        for (int64_t ax : a.axes) keep[size_t(ax)] = 1;
        return {broadcast_to(reshape(g.grad, keep), from)};
    }
    // Each changed element moves its own output by what it changed.
    static bool delta(DeltaArgs& d, const Attrs& a)
    {
        const shape_type& xs = d.inputs[0].base->shape();
        std::vector<bool> reduced(xs.size(), false);
        for (int64_t ax : a.axes) reduced[size_t(ax)] = true;
        const double *x1 = d.inputs[0].data(), *x0 = d.inputs[0].base_data();
        for (int64_t f : *d.inputs[0].changed) {
            int64_t o = 0, stride = 1, r = f;
            for (size_t k = xs.size(); k-- > 0;) {
                int64_t c = r % xs[k];
                r /= xs[k];
                if (reduced[k]) continue;
                o += c * stride;
                stride *= xs[k];
            }
            d.out[o] += x1[f] - x0[f];
            d.touch(o);
        }
        return true;
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[3,4,5] all", {real("x", {3, 4, 5})}, Attrs{{}, false}),
                sample("[3,4,5] axis 1", {real("x", {3, 4, 5})}, Attrs{{1}, false}),
                sample("[3,4,5] axes 0,2 keepdims", {real("x", {3, 4, 5})}, Attrs{{0, -1}, true}),
                sample("0-d", {real("x", {})}, Attrs{{}, false})};
    }
};
TG_REGISTER_OP(Sum);
}  // namespace

Tensor sum(const Tensor& x, const axes_type& axes, bool keepdims) { return Sum::call({x}, {axes, keepdims}); }

Tensor mean(const Tensor& x, const axes_type& axes, bool keepdims)
{
    TG_CHECK(!x.defined() || is_floating(x.dtype()), "mean: expected a float32 or float64 tensor, got ",
             dtype_name(x.dtype()));
    axes_type ax = reduction_axes(x, axes, "mean");
    double count = 1;  // in double: with another axis 0, the reduced ones may multiply past int64
    for (int64_t a : ax) count *= double(x.shape()[size_t(a)]);
    return div(sum(x, axes, keepdims), scalar(count, x.dtype()));
}
namespace {
// The values at the index argmax (argmin) picks, gathered: the gradient goes
// to that index alone, as torch.max(x, dim)'s.
std::pair<Tensor, Tensor> extremum_with_indices(const Tensor& x, int64_t axis, bool keepdims, bool is_max)
{
    const char* op = is_max ? "max_with_indices" : "min_with_indices";
    TG_CHECK(x.defined(), op, ": undefined input");
    const int64_t d = x.dim();
    // A 0-d tensor has the one axis 0 (or -1), as in PyTorch: itself, at index 0.
    const int64_t r = std::max<int64_t>(d, 1);
    TG_CHECK(axis >= -r && axis < r, op, ": axis ", axis, " is out of range for shape ", x.shape());
    if (d == 0) return {reshape(x, {}), zeros({}, int64)};
    // As PyTorch: a reduction without identity over no elements.
    TG_CHECK(x.shape()[size_t(axis < 0 ? axis + d : axis)] > 0, op, ": axis ", axis, " of shape ", x.shape(),
             " is empty: no extremum to take");
    Tensor idx = is_max ? argmax(x, axis, true) : argmin(x, axis, true);
    Tensor v = gather(x, axis, idx);
    if (keepdims) return {v, idx};
    return {squeeze(v, axis), squeeze(idx, axis)};
}
}  // namespace

std::pair<Tensor, Tensor> max_with_indices(const Tensor& x, int64_t axis, bool keepdims)
{
    return extremum_with_indices(x, axis, keepdims, true);
}
std::pair<Tensor, Tensor> min_with_indices(const Tensor& x, int64_t axis, bool keepdims)
{
    return extremum_with_indices(x, axis, keepdims, false);
}
TG_REGISTER_SAMPLES("max_with_indices", {
    sample("[3,4,5] axis 1", {real("x", {3, 4, 5})}, [](const tensor_list& x) { return max_with_indices(x[0], 1).first; }),
    sample("[3,4,5] axis -1 keepdims", {real("x", {3, 4, 5})},
           [](const tensor_list& x) { return max_with_indices(x[0], -1, true).first; }),
    sample("0-d axis 0", {real("x", {})}, [](const tensor_list& x) { return max_with_indices(x[0], 0).first; }),
});
TG_REGISTER_SAMPLES("min_with_indices", {
    sample("[4,3] axis 0", {real("x", {4, 3})}, [](const tensor_list& x) { return min_with_indices(x[0], 0).first; }),
    sample("0-d axis -1 keepdims", {real("x", {})},
           [](const tensor_list& x) { return min_with_indices(x[0], -1, true).first; }),
});

TG_REGISTER_SAMPLES("mean", {
    sample("[3,4,5] all", {real("x", {3, 4, 5})}, [](const tensor_list& x) { return mean(x[0]); }),
    sample("[3,4,5] axis -1 keepdims", {real("x", {3, 4, 5})}, [](const tensor_list& x) { return mean(x[0], {-1}, true); }),
});

// Σ over the axes of (x − mean)², divided by N − correction (0 when that is
// negative, as PyTorch: then inf or NaN). Two passes, for accuracy.
Tensor var(const Tensor& x, const axes_type& axes, double correction, bool keepdims)
{
    TG_CHECK(!x.defined() || is_floating(x.dtype()), "var: expected a float32 or float64 tensor, got ",
             dtype_name(x.dtype()));
    TG_CHECK(std::isfinite(correction), "var: correction ", correction, " is not finite");
    axes_type ax = reduction_axes(x, axes, "var");
    double count = 1;
    for (int64_t a : ax) count *= double(x.shape()[size_t(a)]);
    Tensor centered = sub(x, mean(x, axes, true));
    return div(sum(mul(centered, centered), axes, keepdims), scalar(std::max(count - correction, 0.0), x.dtype()));
}
TG_REGISTER_SAMPLES("var", {
    sample("[3,4,5] all, unbiased", {real("x", {3, 4, 5})}, [](const tensor_list& x) { return var(x[0]); }),
    sample("[3,4,5] axis 1, biased", {real("x", {3, 4, 5})}, [](const tensor_list& x) { return var(x[0], {1}, 0); }),
    sample("[3,4,5] axes 0,2 keepdims, correction 2", {real("x", {3, 4, 5})},
           [](const tensor_list& x) { return var(x[0], {0, -1}, 2, true); }),
});

Tensor std(const Tensor& x, const axes_type& axes, double correction, bool keepdims)
{
    try {
        return sqrt(var(x, axes, correction, keepdims));
    } catch (const Error&) {
        detail::rethrow_naming("std");
    }
}
TG_REGISTER_SAMPLES("std", {
    sample("[3,4,5] all, unbiased", {real("x", {3, 4, 5})}, [](const tensor_list& x) { return std(x[0]); }),
    sample("[4,3] axis 0 keepdims, biased", {real("x", {4, 3})},
           [](const tensor_list& x) { return std(x[0], {0}, 0, true); }),
});

// log Σ eˣ over the axes, shifted by the maximum as PyTorch does: the shift
// is a constant (the gradient is then softmax), an infinite maximum is
// replaced by 0 (a slice of -inf gives -inf, one holding +inf gives +inf),
// and an empty slice gives -inf.
Tensor logsumexp(const Tensor& x, const axes_type& axes, bool keepdims)
{
    TG_CHECK(!x.defined() || is_floating(x.dtype()), "logsumexp: expected a float32 or float64 tensor, got ",
             dtype_name(x.dtype()));
    try {
        axes_type ax = reduction_axes(x, axes, "logsumexp");
        shape_type kept_shape = x.shape();
        for (int64_t a : ax) kept_shape[size_t(a)] = 1;
        Tensor shift = x.numel() == 0 ? zeros(kept_shape, x.dtype()) : max(x.detach(), axes, true).clone();
        TG_DISPATCH_FLOATING(x.dtype(), "logsumexp", [&] {
            scalar_t* p = shift.data<scalar_t>();
            for (int64_t i = 0; i < shift.numel(); ++i)
                if (!std::isfinite(p[i])) p[i] = 0;
        });
        Tensor total = sum(exp(sub(x, shift)), axes, keepdims);
        return add(log(total), keepdims ? shift : reshape(shift, total.shape()));
    } catch (const Error&) {
        detail::rethrow_naming("logsumexp");
    }
}
TG_REGISTER_SAMPLES("logsumexp", {
    sample("[3,4,5] all", {real("x", {3, 4, 5})}, [](const tensor_list& x) { return logsumexp(x[0]); }),
    sample("[3,4,5] axis 1", {real("x", {3, 4, 5})}, [](const tensor_list& x) { return logsumexp(x[0], {1}); }),
    sample("[3,4,5] axes 0,2 keepdims", {real("x", {3, 4, 5})},
           [](const tensor_list& x) { return logsumexp(x[0], {0, -1}, true); }),
    // Far from 0, where e^x without the shift overflows.
    sample("[2,3] + 800, axis 1", {real("x", {2, 3})},
           [](const tensor_list& x) { return logsumexp(add(x[0], scalar(800, x[0].dtype())), {1}); }),
});

namespace {
// Running sums along an axis, from the front or (reverse) from the back; the
// gradient of one is the other. Floats accumulate in double, as PyTorch's
// CPU kernel does; int64 stays int64.
struct Cumsum : Op<Cumsum> {
    static constexpr const char* name = "cumsum";
    struct Attrs {
        int64_t axis;  // normalised by forward
        bool reverse;
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), "cumsum: undefined operand");
        a.axis = normalize_axis(a.axis, x.dim(), "cumsum");
        Tensor out = Tensor::empty(x.shape(), x.dtype(), name);
        const int64_t n = x.dim() == 0 ? 1 : x.shape()[size_t(a.axis)];
        TG_DISPATCH_ALL(x.dtype(), "cumsum", [&] {
            using acc_t = std::conditional_t<std::is_floating_point_v<scalar_t>, double, scalar_t>;
            if (x.numel() == 0) return;  // (and the axes after may multiply past int64)
            kernels::cumsum<scalar_t, acc_t>(x.data<scalar_t>(), out.data<scalar_t>(), x.numel(), n,
                                             x.dim() == 0 ? 1 : inner_size(x.shape(), a.axis), a.reverse);
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {Cumsum::call({g.grad}, {a.axis, !a.reverse})};
    }
    static int64_t inner_size(const shape_type& s, int64_t axis)
    {
        int64_t inner = 1;
        for (size_t d = size_t(axis) + 1; d < s.size(); ++d) inner *= s[d];
        return inner;
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[3,5] axis 0", {real("x", {3, 5})}, Attrs{0, false}),
                sample("[3,5] axis -1", {real("x", {3, 5})}, Attrs{-1, false}),
                sample("[2,3,4] axis 1, reverse", {real("x", {2, 3, 4})}, Attrs{1, true}),
                sample("0-d", {real("x", {})}, Attrs{0, false})};
    }
};
TG_REGISTER_OP(Cumsum);
}  // namespace

Tensor cumsum(const Tensor& x, int64_t axis) { return Cumsum::call({x}, {axis, false}); }

namespace {
// Ties share the gradient equally, as PyTorch's amax/amin and max(x)/min(x).
// The two differ only at NaN, and tapegrad follows each: over axes given, a
// slice whose extremum is NaN gets NaN everywhere (amax); over everything (no
// axes given), each NaN gets an equal share (torch.max(x)).
template <class D, bool Greater>
struct Extreme : Op<D> {
    static constexpr Saves saves = save_input(0) | save_output;
    struct Attrs {
        axes_type axes;  // normalised and sorted by forward
        bool keepdims;
        bool whole = false;  // no axes given: set by forward, never cleared
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), D::name, ": undefined operand");
        if (a.axes.empty()) a.whole = true;
        a.axes = reduction_axes(x, a.axes, D::name);
        for (int64_t ax : a.axes)
            TG_CHECK(x.shape()[size_t(ax)] > 0, D::name, ": reduction over axis ", ax, " of size 0 in shape ",
                     x.shape());
        Tensor kept = reduce(x, a.axes, Greater ? -INFINITY : INFINITY, D::name, [](auto acc, auto v) {
            return ((Greater ? v > acc : v < acc) || std::isnan(v)) ? v : acc;  // NaN wins, as in NumPy
        });
        return a.keepdims ? kept : reshape(kept, dropped_shape(x.shape(), a.axes));
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        const Tensor &x = g.input(0), &out = g.output();
        shape_type keep = x.shape();
        for (int64_t ax : a.axes) keep[size_t(ax)] = 1;
        // Every element equal to the extremum gets an equal share; over axes a
        // NaN extremum has no winner, and 0/0 makes its slice NaN.
        Tensor m = broadcast_to(reshape(out, keep).detach(), x.shape());
        Tensor winners = a.whole ? map_binary(D::name, x, m, [](auto u, auto v) {
            using T = decltype(u);
            return u == v || (u != u && v != v) ? T(1) : T(0);
        }) : eq(x, m);
        axes_type axes;
        for (int64_t d = 0; d < x.dim(); ++d)
            if (keep[size_t(d)] == 1 && x.shape()[size_t(d)] != 1) axes.push_back(d);
        Tensor ties = sum(winners, axes, true).detach();
        return {mul(broadcast_to(reshape(g.grad, keep), x.shape()), div(winners, ties))};
    }
    static std::vector<OpSample> samples()
    {
        return {D::sample("[3,4,5] all", {real("x", {3, 4, 5})}, Attrs{{}, false}),
                D::sample("[3,4,5] axis 1", {real("x", {3, 4, 5})}, Attrs{{1}, false}),
                D::sample("[4,3] axes 0,1 keepdims", {real("x", {4, 3})}, Attrs{{0, 1}, true}),
                D::sample("[2,3] everything (no axes), keepdims", {real("x", {2, 3})}, Attrs{{}, true}),
                D::sample("[3,1,4] axes 1,2, one of size 1", {real("x", {3, 1, 4})}, Attrs{{1, 2}, false})};
    }
};
struct Max : Extreme<Max, true> {
    static constexpr const char* name = "max";
};
struct Min : Extreme<Min, false> {
    static constexpr const char* name = "min";
};
TG_REGISTER_OP(Max);
TG_REGISTER_OP(Min);

// The index of the first extremum along the axis, or of the first NaN (as PyTorch).
template <bool Greater>
Tensor arg_extreme(const Tensor& x, int64_t axis, bool keepdims, const char* name)
{
    TG_CHECK(x.dim() > 0, name, ": a 0-d tensor has no axis ", axis);
    int64_t a = normalize_axis(axis, x.dim(), name);
    TG_CHECK(x.shape()[size_t(a)] > 0, name, ": axis ", axis, " of shape ", x.shape(), " is empty");
    kernels::AxisSplit s = kernels::split_at(x.shape(), a);
    shape_type shape = x.shape();
    shape[size_t(a)] = 1;
    Tensor out = Tensor::empty(shape, int64);
    int64_t* o = out.data<int64_t>();
    TG_DISPATCH_ALL(x.dtype(), name, [&] {
        const scalar_t* p = x.data<scalar_t>();
        for (int64_t i = 0; i < s.outer; ++i)
            for (int64_t j = 0; j < s.inner; ++j) {
                int64_t best = 0;
                scalar_t bv = p[i * s.n * s.inner + j];
                for (int64_t k = 1; k < s.n && bv == bv; ++k) {
                    scalar_t v = p[(i * s.n + k) * s.inner + j];
                    if ((Greater ? v > bv : v < bv) || v != v) { bv = v; best = k; }
                }
                o[i * s.inner + j] = best;
            }
    });
    return keepdims ? out : squeeze(out, a);
}
}  // namespace

Tensor max(const Tensor& x, const axes_type& axes, bool keepdims) { return Max::call({x}, {axes, keepdims}); }
Tensor min(const Tensor& x, const axes_type& axes, bool keepdims) { return Min::call({x}, {axes, keepdims}); }

Tensor argmax(const Tensor& x, int64_t axis, bool keepdims) { return arg_extreme<true>(x, axis, keepdims, "argmax"); }
Tensor argmin(const Tensor& x, int64_t axis, bool keepdims) { return arg_extreme<false>(x, axis, keepdims, "argmin"); }
Tensor argmax(const Tensor& x) { return argmax(reshape(x.detach(), {-1}), 0); }
Tensor argmin(const Tensor& x) { return argmin(reshape(x.detach(), {-1}), 0); }

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_reduction_ops() {}
}  // namespace detail

}  // namespace tg
