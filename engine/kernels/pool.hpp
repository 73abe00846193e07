// Pooling loops over planes of H×W inputs: the window tables, the maximum of
// each window with its argmax, the mean of each window and its adjoint, and
// the scatter and gather of a max pool's backward. The 2×2 stride-2 max pool
// (the common case) has SIMD kernels, forward and backward: pool_simd.inl,
// compiled once per instruction set (simd_regions.inl).
#pragma once

#include <cstdint>
#include <vector>

namespace tg::kernels {

// Window bounds along one axis, clipped to the input, and each window's divisor.
struct PoolAxis {
    int64_t count = 0;  // windows along the axis
    // Per window; left empty when there are no planes, so an empty input
    // with a huge axis builds no tables of that size. A window holds
    // begin, begin + step, ... < end (step: the dilation, 1 but for max pools).
    std::vector<int64_t> begin, end;
    std::vector<double> divisor;
    int64_t step = 1;
    int64_t size() const { return count; }
};

// The windows of a pooling of `planes` planes of h×w: window (oh, ow) covers
// rows [rows.begin[oh], rows.end[oh]) and columns [cols.begin[ow], cols.end[ow]).
struct PoolWindows {
    int64_t planes = 0, h = 0, w = 0;  // input
    PoolAxis rows, cols;
    // Average pools: when not 0, every window's divisor (PyTorch's
    // divisor_override) instead of rows.divisor[oh] · cols.divisor[ow].
    double divisor_override = 0;
    int64_t ho() const { return rows.size(); }
    int64_t wo() const { return cols.size(); }
};

// Kernel, stride, padding and dilation of a pooling, per axis (checked by
// the op), and whether the last window may hang over the end (ceil_mode).
struct PoolGeometry {
    int64_t kh, kw, sh, sw, ph, pw;
    int64_t dh = 1, dw = 1;
    bool ceil_mode = false;
};

// The number of windows o·s - p + d·[0, k) along an axis of `in`, PyTorch's
// rule: ⌊(in + 2p - d·(k-1) - 1) / s⌋ + 1, rounded up with ceil_mode but
// then without a last window that starts past the input and its left
// padding. May be 0 or negative (the op rejects it); no overflow for any
// int64 arguments with k, s, d >= 1.
int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d = 1, bool ceil_mode = false);
// Windows o·s - p + d·[0, k) clipped to [0, in). The divisor (d = 1) is,
// with count_pad, the part of the window inside the padded input [-p, in + p)
// (k but for a ceil_mode window hanging over), without, the number of input
// elements it covers. Only the count without `tables`.
PoolAxis pool_axis(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode, bool count_pad,
                   bool tables = true);
// out windows [⌊o·in/out⌋, ⌈(o+1)·in/out⌉), each divided by its length.
PoolAxis adaptive_axis(int64_t in, int64_t out, bool tables = true);
// The window tables are built only when there are planes: the caller has then
// allocated the output, whose size bounds theirs.
PoolWindows pool_windows(int64_t planes, int64_t h, int64_t w, const PoolGeometry& g, bool count_pad);
PoolWindows adaptive_windows(int64_t planes, int64_t h, int64_t w, int64_t ho, int64_t wo);
// Whether the windows are 2×2 with stride 2 (kernel 2, stride 2, no padding).
bool is_2x2_stride_2(const PoolWindows& win);
// Whether some window holds no input element (its taps all in the padding:
// dilation over a small input); PyTorch gives such a window -inf and an index
// outside the plane.
bool has_empty_window(const PoolWindows& win);

// y[o] = Σ_{i in window o} x[i] / divisor(o); x is [planes, h, w], y [planes, ho, wo].
template <class T>
void window_mean(const T* x, T* y, const PoolWindows& win);
// The adjoint: dx[i] = Σ_{o whose window holds i} g[o] / divisor(o).
template <class T>
void window_mean_adjoint(const T* g, T* dx, const PoolWindows& win);

// y[o] = the maximum of window o, idx[o] its index ih·w + iw in its plane:
// the first maximum in scan order (rows, then columns), and the last NaN if
// the window holds any (as PyTorch: `v > max || isnan(v)` in scan order). Windows 2×2 with stride 2 take
// max_pool_2x2, the others window_max_scan.
template <class T>
void window_max(const T* x, T* y, int64_t* idx, const PoolWindows& win);
// The generic loop, for any windows.
template <class T>
void window_max_scan(const T* x, T* y, int64_t* idx, const PoolWindows& win);
// The same for 2×2 windows with stride 2 over planes of h×w (ho = h/2,
// wo = w/2), branch-free; float runs the SIMD kernel of kernels::isa().
template <class T>
void max_pool_2x2(const T* x, T* y, int64_t* idx, int64_t planes, int64_t h, int64_t w);

// The backward of a max pool: dx, [planes, h, w], is zero but for g[o] added
// at idx[o] in its plane (g and idx [planes, ho, wo]). Returns -1, or the
// position o of the first index outside its plane (dx is then unspecified).
// Windows 2×2 with stride 2 that tile the plane (h, w even) are written
// densely in float, falling back to the scatter for a plane where an index
// is not in its own window.
template <class T>
int64_t max_pool_backward(const T* g, const int64_t* idx, T* dx, int64_t planes, int64_t h, int64_t w, int64_t ho,
                          int64_t wo);
// The dense backward of one plane of 2×2 stride-2 windows tiling an h×w plane
// (h = 2·ho, w = 2·wo, h·w < 2^30) with the SIMD kernel of kernels::isa():
// g at each window's argmax, 0 at its other three places. False (part of d
// written) when an index is not in its own window. The planes_after planes
// that follow (of g, idx and d) are the caller's, to be written after this
// one: rows narrower than a vector may read and write into them.
bool max_unpool_2x2_plane(const float* g, const int64_t* idx, int64_t ho, int64_t wo, int64_t w, float* d,
                          int64_t planes_after = 0);
// The adjoint of the backward: y[o] = x[idx[o]] in each plane (x [planes,
// plane], y and idx [planes, out]). Returns -1 or the position of the first
// index outside its plane, as max_pool_backward.
template <class T>
int64_t max_pool_gather(const T* x, const int64_t* idx, T* y, int64_t planes, int64_t plane, int64_t out);
// max_unpool2d: y, [planes, plane], is zero but for y[idx[o]] = x[o] in each
// plane (x and idx [planes, in]); of repeated indices the last in order
// wins, as PyTorch. Returns -1 or the position of the first index outside
// its plane, as max_pool_backward.
template <class T>
int64_t max_unpool(const T* x, const int64_t* idx, T* y, int64_t planes, int64_t in, int64_t plane);

}  // namespace tg::kernels
