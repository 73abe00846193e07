// 2-d pooling with PyTorch's semantics and defaults: max and average pooling
// over kernel windows, and adaptive average pooling (global average pooling is
// adaptive_avg_pool2d(x, 1)). Inputs are [N, C, H, W] or unbatched [C, H, W].
// A stride left at Int2() (PyTorch's None) is the kernel size; padding is at
// most half the kernel.
#pragma once

#include <utility>

#include "../engine/core/tensor.hpp"
#include "options.hpp"

namespace tg {

// Max of each window; padding never wins (it counts as −∞). The gradient goes
// to the window's first maximum in scan order (rows, then columns); a window
// holding NaN gives NaN and its gradient to its last NaN in scan order; a
// window of only −∞ to its first element. All as PyTorch (tests/test_ties.cpp).
Tensor max_pool2d(const Tensor& x, Int2 kernel, Int2 stride = Int2(), Int2 padding = 0);
// Same, and the int64 index of each window's maximum in its H×W input plane
// (PyTorch's return_indices=True).
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, Int2 kernel, Int2 stride = Int2(),
                                                  Int2 padding = 0);
// The backward of max pooling: zeros of input_shape with grad added at
// `indices` (per plane). Linear in grad; its own backward is max_pool2d_gather.
Tensor max_pool2d_backward(const Tensor& grad, const Tensor& indices, const shape_type& input_shape);
// out[n, c, p] = x[n, c, indices[n, c, p]]: the adjoint of max_pool2d_backward.
Tensor max_pool2d_gather(const Tensor& x, const Tensor& indices);

// Mean of each window. With count_include_pad the divisor is the kernel area;
// without, the number of input elements the window covers.
Tensor avg_pool2d(const Tensor& x, Int2 kernel, Int2 stride = Int2(), Int2 padding = 0,
                  bool count_include_pad = true);
// Its adjoint (the backward of avg_pool2d, whose backward is avg_pool2d again).
Tensor avg_pool2d_backward(const Tensor& grad, const shape_type& input_shape, Int2 kernel,
                           Int2 stride = Int2(), Int2 padding = 0, bool count_include_pad = true);

// Mean over windows that split H×W into output_size (oh, ow) cells: rows
// floor(i·H/oh) to ceil((i+1)·H/oh), and the same for columns.
Tensor adaptive_avg_pool2d(const Tensor& x, Int2 output_size);
// Its adjoint.
Tensor adaptive_avg_pool2d_backward(const Tensor& grad, const shape_type& input_shape);

}  // namespace tg
