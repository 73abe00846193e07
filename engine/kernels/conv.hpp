// Convolution kernels on raw NCHW buffers: where the windows of a convolution
// fall, im2col and col2im, and the conv2d forward and first-order backward.
// The forward writes the columns of a block of output positions (im2col) into
// a per-thread buffer that is reused across calls, and multiplies them by the
// weights with one single-threaded GEMM (BLAS, or the short-side kernels of
// gemm.hpp), the blocks spread over the thread pool; the backward runs the
// same blocks the other way. The op semantics are in ops/conv.cpp.
#pragma once

#include <cstdint>

#include "../core/error.hpp"

namespace tg::kernels {

// A (height, width) pair: kernel size, stride, padding, dilation.
struct Hw {
    int64_t h, w;
};

// Where the windows of a convolution fall on its input [N, C, H, W].
struct Geometry {
    int64_t n, c, h, w;                 // input
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    int64_t ho, wo;                     // output
    int64_t kk() const { return kh * kw; }
    int64_t columns() const { return ho * wo; }
    // 1×1, stride 1, no padding: the input planes are already the column matrix.
    bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

// The geometry of windows over `input` [N, C, H, W]; an error naming `op` when
// an argument is out of range or the kernel does not fit the padded input.
Geometry make_geometry(const char* op, const shape_type& input, Hw kernel, Hw stride, Hw padding, Hw dilation);

// The bound on one block of the column matrix (the per-thread buffer), bytes.
inline constexpr int64_t default_block_bytes = int64_t(8) << 20;

// One conv2d call's sizes.
struct ConvShape {
    Geometry g;
    int64_t groups, out_channels;
    int64_t block_bytes = default_block_bytes;  // smaller in samples, to reach the blocked paths with small shapes
    int64_t cg() const { return g.c / groups; }           // input channels per group
    int64_t og() const { return out_channels / groups; }  // output channels per group
    int64_t k() const { return cg() * g.kk(); }           // GEMM inner size
};

// cols [N, C·kH·kW, Ho·Wo] = the windows of x [N, C, H, W], zero in the padding.
template <class T>
void im2col(const Geometry& g, const T* x, T* cols);
// x [N, C, H, W] += the adjoint of im2col applied to cols.
template <class T>
void col2im(const Geometry& g, const T* cols, T* x);

// y [N, O, Ho, Wo] = conv(x, w) (+ b[o] on output channel o when b is given).
template <class T>
void conv_forward(const ConvShape& s, const T* x, const T* w, const T* b, T* y);

// Whether conv_backward computes dx as a convolution of gy (see conv.cpp).
bool transposed_input_gradient(const ConvShape& s);

// The elements of T conv_backward needs as workspace for these gradients; it
// depends on the thread count, so take it on the thread that calls conv_backward.
int64_t conv_backward_workspace(const ConvShape& s, bool dx, bool dw, bool db);

// dx, dw, db (each skipped when null) of y = conv(x, w) + b for the output
// gradient gy; workspace holds conv_backward_workspace(s, ...) elements.
template <class T>
void conv_backward(const ConvShape& s, const T* x, const T* w, const T* gy, T* dx, T* dw, T* db, T* workspace);

}  // namespace tg::kernels
