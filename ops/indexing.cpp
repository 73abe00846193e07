#include "ops/indexing.hpp"

#include <vector>

#include "engine/core/op.hpp"
#include "engine/kernels/indexing.hpp"
#include "ops/elementwise.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

std::vector<int64_t> as_vector(const shape_type& s) { return std::vector<int64_t>(s.begin(), s.end()); }

// index: int64 of x's rank, no larger than x off the axis, values in [0, x.size(axis)).
void check_index(const char* op, const Tensor& x, int64_t axis, const Tensor& index)
{
    TG_CHECK(x.defined() && index.defined(), op, ": undefined operand");
    TG_CHECK(index.dtype() == int64, op, ": index must be int64, got ", dtype_name(index.dtype()), " ", index.shape());
    TG_CHECK(index.dim() == x.dim(), op, ": index of shape ", index.shape(), " for input of shape ", x.shape(),
             ": they must have the same rank");
    for (int64_t d = 0; d < x.dim(); ++d)
        TG_CHECK(d == axis || index.shape()[size_t(d)] <= x.shape()[size_t(d)], op, ": index of shape ", index.shape(),
                 " is larger than the input's ", x.shape(), " along axis ", d);
    const int64_t n = x.dim() == 0 ? 1 : x.shape()[size_t(axis)];
    const int64_t* p = index.data<int64_t>();
    for (int64_t i = 0; i < index.numel(); ++i)
        TG_CHECK(p[i] >= 0 && p[i] < n, op, ": index ", p[i], " (element ", i, " of the index) is out of range for ",
                 "axis ", axis, " of size ", n, " in shape ", x.shape());
}

struct Gather : Op<Gather> {
    static constexpr const char* name = "gather";
    struct Attrs {
        int64_t axis;  // normalised by forward
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor &x = in[0], &index = in[1];
        TG_CHECK(x.defined(), "gather: undefined operand");
        a.axis = normalize_axis(a.axis, x.dim(), name);
        check_index(name, x, a.axis, index);
        Tensor out = Tensor::empty(index.shape(), x.dtype(), name);
        TG_DISPATCH_ALL(x.dtype(), name, [&] {
            const scalar_t* xp = x.data<scalar_t>();
            scalar_t* o = out.data<scalar_t>();
            kernels::for_each_indexed(as_vector(index.shape()), as_vector(x.shape()), a.axis, index.data<int64_t>(),
                                      [&](int64_t i, int64_t at) { o[i] = xp[at]; });
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {scatter_add(zeros(g.input_shape(0), g.grad.dtype()), a.axis, g.input(1), g.grad), Tensor()};
    }
    static constexpr Saves saves = save_input(1);
    static std::vector<OpSample> samples()
    {
        return {
            sample("[4,3] axis 0, index [5,3] (repeats)", {real("x", {4, 3}), index("index", {5, 3}, 4)}, Attrs{0}),
            sample("[3,5] axis 1, index [2,4] (smaller off the axis)", {real("x", {3, 5}), index("index", {2, 4}, 5)},
                   Attrs{1}),
            sample("[2,3,4] axis -1, index [2,3,2]", {real("x", {2, 3, 4}), index("index", {2, 3, 2}, 4)}, Attrs{-1}),
            sample("0-d", {real("x", {}), index("index", {}, 1)}, Attrs{0}),
        };
    }
};
TG_REGISTER_OP(Gather);

// Inputs: base, index, src.
struct ScatterAdd : Op<ScatterAdd> {
    static constexpr const char* name = "scatter_add";
    static constexpr Saves saves = save_input(1);
    struct Attrs {
        int64_t axis;  // normalised by forward
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor &base = in[0], &index = in[1], &src = in[2];
        TG_CHECK(base.defined() && src.defined(), "scatter_add: undefined operand");
        a.axis = normalize_axis(a.axis, base.dim(), name);
        check_index(name, base, a.axis, index);
        TG_CHECK(src.shape() == index.shape(), "scatter_add: src of shape ", src.shape(), " for an index of shape ",
                 index.shape(), ": they must be equal");
        TG_CHECK(src.dtype() == base.dtype(), "scatter_add: src is ", dtype_name(src.dtype()), ", base ",
                 dtype_name(base.dtype()));
        Tensor out = base.detach().clone();
        TG_DISPATCH_ALL(base.dtype(), name, [&] {
            const scalar_t* sp = src.data<scalar_t>();
            scalar_t* o = out.data<scalar_t>();
            kernels::for_each_indexed(as_vector(index.shape()), as_vector(base.shape()), a.axis, index.data<int64_t>(),
                                      [&](int64_t i, int64_t at) { o[at] += sp[i]; });
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {g.needs_grad(0) ? g.grad : Tensor(), Tensor(),
                g.needs_grad(2) ? gather(g.grad, a.axis, g.input(1)) : Tensor()};
    }
    static std::vector<OpSample> samples()
    {
        return {
            sample("[4,3] axis 0, index [5,3] (repeats add up)",
                   {real("base", {4, 3}), index("index", {5, 3}, 4), real("src", {5, 3})}, Attrs{0}),
            sample("[3,5] axis 1, index [2,4]", {real("base", {3, 5}), index("index", {2, 4}, 5), real("src", {2, 4})},
                   Attrs{1}),
        };
    }
};
TG_REGISTER_OP(ScatterAdd);

}  // namespace

Tensor gather(const Tensor& x, int64_t axis, const Tensor& index) { return Gather::call({x, index}, {axis}); }

Tensor scatter_add(const Tensor& base, int64_t axis, const Tensor& index, const Tensor& src)
{
    return ScatterAdd::call({base, index, src}, {axis});
}

// gather with the index repeated across the other axes: one int64 per output
// element, which the gather reads anyway.
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index)
{
    TG_CHECK(x.defined() && index.defined(), "index_select: undefined operand");
    TG_CHECK(index.dim() <= 1 && index.dtype() == int64, "index_select: index must be a 1-d int64 tensor, got ",
             dtype_name(index.dtype()), " ", index.shape());
    try {
        const int64_t ax = normalize_axis(axis, x.dim(), "index_select");
        if (x.dim() == 0) {
            // PyTorch returns the 0-d tensor for any index of zeros, of any length;
            // tapegrad takes exactly one index, as the shape of the result says.
            TG_CHECK(index.numel() == 1, "index_select: a 0-d input takes one index, got an index of shape ",
                     index.shape());
            return gather(x, 0, reshape(index, {}));
        }
        shape_type shape = x.shape();
        shape[size_t(ax)] = index.numel();
        Tensor full = Tensor::empty(shape, int64, "index_select");
        if (full.numel() == 0) return gather(x, ax, full);  // (the axes after may multiply past int64)
        int64_t inner = 1;
        for (size_t d = size_t(ax) + 1; d < shape.size(); ++d) inner *= shape[d];
        const int64_t n = index.numel(), *ip = index.data<int64_t>();
        int64_t* o = full.data<int64_t>();
        for (int64_t i = 0; i < full.numel(); ++i) o[i] = ip[(i / inner) % n];
        return gather(x, ax, full);
    } catch (const Error&) {
        detail::rethrow_naming("index_select");
    }
}
TG_REGISTER_SAMPLES("index_select", {
    sample("[5,3] axis 0, 4 of 5 (a repeat)", {real("x", {5, 3}), index("index", {4}, 5)},
           [](const tensor_list& x) { return index_select(x[0], 0, x[1]); }),
    sample("[2,5,3] axis 1, 2 of 5", {real("x", {2, 5, 3}), index("index", {2}, 5)},
           [](const tensor_list& x) { return index_select(x[0], 1, x[1]); }),
    sample("[3,4] axis -1, 6 of 4", {real("x", {3, 4}), index("index", {6}, 4)},
           [](const tensor_list& x) { return index_select(x[0], -1, x[1]); }),
});

Tensor embedding(const Tensor& indices, const Tensor& weight, std::optional<int64_t> padding_idx)
{
    TG_CHECK(indices.defined() && weight.defined(), "embedding: undefined operand");
    TG_CHECK(weight.dim() == 2, "embedding: weight must be [num_embeddings, dim], got ", weight.shape());
    TG_CHECK(indices.dtype() == int64, "embedding: indices must be int64, got ", dtype_name(indices.dtype()));
    const int64_t rows = weight.shape()[0];
    try {
        shape_type out_shape = indices.shape();
        out_shape.push_back(weight.shape()[1]);
        Tensor picked = index_select(weight, 0, reshape(indices, {indices.numel()}));
        if (padding_idx) {
            const int64_t pad = *padding_idx;
            TG_CHECK(pad >= -rows && pad < rows, "embedding: padding_idx ", pad, " is out of range for ", rows,
                     " embeddings");
            const int64_t row = pad < 0 ? pad + rows : pad;
            // The same values; the gradient stops at the padding rows.
            Tensor keep = Tensor::empty({indices.numel(), 1}, weight.dtype(), "embedding");
            TG_DISPATCH_FLOATING(weight.dtype(), "embedding", [&] {
                const int64_t* ip = indices.data<int64_t>();
                for (int64_t i = 0; i < indices.numel(); ++i) keep.data<scalar_t>()[i] = ip[i] == row ? 0 : 1;
            });
            picked = add(mul(picked, keep), mul(picked.detach(), sub(scalar(1, weight.dtype()), keep)));
        }
        return reshape(picked, out_shape);
    } catch (const Error&) {
        detail::rethrow_naming("embedding");
    }
}
namespace {
// The indices with `row` replaced by 0 (other values, out-of-range ones included, kept).
Tensor avoiding(const Tensor& indices, int64_t row)
{
    if (!indices.defined() || indices.dtype() != int64) return indices;
    Tensor out = indices.clone();
    int64_t* p = out.data<int64_t>();
    for (int64_t i = 0; i < out.numel(); ++i)
        if (p[i] == row) p[i] = 0;
    return out;
}
}  // namespace

TG_REGISTER_SAMPLES("embedding", {
    sample("[7,3] at indices [2,5]", {index("indices", {2, 5}, 7), real("weight", {7, 3})},
           [](const tensor_list& x) { return embedding(x[0], x[1]); }),
    // The padding row is moved out of the drawn indices: PyTorch's zero
    // gradient for it is a convention, not the derivative, so a gradcheck
    // cannot see it (tests/test_new_ops.cpp checks it exactly).
    sample("[6,4] at indices [9], padding_idx 5", {index("indices", {9}, 6), real("weight", {6, 4})},
           [](const tensor_list& x) { return embedding(avoiding(x[0], 5), x[1], 5); }),
    sample("[5,2] at indices 0-d, padding_idx -1", {index("indices", {}, 5), real("weight", {5, 2})},
           [](const tensor_list& x) { return embedding(avoiding(x[0], 4), x[1], -1); }),
});

namespace detail {
void link_indexing_ops() {}
}  // namespace detail

}  // namespace tg
