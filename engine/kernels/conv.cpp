// The convolution loops: im2col and col2im over blocks of output positions,
// how the column matrix is cut into blocks, and the forward and first-order
// backward drivers (what they compute: conv.hpp).
#include "engine/kernels/conv.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/core/parallel.hpp"
#include "engine/kernels/gemm.hpp"
#include "engine/kernels/reduce.hpp"

namespace tg::kernels {

Geometry make_geometry(const char* op, const shape_type& input, Hw kernel, Hw stride, Hw padding, Hw dilation)
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
    // Options come from user code: every size is computed with an overflow
    // check, so a huge padding or dilation is an error, not a wrapped size.
    int64_t eh = 0, ew = 0, padded_h = 0, padded_w = 0;
    const bool overflow = __builtin_mul_overflow(g.dh, g.kh - 1, &eh) || __builtin_add_overflow(eh, 1, &eh) ||
                          __builtin_mul_overflow(g.dw, g.kw - 1, &ew) || __builtin_add_overflow(ew, 1, &ew) ||
                          __builtin_mul_overflow(g.ph, 2, &padded_h) || __builtin_add_overflow(padded_h, g.h, &padded_h) ||
                          __builtin_mul_overflow(g.pw, 2, &padded_w) || __builtin_add_overflow(padded_w, g.w, &padded_w);
    TG_CHECK(!overflow, op, ": kernel (", g.kh, ", ", g.kw, "), dilation (", g.dh, ", ", g.dw, ") and padding (", g.ph,
             ", ", g.pw, ") give sizes past 2^63 for input shape ", input);
    TG_CHECK(eh <= padded_h && ew <= padded_w, op, ": kernel (", g.kh, ", ", g.kw,
             ") with dilation (", g.dh, ", ", g.dw, ") spans (", eh, ", ", ew,
             "), larger than the padded input (", padded_h, ", ", padded_w, ") of input shape ",
             input, " with padding (", g.ph, ", ", g.pw, ")");
    g.ho = (padded_h - eh) / g.sh + 1;
    g.wo = (padded_w - ew) / g.sw + 1;
    // The column matrix (kH·kW rows per channel, one column per output
    // position) is cut into blocks, but its per-channel byte count must exist.
    int64_t column_bytes = 0;
    TG_CHECK(!__builtin_mul_overflow(g.ho, g.wo, &column_bytes) &&
                 !__builtin_mul_overflow(column_bytes, g.kh, &column_bytes) &&
                 !__builtin_mul_overflow(column_bytes, g.kw, &column_bytes) &&
                 !__builtin_mul_overflow(column_bytes, int64_t(8), &column_bytes),
             op, ": an output of (", g.ho, ", ", g.wo, ") positions with kernel (", g.kh, ", ", g.kw,
             ") is too large (its column matrix needs more than 2^63 bytes per channel); input shape ", input);
    int64_t rows = 0;  // of the column matrix: C·kH·kW (C may be huge in an empty input)
    TG_CHECK(!__builtin_mul_overflow(g.c, g.kh * g.kw, &rows), op, ": ", g.c, " channels with kernel (", g.kh, ", ",
             g.kw, ") make more than 2^63 column rows; input shape ", input);
    return g;
}

namespace {

// b > 0; without forming -a + b, which overflows for a stride near 2^63.
int64_t div_floor(int64_t a, int64_t b) { return a >= 0 ? a / b : -(-(a + 1) / b) - 1; }
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
                    if (hi > lo) {  // else src + off may point before the plane: not even formed
                        const T* s = src + lo * sw + tap[j].off;
                        if (sw == 1)
                            std::memcpy(d + lo, s, size_t(hi - lo) * sizeof(T));
                        else
                            for (int64_t k = 0; k < hi - lo; ++k) d[lo + k] = s[k * sw];
                    }
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
                    if (hi <= lo) continue;  // (dst + off may point before the plane)
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
// packs its operands anyway); the budget (ConvShape::block_bytes) only
// bounds the per-thread buffer for large images. Channels are cut first: each input plane is then read
// once, and each block is a slice of the GEMM's inner dimension,
// accumulated into the same output.
struct Blocking {
    int64_t channels, columns;
};

Blocking blocking(int64_t channels, int64_t kk, int64_t columns, size_t elem, int64_t budget)
{
    const int64_t per_channel = kk * columns * int64_t(elem);
    if (per_channel * channels <= budget) return {std::max<int64_t>(channels, 1), std::max<int64_t>(columns, 1)};
    if (per_channel <= budget) return {budget / per_channel, columns};
    return {1, std::min(columns, std::max<int64_t>(budget / (kk * int64_t(elem)) / 16 * 16, 16))};
}

// The three products of a convolution, each on the short-side kernels of
// gemm.hpp when they apply (float32, a side of at most short_side, nothing to
// accumulate into) and through BLAS otherwise.

// C[m × n] = W[m × k] · B[k × n] + (C if accumulate, else bias[i] on row i when given)
template <class T>
void product_wb(int64_t m, int64_t n, int64_t k, const T* w, int64_t ldw, const T* b, int64_t ldb, T* c, int64_t ldc,
                const T* bias, bool accumulate)
{
    if constexpr (std::is_same_v<T, float>)
        if (!accumulate && k <= short_side)
            return short_k_gemm(m, n, k, w, ldw, 1, b, ldb, c, ldc, bias);
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
        if (k <= short_side) return short_k_gemm(k, n, m, w, 1, ldw, g, ldg, c, ldc, nullptr);
    detail::gemm(true, false, k, n, m, T(1), w, ldw, g, ldg, T(0), c, ldc);
}

// C[m × k] += G[m × n] · B[k × n]ᵀ
template <class T>
void product_gbt(int64_t m, int64_t k, int64_t n, const T* g, int64_t ldg, const T* b, int64_t ldb, T* c, int64_t ldc)
{
    if constexpr (std::is_same_v<T, float>)
        if (k <= short_side) return dot_gemm(m, k, n, g, ldg, b, ldb, c, ldc);
    detail::gemm(false, true, m, k, n, T(1), g, ldg, b, ldb, T(1), c, ldc);
}

}  // namespace

// One plane (n, c) at a time: a few thousand elements per parallel chunk.
template <class T>
void im2col(const Geometry& g, const T* x, T* cols)
{
    const int64_t kk = g.kk(), l = g.columns();
    const Taps taps = make_taps(g);
    parallel_for(g.n * g.c, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, kk * l)), [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p) im2col_block(g, taps, x + p * g.h * g.w, 1, 0, l, cols + p * kk * l, l);
    });
}

template <class T>
void col2im(const Geometry& g, const T* cols, T* x)
{
    const int64_t kk = g.kk(), l = g.columns();
    const Taps taps = make_taps(g);
    parallel_for(g.n * g.c, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, kk * l)), [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p) col2im_block(g, taps, cols + p * kk * l, 1, 0, l, x + p * g.h * g.w, l);
    });
}

// y[n, grp][:, p0:p1] = w[grp] · cols + b, the inner dimension in channel blocks.
template <class T>
void conv_forward(const ConvShape& s, const T* x, const T* w, const T* b, T* y)
{
    const Geometry& g = s.g;
    const int64_t cg = s.cg(), og = s.og(), k = s.k(), kk = g.kk(), cols = g.columns(), groups = s.groups;
    const int64_t plane = g.h * g.w;
    const Blocking bl = g.pointwise() ? Blocking{cg, cols} : blocking(cg, kk, cols, sizeof(T), s.block_bytes);
    const Taps taps = make_taps(g);
    const int64_t col_blocks = (cols + bl.columns - 1) / bl.columns;
    parallel_for(g.n * groups * col_blocks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t item = t / col_blocks, n = item / groups, grp = item % groups;
            const int64_t p0 = (t % col_blocks) * bl.columns, p1 = std::min(cols, p0 + bl.columns), nc = p1 - p0;
            const T* xin = x + (n * g.c + grp * cg) * plane;
            const T* wg = w + grp * og * k;
            T* yo = y + (n * s.out_channels + grp * og) * cols + p0;
            // Once when cg = 0 (the bias alone), where the blocking has 0 channels.
            for (int64_t c0 = 0; c0 < std::max<int64_t>(cg, 1); c0 += std::max<int64_t>(bl.channels, 1)) {
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

namespace {

// The parts the images of a backward are split into (see conv_backward).
int64_t backward_parts(const ConvShape& s)
{
    const int64_t items = s.g.n * s.groups;
    return in_parallel_region() || num_threads() == 1 ? 1 : std::clamp<int64_t>(items, 1, 4 * int64_t(num_threads()));
}

// conv_backward's workspace: the flipped weights of the transposed input
// gradient, then dw and db for each part but the first.
struct Workspace {
    int64_t wt, per_part, parts;
    int64_t size() const { return wt + (parts - 1) * per_part; }
};

Workspace workspace_of(const ConvShape& s, bool dx, bool dw, bool db)
{
    const int64_t parts = backward_parts(s);
    const int64_t per_part = (dw ? s.out_channels * s.k() : 0) + (db ? s.out_channels : 0);
    return {dx && transposed_input_gradient(s) ? s.out_channels * s.k() : 0, parts > 1 ? per_part : 0, parts};
}

}  // namespace

int64_t conv_backward_workspace(const ConvShape& s, bool dx, bool dw, bool db)
{
    return workspace_of(s, dx, dw, db).size();
}

// First-order backward, per image and group: the weight gradient gy·colsᵀ
// (columns rebuilt by im2col), the bias gradient (row sums of gy) and the
// input gradient, by the transposed convolution above or as col2im(wᵀ·gy).
// Images are split into parts, each accumulating dw and db in its own buffer;
// the parts are summed in a fixed order, so the result does not depend on
// which thread ran which part.
template <class T>
void conv_backward(const ConvShape& s, const T* x, const T* w, const T* gy, T* dx, T* dw, T* db, T* workspace)
{
    const Geometry& g = s.g;
    const int64_t cg = s.cg(), og = s.og(), k = s.k(), cols = g.columns(), groups = s.groups, kk = g.kk();
    const int64_t o_all = s.out_channels, plane = g.h * g.w;
    if (o_all == 0) {  // no output, nothing flows back (and no GEMM is asked for an inner size of 0)
        if (dx) std::fill(dx, dx + g.n * g.c * plane, T(0));
        return;
    }
    const Blocking bl = g.pointwise() ? Blocking{cg, cols} : blocking(cg, kk, cols, sizeof(T), s.block_bytes);
    const Taps taps = make_taps(g);

    // The transposed convolution: gy's planes are its input, dx's its output.
    const bool transposed = dx && transposed_input_gradient(s);
    const Geometry gt{g.n, o_all, g.ho, g.wo, g.kh, g.kw, 1, 1, g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw,
                      g.dh, g.dw, g.h, g.w};
    const Taps taps_t = make_taps(gt);
    const Blocking bt = blocking(og, kk, plane, sizeof(T), s.block_bytes);
    const int64_t kt = og * kk;
    const Workspace ws = workspace_of(s, dx, dw, db);
    T* const wt = workspace;  // wt[grp][c][o][i][j] = w[grp·og + o][c][kh−1−i][kw−1−j]
    if (transposed) {
        for (int64_t grp = 0; grp < groups; ++grp)
            for (int64_t c = 0; c < cg; ++c)
                for (int64_t o = 0; o < og; ++o)
                    for (int64_t t = 0; t < kk; ++t)
                        wt[((grp * cg + c) * og + o) * kk + t] = w[((grp * og + o) * cg + c) * kk + (kk - 1 - t)];
    }

    const int64_t items = g.n * groups, parts = ws.parts;
    const int64_t dw_size = dw ? o_all * k : 0, db_size = db ? o_all : 0, per_part = dw_size + db_size;
    T* const acc = workspace + ws.wt;  // parts 1.. (part 0 accumulates in dw and db)
    if (dw) std::fill(dw, dw + dw_size, T(0));
    if (db) std::fill(db, db + db_size, T(0));

    parallel_for(parts, 1, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
            T* dwq = dw;
            T* dbq = db;
            if (q > 0 && per_part > 0) {
                T* a = acc + (q - 1) * per_part;
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
                    for (int64_t o = 0; o < og; ++o) dbq[grp * og + o] += sum_row(gyi + o * cols, cols);
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
                    const T* wtg = wt + grp * cg * kt;
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
        const T* a = acc + (q - 1) * per_part;
        for (int64_t i = 0; i < dw_size; ++i) dw[i] += a[i];
        for (int64_t i = 0; i < db_size; ++i) db[i] += a[dw_size + i];
    }
}

template void im2col(const Geometry&, const float*, float*);
template void im2col(const Geometry&, const double*, double*);
template void col2im(const Geometry&, const float*, float*);
template void col2im(const Geometry&, const double*, double*);
template void conv_forward(const ConvShape&, const float*, const float*, const float*, float*);
template void conv_forward(const ConvShape&, const double*, const double*, const double*, double*);
template void conv_backward(const ConvShape&, const float*, const float*, const float*, float*, float*, float*, float*);
template void conv_backward(const ConvShape&, const double*, const double*, const double*, double*, double*, double*,
                            double*);

}  // namespace tg::kernels
