// softmax and log_softmax along any axis. Both subtract the maximum along the
// axis before exponentiating, so logits of any finite size give finite
// outputs and gradients.
#pragma once

#include "engine/core/tensor.hpp"

namespace tg {

Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

namespace detail {
// Row kernels shared with the losses.
// log Σ exp(x[k]) over a contiguous row, with the maximum subtracted.
float logsumexp_row(const float* x, int64_t n);
double logsumexp_row(const double* x, int64_t n);
// out[k] = exp(x[k] - shift)·scale + offset, for shift >= max(x) (vectorised
// for float); out may be x.
void exp_row(const float* x, float shift, float* out, int64_t n, float scale = 1, float offset = 0);
void exp_row(const double* x, double shift, double* out, int64_t n, double scale = 1, double offset = 0);
}  // namespace detail

}  // namespace tg
