// Shape ops: reshaping (which shares memory), permuting, slicing, joining and
// broadcasting. broadcast_to and sum_to are each other's adjoint, as are
// slice and unslice: the backward of one is the other.
#pragma once

#include "../engine/core/tensor.hpp"

namespace tg {

// One axis may be -1: its size is inferred. Shares memory with x.
Tensor reshape(const Tensor& x, const shape_type& shape);
// Merges axes start..end into one.
Tensor flatten(const Tensor& x, int64_t start_axis = 0, int64_t end_axis = -1);
// Removes an axis of size 1.
Tensor squeeze(const Tensor& x, int64_t axis);
// Inserts an axis of size 1 at `axis` (in the result's numbering).
Tensor unsqueeze(const Tensor& x, int64_t axis);

// Result axis i is input axis axes[i].
Tensor permute(const Tensor& x, const axes_type& axes);
Tensor transpose(const Tensor& x, int64_t axis0 = -2, int64_t axis1 = -1);

// Elements start, start+step, ... before stop along `axis` (negative start and
// stop count from the end and are clamped to the axis, as in Python); step >= 1.
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t stop, int64_t step = 1);
// The adjoint of slice: places g at those positions of a zero tensor of `shape`.
Tensor unslice(const Tensor& g, const shape_type& shape, int64_t axis, int64_t start, int64_t step = 1);
// x[..., i, ...] along `axis`: the axis is removed.
Tensor select(const Tensor& x, int64_t axis, int64_t i);

Tensor concat(const tensor_list& xs, int64_t axis = 0);
Tensor stack(const tensor_list& xs, int64_t axis = 0);

// Repeats x along broadcast axes to `shape` (NumPy rules).
Tensor broadcast_to(const Tensor& x, const shape_type& shape);
// Sums x over the axes that broadcasting `shape` to x.shape() would repeat:
// the gradient of broadcast_to. Returns x itself when the shapes are equal.
Tensor sum_to(const Tensor& x, const shape_type& shape);

}  // namespace tg
