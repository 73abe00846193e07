// Softmax and cross-entropy loops over rows, and the vectorised exp they rest on.
#pragma once

#include <cstdint>

#include "elementwise.hpp"

namespace tg::kernels {

// log Σ exp(x[k]) over a contiguous row as its two terms: the maximum m and
// log Σ exp(x[k] - m). Kept apart so that x - log Σ exp is computed as
// (x - m) - log_sum: at logits of 1e4 in float32, m + log_sum alone would be
// rounded to a few 1e-4.
template <class T>
struct RowLse {
    T max, log_sum;
};
RowLse<float> logsumexp_row(const float* x, int64_t n);
RowLse<double> logsumexp_row(const double* x, int64_t n);
// out[k] = exp(x[k] - shift)·scale + offset, for shift >= max(x) (vectorised
// for float); out may be x.
void exp_row(const float* x, float shift, float* out, int64_t n, float scale = 1, float offset = 0);
void exp_row(const double* x, double shift, double* out, int64_t n, double scale = 1, double offset = 0);

// y = softmax(x) (log: log_softmax) along the axis split as [outer, n, inner].
template <class T>
void softmax_forward(const T* x, T* y, const AxisSplit& s, bool log);
// softmax: dx = y·(g - Σ g·y); log_softmax: dx = g - e^y·Σ g (sums along the axis).
template <class T>
void softmax_backward(const T* g, const T* y, T* dx, const AxisSplit& s, bool log);

// Cross-entropy of rows of logits z [rows, classes] against class targets t,
// with label smoothing ε and class weights w (nullptr: all 1):
// lse[r] = log Σ_c exp z[r, c] (stored as its two terms, lse[2r] = max and
// lse[2r + 1] = log Σ exp(z - max)) and
// loss[r] = (1-ε)·w[t]·(lse - z[r, t]) + ε/C·Σ_c w[c]·(lse - z[r, c]); rows
// whose target is ignore_index get 0 for both.
template <class T>
void cross_entropy_forward(const T* z, const int64_t* t, int64_t rows, int64_t classes, int64_t ignore_index,
                           double smoothing, const T* weight, T* lse, T* loss);
// The loss's gradient times scale[r]: dz[r, c] = (softmax(z)[r, c]·Σ_k q[r, k] - q[r, c])·scale[r],
// q[r, c] = (1-ε)·w[t]·onehot(t) + ε/C·w[c]; scale[r] is g[r] (per_row) or
// `scale`; ignored rows get 0; lse as the forward left it.
template <class T>
void cross_entropy_backward(const T* z, const int64_t* t, const T* lse, const T* g, bool per_row, T scale,
                            int64_t rows, int64_t classes, int64_t ignore_index, double smoothing, const T* weight,
                            T* dz);

}  // namespace tg::kernels
