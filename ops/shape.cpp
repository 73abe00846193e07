// Shape ops: forward copy loops, backward rules, samples.
#include "ops/shape.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "engine/autograd.hpp"
#include "engine/memory.hpp"
#include "engine/registry.hpp"
#include "engine/replay.hpp"
#include "ops/kernels.hpp"
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

OpSample sample(std::string label, std::vector<InputSpec> inputs, OpFn fn)
{
    return OpSample{std::move(label), std::move(inputs), std::move(fn)};
}

}  // namespace

// --- reshape and its shorthands -----------------------------------------------------------

Tensor reshape(const Tensor& x, const shape_type& shape)
{
    shape_type s = shape;
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == -1) {
            TG_CHECK(infer < 0, "reshape: more than one -1 in ", shape);
            infer = int64_t(i);
        } else {
            TG_CHECK(s[i] >= 0, "reshape: negative size in ", shape);
            known *= s[i];
        }
    }
    if (infer >= 0) {
        TG_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot reshape ", x.shape(),
                 " (", x.numel(), " elements) to ", shape);
        s[size_t(infer)] = x.numel() / known;
    }
    TG_CHECK(numel_of(s) == x.numel(), "reshape: cannot reshape ", x.shape(), " (", x.numel(),
             " elements) to ", shape);
    if (s == x.shape() && !x.requires_grad()) return x;
    return record("reshape", alias(x, s), {x}, {}, [from = x.shape()](const BackwardArgs& g) -> tensor_list {
        return {reshape(g.grad, from)};
    }, [s](const tensor_list& in) { return reshape(in[0], s); },
    [](DeltaArgs& d) {  // the same elements in the same order
        const double* x = d.inputs[0].data();
        for (int64_t i : *d.inputs[0].changed) {
            d.out[i] = x[i];
            d.touch(i);
        }
        return true;
    });
}
TG_REGISTER_OP("reshape", {
    sample("[2,3,4] -> [4,-1]", {real("x", {2, 3, 4})}, [](const tensor_list& x) { return reshape(x[0], {4, -1}); }),
    sample("[5] -> 0-d x [5,1]", {real("x", {5})}, [](const tensor_list& x) { return reshape(x[0], {1, 5, 1}); }),
});

Tensor flatten(const Tensor& x, int64_t start_axis, int64_t end_axis)
{
    if (x.dim() == 0) return reshape(x, {1});
    int64_t s = normalize_axis(start_axis, x.dim(), "flatten");
    int64_t e = normalize_axis(end_axis, x.dim(), "flatten");
    TG_CHECK(s <= e, "flatten: start axis ", start_axis, " after end axis ", end_axis,
             " for shape ", x.shape());
    shape_type shape;
    for (int64_t i = 0; i < s; ++i) shape.push_back(x.shape()[size_t(i)]);
    int64_t merged = 1;
    for (int64_t i = s; i <= e; ++i) merged *= x.shape()[size_t(i)];
    shape.push_back(merged);
    for (int64_t i = e + 1; i < x.dim(); ++i) shape.push_back(x.shape()[size_t(i)]);
    return reshape(x, shape);
}
TG_REGISTER_OP("flatten", {
    sample("[2,3,4,5] axes 1..2", {real("x", {2, 3, 4, 5})}, [](const tensor_list& x) { return flatten(x[0], 1, 2); }),
    sample("[3,4] all", {real("x", {3, 4})}, [](const tensor_list& x) { return flatten(x[0]); }),
});

Tensor squeeze(const Tensor& x, int64_t axis)
{
    int64_t a = normalize_axis(axis, x.dim(), "squeeze");
    TG_CHECK(x.dim() > 0 && x.shape()[size_t(a)] == 1, "squeeze: axis ", axis, " of shape ",
             x.shape(), " does not have size 1");
    shape_type shape = x.shape();
    shape.erase(shape.begin() + a);
    return reshape(x, shape);
}
TG_REGISTER_OP("squeeze", {
    sample("[3,1,4] axis 1", {real("x", {3, 1, 4})}, [](const tensor_list& x) { return squeeze(x[0], 1); }),
    sample("[2,1] axis -1", {real("x", {2, 1})}, [](const tensor_list& x) { return squeeze(x[0], -1); }),
});

Tensor unsqueeze(const Tensor& x, int64_t axis)
{
    int64_t a = normalize_axis(axis, x.dim() + 1, "unsqueeze");
    shape_type shape = x.shape();
    shape.insert(shape.begin() + a, 1);
    return reshape(x, shape);
}
TG_REGISTER_OP("unsqueeze", {
    sample("[3,4] axis 0", {real("x", {3, 4})}, [](const tensor_list& x) { return unsqueeze(x[0], 0); }),
    sample("[3,4] axis -1", {real("x", {3, 4})}, [](const tensor_list& x) { return unsqueeze(x[0], -1); }),
});

// --- permute ----------------------------------------------------------------------------------

Tensor permute(const Tensor& x, const axes_type& axes)
{
    int64_t rank = x.dim();
    TG_CHECK(int64_t(axes.size()) == rank, "permute: ", axes.size(), " axes for a tensor of shape ",
             x.shape());
    axes_type perm(axes.size());
    std::vector<bool> seen(axes.size(), false);
    for (size_t i = 0; i < axes.size(); ++i) {
        perm[i] = normalize_axis(axes[i], rank, "permute");
        TG_CHECK(!seen[size_t(perm[i])], "permute: axis ", axes[i], " repeated in ", axes);
        seen[size_t(perm[i])] = true;
    }
    shape_type out_shape(axes.size());
    for (size_t i = 0; i < perm.size(); ++i) out_shape[i] = x.shape()[size_t(perm[i])];
    Tensor out = Tensor::empty(out_shape, x.dtype());

    // Input strides read in the output's axis order.
    std::vector<int64_t> in_stride(size_t(rank), 1);
    for (int64_t d = rank - 2; d >= 0; --d)
        in_stride[size_t(d)] = in_stride[size_t(d + 1)] * x.shape()[size_t(d + 1)];
    std::vector<int64_t> stride(static_cast<size_t>(rank));
    for (size_t i = 0; i < perm.size(); ++i) stride[i] = in_stride[size_t(perm[i])];

    if (x.numel() > 0) {
        TG_DISPATCH_ALL(x.dtype(), "permute", [&] {
            const scalar_t* src = x.data<scalar_t>();
            scalar_t* dst = out.data<scalar_t>();
            if (rank == 0) { dst[0] = src[0]; return; }
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
    }
    axes_type inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inverse[size_t(perm[i])] = int64_t(i);
    return record("permute", out, {x}, {}, [inverse](const BackwardArgs& g) -> tensor_list {
        return {permute(g.grad, inverse)};
    }, [perm](const tensor_list& in) { return permute(in[0], perm); },
    [perm](DeltaArgs& d) {  // moves each changed element to its place in the output
        const shape_type& xs = d.inputs[0].base->shape();
        const shape_type& os = d.base_out.shape();
        const double* x = d.inputs[0].data();
        size_t rank = xs.size();
        shape_type coord(rank);
        for (int64_t i : *d.inputs[0].changed) {
            int64_t r = i;
            for (size_t ax = rank; ax-- > 0;) {
                coord[ax] = r % xs[ax];
                r /= xs[ax];
            }
            int64_t o = 0;
            for (size_t ax = 0; ax < rank; ++ax) o = o * os[ax] + coord[size_t(perm[ax])];
            d.out[o] = x[i];
            d.touch(o);
        }
        return true;
    });
}
TG_REGISTER_OP("permute", {
    sample("[2,3,4] -> (2,0,1)", {real("x", {2, 3, 4})}, [](const tensor_list& x) { return permute(x[0], {2, 0, 1}); }),
    sample("[3,5] -> (1,0)", {real("x", {3, 5})}, [](const tensor_list& x) { return permute(x[0], {1, 0}); }),
});

Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1)
{
    TG_CHECK(x.dim() >= 1, "transpose: a 0-d tensor has no axes");
    axes_type axes(static_cast<size_t>(x.dim()));
    std::iota(axes.begin(), axes.end(), 0);
    std::swap(axes[size_t(normalize_axis(axis0, x.dim(), "transpose"))],
              axes[size_t(normalize_axis(axis1, x.dim(), "transpose"))]);
    return permute(x, axes);
}
TG_REGISTER_OP("transpose", {
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
    auto clamp_index = [n](int64_t i) {
        if (i < 0) i += n;
        return std::clamp<int64_t>(i, 0, n);
    };
    int64_t b = clamp_index(start), e = clamp_index(stop);
    int64_t count = e > b ? (e - b + step - 1) / step : 0;
    return {a, b, count, step};
}

// Copies between a strided selection of the full tensor and a dense one.
template <class T>
void copy_slice(const T* full, T* part, const kernels::AxisSplit& s, const SliceRange& r, bool gather)
{
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

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t stop, int64_t step)
{
    SliceRange r = slice_range(x.shape(), axis, start, stop, step, "slice");
    shape_type out_shape = x.shape();
    out_shape[size_t(r.axis)] = r.count;
    Tensor out = Tensor::empty(out_shape, x.dtype());
    kernels::AxisSplit s = kernels::split_at(x.shape(), r.axis);
    TG_DISPATCH_ALL(x.dtype(), "slice", [&] {
        copy_slice(x.data<scalar_t>(), out.data<scalar_t>(), s, r, true);
    });
    return record("slice", out, {x}, {}, [full = x.shape(), r](const BackwardArgs& g) -> tensor_list {
        return {unslice(g.grad, full, r.axis, r.start, r.step)};
    }, [r](const tensor_list& in) { return slice(in[0], r.axis, r.start, r.start + (r.count - 1) * r.step + 1, r.step); },
    [r, s](DeltaArgs& d) {  // a changed element inside the slice moves to its place in the output
        const double* x = d.inputs[0].data();
        for (int64_t f : *d.inputs[0].changed) {
            int64_t inner = f % s.inner, at = f / s.inner % s.n, outer = f / (s.inner * s.n);
            int64_t k = at - r.start;
            if (k % r.step != 0 || k / r.step < 0 || k / r.step >= r.count) continue;
            int64_t o = (outer * r.count + k / r.step) * s.inner + inner;
            d.out[o] = x[f];
            d.touch(o);
        }
        return true;
    });
}
TG_REGISTER_OP("slice", {
    sample("[7,3] axis 0, 1:6:2", {real("x", {7, 3})}, [](const tensor_list& x) { return slice(x[0], 0, 1, 6, 2); }),
    sample("[2,5,3] axis 1, -3:", {real("x", {2, 5, 3})}, [](const tensor_list& x) { return slice(x[0], 1, -3, 100); }),
    sample("[4,9] axis -1, ::4", {real("x", {4, 9})}, [](const tensor_list& x) { return slice(x[0], -1, 0, 9, 4); }),
});

Tensor unslice(const Tensor& g, const shape_type& shape, int64_t axis, int64_t start, int64_t step)
{
    TG_CHECK(int64_t(shape.size()) == g.dim(), "unslice: gradient of shape ", g.shape(),
             " for a tensor of shape ", shape);
    int64_t a = normalize_axis(axis, int64_t(shape.size()), "unslice");
    int64_t count = g.shape()[size_t(a)];
    SliceRange r = slice_range(shape, a, start, start + (count - 1) * step + 1, step, "unslice");
    shape_type expected = shape;
    expected[size_t(a)] = r.count;
    TG_CHECK(r.count == count && expected == g.shape(), "unslice: gradient of shape ", g.shape(),
             " does not fit ", shape, " at axis ", axis, " from ", start, " step ", step);
    Tensor out = zeros(shape, g.dtype());
    kernels::AxisSplit s = kernels::split_at(shape, a);
    TG_DISPATCH_ALL(g.dtype(), "unslice", [&] {
        copy_slice(out.data<scalar_t>(), const_cast<scalar_t*>(g.data<scalar_t>()), s, r, false);
    });
    return record("unslice", out, {g}, {}, [r](const BackwardArgs& b) -> tensor_list {
        return {slice(b.grad, r.axis, r.start, r.start + (r.count - 1) * r.step + 1, r.step)};
    }, [shape, r](const tensor_list& in) { return unslice(in[0], shape, r.axis, r.start, r.step); });
}
TG_REGISTER_OP("unslice", {
    sample("[3,2] into [7,2] at 1 step 2", {real("g", {3, 2})},
           [](const tensor_list& x) { return unslice(x[0], {7, 2}, 0, 1, 2); }),
});

Tensor select(const Tensor& x, int64_t axis, int64_t i)
{
    int64_t a = normalize_axis(axis, x.dim(), "select");
    int64_t n = x.shape()[size_t(a)];
    TG_CHECK(i >= -n && i < n, "select: index ", i, " out of range for axis ", axis, " of shape ",
             x.shape());
    int64_t k = i < 0 ? i + n : i;
    return squeeze(slice(x, a, k, k + 1), a);
}
TG_REGISTER_OP("select", {
    sample("[4,3] axis 1 index -1", {real("x", {4, 3})}, [](const tensor_list& x) { return select(x[0], 1, -1); }),
});

// --- concat and stack ---------------------------------------------------------------------------

Tensor concat(const tensor_list& xs, int64_t axis)
{
    TG_CHECK(!xs.empty(), "concat: no tensors");
    const Tensor& first = xs[0];
    TG_CHECK(first.dim() > 0, "concat: cannot concatenate 0-d tensors (use stack)");
    int64_t a = normalize_axis(axis, first.dim(), "concat");
    shape_type out_shape = first.shape();
    out_shape[size_t(a)] = 0;
    for (size_t k = 0; k < xs.size(); ++k) {
        const Tensor& t = xs[k];
        TG_CHECK(t.dtype() == first.dtype(), "concat: tensor ", k, " is ", dtype_name(t.dtype()),
                 ", tensor 0 is ", dtype_name(first.dtype()));
        bool fits = t.dim() == first.dim();
        for (int64_t d = 0; fits && d < t.dim(); ++d)
            fits = d == a || t.shape()[size_t(d)] == first.shape()[size_t(d)];
        TG_CHECK(fits, "concat: tensor ", k, " of shape ", t.shape(), " does not match tensor 0 of shape ",
                 first.shape(), " outside axis ", a);
        out_shape[size_t(a)] += t.shape()[size_t(a)];
    }
    Tensor out = Tensor::empty(out_shape, first.dtype());
    kernels::AxisSplit s = kernels::split_at(out_shape, a);
    std::vector<int64_t> sizes;
    int64_t offset = 0;
    for (const Tensor& t : xs) {
        int64_t n = t.shape()[size_t(a)];
        sizes.push_back(n);
        TG_DISPATCH_ALL(t.dtype(), "concat", [&] {
            const scalar_t* src = t.data<scalar_t>();
            scalar_t* dst = out.data<scalar_t>();
            for (int64_t o = 0; o < s.outer; ++o)
                std::memcpy(dst + (o * s.n + offset) * s.inner, src + o * n * s.inner,
                            size_t(n * s.inner) * sizeof(scalar_t));
        });
        offset += n;
    }
    return record("concat", out, xs, {}, [a, sizes](const BackwardArgs& g) -> tensor_list {
        tensor_list grads(sizes.size());
        int64_t begin = 0;
        for (size_t k = 0; k < sizes.size(); ++k) {
            if (g.needs_grad(k)) grads[k] = slice(g.grad, a, begin, begin + sizes[k]);
            begin += sizes[k];
        }
        return grads;
    }, [a](const tensor_list& in) { return concat(in, a); });
}
TG_REGISTER_OP("concat", {
    sample("[2,3] [4,3] [1,3] axis 0", {real("a", {2, 3}), real("b", {4, 3}), real("c", {1, 3})},
           [](const tensor_list& x) { return concat(x, 0); }),
    sample("[2,1,3] [2,2,3] axis 1", {real("a", {2, 1, 3}), real("b", {2, 2, 3})},
           [](const tensor_list& x) { return concat(x, 1); }),
});

Tensor stack(const tensor_list& xs, int64_t axis)
{
    TG_CHECK(!xs.empty(), "stack: no tensors");
    int64_t a = normalize_axis(axis, xs[0].dim() + 1, "stack");
    tensor_list expanded;
    for (size_t k = 0; k < xs.size(); ++k) {
        TG_CHECK(xs[k].shape() == xs[0].shape(), "stack: tensor ", k, " of shape ", xs[k].shape(),
                 " differs from tensor 0 of shape ", xs[0].shape());
        expanded.push_back(unsqueeze(xs[k], a));
    }
    return concat(expanded, a);
}
TG_REGISTER_OP("stack", {
    sample("3 x [2,3] axis 1", {real("a", {2, 3}), real("b", {2, 3}), real("c", {2, 3})},
           [](const tensor_list& x) { return stack(x, 1); }),
    sample("2 x 0-d", {real("a", {}), real("b", {})}, [](const tensor_list& x) { return stack(x, 0); }),
});

// --- broadcast_to and sum_to ---------------------------------------------------------------------

Tensor broadcast_to(const Tensor& x, const shape_type& shape)
{
    TG_CHECK(kernels::broadcast_shapes(x.shape(), shape, "broadcast_to") == shape, "broadcast_to: ",
             "cannot broadcast shape ", x.shape(), " to ", shape);
    if (x.shape() == shape) return x;
    Tensor out = Tensor::empty(shape, x.dtype());
    TG_DISPATCH_FLOATING(x.dtype(), "broadcast_to", [&] {
        const scalar_t zero = 0;
        kernels::map_binary(x.data<scalar_t>(), x.shape(), &zero, shape_type{}, out.data<scalar_t>(), shape,
                            [](scalar_t v, scalar_t) { return v; });
    });
    return record("broadcast_to", out, {x}, {}, [from = x.shape()](const BackwardArgs& g) -> tensor_list {
        return {sum_to(g.grad, from)};
    }, [shape](const tensor_list& in) { return broadcast_to(in[0], shape); });
}
TG_REGISTER_OP("broadcast_to", {
    sample("[3,1] -> [2,3,4]", {real("x", {3, 1})}, [](const tensor_list& x) { return broadcast_to(x[0], {2, 3, 4}); }),
    sample("0-d -> [5]", {real("x", {})}, [](const tensor_list& x) { return broadcast_to(x[0], {5}); }),
});

Tensor sum_to(const Tensor& x, const shape_type& shape)
{
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
TG_REGISTER_OP("sum_to", {
    sample("[2,3,4] -> [3,1]", {real("x", {2, 3, 4})}, [](const tensor_list& x) { return sum_to(x[0], {3, 1}); }),
    sample("[5] -> 0-d", {real("x", {5})}, [](const tensor_list& x) { return sum_to(x[0], {}); }),
});

// --- Tensor shorthands ------------------------------------------------------------------------------

Tensor Tensor::reshape(const shape_type& shape) const { return tg::reshape(*this, shape); }
Tensor Tensor::flatten(int64_t s, int64_t e) const { return tg::flatten(*this, s, e); }
Tensor Tensor::permute(const axes_type& axes) const { return tg::permute(*this, axes); }
Tensor Tensor::transpose(int64_t a0, int64_t a1) const { return tg::transpose(*this, a0, a1); }
Tensor Tensor::squeeze(int64_t axis) const { return tg::squeeze(*this, axis); }
Tensor Tensor::unsqueeze(int64_t axis) const { return tg::unsqueeze(*this, axis); }

}  // namespace tg
