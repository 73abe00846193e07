// Reductions over all axes (axes = {}) or the given ones, with keepdims.
#pragma once

#include <utility>

#include "../engine/core/tensor.hpp"

namespace tg {

Tensor sum(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
// Σ (x − mean)² / (N − correction): correction 1 is the unbiased estimate
// (PyTorch's default), 0 the biased one. std is its square root.
Tensor var(const Tensor& x, const axes_type& axes = {}, double correction = 1, bool keepdims = false);
Tensor std(const Tensor& x, const axes_type& axes = {}, double correction = 1, bool keepdims = false);
// log Σ exp(x), stable for large |x| (shifted by the maximum, as PyTorch).
Tensor logsumexp(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
// Running sums along `axis`: out[i] = x[0] + ... + x[i]. Floats accumulate
// in double; int64 stays int64.
Tensor cumsum(const Tensor& x, int64_t axis);
// NaN wins. The gradient is shared equally among tied maxima: PyTorch's
// torch.amax(x, axes) for axes given (a slice whose maximum is NaN gets a NaN
// gradient everywhere), torch.max(x) for none (each NaN gets an equal share).
// It is not torch.max(x, dim), which gives it all to the index it returns.
// docs/semantics.md has the whole list.
Tensor max(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
// The same for the minimum: torch.amin(x, axes), torch.min(x).
Tensor min(const Tensor& x, const axes_type& axes = {}, bool keepdims = false);
// Index of the first maximum (minimum) along `axis`, or of the first NaN
// (int64, not differentiable; as PyTorch's argmax and torch.max(x, dim)'s
// index); over the flattened tensor when axis is not given.
Tensor argmax(const Tensor& x, int64_t axis, bool keepdims = false);
Tensor argmax(const Tensor& x);
Tensor argmin(const Tensor& x, int64_t axis, bool keepdims = false);
Tensor argmin(const Tensor& x);
// torch.max(x, dim) and torch.min(x, dim): the values along `axis` and the
// index argmax (argmin) gives; the gradient goes whole to that index (the
// first maximum, or the first NaN), unlike max(x, {axis})'s shared one.
std::pair<Tensor, Tensor> max_with_indices(const Tensor& x, int64_t axis, bool keepdims = false);
std::pair<Tensor, Tensor> min_with_indices(const Tensor& x, int64_t axis, bool keepdims = false);

}  // namespace tg
