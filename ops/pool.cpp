// Pooling. Max pooling saves the argmax of each window (int64) and its
// backward scatters to it; the scatter and the gather are each other's
// adjoint, so the gradient can be differentiated again. Average pooling and
// adaptive average pooling are linear: each op's backward is its adjoint, and
// the adjoint's backward is the op.
#include "ops/pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include <immintrin.h>

#include "engine/core/op.hpp"
#include "engine/core/parallel.hpp"
#include "engine/kernels/elementwise.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

// Planes per parallel chunk: about elementwise_grain elements each.
int64_t plane_grain(int64_t plane) { return std::max<int64_t>(1, kernels::elementwise_grain / std::max<int64_t>(1, plane)); }

void check_input(const char* op, const Tensor& x)
{
    TG_CHECK(x.defined(), op, ": undefined input");
    TG_CHECK(x.dim() == 4, op, ": expected input [N, C, H, W] (or [C, H, W]), got shape ", x.shape());
    TG_CHECK(is_floating(x.dtype()), op, ": input must be float32 or float64, got ", dtype_name(x.dtype()));
}

// Window bounds along one axis, clipped to the input, and each window's divisor.
struct Axis {
    std::vector<int64_t> begin, end;
    std::vector<double> divisor;
};

struct Windows {
    int64_t planes = 0, h = 0, w = 0;  // input
    Axis rows, cols;
    int64_t ho() const { return int64_t(rows.begin.size()); }
    int64_t wo() const { return int64_t(cols.begin.size()); }
};

struct PoolParams {
    Int2 kernel, stride, padding;
};

// Checks kernel, stride and padding against the input size; a stride not given is the kernel.
PoolParams pool_params(const char* op, const shape_type& input, Int2 kernel, Int2 stride, Int2 padding)
{
    if (!stride.given()) stride = kernel;
    TG_CHECK(kernel.h >= 1 && kernel.w >= 1, op, ": kernel size (", kernel.h, ", ", kernel.w, ") must be positive");
    TG_CHECK(stride.h >= 1 && stride.w >= 1, op, ": stride (", stride.h, ", ", stride.w, ") must be positive");
    TG_CHECK(padding.h >= 0 && padding.w >= 0 && 2 * padding.h <= kernel.h && 2 * padding.w <= kernel.w, op,
             ": padding (", padding.h, ", ", padding.w, ") must be between 0 and half the kernel (", kernel.h, ", ",
             kernel.w, ")");
    const int64_t h = input[2], w = input[3];
    TG_CHECK(kernel.h <= h + 2 * padding.h && kernel.w <= w + 2 * padding.w, op, ": kernel (", kernel.h, ", ",
             kernel.w, ") is larger than the padded input (", h + 2 * padding.h, ", ", w + 2 * padding.w,
             ") of input shape ", input, " with padding (", padding.h, ", ", padding.w, ")");
    return {kernel, stride, padding};
}

Axis pool_axis(int64_t in, int64_t k, int64_t s, int64_t p, bool count_pad)
{
    Axis a;
    const int64_t out = (in + 2 * p - k) / s + 1;
    for (int64_t o = 0; o < out; ++o) {
        int64_t b = o * s - p, e = b + k;  // e <= in + p
        a.divisor.push_back(double(count_pad ? k : std::min(e, in) - std::max<int64_t>(b, 0)));
        a.begin.push_back(std::max<int64_t>(b, 0));
        a.end.push_back(std::min(e, in));
    }
    return a;
}

Axis adaptive_axis(int64_t in, int64_t out)
{
    Axis a;
    for (int64_t o = 0; o < out; ++o) {
        int64_t b = o * in / out, e = ((o + 1) * in + out - 1) / out;
        a.begin.push_back(b);
        a.end.push_back(e);
        a.divisor.push_back(double(e - b));
    }
    return a;
}

Windows pool_windows(const shape_type& input, const PoolParams& p, bool count_pad)
{
    return {input[0] * input[1], input[2], input[3],
            pool_axis(input[2], p.kernel.h, p.stride.h, p.padding.h, count_pad),
            pool_axis(input[3], p.kernel.w, p.stride.w, p.padding.w, count_pad)};
}

Windows adaptive_windows(const shape_type& input, Int2 out)
{
    return {input[0] * input[1], input[2], input[3], adaptive_axis(input[2], out.h), adaptive_axis(input[3], out.w)};
}

// y[o] = Σ_{i in window o} x[i] / divisor(o)
template <class T>
void window_mean(const T* x, T* y, const Windows& win)
{
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
                    yp[oh * wo + ow] = T(s / (win.rows.divisor[size_t(oh)] * win.cols.divisor[size_t(ow)]));
                }
        }
    });
}

// The adjoint: dx[i] = Σ_{o whose window holds i} g[o] / divisor(o)
template <class T>
void window_mean_adjoint(const T* g, T* dx, const Windows& win)
{
    const int64_t ho = win.ho(), wo = win.wo(), plane = win.h * win.w;
    parallel_for(win.planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            T* dp = dx + p * plane;
            const T* gp = g + p * ho * wo;
            std::fill(dp, dp + plane, T(0));
            for (int64_t oh = 0; oh < ho; ++oh)
                for (int64_t ow = 0; ow < wo; ++ow) {
                    const T v = T(gp[oh * wo + ow] / (win.rows.divisor[size_t(oh)] * win.cols.divisor[size_t(ow)]));
                    for (int64_t ih = win.rows.begin[size_t(oh)]; ih < win.rows.end[size_t(oh)]; ++ih)
                        for (int64_t iw = win.cols.begin[size_t(ow)]; iw < win.cols.end[size_t(ow)]; ++iw)
                            dp[ih * win.w + iw] += v;
                }
        }
    });
}

// --- 2×2 max pooling, stride 2, no padding ------------------------------------------------
//
// The common case gets a branch-free kernel: the generic loop's compares
// depend on the data, and on random activations about half of them were
// mispredicted (a fifth of a training step's time went there).
// "u beats v": u > v, or u is NaN and v is not. Applied in scan order it keeps
// the first maximum, and the first NaN once one is seen, as the generic loop.

bool have_avx2_pool()
{
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}

template <class T>
inline void beat(T u, int64_t ui, T& v, int64_t& vi)
{
    const bool b = (u > v) | (std::isnan(u) & !std::isnan(v));
    v = b ? u : v;
    vi = b ? ui : vi;
}

// One output row: input rows r0 and r1 (r0 at plane offset base), outputs [ow0, wo).
template <class T>
void max2x2_row_scalar(const T* r0, const T* r1, int64_t base, int64_t w, int64_t ow0, int64_t wo, T* y, int64_t* idx)
{
    for (int64_t ow = ow0; ow < wo; ++ow) {
        T v = r0[2 * ow];
        int64_t vi = base + 2 * ow;
        beat(r0[2 * ow + 1], base + 2 * ow + 1, v, vi);
        beat(r1[2 * ow], base + w + 2 * ow, v, vi);
        beat(r1[2 * ow + 1], base + w + 2 * ow + 1, v, vi);
        y[ow] = v;
        idx[ow] = vi;
    }
}

__attribute__((target("avx2,fma"))) inline void beat8(__m256 u, __m256i ui, __m256& v, __m256i& vi)
{
    const __m256 b = _mm256_or_ps(_mm256_cmp_ps(u, v, _CMP_GT_OQ),
                                  _mm256_and_ps(_mm256_cmp_ps(u, u, _CMP_UNORD_Q), _mm256_cmp_ps(v, v, _CMP_ORD_Q)));
    v = _mm256_blendv_ps(v, u, b);
    vi = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(vi), _mm256_castsi256_ps(ui), b));
}

// The even (odd) entries of lo then hi. shuffle_ps works within 128-bit lanes:
// the 64-bit pairs are put in order after.
__attribute__((target("avx2,fma"))) inline __m256 even(__m256 lo, __m256 hi)
{
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
}
__attribute__((target("avx2,fma"))) inline __m256 odd(__m256 lo, __m256 hi)
{
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}

// The maximum of eight windows; `full`: all 16 columns of both rows are read,
// else the first 2·r (r < 8 outputs), through masked loads and stores.
template <bool Full>
__attribute__((target("avx2,fma"))) inline void max2x2_8(const float* r0, const float* r1, int64_t base, int64_t w,
                                                          float* y, int64_t* idx, int64_t r)
{
    alignas(32) static const int32_t ramp[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const __m256i ramp0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(ramp));
    const __m256i ramp1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(ramp + 8));
    __m256 a0, a1, b0, b1;
    if constexpr (Full) {
        a0 = _mm256_loadu_ps(r0), a1 = _mm256_loadu_ps(r0 + 8);
        b0 = _mm256_loadu_ps(r1), b1 = _mm256_loadu_ps(r1 + 8);
    } else {
        const __m256i n = _mm256_set1_epi32(int32_t(2 * r));
        const __m256i m0 = _mm256_cmpgt_epi32(n, ramp0), m1 = _mm256_cmpgt_epi32(n, ramp1);
        a0 = _mm256_maskload_ps(r0, m0), a1 = _mm256_maskload_ps(r0 + 8, m1);
        b0 = _mm256_maskload_ps(r1, m0), b1 = _mm256_maskload_ps(r1 + 8, m1);
    }
    const __m256i i00 = _mm256_add_epi32(_mm256_set1_epi32(int32_t(base)), _mm256_add_epi32(ramp0, ramp0));
    const __m256i one = _mm256_set1_epi32(1), down = _mm256_set1_epi32(int32_t(w));
    __m256 v = even(a0, a1);
    __m256i vi = i00;
    beat8(odd(a0, a1), _mm256_add_epi32(i00, one), v, vi);
    beat8(even(b0, b1), _mm256_add_epi32(i00, down), v, vi);
    beat8(odd(b0, b1), _mm256_add_epi32(_mm256_add_epi32(i00, down), one), v, vi);
    const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(vi));
    const __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(vi, 1));
    if constexpr (Full) {
        _mm256_storeu_ps(y, v);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx), lo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + 4), hi);
    } else {
        // In pieces of 4, 2 and 1: masked stores are microcoded and slow on AMD
        // cores, and a copy loop through the stack became two memmove calls.
        __m128 v4 = _mm256_castps256_ps128(v);
        __m256i i4 = lo;
        int64_t j = 0;
        if (r & 4) {
            _mm_storeu_ps(y, v4);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx), lo);
            v4 = _mm256_extractf128_ps(v, 1);
            i4 = hi;
            j = 4;
        }
        if (r & 2) {
            _mm_storel_pi(reinterpret_cast<__m64*>(y + j), v4);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(idx + j), _mm256_castsi256_si128(i4));
            v4 = _mm_movehl_ps(v4, v4);
            i4 = _mm256_permute4x64_epi64(i4, 0xEE);
            j += 2;
        }
        if (r & 1) {
            _mm_store_ss(y + j, v4);
            idx[j] = _mm_cvtsi128_si64(_mm256_castsi256_si128(i4));
        }
    }
}

// One output row, eight outputs at a time (the even and odd columns of 16 inputs per row).
__attribute__((target("avx2,fma"))) void max2x2_row_avx2(const float* r0, const float* r1, int64_t base, int64_t w,
                                                         int64_t wo, float* y, int64_t* idx)
{
    int64_t ow = 0;
    for (; ow + 8 <= wo; ow += 8) max2x2_8<true>(r0 + 2 * ow, r1 + 2 * ow, base + 2 * ow, w, y + ow, idx + ow, 8);
    if (ow < wo) max2x2_8<false>(r0 + 2 * ow, r1 + 2 * ow, base + 2 * ow, w, y + ow, idx + ow, wo - ow);
}

template <class T>
void max_pool_2x2(const T* x, T* y, int64_t* idx, int64_t planes, int64_t h, int64_t w)
{
    const int64_t ho = h / 2, wo = w / 2, plane = h * w;
    const bool vec = std::is_same_v<T, float> && plane < (int64_t(1) << 30) && have_avx2_pool();
    parallel_for(planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p)
            for (int64_t oh = 0; oh < ho; ++oh) {
                const T* r0 = x + p * plane + 2 * oh * w;
                T* yo = y + (p * ho + oh) * wo;
                int64_t* io = idx + (p * ho + oh) * wo;
                if constexpr (std::is_same_v<T, float>)
                    if (vec) {
                        max2x2_row_avx2(r0, r0 + w, 2 * oh * w, w, wo, yo, io);
                        continue;
                    }
                max2x2_row_scalar(r0, r0 + w, 2 * oh * w, w, 0, wo, yo, io);
            }
    });
}

// Backward of 2×2 stride-2 pooling for one output row, written densely into
// input rows d0 and d1 (d0 at plane offset base): g at each window's argmax and
// 0 at its other three places, instead of a fill and a scatter. Returns false
// when an index is not in its own window (the op takes any indices); the
// caller then fills and scatters. Writes 0 + g, as the scatter does (-0 → +0).
__attribute__((target("avx2,fma"))) inline __m256i in_window(__m256i r, __m256i w, __m256i w1)
{
    return _mm256_or_si256(
        _mm256_or_si256(_mm256_cmpeq_epi64(r, _mm256_setzero_si256()), _mm256_cmpeq_epi64(r, _mm256_set1_epi64x(1))),
        _mm256_or_si256(_mm256_cmpeq_epi64(r, w), _mm256_cmpeq_epi64(r, w1)));
}

// d[0..2r) = a0 b0 a1 b1 ... from the first r entries of a and b (r <= 8),
// in pieces of 8, 4 and 2 floats: masked stores are slow on AMD cores.
__attribute__((target("avx2,fma"))) inline void store_pairs(float* d, __m256 a, __m256 b, int64_t r)
{
    const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
    __m256 p0 = _mm256_permute2f128_ps(lo, hi, 0x20);
    const __m256 p1 = _mm256_permute2f128_ps(lo, hi, 0x31);
    if (r == 8) {
        _mm256_storeu_ps(d, p0);
        _mm256_storeu_ps(d + 8, p1);
        return;
    }
    int64_t j = 0;
    if (r & 4) {
        _mm256_storeu_ps(d, p0);
        p0 = p1;
        j = 8;
    }
    __m128 q = _mm256_castps256_ps128(p0);
    if (r & 2) {
        _mm_storeu_ps(d + j, q);
        q = _mm256_extractf128_ps(p0, 1);
        j += 4;
    }
    if (r & 1) _mm_storel_pi(reinterpret_cast<__m64*>(d + j), q);
}

// g where the offset o is k, else 0.
__attribute__((target("avx2,fma"))) inline __m256 g_at(__m256 g, __m256i o, int64_t k)
{
    return _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(o, _mm256_set1_epi32(int32_t(k)))));
}

// Eight outputs (the first r when not Full): false when an index is outside its window.
template <bool Full>
__attribute__((target("avx2,fma"))) inline bool unpool2x2_8(const float* g, const int64_t* idx, int64_t base, int64_t w,
                                                            float* d0, float* d1, int64_t r)
{
    const __m256i w64 = _mm256_set1_epi64x(w), w164 = _mm256_set1_epi64x(w + 1);
    const __m256i b = _mm256_add_epi64(_mm256_set1_epi64x(base), _mm256_setr_epi64x(0, 2, 4, 6));
    const __m256i b8 = _mm256_add_epi64(b, _mm256_set1_epi64x(8));
    __m256i ia, ib, va, vb;
    __m256 gv;
    if constexpr (Full) {
        ia = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx));
        ib = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + 4));
        gv = _mm256_loadu_ps(g);
    } else {
        const __m256i n = _mm256_set1_epi64x(r);
        const __m256i ma = _mm256_cmpgt_epi64(n, _mm256_setr_epi64x(0, 1, 2, 3));
        const __m256i mb = _mm256_cmpgt_epi64(n, _mm256_setr_epi64x(4, 5, 6, 7));
        // Lanes past r read as their window's first index.
        ia = _mm256_blendv_epi8(b, _mm256_maskload_epi64(reinterpret_cast<const long long*>(idx), ma), ma);
        ib = _mm256_blendv_epi8(b8, _mm256_maskload_epi64(reinterpret_cast<const long long*>(idx + 4), mb), mb);
        gv = _mm256_maskload_ps(g, _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(r)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    }
    const __m256i ra = _mm256_sub_epi64(ia, b), rb = _mm256_sub_epi64(ib, b8);
    va = in_window(ra, w64, w164);
    vb = in_window(rb, w64, w164);
    if (_mm256_movemask_epi8(_mm256_and_si256(va, vb)) != -1) return false;
    // The offsets are small now: 32 bits hold them.
    const __m256i narrow = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i o = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(ra, narrow))),
        _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(rb, narrow)), 1);
    gv = _mm256_add_ps(_mm256_setzero_ps(), gv);
    store_pairs(d0, g_at(gv, o, 0), g_at(gv, o, 1), Full ? 8 : r);
    store_pairs(d1, g_at(gv, o, w), g_at(gv, o, w + 1), Full ? 8 : r);
    return true;
}

__attribute__((target("avx2,fma"))) bool unpool2x2_row_avx2(const float* g, const int64_t* idx, int64_t base,
                                                           int64_t w, int64_t wo, float* d0, float* d1)
{
    int64_t ow = 0;
    for (; ow + 8 <= wo; ow += 8)
        if (!unpool2x2_8<true>(g + ow, idx + ow, base + 2 * ow, w, d0 + 2 * ow, d1 + 2 * ow, 8)) return false;
    return ow == wo || unpool2x2_8<false>(g + ow, idx + ow, base + 2 * ow, w, d0 + 2 * ow, d1 + 2 * ow, wo - ow);
}

// The dense backward of one plane; false (part of the plane written) when an
// index is outside its window.
template <class T>
bool unpool2x2_plane(const T* g, const int64_t* idx, int64_t ho, int64_t wo, int64_t w, T* d)
{
    if constexpr (std::is_same_v<T, float>) {
        for (int64_t oh = 0; oh < ho; ++oh)
            if (!unpool2x2_row_avx2(g + oh * wo, idx + oh * wo, 2 * oh * w, w, wo, d + 2 * oh * w, d + (2 * oh + 1) * w))
                return false;
        return true;
    }
    return false;
}

Tensor mean_forward(const char* op, const Tensor& x, const Windows& win)
{
    Tensor y = Tensor::empty({x.shape()[0], x.shape()[1], win.ho(), win.wo()}, x.dtype());
    TG_DISPATCH_FLOATING(x.dtype(), op, [&] { window_mean(x.data<scalar_t>(), y.data<scalar_t>(), win); });
    return y;
}

// Checks that grad has the shape of input_shape's pooled output.
void check_grad(const char* op, const Tensor& grad, const shape_type& input_shape, const Windows& win)
{
    shape_type want{input_shape[0], input_shape[1], win.ho(), win.wo()};
    TG_CHECK(grad.shape() == want, op, ": gradient of shape ", grad.shape(), " for an input of shape ", input_shape,
             " whose pooled shape is ", want);
}

void check_input_shape(const char* op, const Tensor& grad, const shape_type& input_shape)
{
    TG_CHECK(grad.defined(), op, ": undefined gradient");
    TG_CHECK(is_floating(grad.dtype()), op, ": gradient must be float32 or float64, got ", dtype_name(grad.dtype()));
    TG_CHECK(input_shape.size() == 4 && grad.dim() == 4, op, ": expected a 4-d gradient and input shape, got ",
             grad.shape(), " and ", input_shape);
}

// Runs a 4-d op on an unbatched [C, H, W] input.
template <class F>
Tensor unbatched(const Tensor& x, F f)
{
    return squeeze(f(unsqueeze(x, 0)), 0);
}

// Replay of max pooling for a few changed inputs (engine/replay.hpp): the
// maximum again over each window that holds a changed element.
bool max_pool2d_delta(DeltaArgs& d, const PoolParams& pp)
{
    const ReplayInput& x = d.inputs[0];
    const Windows win = pool_windows(x.base->shape(), pp, true);
    const int64_t ho = win.ho(), wo = win.wo(), plane = win.h * win.w;
    const double* xv = x.data();
    for (int64_t f : *x.changed) {
        int64_t p = f / plane, ih = f % plane / win.w, iw = f % win.w;
        for (int64_t oh = 0; oh < ho; ++oh) {
            if (ih < win.rows.begin[size_t(oh)] || ih >= win.rows.end[size_t(oh)]) continue;
            for (int64_t ow = 0; ow < wo; ++ow) {
                if (iw < win.cols.begin[size_t(ow)] || iw >= win.cols.end[size_t(ow)]) continue;
                const double* xp = xv + p * plane;
                double v = xp[win.rows.begin[size_t(oh)] * win.w + win.cols.begin[size_t(ow)]];
                for (int64_t r = win.rows.begin[size_t(oh)]; r < win.rows.end[size_t(oh)] && !std::isnan(v); ++r)
                    for (int64_t c = win.cols.begin[size_t(ow)]; c < win.cols.end[size_t(ow)]; ++c)
                        if (xp[r * win.w + c] > v || std::isnan(xp[r * win.w + c])) v = xp[r * win.w + c];
                int64_t o = (p * ho + oh) * wo + ow;
                if (std::memcmp(&v, &d.out[o], sizeof v) == 0) continue;
                d.out[o] = v;
                d.touch(o);
            }
        }
    }
    return true;
}

}  // namespace

// --- max pooling ------------------------------------------------------------------------------

namespace {
struct MaxPool2d : Op<MaxPool2d> {
    static constexpr const char* name = "max_pool2d";
    struct Attrs {
        Int2 kernel, stride, padding;  // completed by forward (stride not given: the kernel)
    };
    // Keeps the argmax of each window in its plane (int64).
    static Tensor forward(TensorRefs in, Attrs& a, OpContext& ctx)
    {
        const Tensor& x = in[0];
        check_input("max_pool2d", x);
        PoolParams pp = pool_params("max_pool2d", x.shape(), a.kernel, a.stride, a.padding);
        a = {pp.kernel, pp.stride, pp.padding};
        Windows win = pool_windows(x.shape(), pp, true);
        const int64_t ho = win.ho(), wo = win.wo(), plane = win.h * win.w;
        Tensor y = Tensor::empty({x.shape()[0], x.shape()[1], ho, wo}, x.dtype());
        Tensor indices = Tensor::empty(y.shape(), int64);
        TG_DISPATCH_FLOATING(x.dtype(), "max_pool2d", [&] {
            const scalar_t* xs = x.data<scalar_t>();
            scalar_t* ys = y.data<scalar_t>();
            int64_t* is = indices.data<int64_t>();
            if (pp.kernel == Int2{2, 2} && pp.stride == Int2{2, 2} && pp.padding == Int2{0, 0})
                return max_pool_2x2(xs, ys, is, win.planes, win.h, win.w);
            parallel_for(win.planes, plane_grain(plane), [&](int64_t p0, int64_t p1) {
                for (int64_t p = p0; p < p1; ++p) {
                    const scalar_t* xp = xs + p * plane;
                    for (int64_t oh = 0; oh < ho; ++oh)
                        for (int64_t ow = 0; ow < wo; ++ow) {
                            const int64_t h0 = win.rows.begin[size_t(oh)], h1 = win.rows.end[size_t(oh)];
                            const int64_t w0 = win.cols.begin[size_t(ow)], w1 = win.cols.end[size_t(ow)];
                            // The first maximum in scan order; a NaN wins, as in PyTorch.
                            int64_t best = h0 * win.w + w0;
                            scalar_t v = xp[best];
                            for (int64_t ih = h0; ih < h1 && !std::isnan(v); ++ih)
                                for (int64_t iw = w0; iw < w1; ++iw) {
                                    const scalar_t u = xp[ih * win.w + iw];
                                    if (u > v || std::isnan(u)) {
                                        v = u;
                                        best = ih * win.w + iw;
                                        if (std::isnan(u)) break;
                                    }
                                }
                            ys[p * ho * wo + oh * wo + ow] = v;
                            is[p * ho * wo + oh * wo + ow] = best;
                        }
                }
            });
        });
        ctx.keep(indices);
        return y;
    }
    static tensor_list backward(const BackwardArgs& a) { return {max_pool2d_backward(a.grad, a.kept(0), a.input_shape(0))}; }
    static bool delta(DeltaArgs& d, const Attrs& a) { return max_pool2d_delta(d, {a.kernel, a.stride, a.padding}); }
    static std::vector<OpSample> samples()
    {
        return {
            sample("[2,2,4,4] k2 (stride = kernel)", {real("x", {2, 2, 4, 4})}, Attrs{2, Int2(), 0}),
            sample("[2,2,5,5] k3 s2 p1 (odd size, padding)", {real("x", {2, 2, 5, 5})}, Attrs{3, 2, 1}),
            sample("[1,3,5,7] k(2,3) s(1,2) p(1,1) (overlapping, non-square)", {real("x", {1, 3, 5, 7})},
                   Attrs{{2, 3}, {1, 2}, {1, 1}}),
            tg::sample("[3,5,4] unbatched, k2 s1", {real("x", {3, 5, 4})},
                       [](const tensor_list& x) { return max_pool2d(x[0], 2, 1); }),
        };
    }
};
TG_REGISTER_OP(MaxPool2d);
}  // namespace

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding)
{
    if (x.defined() && x.dim() == 3) {
        auto [y, idx] = max_pool2d_with_indices(unsqueeze(x, 0), kernel, stride, padding);
        return {squeeze(y, 0), squeeze(idx, 0)};
    }
    OpResult r = call_op_kept<MaxPool2d>({x}, {kernel, stride, padding});
    return {r.output, r.kept[0]};
}

Tensor max_pool2d(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding)
{
    return max_pool2d_with_indices(x, kernel, stride, padding).first;
}

namespace {
void check_indices(const char* op, const Tensor& indices, const shape_type& shape)
{
    TG_CHECK(indices.defined() && indices.dtype() == int64, op, ": indices must be an int64 tensor");
    TG_CHECK(indices.shape() == shape, op, ": indices of shape ", indices.shape(), " for values of shape ", shape);
}

// Inputs: the gradient of the pooled output and the argmax indices.
struct MaxPool2dBackward : Op<MaxPool2dBackward> {
    static constexpr const char* name = "max_pool2d_backward";
    static constexpr Saves saves = save_input(1);
    struct Attrs {
        shape_type input_shape;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor &grad = in[0], &indices = in[1];
        const shape_type& input_shape = a.input_shape;
        check_input_shape("max_pool2d_backward", grad, input_shape);
        check_indices("max_pool2d_backward", indices, grad.shape());
        TG_CHECK(grad.shape()[0] == input_shape[0] && grad.shape()[1] == input_shape[1],
                 "max_pool2d_backward: gradient of shape ", grad.shape(), " for an input of shape ", input_shape);
        const int64_t plane = input_shape[2] * input_shape[3], out = grad.shape()[2] * grad.shape()[3];
        Tensor dx = Tensor::empty(input_shape, grad.dtype());
        TG_DISPATCH_FLOATING(grad.dtype(), "max_pool2d_backward", [&] {
            const scalar_t* g = grad.data<scalar_t>();
            const int64_t* idx = indices.data<int64_t>();
            scalar_t* d = dx.data<scalar_t>();
            const int64_t h = input_shape[2], w = input_shape[3], ho = grad.shape()[2], wo = grad.shape()[3];
            // Non-overlapping 2×2 windows tiling the plane: written densely.
            const bool dense = std::is_same_v<scalar_t, float> && h % 2 == 0 && w % 2 == 0 && ho == h / 2 &&
                               wo == w / 2 && plane < (int64_t(1) << 30) && have_avx2_pool();
            parallel_for(input_shape[0] * input_shape[1], plane_grain(plane), [&](int64_t p0, int64_t p1) {
                for (int64_t p = p0; p < p1; ++p) {
                    scalar_t* dp = d + p * plane;
                    if (dense && unpool2x2_plane(g + p * out, idx + p * out, ho, wo, w, dp)) continue;
                    std::fill(dp, dp + plane, scalar_t(0));
                    for (int64_t o = 0; o < out; ++o) {
                        const int64_t i = idx[p * out + o];
                        TG_CHECK(i >= 0 && i < plane, "max_pool2d_backward: index ", i, " outside the ", input_shape[2],
                                 "x", input_shape[3], " plane of input shape ", input_shape);
                        dp[i] += g[p * out + o];
                    }
                }
            });
        });
        return dx;
    }
    static tensor_list backward(const BackwardArgs& a) { return {max_pool2d_gather(a.grad, a.input(1)), Tensor()}; }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,3,3] into [2,2,5,5] (repeated indices add up)",
                       {real("g", {2, 2, 3, 3}), index("indices", {2, 2, 3, 3}, 25)}, Attrs{{2, 2, 5, 5}})};
    }
};
TG_REGISTER_OP(MaxPool2dBackward);

// Inputs: the values and the argmax indices; the adjoint of max_pool2d_backward.
struct MaxPool2dGather : Op<MaxPool2dGather> {
    static constexpr const char* name = "max_pool2d_gather";
    static constexpr Saves saves = save_input(1);
    static constexpr ReplayForm replay = ReplayForm::index_map;
    static Tensor forward(TensorRefs in)
    {
        const Tensor &x = in[0], &indices = in[1];
        check_input("max_pool2d_gather", x);
        TG_CHECK(indices.defined() && indices.dtype() == int64 && indices.dim() == 4 &&
                     indices.shape()[0] == x.shape()[0] && indices.shape()[1] == x.shape()[1],
                 "max_pool2d_gather: indices must be int64 [N, C, Ho, Wo] for input ", x.shape(), ", got ",
                 indices.defined() ? dtype_name(indices.dtype()) : "undefined", " ",
                 indices.defined() ? indices.shape() : shape_type{});
        const int64_t plane = x.shape()[2] * x.shape()[3], out = indices.shape()[2] * indices.shape()[3];
        Tensor y = Tensor::empty(indices.shape(), x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), "max_pool2d_gather", [&] {
            const scalar_t* xs = x.data<scalar_t>();
            const int64_t* idx = indices.data<int64_t>();
            scalar_t* ys = y.data<scalar_t>();
            parallel_for(x.shape()[0] * x.shape()[1], plane_grain(plane), [&](int64_t p0, int64_t p1) {
                for (int64_t p = p0; p < p1; ++p)
                    for (int64_t o = 0; o < out; ++o) {
                        const int64_t i = idx[p * out + o];
                        TG_CHECK(i >= 0 && i < plane, "max_pool2d_gather: index ", i, " outside the ", x.shape()[2],
                                 "x", x.shape()[3], " plane of input shape ", x.shape());
                        ys[p * out + o] = xs[p * plane + i];
                    }
            });
        });
        return y;
    }
    static tensor_list backward(const BackwardArgs& a)
    {
        return {max_pool2d_backward(a.grad, a.input(1), a.input_shape(0)), Tensor()};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,5,5] at [2,2,3,3]", {real("x", {2, 2, 5, 5}), index("indices", {2, 2, 3, 3}, 25)})};
    }
};
TG_REGISTER_OP(MaxPool2dGather);
}  // namespace

Tensor max_pool2d_backward(const Tensor& grad, const Tensor& indices, const shape_type& input_shape)
{
    return MaxPool2dBackward::call({grad, indices}, {input_shape});
}

Tensor max_pool2d_gather(const Tensor& x, const Tensor& indices) { return MaxPool2dGather::call({x, indices}); }

// --- average pooling -------------------------------------------------------------------------

namespace {
struct AvgPool2d : Op<AvgPool2d> {
    static constexpr const char* name = "avg_pool2d";
    struct Attrs {
        Int2 kernel, stride, padding;  // completed by forward
        bool count_include_pad;
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        check_input("avg_pool2d", x);
        PoolParams pp = pool_params("avg_pool2d", x.shape(), a.kernel, a.stride, a.padding);
        a = {pp.kernel, pp.stride, pp.padding, a.count_include_pad};
        return mean_forward("avg_pool2d", x, pool_windows(x.shape(), pp, a.count_include_pad));
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {avg_pool2d_backward(g.grad, g.input_shape(0), a.kernel, a.stride, a.padding, a.count_include_pad)};
    }
    static std::vector<OpSample> samples()
    {
        return {
            sample("[2,2,4,4] k2", {real("x", {2, 2, 4, 4})}, Attrs{2, Int2(), 0, true}),
            sample("[2,2,5,5] k3 s2 p1, count_include_pad", {real("x", {2, 2, 5, 5})}, Attrs{3, 2, 1, true}),
            sample("[2,2,5,5] k3 s2 p1, padding not counted", {real("x", {2, 2, 5, 5})}, Attrs{3, 2, 1, false}),
            sample("[1,3,5,7] k(2,3) s(1,2) p(1,1), padding not counted", {real("x", {1, 3, 5, 7})},
                   Attrs{{2, 3}, {1, 2}, {1, 1}, false}),
            tg::sample("[3,5,4] unbatched, k2 s1", {real("x", {3, 5, 4})},
                       [](const tensor_list& x) { return avg_pool2d(x[0], 2, 1); }),
        };
    }
};
TG_REGISTER_OP(AvgPool2d);

struct AvgPool2dBackward : Op<AvgPool2dBackward> {
    static constexpr const char* name = "avg_pool2d_backward";
    struct Attrs {
        shape_type input_shape;
        Int2 kernel, stride, padding;
        bool count_include_pad;
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& grad = in[0];
        check_input_shape("avg_pool2d_backward", grad, a.input_shape);
        PoolParams pp = pool_params("avg_pool2d_backward", a.input_shape, a.kernel, a.stride, a.padding);
        a.kernel = pp.kernel, a.stride = pp.stride, a.padding = pp.padding;
        Windows win = pool_windows(a.input_shape, pp, a.count_include_pad);
        check_grad("avg_pool2d_backward", grad, a.input_shape, win);
        Tensor dx = Tensor::empty(a.input_shape, grad.dtype());
        TG_DISPATCH_FLOATING(grad.dtype(), "avg_pool2d_backward", [&] {
            window_mean_adjoint(grad.data<scalar_t>(), dx.data<scalar_t>(), win);
        });
        return dx;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {avg_pool2d(g.grad, a.kernel, a.stride, a.padding, a.count_include_pad)};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,3,3] into [2,2,5,5] k3 s2 p1, count_include_pad", {real("g", {2, 2, 3, 3})},
                       Attrs{{2, 2, 5, 5}, 3, 2, 1, true}),
                sample("[2,2,3,3] into [2,2,5,5] k3 s2 p1, padding not counted", {real("g", {2, 2, 3, 3})},
                       Attrs{{2, 2, 5, 5}, 3, 2, 1, false})};
    }
};
TG_REGISTER_OP(AvgPool2dBackward);
}  // namespace

Tensor avg_pool2d(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding, bool count_include_pad)
{
    if (x.defined() && x.dim() == 3)
        return unbatched(x, [&](const Tensor& t) { return avg_pool2d(t, kernel, stride, padding, count_include_pad); });
    return AvgPool2d::call({x}, {kernel, stride, padding, count_include_pad});
}

Tensor avg_pool2d_backward(const Tensor& grad, const shape_type& input_shape, Int2 kernel, Int2 stride,
                           Int2 padding, bool count_include_pad)
{
    return AvgPool2dBackward::call({grad}, {input_shape, kernel, stride, padding, count_include_pad});
}

// --- adaptive average pooling -----------------------------------------------------------------

namespace {
struct AdaptiveAvgPool2d : Op<AdaptiveAvgPool2d> {
    static constexpr const char* name = "adaptive_avg_pool2d";
    struct Attrs {
        Int2 output_size;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& x = in[0];
        check_input("adaptive_avg_pool2d", x);
        TG_CHECK(a.output_size.h >= 1 && a.output_size.w >= 1, "adaptive_avg_pool2d: output size (", a.output_size.h,
                 ", ", a.output_size.w, ") must be positive");
        return mean_forward("adaptive_avg_pool2d", x, adaptive_windows(x.shape(), a.output_size));
    }
    static tensor_list backward(const BackwardArgs& g) { return {adaptive_avg_pool2d_backward(g.grad, g.input_shape(0))}; }
    static std::vector<OpSample> samples()
    {
        return {
            sample("[2,3,5,5] -> 1x1 (global average)", {real("x", {2, 3, 5, 5})}, Attrs{1}),
            sample("[2,2,7,5] -> 3x2 (uneven windows)", {real("x", {2, 2, 7, 5})}, Attrs{{3, 2}}),
            sample("[1,2,3,4] -> 4x6 (windows repeat)", {real("x", {1, 2, 3, 4})}, Attrs{{4, 6}}),
        };
    }
};
TG_REGISTER_OP(AdaptiveAvgPool2d);

struct AdaptiveAvgPool2dBackward : Op<AdaptiveAvgPool2dBackward> {
    static constexpr const char* name = "adaptive_avg_pool2d_backward";
    struct Attrs {
        shape_type input_shape;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& grad = in[0];
        const shape_type& input_shape = a.input_shape;
        check_input_shape("adaptive_avg_pool2d_backward", grad, input_shape);
        TG_CHECK(grad.shape()[0] == input_shape[0] && grad.shape()[1] == input_shape[1] && grad.shape()[2] >= 1 &&
                     grad.shape()[3] >= 1,
                 "adaptive_avg_pool2d_backward: gradient of shape ", grad.shape(), " for an input of shape ",
                 input_shape);
        Windows win = adaptive_windows(input_shape, {grad.shape()[2], grad.shape()[3]});
        Tensor dx = Tensor::empty(input_shape, grad.dtype());
        TG_DISPATCH_FLOATING(grad.dtype(), "adaptive_avg_pool2d_backward", [&] {
            window_mean_adjoint(grad.data<scalar_t>(), dx.data<scalar_t>(), win);
        });
        return dx;
    }
    static tensor_list backward(const BackwardArgs& g)
    {
        const shape_type& gs = g.input_shape(0);
        return {adaptive_avg_pool2d(g.grad, {gs[2], gs[3]})};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,3,2] into [2,2,7,5]", {real("g", {2, 2, 3, 2})}, Attrs{{2, 2, 7, 5}})};
    }
};
TG_REGISTER_OP(AdaptiveAvgPool2dBackward);
}  // namespace

Tensor adaptive_avg_pool2d(const Tensor& x, Int2 output_size)
{
    if (x.defined() && x.dim() == 3)
        return unbatched(x, [&](const Tensor& t) { return adaptive_avg_pool2d(t, output_size); });
    return AdaptiveAvgPool2d::call({x}, {output_size});
}

Tensor adaptive_avg_pool2d_backward(const Tensor& grad, const shape_type& input_shape)
{
    return AdaptiveAvgPool2dBackward::call({grad}, {input_shape});
}

}  // namespace tg
