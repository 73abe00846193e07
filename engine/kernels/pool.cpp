// Pooling loops. The 2×2 stride-2 max pool and its dense backward have SIMD
// kernels for float: pool_simd.inl, compiled once per instruction set.
#include "engine/kernels/pool.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "engine/core/parallel.hpp"
#include "engine/kernels/cpu.hpp"

namespace tg::kernels {

namespace {

// Planes per parallel chunk: about 2^15 elements each, as the elementwise loops.
int64_t plane_grain(int64_t plane) { return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, plane)); }

// The SIMD kernels keep indices in int32 lanes.
bool fits_int32_lanes(int64_t plane) { return plane < (int64_t(1) << 30); }

// "u beats v": u > v, or u is NaN (pool_simd.inl's beat, one lane). In scan
// order: the first maximum, and the last NaN, as PyTorch's loop.
template <class T>
inline void beat(T u, int64_t ui, T& v, int64_t& vi)
{
    const bool b = (u > v) | std::isnan(u);
    v = b ? u : v;
    vi = b ? ui : vi;
}

// One output row of 2×2 windows, branch-free: input rows r0 and r1 (r0 at
// plane offset base), wo outputs. Also the SIMD kernels' rows at the end of
// their range.
template <class T>
void max2x2_row_scalar(const T* r0, const T* r1, int64_t base, int64_t w, int64_t wo, T* y, int64_t* idx)
{
    for (int64_t ow = 0; ow < wo; ++ow) {
        T v = r0[2 * ow];
        int64_t vi = base + 2 * ow;
        beat(r0[2 * ow + 1], base + 2 * ow + 1, v, vi);
        beat(r1[2 * ow], base + w + 2 * ow, v, vi);
        beat(r1[2 * ow + 1], base + w + 2 * ow + 1, v, vi);
        y[ow] = v;
        idx[ow] = vi;
    }
}

// The dense backward of one output row into input rows d0 and d1, for the
// SIMD kernels' rows at the end of their range: false when an index is not in
// its own window.
bool unpool2x2_row_scalar(const float* g, const int64_t* idx, int64_t base, int64_t w, int64_t wo, float* d0,
                          float* d1)
{
    for (int64_t ow = 0; ow < wo; ++ow) {
        const uint64_t o = uint64_t(idx[ow]) - uint64_t(base + 2 * ow);
        if (o != 0 && o != 1 && o != uint64_t(w) && o != uint64_t(w + 1)) return false;
        const float v = 0.0f + g[ow];
        d0[2 * ow] = o == 0 ? v : 0.0f;
        d0[2 * ow + 1] = o == 1 ? v : 0.0f;
        d1[2 * ow] = o == uint64_t(w) ? v : 0.0f;
        d1[2 * ow + 1] = o == uint64_t(w + 1) ? v : 0.0f;
    }
    return true;
}

}  // namespace

}  // namespace tg::kernels

// 8-lane vectors only ever live inside the AVX2 functions (everything is
// inlined there), so the ABI note about passing them does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#define TG_SIMD_BODY "engine/kernels/pool_simd.inl"
#include "engine/kernels/simd_regions.inl"

namespace tg::kernels {

// --- window tables -----------------------------------------------------------------------------

int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode)
{
    // In 128 bits: d·(k - 1) and in + 2p + s pass int64 for huge attributes.
    const __int128 span = __int128(d) * (k - 1) + 1, reach = __int128(in) + 2 * __int128(p) - span;
    const __int128 num = reach + (ceil_mode ? s - 1 : 0);
    __int128 out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;  // ⌊num / s⌋ + 1
    // ceil_mode: the last window must start inside the input or its left padding.
    if (ceil_mode && out >= 1 && (out - 1) * s >= __int128(in) + p) --out;
    constexpr int64_t hi = std::numeric_limits<int64_t>::max(), lo = std::numeric_limits<int64_t>::min();
    return out > hi ? hi : out < lo ? lo : int64_t(out);
}

PoolAxis pool_axis(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode, bool count_pad,
                   bool tables)
{
    PoolAxis a;
    const int64_t out = pool_out_size(in, k, s, p, d, ceil_mode);  // >= 1, and the windows in range (ops/pool.cpp)
    a.count = out;
    a.step = d;
    if (!tables) return a;
    for (int64_t o = 0; o < out; ++o) {
        // b >= -p and b < in + p; the last tap b + d·(k - 1) <= in + p - 1
        // but for a ceil_mode window, which may end past it.
        const int64_t b = o * s - p, last = b + d * (k - 1);
        const int64_t first_in = b >= 0 ? b : b + (-b + d - 1) / d * d;  // the first tap at or after 0
        const int64_t last_in = last < in ? last : b + (in - 1 - b) / d * d;
        a.begin.push_back(first_in);
        a.end.push_back(std::max(first_in, last_in + 1));  // empty when no tap is in the input
        // Average pools (d = 1): the window inside [-p, in + p), or inside the input.
        a.divisor.push_back(double(count_pad ? std::min(last + 1, in + p) - b : a.end.back() - a.begin.back()));
    }
    return a;
}

PoolAxis adaptive_axis(int64_t in, int64_t out, bool tables)
{
    PoolAxis a;
    a.count = out;
    if (!tables) return a;
    for (int64_t o = 0; o < out; ++o) {
        // In 128 bits: in·out can pass 2^63 for a large input and output.
        const __int128 i = in, n = out;
        int64_t b = int64_t(o * i / n), e = int64_t(((o + 1) * i + n - 1) / n);
        a.begin.push_back(b);
        a.end.push_back(e);
        a.divisor.push_back(double(e - b));
    }
    return a;
}

PoolWindows pool_windows(int64_t planes, int64_t h, int64_t w, const PoolGeometry& g, bool count_pad)
{
    const bool tables = planes > 0;
    return {planes, h, w, pool_axis(h, g.kh, g.sh, g.ph, g.dh, g.ceil_mode, count_pad, tables),
            pool_axis(w, g.kw, g.sw, g.pw, g.dw, g.ceil_mode, count_pad, tables)};
}

PoolWindows adaptive_windows(int64_t planes, int64_t h, int64_t w, int64_t ho, int64_t wo)
{
    const bool tables = planes > 0;
    return {planes, h, w, adaptive_axis(h, ho, tables), adaptive_axis(w, wo, tables)};
}

bool is_2x2_stride_2(const PoolWindows& win)
{
    auto pairs = [](const PoolAxis& a, int64_t in) {
        if (a.size() != in / 2 || a.begin.size() != size_t(a.size())) return false;
        for (int64_t o = 0; o < a.size(); ++o)
            if (a.begin[size_t(o)] != 2 * o || a.end[size_t(o)] != 2 * o + 2) return false;
        return true;
    };
    return win.rows.step == 1 && win.cols.step == 1 && pairs(win.rows, win.h) && pairs(win.cols, win.w);
}

bool has_empty_window(const PoolWindows& win)
{
    auto empty = [](const PoolAxis& a) {
        for (size_t o = 0; o < a.begin.size(); ++o)
            if (a.begin[o] >= a.end[o]) return true;
        return false;
    };
    return empty(win.rows) || empty(win.cols);
}

// --- average pooling ---------------------------------------------------------------------------

namespace {
double divisor(const PoolWindows& win, int64_t oh, int64_t ow)
{
    return win.divisor_override != 0 ? win.divisor_override
                                     : win.rows.divisor[size_t(oh)] * win.cols.divisor[size_t(ow)];
}
}  // namespace

template <class T>
void window_mean(const T* x, T* y, const PoolWindows& win)
{
    if (win.planes == 0) return;  // nothing to pool, and h·w of an empty input may not fit int64
    const int64_t ho = win.ho(), wo = win.wo(), plane = win.h * win.w;
    parallel_for(win.planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            const T* xp = x + p * plane;
            T* yp = y + p * ho * wo;
            for (int64_t oh = 0; oh < ho; ++oh)
                for (int64_t ow = 0; ow < wo; ++ow) {
                    T s = 0;
                    for (int64_t ih = win.rows.begin[size_t(oh)]; ih < win.rows.end[size_t(oh)]; ++ih)
                        for (int64_t iw = win.cols.begin[size_t(ow)]; iw < win.cols.end[size_t(ow)]; ++iw)
                            s += xp[ih * win.w + iw];
                    yp[oh * wo + ow] = T(s / divisor(win, oh, ow));
                }
        }
    });
}

template <class T>
void window_mean_adjoint(const T* g, T* dx, const PoolWindows& win)
{
    if (win.planes == 0) return;
    const int64_t ho = win.ho(), wo = win.wo(), plane = win.h * win.w;
    parallel_for(win.planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            T* dp = dx + p * plane;
            const T* gp = g + p * ho * wo;
            std::fill(dp, dp + plane, T(0));
            for (int64_t oh = 0; oh < ho; ++oh)
                for (int64_t ow = 0; ow < wo; ++ow) {
                    const T v = T(gp[oh * wo + ow] / divisor(win, oh, ow));
                    for (int64_t ih = win.rows.begin[size_t(oh)]; ih < win.rows.end[size_t(oh)]; ++ih)
                        for (int64_t iw = win.cols.begin[size_t(ow)]; iw < win.cols.end[size_t(ow)]; ++iw)
                            dp[ih * win.w + iw] += v;
                }
        }
    });
}

// --- max pooling -------------------------------------------------------------------------------

template <class T>
void window_max_scan(const T* x, T* y, int64_t* idx, const PoolWindows& win)
{
    const int64_t ho = win.ho(), wo = win.wo(), plane = win.h * win.w;
    parallel_for(win.planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            const T* xp = x + p * plane;
            for (int64_t oh = 0; oh < ho; ++oh)
                for (int64_t ow = 0; ow < wo; ++ow) {
                    const int64_t h0 = win.rows.begin[size_t(oh)], h1 = win.rows.end[size_t(oh)];
                    const int64_t w0 = win.cols.begin[size_t(ow)], w1 = win.cols.end[size_t(ow)];
                    // The first maximum in scan order; a NaN wins, the last
                    // one of the window (PyTorch's test, `u > v || isnan(u)`).
                    int64_t best = h0 * win.w + w0;
                    T v = xp[best];
                    for (int64_t ih = h0; ih < h1; ih += win.rows.step)
                        for (int64_t iw = w0; iw < w1; iw += win.cols.step) {
                            const T u = xp[ih * win.w + iw];
                            if (u > v || std::isnan(u)) {
                                v = u;
                                best = ih * win.w + iw;
                            }
                        }
                    y[p * ho * wo + oh * wo + ow] = v;
                    idx[p * ho * wo + oh * wo + ow] = best;
                }
        }
    });
}

template <class T>
void max_pool_2x2(const T* x, T* y, int64_t* idx, int64_t planes, int64_t h, int64_t w)
{
    const int64_t ho = h / 2, wo = w / 2, plane = h * w;
    if constexpr (std::is_same_v<T, float>) {
        if (fits_int32_lanes(plane)) {
            const auto planes_fn = isa() == Isa::avx2 ? avx2::max2x2_planes : sse2::max2x2_planes;
            parallel_for(planes, plane_grain(plane),
                         [&](int64_t p0, int64_t p1) { planes_fn(x, y, idx, p0, p1, h, w); });
            return;
        }
    }
    parallel_for(planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p)
            for (int64_t oh = 0; oh < ho; ++oh) {
                const T* r0 = x + p * plane + 2 * oh * w;
                const int64_t o = (p * ho + oh) * wo;
                max2x2_row_scalar(r0, r0 + w, 2 * oh * w, w, wo, y + o, idx + o);
            }
    });
}

template <class T>
void window_max(const T* x, T* y, int64_t* idx, const PoolWindows& win)
{
    if (win.planes == 0) return;
    if (is_2x2_stride_2(win)) return max_pool_2x2(x, y, idx, win.planes, win.h, win.w);
    window_max_scan(x, y, idx, win);
}

namespace {

// The first position of an index outside its plane, over parallel chunks.
class FirstBad {
public:
    void note(int64_t o)
    {
        int64_t seen = at_.load(std::memory_order_relaxed);
        while (o < seen && !at_.compare_exchange_weak(seen, o, std::memory_order_relaxed)) {
        }
    }
    int64_t result() const
    {
        const int64_t o = at_.load(std::memory_order_relaxed);
        return o == none ? -1 : o;
    }

private:
    static constexpr int64_t none = std::numeric_limits<int64_t>::max();
    std::atomic<int64_t> at_{none};
};

bool in_plane(int64_t i, int64_t plane) { return uint64_t(i) < uint64_t(plane); }

}  // namespace

bool max_unpool_2x2_plane(const float* g, const int64_t* idx, int64_t ho, int64_t wo, int64_t w, float* d,
                          int64_t planes_after)
{
    return isa() == Isa::avx2 ? avx2::unpool2x2_plane(g, idx, ho, wo, w, d, planes_after)
                              : sse2::unpool2x2_plane(g, idx, ho, wo, w, d, planes_after);
}

template <class T>
int64_t max_pool_backward(const T* g, const int64_t* idx, T* dx, int64_t planes, int64_t h, int64_t w, int64_t ho,
                          int64_t wo)
{
    if (planes == 0) return -1;
    const int64_t plane = h * w, out = ho * wo;
    // Non-overlapping 2×2 windows tiling the plane: written densely, instead
    // of a fill and a scatter.
    const bool dense = std::is_same_v<T, float> && h % 2 == 0 && w % 2 == 0 && ho == h / 2 && wo == w / 2 &&
                       fits_int32_lanes(plane);
    FirstBad bad;
    parallel_for(planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            T* dp = dx + p * plane;
            const T* gp = g + p * out;
            const int64_t* ip = idx + p * out;
            if constexpr (std::is_same_v<T, float>)
                if (dense && max_unpool_2x2_plane(gp, ip, ho, wo, w, dp, p1 - p - 1)) continue;
            // Any indices (the op takes them from its caller): repeats add up.
            std::fill(dp, dp + plane, T(0));
            for (int64_t o = 0; o < out; ++o) {
                if (!in_plane(ip[o], plane)) {
                    bad.note(p * out + o);
                    break;
                }
                dp[ip[o]] += gp[o];
            }
        }
    });
    return bad.result();
}

template <class T>
int64_t max_pool_gather(const T* x, const int64_t* idx, T* y, int64_t planes, int64_t plane, int64_t out)
{
    if (planes == 0) return -1;
    FirstBad bad;
    parallel_for(planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p)
            for (int64_t o = 0; o < out; ++o) {
                const int64_t i = idx[p * out + o];
                if (!in_plane(i, plane)) {
                    bad.note(p * out + o);
                    break;
                }
                y[p * out + o] = x[p * plane + i];
            }
    });
    return bad.result();
}

template <class T>
int64_t max_unpool(const T* x, const int64_t* idx, T* y, int64_t planes, int64_t in, int64_t plane)
{
    if (planes == 0) return -1;
    FirstBad bad;
    parallel_for(planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            T* yp = y + p * plane;
            std::fill(yp, yp + plane, T(0));
            for (int64_t o = 0; o < in; ++o) {
                const int64_t i = idx[p * in + o];
                if (!in_plane(i, plane)) {
                    bad.note(p * in + o);
                    break;
                }
                yp[i] = x[p * in + o];
            }
        }
    });
    return bad.result();
}

template void window_mean(const float*, float*, const PoolWindows&);
template void window_mean(const double*, double*, const PoolWindows&);
template void window_mean_adjoint(const float*, float*, const PoolWindows&);
template void window_mean_adjoint(const double*, double*, const PoolWindows&);
template void window_max(const float*, float*, int64_t*, const PoolWindows&);
template void window_max(const double*, double*, int64_t*, const PoolWindows&);
template void window_max_scan(const float*, float*, int64_t*, const PoolWindows&);
template void window_max_scan(const double*, double*, int64_t*, const PoolWindows&);
template void max_pool_2x2(const float*, float*, int64_t*, int64_t, int64_t, int64_t);
template void max_pool_2x2(const double*, double*, int64_t*, int64_t, int64_t, int64_t);
template int64_t max_pool_backward(const float*, const int64_t*, float*, int64_t, int64_t, int64_t, int64_t, int64_t);
template int64_t max_pool_backward(const double*, const int64_t*, double*, int64_t, int64_t, int64_t, int64_t,
                                   int64_t);
template int64_t max_pool_gather(const float*, const int64_t*, float*, int64_t, int64_t, int64_t);
template int64_t max_pool_gather(const double*, const int64_t*, double*, int64_t, int64_t, int64_t);
template int64_t max_unpool(const float*, const int64_t*, float*, int64_t, int64_t, int64_t);
template int64_t max_unpool(const double*, const int64_t*, double*, int64_t, int64_t, int64_t);

}  // namespace tg::kernels
