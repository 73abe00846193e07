// Softmax and cross-entropy loops. The float exp is the one SIMD kernel here:
// softmax_simd.inl, compiled once per instruction set (simd_regions.inl).
#include "engine/kernels/softmax.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/core/parallel.hpp"
#include "engine/kernels/cpu.hpp"
#include "engine/kernels/reduce.hpp"

// 8-lane vectors only ever live inside the AVX2 functions (everything is
// inlined there), so the ABI note about passing them does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#define TG_SIMD_BODY "engine/kernels/softmax_simd.inl"
#include "engine/kernels/simd_regions.inl"

namespace tg::kernels {

RowLse<float> logsumexp_row(const float* x, int64_t n)
{
    return isa() == Isa::avx2 ? avx2::logsumexp_row(x, n) : sse2::logsumexp_row(x, n);
}

void exp_row(const float* x, float shift, float* out, int64_t n, float scale, float offset)
{
    isa() == Isa::avx2 ? avx2::exp_row(x, shift, out, n, scale, offset) : sse2::exp_row(x, shift, out, n, scale, offset);
}

// float64 is the checker's dtype: the library exp, exact to the last bit.
RowLse<double> logsumexp_row(const double* x, int64_t n)
{
    double m = max_row(x, n);
    if (!(m > -INFINITY && m < INFINITY)) return {m, std::log(double(n))};
    double s = 0;
    for (int64_t k = 0; k < n; ++k) s += std::exp(x[k] - m);
    return {m, std::log(s)};
}

void exp_row(const double* x, double shift, double* out, int64_t n, double scale, double offset)
{
    for (int64_t k = 0; k < n; ++k) out[k] = std::exp(x[k] - shift) * scale + offset;
}

namespace {

// Runs row(o) for each contiguous row (inner == 1), or block(o, scratch) for
// each [n, inner] block of a strided axis, in parallel over `outer`.
template <class T, class Row, class Block>
void for_each_row(const AxisSplit& s, Row row, Block block)
{
    if (s.empty()) return;
    // exp costs several elementwise ops: smaller chunks than elementwise loops.
    int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(s.n * s.inner, 1));
    parallel_for(s.outer, grain, [&](int64_t o0, int64_t o1) {
        if (s.inner == 1) {
            for (int64_t o = o0; o < o1; ++o) row(o);
            return;
        }
        std::vector<T> scratch(size_t(2 * s.inner));
        for (int64_t o = o0; o < o1; ++o) block(o, scratch.data(), scratch.data() + s.inner);
    });
}

}  // namespace

template <class T>
void softmax_forward(const T* x, T* y, const AxisSplit& s, bool log)
{
    const int64_t n = s.n, in = s.inner;
    for_each_row<T>(
        s,
        [&](int64_t o) {
            const T* xr = x + o * n;
            T* yr = y + o * n;
            if (log) {
                RowLse<T> lse = logsumexp_row(xr, n);
                for (int64_t k = 0; k < n; ++k) yr[k] = (xr[k] - lse.max) - lse.log_sum;
                return;
            }
            exp_row(xr, max_row(xr, n), yr, n);
            T inv = T(1) / sum_row(yr, n);
            for (int64_t k = 0; k < n; ++k) yr[k] *= inv;
        },
        [&](int64_t o, T* mx, T* sum) {
            const T* xb = x + o * n * in;
            T* yb = y + o * n * in;
            for (int64_t i = 0; i < in; ++i) { mx[i] = -INFINITY; sum[i] = 0; }
            for (int64_t k = 0; k < n; ++k)
                for (int64_t i = 0; i < in; ++i) mx[i] = mx[i] < xb[k * in + i] ? xb[k * in + i] : mx[i];
            // exp(x - max) row by row through y (log_softmax overwrites it below).
            for (int64_t k = 0; k < n; ++k) {
                T* e = yb + k * in;
                for (int64_t i = 0; i < in; ++i) e[i] = xb[k * in + i] - mx[i];
                exp_row(e, T(0), e, in);
                for (int64_t i = 0; i < in; ++i) sum[i] += e[i];
            }
            if (log) {  // (x - max) - log Σ, as for a contiguous row
                for (int64_t i = 0; i < in; ++i) sum[i] = std::log(sum[i]);
                for (int64_t k = 0; k < n; ++k)
                    for (int64_t i = 0; i < in; ++i) yb[k * in + i] = (xb[k * in + i] - mx[i]) - sum[i];
            } else {
                for (int64_t i = 0; i < in; ++i) sum[i] = T(1) / sum[i];
                for (int64_t k = 0; k < n; ++k)
                    for (int64_t i = 0; i < in; ++i) yb[k * in + i] *= sum[i];
            }
        });
}

template <class T>
void softmax_backward(const T* g, const T* y, T* dx, const AxisSplit& s, bool log)
{
    const int64_t n = s.n, in = s.inner;
    for_each_row<T>(
        s,
        [&](int64_t o) {
            const T* gr = g + o * n;
            const T* yr = y + o * n;
            T* dr = dx + o * n;
            if (log) {
                T total = sum_row(gr, n);
                exp_row(yr, T(0), dr, n);
                for (int64_t k = 0; k < n; ++k) dr[k] = gr[k] - dr[k] * total;
            } else {
                T d = dot_row(gr, yr, n);
                for (int64_t k = 0; k < n; ++k) dr[k] = yr[k] * (gr[k] - d);
            }
        },
        [&](int64_t o, T* acc, T*) {
            const T* gb = g + o * n * in;
            const T* yb = y + o * n * in;
            T* db = dx + o * n * in;
            for (int64_t i = 0; i < in; ++i) acc[i] = 0;
            for (int64_t k = 0; k < n; ++k)
                for (int64_t i = 0; i < in; ++i) acc[i] += log ? gb[k * in + i] : gb[k * in + i] * yb[k * in + i];
            for (int64_t k = 0; k < n; ++k) {
                const T *gk = gb + k * in, *yk = yb + k * in;
                T* dk = db + k * in;
                if (log) {
                    exp_row(yk, T(0), dk, in);
                    for (int64_t i = 0; i < in; ++i) dk[i] = gk[i] - dk[i] * acc[i];
                } else {
                    for (int64_t i = 0; i < in; ++i) dk[i] = yk[i] * (gk[i] - acc[i]);
                }
            }
        });
}

// Rows per parallel chunk: exp dominates, a few thousand elements per chunk.
int64_t row_grain(int64_t classes) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(classes, 1)); }

template <class T>
void cross_entropy_forward(const T* z, const int64_t* t, int64_t rows, int64_t classes, int64_t ignore_index,
                           double smoothing, const T* weight, T* lse, T* loss)
{
    const T on = T(1 - smoothing), off = T(smoothing / double(classes));
    parallel_for(rows, row_grain(classes), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            if (t[r] == ignore_index) {
                lse[2 * r] = lse[2 * r + 1] = 0;
                loss[r] = 0;
                continue;
            }
            const T* zr = z + r * classes;
            const RowLse<T> l = logsumexp_row(zr, classes);
            // lse - z = (max - z) + log Σ: exact where z is near the maximum.
            T value = on * ((l.max - zr[t[r]]) + l.log_sum);
            if (weight) value *= weight[t[r]];
            if (smoothing != 0) {
                T s = 0;
                if (weight)
                    for (int64_t c = 0; c < classes; ++c) s += weight[c] * ((l.max - zr[c]) + l.log_sum);
                else
                    for (int64_t c = 0; c < classes; ++c) s += (l.max - zr[c]) + l.log_sum;
                value += off * s;
            }
            lse[2 * r] = l.max;
            lse[2 * r + 1] = l.log_sum;
            loss[r] = value;
        }
    });
}

template <class T>
void cross_entropy_backward(const T* z, const int64_t* t, const T* lse, const T* g, bool per_row, T scale,
                            int64_t rows, int64_t classes, int64_t ignore_index, double smoothing, const T* weight,
                            T* dz)
{
    const T on = T(1 - smoothing), off = T(smoothing / double(classes));
    T weight_sum = T(classes);
    if (weight) {
        weight_sum = 0;
        for (int64_t c = 0; c < classes; ++c) weight_sum += weight[c];
    }
    parallel_for(rows, row_grain(classes), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            T* d = dz + r * classes;
            if (t[r] == ignore_index) {
                std::fill(d, d + classes, T(0));
                continue;
            }
            // d = softmax·(a + b·Σw) - b·w - a·onehot(t), a = s·(1-ε)·w[t], b = s·ε/C.
            const T s = per_row ? g[r] : scale, a = s * on * (weight ? weight[t[r]] : T(1)), b = s * off;
            // softmax = exp(z - max) / Σ: the 1/Σ goes into the scale.
            if (weight) {
                exp_row(z + r * classes, lse[2 * r], d, classes, (a + b * weight_sum) * std::exp(-lse[2 * r + 1]), T(0));
                if (smoothing != 0)
                    for (int64_t c = 0; c < classes; ++c) d[c] -= b * weight[c];
            } else {
                exp_row(z + r * classes, lse[2 * r], d, classes, s * std::exp(-lse[2 * r + 1]), -b);
            }
            d[t[r]] -= a;
        }
    });
}

template void softmax_forward(const float*, float*, const AxisSplit&, bool);
template void softmax_forward(const double*, double*, const AxisSplit&, bool);
template void softmax_backward(const float*, const float*, float*, const AxisSplit&, bool);
template void softmax_backward(const double*, const double*, double*, const AxisSplit&, bool);
template void cross_entropy_forward(const float*, const int64_t*, int64_t, int64_t, int64_t, double, const float*,
                                    float*, float*);
template void cross_entropy_forward(const double*, const int64_t*, int64_t, int64_t, int64_t, double, const double*,
                                    double*, double*);
template void cross_entropy_backward(const float*, const int64_t*, const float*, const float*, bool, float, int64_t,
                                     int64_t, int64_t, double, const float*, float*);
template void cross_entropy_backward(const double*, const int64_t*, const double*, const double*, bool, double,
                                     int64_t, int64_t, int64_t, double, const double*, double*);

}  // namespace tg::kernels
