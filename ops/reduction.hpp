// Reductions over all axes (axes = {}) or the given ones, with keepdims.
#pragma once

#include "engine/core/tensor.hpp"

namespace tg {

Tensor sum(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
// The gradient is shared equally among tied maxima.
Tensor max(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
// Index of the first maximum along `axis` (int64, not differentiable); over
// the flattened tensor when axis is not given.
Tensor argmax(const Tensor& x, int64_t axis, bool keepdims = false);
Tensor argmax(const Tensor& x);

}  // namespace tg
