// Ops that pick elements by index: gather and its adjoint scatter_add,
// index_select and embedding. Indices are int64 tensors; one out of range is
// an error naming the op, the index and its position (PyTorch's bounds, no
// negative indices).
#pragma once

#include <optional>

#include "../engine/core/tensor.hpp"

namespace tg {

// out[i][j][k] = x[index[i][j][k]][j][k] for axis 0 (and so on): index has
// x's rank, its size along the other axes at most x's, and the result its shape.
Tensor gather(const Tensor& x, int64_t axis, const Tensor& index);
// base with src added at the positions gather reads: out = base, then
// out[index[i][j][k]][j][k] += src[i][j][k] for axis 0. Repeated indices add
// up. src has index's shape (PyTorch also takes a larger src and ignores the rest).
Tensor scatter_add(const Tensor& base, int64_t axis, const Tensor& index, const Tensor& src);
// The slices of x along `axis` at a 1-d index, in its order (repeats allowed).
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index);
// The rows of weight [num_embeddings, dim] at indices of any shape: the
// result is indices.shape + [dim]. The row at padding_idx (negative counts
// from the end, as PyTorch) gets no gradient.
Tensor embedding(const Tensor& indices, const Tensor& weight, std::optional<int64_t> padding_idx = std::nullopt);

}  // namespace tg
