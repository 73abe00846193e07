// 2-d pooling with PyTorch's semantics and defaults: max and average pooling
// over kernel windows, adaptive max and average pooling (global average
// pooling is adaptive_avg_pool2d(x, 1)), and max unpooling. Inputs are
// [N, C, H, W] or unbatched [C, H, W]. A stride left at Int2() (PyTorch's
// None) is the kernel size; padding is at most half the kernel (not of the
// dilated window, as PyTorch).
//
// ceil_mode, as PyTorch: the output size ⌊(H + 2p - d·(k-1) - 1) / s⌋ + 1 is
// rounded up instead, except that a last window must start inside the input
// or its left padding (else it is dropped). Such a last window may hang past
// the padded input.
#pragma once

#include <optional>
#include <utility>

#include "../engine/core/tensor.hpp"
#include "options.hpp"

namespace tg {

// Max of each window; padding never wins (it counts as −∞). The gradient goes
// to the window's first maximum in scan order (rows, then columns); a window
// holding NaN gives NaN and its gradient to its last NaN in scan order; a
// window of only −∞ to its first element. All as PyTorch (tests/test_ties.cpp).
// With dilation d a window's taps are d apart; a window whose taps all fall
// in the padding is an error (PyTorch gives it -inf and an index outside the
// plane).
Tensor max_pool2d(const Tensor& x, Int2 kernel, Int2 stride = Int2(), Int2 padding = 0, Int2 dilation = 1,
                  bool ceil_mode = false);
// Same, and the int64 index of each window's maximum in its H×W input plane,
// ih·W + iw (PyTorch's return_indices=True): what max_unpool2d takes.
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, Int2 kernel, Int2 stride = Int2(),
                                                  Int2 padding = 0, Int2 dilation = 1, bool ceil_mode = false);
// The backward of max pooling: zeros of input_shape with grad added at
// `indices` (per plane). Linear in grad; its own backward is max_pool2d_gather.
Tensor max_pool2d_backward(const Tensor& grad, const Tensor& indices, const shape_type& input_shape);
// out[n, c, p] = x[n, c, indices[n, c, p]]: the adjoint of max_pool2d_backward.
Tensor max_pool2d_gather(const Tensor& x, const Tensor& indices);

// Mean of each window. With count_include_pad the divisor is the window's
// area inside the padded input (the kernel area, but for a ceil_mode window
// hanging past it); without, the number of input elements the window covers;
// divisor_override (not 0) replaces both. The arguments after padding are in
// the order tapegrad added them, not PyTorch's (ceil_mode comes first there).
Tensor avg_pool2d(const Tensor& x, Int2 kernel, Int2 stride = Int2(), Int2 padding = 0,
                  bool count_include_pad = true, bool ceil_mode = false,
                  std::optional<int64_t> divisor_override = std::nullopt);
// Its adjoint (the backward of avg_pool2d, whose backward is avg_pool2d again).
Tensor avg_pool2d_backward(const Tensor& grad, const shape_type& input_shape, Int2 kernel,
                           Int2 stride = Int2(), Int2 padding = 0, bool count_include_pad = true,
                           bool ceil_mode = false, std::optional<int64_t> divisor_override = std::nullopt);

// Mean over windows that split H×W into output_size (oh, ow) cells: rows
// floor(i·H/oh) to ceil((i+1)·H/oh), and the same for columns.
Tensor adaptive_avg_pool2d(const Tensor& x, Int2 output_size);
// Its adjoint.
Tensor adaptive_avg_pool2d_backward(const Tensor& grad, const shape_type& input_shape);

// Maximum over the windows of adaptive_avg_pool2d; the ties, NaN and the
// gradient as max_pool2d. An output size of 0 gives an empty output, as PyTorch.
Tensor adaptive_max_pool2d(const Tensor& x, Int2 output_size);
// Same, and the index of each window's maximum in its input plane.
std::pair<Tensor, Tensor> adaptive_max_pool2d_with_indices(const Tensor& x, Int2 output_size);

// The inverse of max_pool2d_with_indices: zeros of the output size with
// x[n, c, o] written at indices[n, c, o] in each plane (of repeated indices
// the last in order, as PyTorch). The output size is (H - 1)·s - 2p + k per
// axis, or output_size, (H, W) or (N, C, H, W) (only H and W are read), which
// must lie strictly within a stride of it. Differentiable in x (its gradient
// gathers at the indices); indices outside the output plane are an error.
Tensor max_unpool2d(const Tensor& x, const Tensor& indices, Int2 kernel, Int2 stride = Int2(), Int2 padding = 0,
                    const shape_type& output_size = {});

}  // namespace tg
