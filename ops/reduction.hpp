// Reductions over all axes (axes = {}) or the given ones, with keepdims.
#pragma once

#include "engine/core/tensor.hpp"

namespace tg {

Tensor sum(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
// NaN wins. The gradient is shared equally among tied maxima: PyTorch's
// torch.amax(x, axes) for axes given (a slice whose maximum is NaN gets a NaN
// gradient everywhere), torch.max(x) for none (each NaN gets an equal share).
// It is not torch.max(x, dim), which gives it all to the index it returns.
Tensor max(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
// Index of the first maximum along `axis`, or of the first NaN (int64, not
// differentiable; as PyTorch); over the flattened tensor when axis is not given.
Tensor argmax(const Tensor& x, int64_t axis, bool keepdims = false);
Tensor argmax(const Tensor& x);

}  // namespace tg
