// 2-d convolution with PyTorch's semantics, defaults and layouts (NCHW input,
// [out_channels, in_channels / groups, kH, kW] weight), so models and weights
// move across; and its two linear building blocks, im2col and col2im, each
// the other's adjoint.
#pragma once

#include "../engine/core/tensor.hpp"
#include "options.hpp"

namespace tg {

// y[n, o] = bias[o] + Σ_c w[o, c] ⋆ x[n, g·C/G + c] over the channels of o's
// group g. x is [N, C, H, W] (or unbatched [C, H, W]), weight
// [O, C/groups, kH, kW], bias [O] or undefined; the result is [N, O, Ho, Wo]
// with Ho = (H + 2·pad − dil·(kH − 1) − 1) / stride + 1. `padding` is sizes
// (1, {1, 0}) or tg::same (Ho = H, Wo = W; stride 1 only) or tg::valid (0),
// as PyTorch's padding="same" and "valid".
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), Int2 stride = 1,
              ConvPadding padding = 0, Int2 dilation = 1, int64_t groups = 1);

// The padding conv2d puts before (top, left) and after (bottom, right) the
// input for a kernel of `kernel` taps at `dilation`: for tg::same, the
// dil·(k − 1) rows (columns) the windows overhang, split in two, the odd one
// after, as PyTorch does. `op` names the caller in errors.
struct PaddingSides {
    Int2 before, after;
};
PaddingSides conv2d_padding_sides(ConvPadding padding, Int2 kernel, Int2 dilation, const char* op = "conv2d");

// The sliding windows of x [N, C, H, W] as columns: [N, C·kH·kW, Ho·Wo], row
// (c, i, j) and column (oh, ow) holding x[n, c, oh·sh − ph + i·dh, ow·sw − pw + j·dw]
// (zero in the padding). The backward is col2im.
Tensor im2col(const Tensor& x, Int2 kernel, Int2 stride = 1, Int2 padding = 0, Int2 dilation = 1);

// The adjoint of im2col: adds every column entry back to the input position it
// was taken from. cols is [N, C·kH·kW, Ho·Wo]; the result is [N, C, H, W] for
// input_hw = (H, W). The backward is im2col.
Tensor col2im(const Tensor& cols, Int2 input_hw, Int2 kernel, Int2 stride = 1, Int2 padding = 0,
              Int2 dilation = 1);

}  // namespace tg
