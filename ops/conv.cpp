// Convolution. conv2d is a primitive for speed: its forward writes the columns
// of a block of output positions (im2col) into a per-thread buffer that is
// reused across calls, and multiplies them by the weights with one
// single-threaded GEMM, the blocks spread over the thread pool. Its backward
// has two paths: the ordinary first-order backward (grad mode off) runs fused
// kernels of the same shape; under create_graph it computes the same gradients
// with im2col, col2im and bmm, so they can be differentiated again.
#include "ops/conv.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include <immintrin.h>

#include "engine/core/op.hpp"
#include "engine/core/parallel.hpp"
#include "engine/kernels/gemm.hpp"
#include "ops/matmul.hpp"
#include "ops/reduction.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

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

Geometry make_geometry(const char* op, const shape_type& input, Int2 kernel, Int2 stride, Int2 padding,
                       Int2 dilation)
{
    TG_CHECK(kernel.h >= 1 && kernel.w >= 1, op, ": kernel size (", kernel.h, ", ", kernel.w,
             ") must be positive");
    TG_CHECK(stride.h >= 1 && stride.w >= 1, op, ": stride (", stride.h, ", ", stride.w, ") must be positive");
    TG_CHECK(padding.h >= 0 && padding.w >= 0, op, ": padding (", padding.h, ", ", padding.w,
             ") must not be negative");
    TG_CHECK(dilation.h >= 1 && dilation.w >= 1, op, ": dilation (", dilation.h, ", ", dilation.w,
             ") must be positive");
    Geometry g{input[0], input[1], input[2], input[3], kernel.h, kernel.w, stride.h, stride.w,
               padding.h, padding.w, dilation.h, dilation.w, 0, 0};
    int64_t eh = g.dh * (g.kh - 1) + 1, ew = g.dw * (g.kw - 1) + 1;
    TG_CHECK(eh <= g.h + 2 * g.ph && ew <= g.w + 2 * g.pw, op, ": kernel (", g.kh, ", ", g.kw,
             ") with dilation (", g.dh, ", ", g.dw, ") spans (", eh, ", ", ew,
             "), larger than the padded input (", g.h + 2 * g.ph, ", ", g.w + 2 * g.pw, ") of input shape ",
             input, " with padding (", g.ph, ", ", g.pw, ")");
    g.ho = (g.h + 2 * g.ph - eh) / g.sh + 1;
    g.wo = (g.w + 2 * g.pw - ew) / g.sw + 1;
    return g;
}

int64_t div_floor(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }  // b > 0
int64_t div_ceil(int64_t a, int64_t b) { return -div_floor(-a, b); }

// Kernel column j reads input column ow·sw + off of output column ow; those
// inside the plane are ow in [lo, hi).
struct Tap {
    int64_t off, lo, hi;
};

struct Taps {
    Tap tap[16];
    std::vector<Tap> more;  // kernels wider than 16
    const Tap* data() const { return more.empty() ? tap : more.data(); }
};

Taps make_taps(const Geometry& g)
{
    Taps t;
    Tap* out = t.tap;
    if (g.kw > 16) {
        t.more.resize(size_t(g.kw));
        out = t.more.data();
    }
    for (int64_t j = 0; j < g.kw; ++j) {
        int64_t off = j * g.dw - g.pw;
        int64_t lo = std::max<int64_t>(0, div_ceil(-off, g.sw));
        int64_t hi = std::min(g.wo, div_floor(g.w - 1 - off, g.sw) + 1);
        out[j] = {off, lo, std::max(lo, hi)};
    }
    return t;
}

// Stride 1 with an output as wide as the input: a row of the column matrix is
// the input plane shifted by a fixed offset, zero where the shift leaves the
// plane. Copies and adds then run over whole blocks instead of output rows.
bool shifted(const Geometry& g) { return g.sh == 1 && g.sw == 1 && g.wo == g.w; }

// For a shifted row with vertical offset a: the positions [b, e) within
// [p0, p1) between the first and the last one that read the plane.
std::pair<int64_t, int64_t> shifted_span(const Geometry& g, const Tap& t, int64_t a, int64_t p0, int64_t p1)
{
    const int64_t oh_lo = std::clamp<int64_t>(-a, 0, g.ho), oh_hi = std::clamp<int64_t>(g.h - a, oh_lo, g.ho);
    if (oh_lo == oh_hi || t.lo == t.hi) return {p1, p1};
    const int64_t b = std::max(p0, oh_lo * g.wo + t.lo), e = std::min(p1, (oh_hi - 1) * g.wo + t.hi);
    return e > b ? std::pair{b, e} : std::pair{p1, p1};
}

// Calls f(q) for the positions q in [b, e) whose output column is outside [lo, hi).
template <class F>
void for_each_edge(const Geometry& g, const Tap& t, int64_t b, int64_t e, F f)
{
    for (int64_t col = 0; col < g.wo; ++col) {
        if (col >= t.lo && col < t.hi) {
            col = t.hi - 1;
            continue;
        }
        int64_t q = b - (b % g.wo) + col;
        if (q < b) q += g.wo;
        for (; q < e; q += g.wo) f(q);
    }
}

// Rows (c, i, j) of the column matrix, for output positions [p0, p1) of the
// `channels` planes at x, into buf (row stride ldb). SW is the horizontal
// stride when known at compile time (0: read it from g).
template <int SW, class T>
void im2col_rows(const Geometry& g, const Taps& taps, const T* x, int64_t channels, int64_t p0, int64_t p1, T* buf,
                 int64_t ldb)
{
    const int64_t plane = g.h * g.w, sw = SW ? SW : g.sw;
    const Tap* tap = taps.data();
    const int64_t oh_first = p0 / g.wo, oh_last = (p1 - 1) / g.wo;
    for (int64_t c = 0; c < channels; ++c) {
        const T* xc = x + c * plane;
        for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t a = i * g.dh - g.ph;
            T* rows = buf + (c * g.kh + i) * g.kw * ldb;
            for (int64_t oh = oh_first; oh <= oh_last; ++oh) {
                const int64_t ow0 = oh == oh_first ? p0 - oh * g.wo : 0;
                const int64_t ow1 = oh == oh_last ? p1 - oh * g.wo : g.wo;
                const int64_t ih = oh * g.sh + a;
                T* base = rows + (oh * g.wo - p0);  // base[ow] is column (oh, ow) of row j = 0
                if (ih < 0 || ih >= g.h) {
                    for (int64_t j = 0; j < g.kw; ++j) std::fill(base + j * ldb + ow0, base + j * ldb + ow1, T(0));
                    continue;
                }
                const T* src = xc + ih * g.w;
                for (int64_t j = 0; j < g.kw; ++j) {
                    T* d = base + j * ldb;
                    const int64_t lo = std::clamp(tap[j].lo, ow0, ow1), hi = std::clamp(tap[j].hi, lo, ow1);
                    for (int64_t ow = ow0; ow < lo; ++ow) d[ow] = 0;
                    const T* s = src + lo * sw + tap[j].off;
                    if (sw == 1)
                        std::memcpy(d + lo, s, size_t(hi - lo) * sizeof(T));
                    else
                        for (int64_t k = 0; k < hi - lo; ++k) d[lo + k] = s[k * sw];
                    for (int64_t ow = hi; ow < ow1; ++ow) d[ow] = 0;
                }
            }
        }
    }
}

template <class T>
void im2col_block(const Geometry& g, const Taps& taps, const T* x, int64_t channels, int64_t p0, int64_t p1, T* buf,
                  int64_t ldb)
{
    if (shifted(g)) {
        const int64_t plane = g.h * g.w;
        for (int64_t c = 0; c < channels; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
                for (int64_t j = 0; j < g.kw; ++j) {
                    const Tap& t = taps.data()[j];
                    const int64_t a = i * g.dh - g.ph;
                    T* row = buf + ((c * g.kh + i) * g.kw + j) * ldb - p0;  // row[q] for q in [p0, p1)
                    auto [b, e] = shifted_span(g, t, a, p0, p1);
                    std::fill(row + p0, row + b, T(0));
                    if (e > b) std::memcpy(row + b, x + c * plane + b + a * g.w + t.off, size_t(e - b) * sizeof(T));
                    std::fill(row + e, row + p1, T(0));
                    for_each_edge(g, t, b, e, [&](int64_t q) { row[q] = 0; });
                }
    } else if (g.sw == 1) {
        im2col_rows<1>(g, taps, x, channels, p0, p1, buf, ldb);
    } else if (g.sw == 2) {
        im2col_rows<2>(g, taps, x, channels, p0, p1, buf, ldb);
    } else {
        im2col_rows<0>(g, taps, x, channels, p0, p1, buf, ldb);
    }
}

// The adjoint of im2col_rows: adds the rows back into the planes at x.
template <int SW, class T>
void col2im_rows(const Geometry& g, const Taps& taps, const T* buf, int64_t channels, int64_t p0, int64_t p1, T* x,
                 int64_t ldb)
{
    const int64_t plane = g.h * g.w, sw = SW ? SW : g.sw;
    const Tap* tap = taps.data();
    const int64_t oh_first = p0 / g.wo, oh_last = (p1 - 1) / g.wo;
    for (int64_t c = 0; c < channels; ++c) {
        T* xc = x + c * plane;
        for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t a = i * g.dh - g.ph;
            const T* rows = buf + (c * g.kh + i) * g.kw * ldb;
            for (int64_t oh = oh_first; oh <= oh_last; ++oh) {
                const int64_t ih = oh * g.sh + a;
                if (ih < 0 || ih >= g.h) continue;
                const int64_t ow0 = oh == oh_first ? p0 - oh * g.wo : 0;
                const int64_t ow1 = oh == oh_last ? p1 - oh * g.wo : g.wo;
                const T* base = rows + (oh * g.wo - p0);
                T* dst = xc + ih * g.w;
                for (int64_t j = 0; j < g.kw; ++j) {
                    const T* s = base + j * ldb;
                    const int64_t lo = std::clamp(tap[j].lo, ow0, ow1), hi = std::clamp(tap[j].hi, lo, ow1);
                    T* d = dst + lo * sw + tap[j].off;
                    for (int64_t k = 0; k < hi - lo; ++k) d[k * sw] += s[lo + k];
                }
            }
        }
    }
}

template <class T>
void col2im_block(const Geometry& g, const Taps& taps, const T* buf, int64_t channels, int64_t p0, int64_t p1, T* x,
                  int64_t ldb)
{
    if (g.sw == 1)
        col2im_rows<1>(g, taps, buf, channels, p0, p1, x, ldb);
    else if (g.sw == 2)
        col2im_rows<2>(g, taps, buf, channels, p0, p1, x, ldb);
    else
        col2im_rows<0>(g, taps, buf, channels, p0, p1, x, ldb);
}

// Same, from a scratch buffer it may change: in the shifted form its edge
// entries are cleared, then whole spans are added.
template <class T>
void col2im_scratch(const Geometry& g, const Taps& taps, T* buf, int64_t channels, int64_t p0, int64_t p1, T* x,
                    int64_t ldb)
{
    if (!shifted(g)) return col2im_block(g, taps, buf, channels, p0, p1, x, ldb);
    const int64_t plane = g.h * g.w;
    for (int64_t c = 0; c < channels; ++c)
        for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
                const Tap& t = taps.data()[j];
                const int64_t a = i * g.dh - g.ph;
                T* row = buf + ((c * g.kh + i) * g.kw + j) * ldb - p0;
                auto [b, e] = shifted_span(g, t, a, p0, p1);
                for_each_edge(g, t, b, e, [&](int64_t q) { row[q] = 0; });
                T* d = x + c * plane + a * g.w + t.off;  // d[q] is the input read by position q
                for (int64_t q = b; q < e; ++q) d[q] += row[q];
            }
}

// A buffer of the calling thread, reused across calls: a fresh one per call
// would cost page faults, and its size is bounded by blocking()'s budget.
template <class T>
T* scratch(int64_t n)
{
    thread_local std::vector<T> buf;
    if (buf.size() < size_t(n)) buf.resize(size_t(n));
    return buf.data();
}

// How the column matrix of one image is cut into blocks: `channels` input
// channels (kH·kW rows each) by `columns` output positions. Whole images
// measured fastest here, also against blocks sized for the L2 cache (BLAS
// packs its operands anyway); the budget only bounds the per-thread buffer
// for large images. Channels are cut first: each input plane is then read
// once, and each block is a slice of the GEMM's inner dimension,
// accumulated into the same output.
struct Blocking {
    int64_t channels, columns;
};

Blocking blocking(int64_t channels, int64_t kk, int64_t columns, size_t elem)
{
    constexpr int64_t budget = int64_t(8) << 20;
    const int64_t per_channel = kk * columns * int64_t(elem);
    if (per_channel * channels <= budget) return {std::max<int64_t>(channels, 1), std::max<int64_t>(columns, 1)};
    if (per_channel <= budget) return {budget / per_channel, columns};
    return {1, std::clamp<int64_t>(budget / (kk * int64_t(elem)) / 16 * 16, 16, columns)};
}

// --- float32 products with a short side, for convolutions with few channels --------------
//
// A 3×3 convolution of one input channel is a GEMM with an inner dimension of
// 9 (forward), 9 rows (wᵀ·gy) or 9 columns (the weight gradient). BLAS spends
// most of such a call packing its operands and storing partial tiles, so these
// shapes get register-blocked AVX2 kernels that read the operands in place.
// Compiled for AVX2 + FMA and used only when the CPU has them.

bool have_avx2()
{
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}

// Eight floats, or those of them selected by m.
template <bool Full>
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p, __m256i m)
{
    if constexpr (Full) return _mm256_loadu_ps(p);
    else return _mm256_maskload_ps(p, m);
}

// C[MR × nc] = A[MR × k] · B[k × nc] (+ bias[r] on row r when given), nc ≤ 16,
// A element (r, p) at a[r·ars + p·acs].
// The accumulators are named variables: GCC keeps arrays of vectors on the stack.
template <int MR, bool Full>
__attribute__((target("avx2,fma"))) void short_k_tile(int64_t k, const float* a, int64_t ars, int64_t acs,
                                                      const float* b, int64_t ldb, float* c, int64_t ldc,
                                                      int64_t nc, const float* bias)
{
    alignas(32) static const int32_t ramp[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(nc)), _mm256_load_si256((const __m256i*)ramp));
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(nc)), _mm256_load_si256((const __m256i*)(ramp + 8)));
    const __m256 zero = _mm256_setzero_ps();
    __m256 x00 = zero, x01 = zero, x10 = zero, x11 = zero, x20 = zero, x21 = zero;
    __m256 x30 = zero, x31 = zero, x40 = zero, x41 = zero, x50 = zero, x51 = zero;
#define TG_ROWS(M)                                                                   \
    M(0, x00, x01) M(1, x10, x11) M(2, x20, x21) M(3, x30, x31) M(4, x40, x41) M(5, x50, x51)
    if (bias) {
#define TG_BIAS(r, v0, v1)                                         \
        if constexpr (MR > r) v0 = v1 = _mm256_broadcast_ss(bias + r);
        TG_ROWS(TG_BIAS)
#undef TG_BIAS
    }
    for (int64_t p = 0; p < k; ++p) {
        const __m256 b0 = load8<Full>(b + p * ldb, m0), b1 = load8<Full>(b + p * ldb + 8, m1);
        const float* ap = a + p * acs;
#define TG_FMA(r, v0, v1)                                          \
        if constexpr (MR > r) {                                    \
            const __m256 av = _mm256_broadcast_ss(ap + r * ars);   \
            v0 = _mm256_fmadd_ps(av, b0, v0);                      \
            v1 = _mm256_fmadd_ps(av, b1, v1);                      \
        }
        TG_ROWS(TG_FMA)
#undef TG_FMA
    }
#define TG_STORE(r, v0, v1)                                        \
    if constexpr (MR > r) {                                        \
        if constexpr (Full) {                                      \
            _mm256_storeu_ps(c + r * ldc, v0);                     \
            _mm256_storeu_ps(c + r * ldc + 8, v1);                 \
        } else {                                                   \
            _mm256_maskstore_ps(c + r * ldc, m0, v0);              \
            _mm256_maskstore_ps(c + r * ldc + 8, m1, v1);          \
        }                                                          \
    }
    TG_ROWS(TG_STORE)
#undef TG_STORE
#undef TG_ROWS
}

template <int MR>
__attribute__((target("avx2,fma"))) void short_k_rows(int64_t n, int64_t k, const float* a, int64_t ars, int64_t acs,
                                                      const float* b, int64_t ldb, float* c, int64_t ldc,
                                                      const float* bias)
{
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) short_k_tile<MR, true>(k, a, ars, acs, b + j, ldb, c + j, ldc, 16, bias);
    if (j < n) short_k_tile<MR, false>(k, a, ars, acs, b + j, ldb, c + j, ldc, n - j, bias);
}

// C[m × n] = A · B (+ bias[i] on row i when given) for a short inner
// dimension k, or few rows m.
__attribute__((target("avx2,fma"))) void short_k_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t ars,
                                                      int64_t acs, const float* b, int64_t ldb, float* c, int64_t ldc,
                                                      const float* bias)
{
    auto rows = [&](auto mr, int64_t i) {
        short_k_rows<decltype(mr)::value>(n, k, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc,
                                          bias ? bias + i : nullptr);
    };
    int64_t i = 0;
    for (; i + 6 <= m; i += 6) rows(std::integral_constant<int, 6>(), i);
    switch (m - i) {
    case 5: rows(std::integral_constant<int, 5>(), i); break;
    case 4: rows(std::integral_constant<int, 4>(), i); break;
    case 3: rows(std::integral_constant<int, 3>(), i); break;
    case 2: rows(std::integral_constant<int, 2>(), i); break;
    case 1: rows(std::integral_constant<int, 1>(), i); break;
    default: break;
    }
}

// C[m × n] += A[m × len] · B[n × len]ᵀ for few columns n: dot products of rows,
// four rows of A against three rows of B at a time (named accumulators, as above).
__attribute__((target("avx2,fma"))) inline float hsum8(__m256 v)
{
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

__attribute__((target("avx2,fma"))) void dot_tile_4x3(int64_t len, const float* a, int64_t lda, const float* b,
                                                      int64_t ldb, float* c, int64_t ldc)
{
    __m256 s00 = _mm256_setzero_ps(), s01 = s00, s02 = s00, s10 = s00, s11 = s00, s12 = s00;
    __m256 s20 = s00, s21 = s00, s22 = s00, s30 = s00, s31 = s00, s32 = s00;
    int64_t p = 0;
    for (; p + 8 <= len; p += 8) {
        const __m256 b0 = _mm256_loadu_ps(b + p), b1 = _mm256_loadu_ps(b + ldb + p), b2 = _mm256_loadu_ps(b + 2 * ldb + p);
        __m256 av = _mm256_loadu_ps(a + p);
        s00 = _mm256_fmadd_ps(av, b0, s00), s01 = _mm256_fmadd_ps(av, b1, s01), s02 = _mm256_fmadd_ps(av, b2, s02);
        av = _mm256_loadu_ps(a + lda + p);
        s10 = _mm256_fmadd_ps(av, b0, s10), s11 = _mm256_fmadd_ps(av, b1, s11), s12 = _mm256_fmadd_ps(av, b2, s12);
        av = _mm256_loadu_ps(a + 2 * lda + p);
        s20 = _mm256_fmadd_ps(av, b0, s20), s21 = _mm256_fmadd_ps(av, b1, s21), s22 = _mm256_fmadd_ps(av, b2, s22);
        av = _mm256_loadu_ps(a + 3 * lda + p);
        s30 = _mm256_fmadd_ps(av, b0, s30), s31 = _mm256_fmadd_ps(av, b1, s31), s32 = _mm256_fmadd_ps(av, b2, s32);
    }
    const __m256 sums[4][3] = {{s00, s01, s02}, {s10, s11, s12}, {s20, s21, s22}, {s30, s31, s32}};
    for (int r = 0; r < 4; ++r)
        for (int q = 0; q < 3; ++q) {
            float v = hsum8(sums[r][q]);
            for (int64_t t = p; t < len; ++t) v += a[r * lda + t] * b[q * ldb + t];
            c[r * ldc + q] += v;
        }
}

__attribute__((target("avx2,fma"))) void dot_1x1(int64_t len, const float* a, const float* b, float* c)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t p = 0;
    for (; p + 16 <= len; p += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), _mm256_loadu_ps(b + p), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 8), _mm256_loadu_ps(b + p + 8), s1);
    }
    float v = hsum8(_mm256_add_ps(s0, s1));
    for (; p < len; ++p) v += a[p] * b[p];
    *c += v;
}

__attribute__((target("avx2,fma"))) void dot_gemm(int64_t m, int64_t n, int64_t len, const float* a, int64_t lda,
                                                  const float* b, int64_t ldb, float* c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i += 4) {
        const int64_t mr = std::min<int64_t>(4, m - i);
        for (int64_t j = 0; j < n; j += 3) {
            const int64_t nr = std::min<int64_t>(3, n - j);
            const float* ai = a + i * lda;
            const float* bj = b + j * ldb;
            float* cij = c + i * ldc + j;
            // 4×3 tiles; the edges one element at a time.
            if (mr == 4 && nr == 3) dot_tile_4x3(len, ai, lda, bj, ldb, cij, ldc);
            else
                for (int64_t r = 0; r < mr; ++r)
                    for (int64_t q = 0; q < nr; ++q) dot_1x1(len, ai + r * lda, bj + q * ldb, cij + r * ldc + q);
        }
    }
}

// Inner dimensions and row counts up to this use the kernels above.
constexpr int64_t short_side = 16;

// The three products of a convolution, each on the short-side kernels when
// they apply (float32, AVX2, nothing to accumulate into) and through BLAS otherwise.

// C[m × n] = W[m × k] · B[k × n] + (C if accumulate, else bias[i] on row i when given)
template <class T>
void product_wb(int64_t m, int64_t n, int64_t k, const T* w, int64_t ldw, const T* b, int64_t ldb, T* c, int64_t ldc,
                const T* bias, bool accumulate)
{
    if constexpr (std::is_same_v<T, float>)
        if (!accumulate && k <= short_side && have_avx2()) return short_k_gemm(m, n, k, w, ldw, 1, b, ldb, c, ldc, bias);
    // BLAS clears C in a pass of its own when beta = 0: filling it with the
    // bias instead costs the same pass.
    if (bias && !accumulate)
        for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, bias[i]);
    detail::gemm(false, false, m, n, k, T(1), w, ldw, b, ldb, T(accumulate || bias ? 1 : 0), c, ldc);
}

// C[k × n] = W[m × k]ᵀ · G[m × n]
template <class T>
void product_wtg(int64_t k, int64_t n, int64_t m, const T* w, int64_t ldw, const T* g, int64_t ldg, T* c, int64_t ldc)
{
    if constexpr (std::is_same_v<T, float>)
        if (k <= short_side && have_avx2()) return short_k_gemm(k, n, m, w, 1, ldw, g, ldg, c, ldc, nullptr);
    detail::gemm(true, false, k, n, m, T(1), w, ldw, g, ldg, T(0), c, ldc);
}

// C[m × k] += G[m × n] · B[k × n]ᵀ
template <class T>
void product_gbt(int64_t m, int64_t k, int64_t n, const T* g, int64_t ldg, const T* b, int64_t ldb, T* c, int64_t ldc)
{
    if constexpr (std::is_same_v<T, float>)
        if (k <= short_side && have_avx2()) return dot_gemm(m, k, n, g, ldg, b, ldb, c, ldc);
    detail::gemm(false, true, m, k, n, T(1), g, ldg, b, ldb, T(1), c, ldc);
}

// One conv2d call's sizes.
struct ConvShape {
    Geometry g;
    int64_t groups, out_channels;
    int64_t cg() const { return g.c / groups; }         // input channels per group
    int64_t og() const { return out_channels / groups; }  // output channels per group
    int64_t k() const { return cg() * g.kk(); }          // GEMM inner size
};

// y[n, grp][:, p0:p1] = w[grp] · cols + b, the inner dimension in channel blocks.
template <class T>
void conv_forward(const ConvShape& s, const T* x, const T* w, const T* b, T* y)
{
    const Geometry& g = s.g;
    const int64_t cg = s.cg(), og = s.og(), k = s.k(), kk = g.kk(), cols = g.columns(), groups = s.groups;
    const int64_t plane = g.h * g.w;
    const Blocking bl = g.pointwise() ? Blocking{cg, cols} : blocking(cg, kk, cols, sizeof(T));
    const Taps taps = make_taps(g);
    const int64_t col_blocks = (cols + bl.columns - 1) / bl.columns;
    parallel_for(g.n * groups * col_blocks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t item = t / col_blocks, n = item / groups, grp = item % groups;
            const int64_t p0 = (t % col_blocks) * bl.columns, p1 = std::min(cols, p0 + bl.columns), nc = p1 - p0;
            const T* xin = x + (n * g.c + grp * cg) * plane;
            const T* wg = w + grp * og * k;
            T* yo = y + (n * s.out_channels + grp * og) * cols + p0;
            for (int64_t c0 = 0; c0 < std::max<int64_t>(cg, 1); c0 += bl.channels) {  // once when cg = 0
                const int64_t nch = std::min(bl.channels, cg - c0);
                const T* bmat = xin + c0 * plane + p0;
                int64_t ldb = cols;
                if (!g.pointwise()) {
                    T* buf = scratch<T>(nch * kk * nc);
                    im2col_block(g, taps, xin + c0 * plane, nch, p0, p1, buf, nc);
                    bmat = buf;
                    ldb = nc;
                }
                product_wb(og, nc, nch * kk, wg + c0 * kk, k, bmat, ldb, yo, cols, b ? b + grp * og : nullptr, c0 > 0);
            }
        }
    });
}

// Σ row[0..n): eight partial sums, which the compiler can keep in vector registers.
template <class T>
T row_sum(const T* row, int64_t n)
{
    T part[8] = {};
    int64_t p = 0;
    for (; p + 8 <= n; p += 8)
        for (int l = 0; l < 8; ++l) part[l] += row[p + l];
    T sum = 0;
    for (; p < n; ++p) sum += row[p];
    for (int l = 0; l < 8; ++l) sum += part[l];
    return sum;
}

// The input gradient of a stride-1 convolution is itself a convolution: of
// gy with the weights flipped and transposed, padded by dil·(k − 1) − pad.
// Computed that way it is one GEMM with a long inner dimension into dx, where
// col2im(wᵀ·gy) is a GEMM with a short one into a column matrix that col2im
// then reads back. Used when the column matrix of gy is not much larger than
// that of x (more output than input channels makes it larger).
bool transposed_input_gradient(const ConvShape& s)
{
    const Geometry& g = s.g;
    return g.sh == 1 && g.sw == 1 && !g.pointwise() && g.ph <= g.dh * (g.kh - 1) && g.pw <= g.dw * (g.kw - 1) &&
           s.og() <= s.cg() && s.cg() >= 8;
}

// First-order backward, per image and group: the weight gradient gy·colsᵀ
// (columns rebuilt by im2col), the bias gradient (row sums of gy) and the
// input gradient, by the transposed convolution above or as col2im(wᵀ·gy).
// Images are split into parts, each accumulating dw and db in its own buffer;
// the parts are summed in a fixed order, so the result does not depend on
// which thread ran which part.
template <class T>
void conv_backward(const ConvShape& s, const T* x, const T* w, const T* gy, T* dx, T* dw, T* db)
{
    const Geometry& g = s.g;
    const int64_t cg = s.cg(), og = s.og(), k = s.k(), cols = g.columns(), groups = s.groups, kk = g.kk();
    const int64_t o_all = s.out_channels, plane = g.h * g.w;
    const Blocking bl = g.pointwise() ? Blocking{cg, cols} : blocking(cg, kk, cols, sizeof(T));
    const Taps taps = make_taps(g);

    // The transposed convolution: gy's planes are its input, dx's its output.
    const bool transposed = dx && transposed_input_gradient(s);
    const Geometry gt{g.n, o_all, g.ho, g.wo, g.kh, g.kw, 1, 1, g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw,
                      g.dh, g.dw, g.h, g.w};
    const Taps taps_t = make_taps(gt);
    const Blocking bt = blocking(og, kk, plane, sizeof(T));
    const int64_t kt = og * kk;
    Tensor wt_buf;  // wt[grp][c][o][i][j] = w[grp·og + o][c][kh−1−i][kw−1−j]
    if (transposed) {
        wt_buf = Tensor::empty({o_all * cg * kk}, dtype_of<T>());
        T* wt = wt_buf.data<T>();
        for (int64_t grp = 0; grp < groups; ++grp)
            for (int64_t c = 0; c < cg; ++c)
                for (int64_t o = 0; o < og; ++o)
                    for (int64_t t = 0; t < kk; ++t)
                        wt[((grp * cg + c) * og + o) * kk + t] = w[((grp * og + o) * cg + c) * kk + (kk - 1 - t)];
    }

    const int64_t items = g.n * groups;
    const int64_t parts = in_parallel_region() || num_threads() == 1 ? 1 : std::clamp<int64_t>(items, 1, 4 * int64_t(num_threads()));
    const int64_t dw_size = dw ? o_all * k : 0, db_size = db ? o_all : 0, per_part = dw_size + db_size;
    Tensor acc;  // parts 1.. (part 0 accumulates in dw and db)
    if (parts > 1 && per_part > 0) acc = Tensor::empty({(parts - 1) * per_part}, dtype_of<T>());
    if (dw) std::fill(dw, dw + dw_size, T(0));
    if (db) std::fill(db, db + db_size, T(0));

    parallel_for(parts, 1, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
            T* dwq = dw;
            T* dbq = db;
            if (q > 0 && per_part > 0) {
                T* a = acc.data<T>() + (q - 1) * per_part;
                std::fill(a, a + per_part, T(0));
                dwq = dw ? a : nullptr;
                dbq = db ? a + dw_size : nullptr;
            }
            for (int64_t item = items * q / parts; item < items * (q + 1) / parts; ++item) {
                const int64_t n = item / groups, grp = item % groups;
                const T* xin = x + (n * g.c + grp * cg) * plane;
                const T* gyi = gy + (n * o_all + grp * og) * cols;
                const T* wg = w + grp * og * k;
                if (dbq)
                    for (int64_t o = 0; o < og; ++o) dbq[grp * og + o] += row_sum(gyi + o * cols, cols);
                if (dwq)
                    for (int64_t p0 = 0; p0 < cols; p0 += bl.columns) {
                        const int64_t p1 = std::min(cols, p0 + bl.columns), nc = p1 - p0;
                        for (int64_t c0 = 0; c0 < cg; c0 += bl.channels) {
                            const int64_t nch = std::min(bl.channels, cg - c0);
                            const T* bmat = xin + c0 * plane + p0;
                            int64_t ldb = cols;
                            if (!g.pointwise()) {
                                T* buf = scratch<T>(nch * kk * nc);
                                im2col_block(g, taps, xin + c0 * plane, nch, p0, p1, buf, nc);
                                bmat = buf;
                                ldb = nc;
                            }
                            product_gbt(og, nch * kk, nc, gyi + p0, cols, bmat, ldb, dwq + grp * og * k + c0 * kk, k);
                        }
                    }
                if (!dx) continue;
                T* dxo = dx + (n * g.c + grp * cg) * plane;
                if (g.pointwise()) {
                    product_wtg(k, cols, og, wg, k, gyi, cols, dxo, cols);
                } else if (transposed) {
                    // dx[:, q0:q1] = Σ over blocks of gy's channels of wt · im2col(gy)
                    const T* wtg = wt_buf.data<T>() + grp * cg * kt;
                    for (int64_t p0 = 0; p0 < plane; p0 += bt.columns) {
                        const int64_t p1 = std::min(plane, p0 + bt.columns), nc = p1 - p0;
                        for (int64_t o0 = 0; o0 < og; o0 += bt.channels) {
                            const int64_t nch = std::min(bt.channels, og - o0);
                            T* buf = scratch<T>(nch * kk * nc);
                            im2col_block(gt, taps_t, gyi + o0 * cols, nch, p0, p1, buf, nc);
                            product_wb(cg, nc, nch * kk, wtg + o0 * kk, kt, buf, nc, dxo + p0, plane,
                                       static_cast<const T*>(nullptr), o0 > 0);
                        }
                    }
                } else {
                    std::fill(dxo, dxo + cg * plane, T(0));
                    for (int64_t p0 = 0; p0 < cols; p0 += bl.columns) {
                        const int64_t p1 = std::min(cols, p0 + bl.columns), nc = p1 - p0;
                        for (int64_t c0 = 0; c0 < cg; c0 += bl.channels) {
                            const int64_t nch = std::min(bl.channels, cg - c0);
                            T* buf = scratch<T>(nch * kk * nc);
                            product_wtg(nch * kk, nc, og, wg + c0 * kk, k, gyi + p0, cols, buf, nc);
                            col2im_scratch(g, taps, buf, nch, p0, p1, dxo + c0 * plane, nc);
                        }
                    }
                }
            }
        }
    });
    for (int64_t q = 1; q < parts && per_part > 0; ++q) {
        const T* a = acc.data<T>() + (q - 1) * per_part;
        for (int64_t i = 0; i < dw_size; ++i) dw[i] += a[i];
        for (int64_t i = 0; i < db_size; ++i) db[i] += a[dw_size + i];
    }
}

// The same gradients from differentiable ops, for create_graph.
tensor_list conv_backward_composite(const BackwardArgs& a, const ConvShape& s, const shape_type& w_shape)
{
    const Geometry& g = s.g;
    const Tensor &x = a.input(0), &w = a.input(1);
    const int64_t n = g.n, groups = s.groups, og = s.og(), k = s.k(), cols = g.columns();
    const Int2 kernel{g.kh, g.kw}, stride{g.sh, g.sw}, padding{g.ph, g.pw}, dilation{g.dh, g.dw};
    Tensor gy = reshape(a.grad, {n * groups, og, cols});
    Tensor dx, dw, db;
    if (a.needs_grad(0)) {
        // dcols[n, grp] = w[grp]ᵀ · gy[n, grp]
        Tensor wg = groups == 1 ? reshape(w, {1, og, k})
                                : reshape(broadcast_to(reshape(w, {1, groups, og, k}), {n, groups, og, k}),
                                          {n * groups, og, k});
        Tensor dcols = bmm(wg, gy, true, false);
        dx = col2im(reshape(dcols, {n, groups * k, cols}), {g.h, g.w}, kernel, stride, padding, dilation);
    }
    if (a.needs_grad(1)) {
        // dw[grp] = Σ_n gy[n, grp] · cols[n, grp]ᵀ
        Tensor c = reshape(im2col(x, kernel, stride, padding, dilation), {n * groups, k, cols});
        Tensor per_image = reshape(bmm(gy, c, false, true), {n, s.out_channels, k});
        dw = reshape(sum(per_image, {0}), w_shape);
    }
    if (a.needs_grad(2)) db = sum(a.grad, {0, 2, 3});
    tensor_list grads{dx, dw, db};
    grads.resize(a.inputs());  // no bias: two inputs
    return grads;
}

// Replay of conv2d for a few changed elements (engine/replay.hpp). Conv is
// bilinear: y' − y = conv(x' − x, w') + conv(x, w' − w) + (b' − b), so a
// changed input pixel updates the outputs whose windows cover it, a changed
// weight one output channel, a changed bias one output plane.
bool conv2d_delta(DeltaArgs& d, const ConvShape& s)
{
    const Geometry& g = s.g;
    const ReplayInput none;  // no bias: a conv called with two inputs
    const ReplayInput &X = d.inputs[0], &W = d.inputs[1], &B = d.inputs.size() > 2 ? d.inputs[2] : none;
    const int64_t og = s.og(), cg = s.cg(), kk = g.kk(), plane = g.ho * g.wo;
    int64_t work = (X.unchanged() ? 0 : int64_t(X.changed->size()) * og * kk) +
                   (W.unchanged() ? 0 : int64_t(W.changed->size()) * g.n * plane) +
                   (B.unchanged() ? 0 : int64_t(B.changed->size()) * g.n * plane);
    if (work > g.n * s.out_channels * plane * s.k() / 4) return false;  // the GEMMs are cheaper
    const double *x0 = X.base_data(), *x1 = X.data(), *w0 = W.base_data(), *w1 = W.data();
    auto add = [&](int64_t n, int64_t co, int64_t oy, int64_t ox, double v) {
        int64_t o = ((n * s.out_channels + co) * g.ho + oy) * g.wo + ox;
        d.out[o] += v;
        d.touch(o);
    };
    if (!X.unchanged())
        for (int64_t f : *X.changed) {
            double dx = x1[f] - x0[f];
            int64_t ix = f % g.w, iy = f / g.w % g.h, ci = f / (g.w * g.h) % g.c, n = f / (g.w * g.h * g.c);
            int64_t group = ci / cg, cl = ci % cg;
            for (int64_t ky = 0; ky < g.kh; ++ky) {
                int64_t ty = iy + g.ph - ky * g.dh;  // = oy·sh
                if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.ho) continue;
                for (int64_t kx = 0; kx < g.kw; ++kx) {
                    int64_t tx = ix + g.pw - kx * g.dw;
                    if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.wo) continue;
                    for (int64_t co = group * og; co < (group + 1) * og; ++co)
                        add(n, co, ty / g.sh, tx / g.sw, dx * w1[((co * cg + cl) * g.kh + ky) * g.kw + kx]);
                }
            }
        }
    if (!W.unchanged())
        for (int64_t f : *W.changed) {
            double dw = w1[f] - w0[f];
            int64_t kx = f % g.kw, ky = f / g.kw % g.kh, cl = f / kk % cg, co = f / (kk * cg);
            int64_t ci = co / og * cg + cl;
            for (int64_t n = 0; n < g.n; ++n)
                for (int64_t oy = 0; oy < g.ho; ++oy) {
                    int64_t iy = oy * g.sh - g.ph + ky * g.dh;
                    if (iy < 0 || iy >= g.h) continue;
                    const double* row = x0 + ((n * g.c + ci) * g.h + iy) * g.w;
                    for (int64_t ox = 0; ox < g.wo; ++ox) {
                        int64_t ix = ox * g.sw - g.pw + kx * g.dw;
                        if (ix >= 0 && ix < g.w) add(n, co, oy, ox, row[ix] * dw);
                    }
                }
        }
    if (!B.unchanged())
        for (int64_t co : *B.changed) {
            double db = B.data()[co] - B.base_data()[co];
            for (int64_t n = 0; n < g.n; ++n)
                for (int64_t p = 0; p < plane; ++p) add(n, co, p / g.wo, p % g.wo, db);
        }
    return true;
}

}  // namespace

// --- im2col and col2im --------------------------------------------------------------------

namespace {
struct Im2col : Op<Im2col> {
    static constexpr const char* name = "im2col";
    static constexpr ReplayForm replay = ReplayForm::index_map;  // every column entry is an input pixel or 0
    struct Attrs {
        Int2 kernel, stride = 1, padding = 0, dilation = 1;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), "im2col: undefined input");
        TG_CHECK(x.dim() == 4, "im2col: expected a 4-d input [N, C, H, W], got shape ", x.shape());
        Geometry g = make_geometry("im2col", x.shape(), a.kernel, a.stride, a.padding, a.dilation);
        const int64_t kk = g.kk(), cols = g.columns();
        const Taps taps = make_taps(g);
        Tensor out = Tensor::empty({g.n, g.c * kk, cols}, x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), "im2col", [&] {
            const scalar_t* src = x.data<scalar_t>();
            scalar_t* dst = out.data<scalar_t>();
            parallel_for(g.n * g.c, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, kk * cols)), [&](int64_t b, int64_t e) {
                for (int64_t p = b; p < e; ++p) im2col_block(g, taps, src + p * g.h * g.w, 1, 0, cols, dst + p * kk * cols, cols);
            });
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        const shape_type& xs = g.input_shape(0);
        return {col2im(g.grad, {xs[2], xs[3]}, a.kernel, a.stride, a.padding, a.dilation)};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,4,5] k3 p1", {real("x", {2, 2, 4, 5})}, Attrs{3, 1, 1, 1}),
                sample("[1,2,7,6] k(2,3) s(2,1) p(1,0) d(2,1)", {real("x", {1, 2, 7, 6})},
                       Attrs{{2, 3}, {2, 1}, {1, 0}, {2, 1}}),
                sample("[2,1,5,5] k2 s2 (edge windows dropped)", {real("x", {2, 1, 5, 5})}, Attrs{2, 2, 0, 1})};
    }
};
TG_REGISTER_OP(Im2col);
}  // namespace

Tensor im2col(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding, Int2 dilation)
{
    return Im2col::call({x}, {kernel, stride, padding, dilation});
}

namespace {
struct Col2im : Op<Col2im> {
    static constexpr const char* name = "col2im";
    struct Attrs {
        Int2 input_hw, kernel, stride = 1, padding = 0, dilation = 1;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& cols = in[0];
        TG_CHECK(cols.defined(), "col2im: undefined input");
        TG_CHECK(cols.dim() == 3, "col2im: expected a 3-d input [N, C·kH·kW, L], got shape ", cols.shape());
        TG_CHECK(a.input_hw.h >= 1 && a.input_hw.w >= 1, "col2im: input size (", a.input_hw.h, ", ", a.input_hw.w,
                 ") must be positive");
        const int64_t kk = a.kernel.h * a.kernel.w;
        TG_CHECK(kk > 0 && cols.shape()[1] % kk == 0, "col2im: ", cols.shape()[1], " rows in ", cols.shape(),
                 " are not a multiple of the kernel's ", a.kernel.h, "x", a.kernel.w, " = ", kk);
        const int64_t c = cols.shape()[1] / kk;
        Geometry g = make_geometry("col2im", {cols.shape()[0], c, a.input_hw.h, a.input_hw.w}, a.kernel, a.stride,
                                   a.padding, a.dilation);
        TG_CHECK(cols.shape()[2] == g.columns(), "col2im: ", cols.shape()[2], " columns in ", cols.shape(),
                 " but the windows over (", g.h, ", ", g.w, ") make ", g.ho, "x", g.wo, " = ", g.columns());
        const Taps taps = make_taps(g);
        Tensor out = zeros({g.n, c, g.h, g.w}, cols.dtype());
        TG_DISPATCH_FLOATING(cols.dtype(), "col2im", [&] {
            const scalar_t* src = cols.data<scalar_t>();
            scalar_t* dst = out.data<scalar_t>();
            const int64_t l = g.columns();
            parallel_for(g.n * c, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, kk * l)), [&](int64_t b, int64_t e) {
                for (int64_t p = b; p < e; ++p) col2im_block(g, taps, src + p * kk * l, 1, 0, l, dst + p * g.h * g.w, l);
            });
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {im2col(g.grad, a.kernel, a.stride, a.padding, a.dilation)};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,18,20] into 4x5, k3 p1", {real("cols", {2, 18, 20})}, Attrs{{4, 5}, 3, 1, 1, 1}),
                sample("[1,12,16] into 7x6, k(2,3) s(2,1) p(1,0) d(2,1)", {real("cols", {1, 12, 16})},
                       Attrs{{7, 6}, {2, 3}, {2, 1}, {1, 0}, {2, 1}})};
    }
};
TG_REGISTER_OP(Col2im);
}  // namespace

Tensor col2im(const Tensor& cols, Int2 input_hw, Int2 kernel, Int2 stride, Int2 padding, Int2 dilation)
{
    return Col2im::call({cols}, {input_hw, kernel, stride, padding, dilation});
}

// --- conv2d ---------------------------------------------------------------------------------

namespace {
struct Conv2d : Op<Conv2d> {
    static constexpr const char* name = "conv2d";
    static constexpr Saves saves = save_input(0) | save_input(1);
    struct Attrs {
        Int2 stride = 1, padding = 0, dilation = 1;
        int64_t groups = 1;
        ConvShape shape{};  // set by forward
    };
    // Inputs: x [N, C, H, W], weight, and optionally bias.
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        const Tensor& weight = in[1];
        const Tensor bias = in.size() > 2 ? in[2] : Tensor();
        TG_CHECK(x.defined(), "conv2d: undefined input");
        TG_CHECK(weight.defined(), "conv2d: undefined weight");
        TG_CHECK(x.dim() == 4, "conv2d: expected input [N, C, H, W] (or [C, H, W]), got shape ", x.shape());
        TG_CHECK(weight.dim() == 4, "conv2d: expected weight [out_channels, in_channels / groups, kH, kW], got shape ",
                 weight.shape(), " for input ", x.shape());
        TG_CHECK(is_floating(x.dtype()), "conv2d: input must be float32 or float64, got ", dtype_name(x.dtype()));
        TG_CHECK(weight.dtype() == x.dtype(), "conv2d: weight is ", dtype_name(weight.dtype()), " ", weight.shape(),
                 " but input is ", dtype_name(x.dtype()), " ", x.shape(), " (convert one with .to(dtype))");
        const int64_t cin = x.shape()[1], cout = weight.shape()[0], groups = a.groups;
        TG_CHECK(groups >= 1, "conv2d: groups must be positive, got ", groups);
        TG_CHECK(cin % groups == 0, "conv2d: input channels ", cin, " of input ", x.shape(),
                 " are not divisible by groups = ", groups);
        TG_CHECK(cout % groups == 0, "conv2d: output channels ", cout, " of weight ", weight.shape(),
                 " are not divisible by groups = ", groups);
        TG_CHECK(weight.shape()[1] == cin / groups, "conv2d: weight ", weight.shape(), " expects ",
                 weight.shape()[1] * groups, " input channels (", weight.shape()[1], " per group, groups = ", groups,
                 ") but input ", x.shape(), " has ", cin);
        if (bias.defined()) {
            TG_CHECK(bias.dtype() == x.dtype(), "conv2d: bias is ", dtype_name(bias.dtype()), " ", bias.shape(),
                     " but input is ", dtype_name(x.dtype()), " ", x.shape());
            TG_CHECK(bias.dim() == 1 && bias.shape()[0] == cout, "conv2d: bias of shape ", bias.shape(),
                     " for weight ", weight.shape(), "; expected [", cout, "]");
        }
        a.shape = ConvShape{make_geometry("conv2d", x.shape(), {weight.shape()[2], weight.shape()[3]}, a.stride,
                                          a.padding, a.dilation),
                            groups, cout};
        const ConvShape& s = a.shape;
        Tensor y = Tensor::empty({s.g.n, cout, s.g.ho, s.g.wo}, x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
            conv_forward<scalar_t>(s, x.data<scalar_t>(), weight.data<scalar_t>(),
                                   bias.defined() ? bias.data<scalar_t>() : nullptr, y.data<scalar_t>());
        });
        return y;
    }
    // The same gradients from differentiable ops (im2col, col2im, bmm).
    static tensor_list backward(const BackwardArgs& a, const Attrs& at)
    {
        return conv_backward_composite(a, at.shape, a.input(1).shape());
    }
    static tensor_list fused_backward(const BackwardArgs& a, const Attrs& at)
    {
        const ConvShape& s = at.shape;
        const Tensor &x = a.input(0), &w = a.input(1);
        Tensor dx = a.needs_grad(0) ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
        Tensor dw = a.needs_grad(1) ? Tensor::empty(w.shape(), x.dtype()) : Tensor();
        Tensor db = a.needs_grad(2) ? Tensor::empty({s.out_channels}, x.dtype()) : Tensor();
        TG_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
            auto ptr = [](Tensor& t) { return t.defined() ? t.data<scalar_t>() : nullptr; };
            conv_backward<scalar_t>(s, x.data<scalar_t>(), w.data<scalar_t>(), a.grad.data<scalar_t>(), ptr(dx),
                                    ptr(dw), ptr(db));
        });
        tensor_list grads{dx, dw, db};
        grads.resize(a.inputs());  // no bias: two inputs
        return grads;
    }
    static bool delta(DeltaArgs& d, const Attrs& a) { return conv2d_delta(d, a.shape); }
    static std::vector<OpSample> samples();
};
TG_REGISTER_OP(Conv2d);
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Int2 stride, Int2 padding, Int2 dilation,
              int64_t groups)
{
    TG_CHECK(x.defined(), "conv2d: undefined input");
    if (x.dim() == 3)  // unbatched [C, H, W], as in PyTorch
        return squeeze(conv2d(unsqueeze(x, 0), weight, bias, stride, padding, dilation, groups), 0);
    Conv2d::Attrs a{stride, padding, dilation, groups};
    return bias.defined() ? Conv2d::call({x, weight, bias}, a) : Conv2d::call({x, weight}, a);
}

std::vector<OpSample> Conv2d::samples()
{
    auto opts = [](Int2 stride, Int2 padding, Int2 dilation, int64_t groups) {
        return Attrs{stride, padding, dilation, groups};
    };
    return {
        sample("[2,2,5,5] * [3,2,3,3] + b", {real("x", {2, 2, 5, 5}), real("w", {3, 2, 3, 3}), real("b", {3})},
               opts(1, 0, 1, 1)),
        sample("stride 2, padding 1, odd 7x5", {real("x", {2, 2, 7, 5}), real("w", {3, 2, 3, 3}), real("b", {3})},
               opts(2, 1, 1, 1)),
        sample("dilation 2, padding 2", {real("x", {1, 2, 7, 6}), real("w", {2, 2, 3, 3}), real("b", {2})},
               opts(1, 2, 2, 1)),
        sample("groups 2", {real("x", {2, 4, 5, 4}), real("w", {4, 2, 3, 3}), real("b", {4})}, opts(1, 1, 1, 2)),
        sample("depthwise (groups = Cin = 3), 2 outputs per channel",
               {real("x", {2, 3, 5, 5}), real("w", {6, 1, 3, 3}), real("b", {6})}, opts(1, 1, 1, 3)),
        sample("kernel 2x3, stride (2,1), padding (1,0)",
               {real("x", {2, 2, 6, 7}), real("w", {3, 2, 2, 3}), real("b", {3})}, opts({2, 1}, {1, 0}, 1, 1)),
        sample("kernel 3x1, stride (1,2), padding (0,1), dilation (1,2), no bias",
               {real("x", {2, 2, 5, 7}), real("w", {2, 2, 3, 1})}, opts({1, 2}, {0, 1}, {1, 2}, 1)),
        sample("1x1 conv", {real("x", {2, 3, 4, 3}), real("w", {4, 3, 1, 1}), real("b", {4})}, opts(1, 0, 1, 1)),
        sample("1x1 conv, stride 2, padding 1, no bias", {real("x", {2, 3, 5, 4}), real("w", {2, 3, 1, 1})},
               opts(2, 1, 1, 1)),
        sample("1x1 output (kernel = input)", {real("x", {3, 2, 3, 3}), real("w", {4, 2, 3, 3}), real("b", {4})},
               opts(1, 0, 1, 1)),
        sample("batch 1, Cin 1, padding 1", {real("x", {1, 1, 6, 5}), real("w", {4, 1, 3, 3}), real("b", {4})},
               opts(1, 1, 1, 1)),
        sample("no bias, stride 3 uneven", {real("x", {2, 2, 8, 7}), real("w", {3, 2, 2, 2})}, opts(3, 0, 1, 1)),
        // The public function's unbatched form.
        tg::sample("unbatched [2,5,5] * [3,2,3,3] + b", {real("x", {2, 5, 5}), real("w", {3, 2, 3, 3}), real("b", {3})},
                   [](const tensor_list& x) { return conv2d(x[0], x[1], x[2], 1, 1); }),
    };
}

}  // namespace tg
