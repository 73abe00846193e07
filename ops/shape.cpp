// Shape ops: forward copy loops, backward rules, samples. Every one of them
// only moves elements, so replay recomputes them from where each output
// element comes from (ReplayForm::index_map), with no rule of their own.
#include "ops/shape.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "engine/core/memory.hpp"
#include "engine/core/op.hpp"
#include "engine/kernels/elementwise.hpp"
#include "ops/reduction.hpp"

namespace tg {

namespace {

// A tensor with x's storage and another shape of the same size.
Tensor alias(const Tensor& x, const shape_type& shape)
{
    auto impl = detail::make_pooled<TensorImpl>();
    impl->storage = x.impl().storage;
    impl->shape = shape;
    impl->numel = x.numel();
    impl->dtype = x.dtype();
    return Tensor(std::move(impl));
}

}  // namespace

// --- reshape and its shorthands -----------------------------------------------------------

namespace {
// The shape with a -1 resolved, checked against x's size.
shape_type resolved_shape(const Tensor& x, const shape_type& shape)
{
    shape_type s = shape;
    int64_t known = 1, infer = -1;
    bool overflow = false;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == -1) {
            TG_CHECK(infer < 0, "reshape: more than one -1 in ", shape);
            infer = int64_t(i);
        } else {
            TG_CHECK(s[i] >= 0, "reshape: negative size in ", shape);
            overflow |= __builtin_mul_overflow(known, s[i], &known);
        }
    }
    if (overflow) {  // an error naming the shape, unless an axis of 0 makes the product 0
        shape_type sized = s;
        for (int64_t& d : sized) d = d == -1 ? 1 : d;
        known = numel_of(sized, "reshape");
    }
    if (infer >= 0) {
        TG_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot reshape ", x.shape(),
                 " (", x.numel(), " elements) to ", shape);
        s[size_t(infer)] = x.numel() / known;
    }
    TG_CHECK(numel_of(s, "reshape") == x.numel(), "reshape: cannot reshape ", x.shape(), " (", x.numel(),
             " elements) to ", shape);
    return s;
}
}  // namespace

namespace {
struct Reshape : Op<Reshape> {
    static constexpr const char* name = "reshape";
    static constexpr ReplayForm replay = ReplayForm::index_map;
    struct Attrs {
        shape_type shape;
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        TG_CHECK(in[0].defined(), "reshape: undefined operand");
        a.shape = resolved_shape(in[0], a.shape);
        return alias(in[0], a.shape);
    }
    static tensor_list backward(const BackwardArgs& g) { return {reshape(g.grad, g.input_shape(0))}; }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,3,4] -> [4,-1]", {real("x", {2, 3, 4})}, Attrs{{4, -1}}),
                sample("[5] -> 0-d x [5,1]", {real("x", {5})}, Attrs{{1, 5, 1}})};
    }
};
TG_REGISTER_OP(Reshape);
}  // namespace

Tensor reshape(const Tensor& x, const shape_type& shape)
{
    TG_CHECK(x.defined(), "reshape: undefined operand");
    if (shape == x.shape() && !x.requires_grad()) return x;
    return Reshape::call({x}, {shape});
}

Tensor flatten(const Tensor& x, int64_t start_axis, int64_t end_axis)
{
    TG_CHECK(x.defined(), "flatten: undefined operand");
    if (x.dim() == 0) return reshape(x, {1});
    int64_t s = normalize_axis(start_axis, x.dim(), "flatten");
    int64_t e = normalize_axis(end_axis, x.dim(), "flatten");
    TG_CHECK(s <= e, "flatten: start axis ", start_axis, " after end axis ", end_axis,
             " for shape ", x.shape());
    shape_type shape;
    for (int64_t i = 0; i < s; ++i) shape.push_back(x.shape()[size_t(i)]);
    shape_type axes_merged(x.shape().begin() + s, x.shape().begin() + e + 1);
    shape.push_back(numel_of(axes_merged, "flatten"));  // checked: an empty tensor's axes may not fit int64 together
    for (int64_t i = e + 1; i < x.dim(); ++i) shape.push_back(x.shape()[size_t(i)]);
    return reshape(x, shape);
}
TG_REGISTER_SAMPLES("flatten", {
    sample("[2,3,4,5] axes 1..2", {real("x", {2, 3, 4, 5})}, [](const tensor_list& x) { return flatten(x[0], 1, 2); }),
    sample("[3,4] all", {real("x", {3, 4})}, [](const tensor_list& x) { return flatten(x[0]); }),
});

Tensor squeeze(const Tensor& x, int64_t axis)
{
    TG_CHECK(x.defined(), "squeeze: undefined operand");
    int64_t a = normalize_axis(axis, x.dim(), "squeeze");
    TG_CHECK(x.dim() > 0 && x.shape()[size_t(a)] == 1, "squeeze: axis ", axis, " of shape ",
             x.shape(), " does not have size 1");
    shape_type shape = x.shape();
    shape.erase(shape.begin() + a);
    return reshape(x, shape);
}
TG_REGISTER_SAMPLES("squeeze", {
    sample("[3,1,4] axis 1", {real("x", {3, 1, 4})}, [](const tensor_list& x) { return squeeze(x[0], 1); }),
    sample("[2,1] axis -1", {real("x", {2, 1})}, [](const tensor_list& x) { return squeeze(x[0], -1); }),
});

Tensor unsqueeze(const Tensor& x, int64_t axis)
{
    TG_CHECK(x.defined(), "unsqueeze: undefined operand");
    int64_t a = normalize_axis(axis, x.dim() + 1, "unsqueeze");
    shape_type shape = x.shape();
    shape.insert(shape.begin() + a, 1);
    return reshape(x, shape);
}
TG_REGISTER_SAMPLES("unsqueeze", {
    sample("[3,4] axis 0", {real("x", {3, 4})}, [](const tensor_list& x) { return unsqueeze(x[0], 0); }),
    sample("[3,4] axis -1", {real("x", {3, 4})}, [](const tensor_list& x) { return unsqueeze(x[0], -1); }),
});

// --- permute ----------------------------------------------------------------------------------

namespace {
struct Permute : Op<Permute> {
    static constexpr const char* name = "permute";
    static constexpr ReplayForm replay = ReplayForm::index_map;
    struct Attrs {
        axes_type axes;  // normalised by forward
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), "permute: undefined operand");
        const int64_t rank = x.dim();
        TG_CHECK(int64_t(a.axes.size()) == rank, "permute: ", a.axes.size(), " axes for a tensor of shape ", x.shape());
        axes_type perm(a.axes.size());
        std::vector<bool> seen(a.axes.size(), false);
        for (size_t i = 0; i < a.axes.size(); ++i) {
            perm[i] = normalize_axis(a.axes[i], rank, "permute");
            TG_CHECK(!seen[size_t(perm[i])], "permute: axis ", a.axes[i], " repeated in ", a.axes);
            seen[size_t(perm[i])] = true;
        }
        a.axes = perm;
        shape_type out_shape(perm.size());
        for (size_t i = 0; i < perm.size(); ++i) out_shape[i] = x.shape()[size_t(perm[i])];
        Tensor out = Tensor::empty(out_shape, x.dtype());
        if (x.numel() == 0) return out;
        // Input strides read in the output's axis order.
        std::vector<int64_t> in_stride(size_t(rank), 1);
        for (int64_t d = rank - 2; d >= 0; --d) in_stride[size_t(d)] = in_stride[size_t(d + 1)] * x.shape()[size_t(d + 1)];
        std::vector<int64_t> stride(static_cast<size_t>(rank));
        for (size_t i = 0; i < perm.size(); ++i) stride[i] = in_stride[size_t(perm[i])];
        TG_DISPATCH_ALL(x.dtype(), "permute", [&] {
            const scalar_t* src = x.data<scalar_t>();
            scalar_t* dst = out.data<scalar_t>();
            if (rank == 0) {
                dst[0] = src[0];
                return;
            }
            int64_t inner = out_shape.back(), inner_stride = stride.back();
            int64_t rows = x.numel() / inner;
            parallel_for(rows, std::max<int64_t>(1, kernels::elementwise_grain / inner), [&](int64_t r0, int64_t r1) {
                for (int64_t r = r0; r < r1; ++r) {
                    int64_t offset = 0, rem = r;
                    for (int64_t d = rank - 2; d >= 0; --d) {
                        offset += (rem % out_shape[size_t(d)]) * stride[size_t(d)];
                        rem /= out_shape[size_t(d)];
                    }
                    scalar_t* o = dst + r * inner;
                    for (int64_t i = 0; i < inner; ++i) o[i] = src[offset + i * inner_stride];
                }
            });
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        axes_type inverse(a.axes.size());
        for (size_t i = 0; i < a.axes.size(); ++i) inverse[size_t(a.axes[i])] = int64_t(i);
        return {permute(g.grad, inverse)};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,3,4] -> (2,0,1)", {real("x", {2, 3, 4})}, Attrs{{2, 0, 1}}),
                sample("[3,5] -> (1,0)", {real("x", {3, 5})}, Attrs{{1, 0}}),
                sample("[2,3,4] -> (-1,0,1), negative axis", {real("x", {2, 3, 4})}, Attrs{{-1, 0, 1}})};
    }
};
TG_REGISTER_OP(Permute);
}  // namespace

Tensor permute(const Tensor& x, const axes_type& axes) { return Permute::call({x}, {axes}); }

Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1)
{
    TG_CHECK(x.defined(), "transpose: undefined operand");
    TG_CHECK(x.dim() >= 1, "transpose: a 0-d tensor has no axes");
    axes_type axes(static_cast<size_t>(x.dim()));
    std::iota(axes.begin(), axes.end(), 0);
    std::swap(axes[size_t(normalize_axis(axis0, x.dim(), "transpose"))],
              axes[size_t(normalize_axis(axis1, x.dim(), "transpose"))]);
    return permute(x, axes);
}
TG_REGISTER_SAMPLES("transpose", {
    sample("[2,3,4] axes 0,2", {real("x", {2, 3, 4})}, [](const tensor_list& x) { return transpose(x[0], 0, 2); }),
});

// --- slice and unslice ---------------------------------------------------------------------------

namespace {
struct SliceRange {
    int64_t axis, start, count, step;
};

SliceRange slice_range(const shape_type& shape, int64_t axis, int64_t start, int64_t stop, int64_t step,
                       const char* op)
{
    TG_CHECK(!shape.empty(), op, ": cannot slice a 0-d tensor");
    int64_t a = normalize_axis(axis, int64_t(shape.size()), op);
    TG_CHECK(step >= 1, op, ": step must be at least 1, got ", step);
    int64_t n = shape[size_t(a)];
    // A tensor's axes are never negative, but unslice's target shape is an attribute.
    TG_CHECK(n >= 0, op, ": axis ", a, " of shape ", shape, " has a negative size");
    auto clamp_index = [n](int64_t i) {
        if (i < 0) i += n;
        return std::clamp<int64_t>(i, 0, n);
    };
    int64_t b = clamp_index(start), e = clamp_index(stop);
    int64_t count = e > b ? (e - b - 1) / step + 1 : 0;  // not (e - b + step - 1) / step: overflows for a huge step
    return {a, b, count, step};
}

// Copies between a strided selection of the full tensor and a dense one.
template <class T>
void copy_slice(const T* full, T* part, const kernels::AxisSplit& s, const SliceRange& r, bool gather)
{
    if (s.empty() || r.count == 0) return;
    for (int64_t o = 0; o < s.outer; ++o)
        for (int64_t j = 0; j < r.count; ++j) {
            const int64_t fi = (o * s.n + r.start + j * r.step) * s.inner;
            const int64_t pi = (o * r.count + j) * s.inner;
            if (gather)
                std::memcpy(part + pi, full + fi, size_t(s.inner) * sizeof(T));
            else
                std::memcpy(const_cast<T*>(full) + fi, part + pi, size_t(s.inner) * sizeof(T));
        }
}
}  // namespace

namespace {
struct Slice : Op<Slice> {
    static constexpr const char* name = "slice";
    static constexpr ReplayForm replay = ReplayForm::index_map;
    struct Attrs {
        int64_t axis, start, stop, step;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), "slice: undefined operand");
        SliceRange r = slice_range(x.shape(), a.axis, a.start, a.stop, a.step, "slice");
        shape_type out_shape = x.shape();
        out_shape[size_t(r.axis)] = r.count;
        Tensor out = Tensor::empty(out_shape, x.dtype());
        kernels::AxisSplit s = kernels::split_at(x.shape(), r.axis);
        TG_DISPATCH_ALL(x.dtype(), "slice", [&] { copy_slice(x.data<scalar_t>(), out.data<scalar_t>(), s, r, true); });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        const shape_type& full = g.input_shape(0);
        SliceRange r = slice_range(full, a.axis, a.start, a.stop, a.step, "slice");
        return {unslice(g.grad, full, r.axis, r.start, r.step)};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[7,3] axis 0, 1:6:2", {real("x", {7, 3})}, Attrs{0, 1, 6, 2}),
                sample("[2,5,3] axis 1, -3:", {real("x", {2, 5, 3})}, Attrs{1, -3, 100, 1}),
                sample("[4,9] axis -1, ::4", {real("x", {4, 9})}, Attrs{-1, 0, 9, 4})};
    }
};
TG_REGISTER_OP(Slice);
}  // namespace

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t stop, int64_t step)
{
    return Slice::call({x}, {axis, start, stop, step});
}

namespace {
struct Unslice : Op<Unslice> {
    static constexpr const char* name = "unslice";
    static constexpr ReplayForm replay = ReplayForm::index_map;
    struct Attrs {
        shape_type shape;
        int64_t axis, start, step;
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& g = in[0];
        TG_CHECK(g.defined(), "unslice: undefined operand");
        SliceRange r = range(g, a);
        a.axis = r.axis;
        a.start = r.start;
        Tensor out = zeros(a.shape, g.dtype());
        kernels::AxisSplit s = kernels::split_at(a.shape, r.axis);
        TG_DISPATCH_ALL(g.dtype(), "unslice", [&] {
            copy_slice(out.data<scalar_t>(), const_cast<scalar_t*>(g.data<scalar_t>()), s, r, false);
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& b, const Attrs& a)  // a as forward normalised it
    {
        int64_t count = b.input_shape(0)[size_t(a.axis)];
        return {slice(b.grad, a.axis, a.start, a.start + (count - 1) * a.step + 1, a.step)};
    }
    static SliceRange range(const Tensor& g, const Attrs& a)
    {
        TG_CHECK(int64_t(a.shape.size()) == g.dim(), "unslice: gradient of shape ", g.shape(),
                 " for a tensor of shape ", a.shape);
        int64_t axis = normalize_axis(a.axis, int64_t(a.shape.size()), "unslice");
        int64_t count = g.shape()[size_t(axis)], stop = 0;
        TG_CHECK(!__builtin_mul_overflow(std::max<int64_t>(count - 1, 0), a.step, &stop) &&
                     !__builtin_add_overflow(stop, a.start, &stop) && !__builtin_add_overflow(stop, 1, &stop),
                 "unslice: ", count, " elements at step ", a.step, " from ", a.start, " overflow int64");
        SliceRange r = slice_range(a.shape, axis, a.start, count > 0 ? stop : a.start, a.step, "unslice");
        shape_type expected = a.shape;
        expected[size_t(axis)] = r.count;
        TG_CHECK(r.count == count && expected == g.shape(), "unslice: gradient of shape ", g.shape(),
                 " does not fit ", a.shape, " at axis ", a.axis, " from ", a.start, " step ", a.step);
        return r;
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[3,2] into [7,2] at 1 step 2", {real("g", {3, 2})}, Attrs{{7, 2}, 0, 1, 2})};
    }
};
TG_REGISTER_OP(Unslice);
}  // namespace

Tensor unslice(const Tensor& g, const shape_type& shape, int64_t axis, int64_t start, int64_t step)
{
    return Unslice::call({g}, {shape, axis, start, step});
}

Tensor select(const Tensor& x, int64_t axis, int64_t i)
{
    TG_CHECK(x.defined(), "select: undefined operand");
    int64_t a = normalize_axis(axis, x.dim(), "select");
    int64_t n = x.shape()[size_t(a)];
    TG_CHECK(i >= -n && i < n, "select: index ", i, " out of range for axis ", axis, " of shape ",
             x.shape());
    int64_t k = i < 0 ? i + n : i;
    return squeeze(slice(x, a, k, k + 1), a);
}
TG_REGISTER_SAMPLES("select", {
    sample("[4,3] axis 1 index -1", {real("x", {4, 3})}, [](const tensor_list& x) { return select(x[0], 1, -1); }),
});

// --- concat and stack ---------------------------------------------------------------------------

namespace {
struct Concat : Op<Concat> {
    static constexpr const char* name = "concat";
    static constexpr ReplayForm replay = ReplayForm::index_map;
    struct Attrs {
        int64_t axis;
        std::vector<int64_t> sizes;  // of each input along the axis, set by forward
    };
    static Tensor forward(TensorRefs xs, Attrs& attrs)
    {
        TG_CHECK(xs.size() > 0, "concat: no tensors");
        const Tensor& first = xs[0];
        TG_CHECK(first.defined(), "concat: tensor 0 is undefined");
        TG_CHECK(first.dim() > 0, "concat: cannot concatenate 0-d tensors (use stack)");
        int64_t a = normalize_axis(attrs.axis, first.dim(), "concat");
        shape_type out_shape = first.shape();
        out_shape[size_t(a)] = 0;
        for (size_t k = 0; k < xs.size(); ++k) {
            const Tensor& t = xs[k];
            TG_CHECK(t.defined(), "concat: tensor ", k, " is undefined");
            TG_CHECK(t.dtype() == first.dtype(), "concat: tensor ", k, " is ", dtype_name(t.dtype()),
                     ", tensor 0 is ", dtype_name(first.dtype()));
            bool fits = t.dim() == first.dim();
            for (int64_t d = 0; fits && d < t.dim(); ++d)
                fits = d == a || t.shape()[size_t(d)] == first.shape()[size_t(d)];
            TG_CHECK(fits, "concat: tensor ", k, " of shape ", t.shape(), " does not match tensor 0 of shape ",
                     first.shape(), " outside axis ", a);
            out_shape[size_t(a)] += t.shape()[size_t(a)];
        }
        attrs.axis = a;
        attrs.sizes.clear();
        Tensor out = Tensor::empty(out_shape, first.dtype());
        kernels::AxisSplit s = kernels::split_at(out_shape, a);
        int64_t offset = 0;
        for (const Tensor& t : xs) {
            int64_t n = t.shape()[size_t(a)];
            attrs.sizes.push_back(n);
            if (s.empty() || n == 0) continue;
            TG_DISPATCH_ALL(t.dtype(), "concat", [&] {
                const scalar_t* src = t.data<scalar_t>();
                scalar_t* dst = out.data<scalar_t>();
                for (int64_t o = 0; o < s.outer; ++o)
                    std::memcpy(dst + (o * s.n + offset) * s.inner, src + o * n * s.inner,
                                size_t(n * s.inner) * sizeof(scalar_t));
            });
            offset += n;
        }
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        tensor_list grads(a.sizes.size());
        int64_t begin = 0;
        for (size_t k = 0; k < a.sizes.size(); ++k) {
            if (g.needs_grad(k)) grads[k] = slice(g.grad, a.axis, begin, begin + a.sizes[k]);
            begin += a.sizes[k];
        }
        return grads;
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,3] [4,3] [1,3] axis 0", {real("a", {2, 3}), real("b", {4, 3}), real("c", {1, 3})}, Attrs{0, {}}),
                sample("[2,1,3] [2,2,3] axis 1", {real("a", {2, 1, 3}), real("b", {2, 2, 3})}, Attrs{1, {}}),
                sample("[2,3] [2,2] axis -1", {real("a", {2, 3}), real("b", {2, 2})}, Attrs{-1, {}})};
    }
};
TG_REGISTER_OP(Concat);
}  // namespace

Tensor concat(const tensor_list& xs, int64_t axis) { return Concat::call(xs, {axis, {}}); }

Tensor stack(const tensor_list& xs, int64_t axis)
{
    TG_CHECK(!xs.empty(), "stack: no tensors");
    for (size_t k = 0; k < xs.size(); ++k) TG_CHECK(xs[k].defined(), "stack: tensor ", k, " is undefined");
    int64_t a = normalize_axis(axis, xs[0].dim() + 1, "stack");
    tensor_list expanded;
    for (size_t k = 0; k < xs.size(); ++k) {
        TG_CHECK(xs[k].shape() == xs[0].shape(), "stack: tensor ", k, " of shape ", xs[k].shape(),
                 " differs from tensor 0 of shape ", xs[0].shape());
        expanded.push_back(unsqueeze(xs[k], a));
    }
    return concat(expanded, a);
}
TG_REGISTER_SAMPLES("stack", {
    sample("3 x [2,3] axis 1", {real("a", {2, 3}), real("b", {2, 3}), real("c", {2, 3})},
           [](const tensor_list& x) { return stack(x, 1); }),
    sample("2 x 0-d", {real("a", {}), real("b", {})}, [](const tensor_list& x) { return stack(x, 0); }),
});

// --- broadcast_to and sum_to ---------------------------------------------------------------------

namespace {
struct BroadcastTo : Op<BroadcastTo> {
    static constexpr const char* name = "broadcast_to";
    static constexpr ReplayForm replay = ReplayForm::index_map;
    struct Attrs {
        shape_type shape;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), "broadcast_to: undefined operand");
        TG_CHECK(kernels::broadcast_shapes(x.shape(), a.shape, "broadcast_to") == a.shape, "broadcast_to: ",
                 "cannot broadcast shape ", x.shape(), " to ", a.shape);
        Tensor out = Tensor::empty(a.shape, x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), "broadcast_to", [&] {
            const scalar_t zero = 0;
            kernels::map_binary(x.data<scalar_t>(), x.shape(), &zero, shape_type{}, out.data<scalar_t>(), a.shape,
                                [](scalar_t v, scalar_t) { return v; });
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g) { return {sum_to(g.grad, g.input_shape(0))}; }
    static std::vector<OpSample> samples()
    {
        return {sample("[3,1] -> [2,3,4]", {real("x", {3, 1})}, Attrs{{2, 3, 4}}),
                sample("0-d -> [5]", {real("x", {})}, Attrs{{5}})};
    }
};
TG_REGISTER_OP(BroadcastTo);
}  // namespace

Tensor broadcast_to(const Tensor& x, const shape_type& shape)
{
    TG_CHECK(x.defined(), "broadcast_to: undefined operand");
    if (x.shape() == shape) return x;
    return BroadcastTo::call({x}, {shape});
}

Tensor sum_to(const Tensor& x, const shape_type& shape)
{
    TG_CHECK(x.defined(), "sum_to: undefined operand");
    if (x.shape() == shape) return x;
    TG_CHECK(kernels::broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(), "sum_to: shape ",
             shape, " does not broadcast to ", x.shape());
    int64_t lead = x.dim() - int64_t(shape.size());
    axes_type axes;
    for (int64_t d = 0; d < x.dim(); ++d)
        if (d < lead || (shape[size_t(d - lead)] == 1 && x.shape()[size_t(d)] != 1)) axes.push_back(d);
    Tensor s = sum(x, axes, true);
    return reshape(s, shape);
}
TG_REGISTER_SAMPLES("sum_to", {
    sample("[2,3,4] -> [3,1]", {real("x", {2, 3, 4})}, [](const tensor_list& x) { return sum_to(x[0], {3, 1}); }),
    sample("[5] -> 0-d", {real("x", {5})}, [](const tensor_list& x) { return sum_to(x[0], {}); }),
});

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_shape_ops() {}
}  // namespace detail

}  // namespace tg
