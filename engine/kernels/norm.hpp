// Batch normalisation loops over x viewed as [N, C, S].
#pragma once

#include <cstdint>

namespace tg::kernels {

// x viewed as [N, C, S]: channel c is N contiguous blocks of S elements.
struct ChannelView {
    int64_t n, c, s;
    int64_t count() const { return n * s; }
    int64_t block(int64_t i, int64_t ch) const { return (i * c + ch) * s; }
};

// Batch statistics (two passes: mean, then the biased variance about it, summed
// in double across blocks) and y = (x - mean)·invstd·w + b in a third; w and b
// may be null.
template <class T>
void batch_norm_forward(const T* x, const T* w, const T* b, const ChannelView& v, double eps, T* y, T* mean_out,
                        T* invstd_out, double* var_out);

// With x̂ = (x - mean)·invstd: dbias = Σ g, dweight = Σ g·x̂,
// dx = w·invstd·(g - Σg/M - x̂·Σ(g·x̂)/M); the outputs not wanted are null.
template <class T>
void batch_norm_backward(const T* x, const T* g, const T* w, const T* mean, const T* invstd, const ChannelView& v,
                         T* dx, T* dw, T* db);

// The running statistics' update, as PyTorch computes it (in double, rounded
// once): running = factor·batch + (1 - factor)·running, with the biased
// batch variance times `unbiased` (n / (n - 1)) for var.
template <class T>
void batch_norm_update_running(T* running_mean, T* running_var, const T* batch_mean, const double* batch_var,
                               int64_t c, double factor, double unbiased);

}  // namespace tg::kernels
