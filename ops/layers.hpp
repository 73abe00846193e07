// The ops behind the usual layers: linear, dropout, batch_norm, layer_norm.
// PyTorch's semantics and defaults.
#pragma once

#include <optional>

#include "../engine/core/tensor.hpp"

namespace tg {

class Generator;

// x·Wᵀ + b for x [..., in_features] (any rank >= 1), weight [out_features,
// in_features] and an optional bias [out_features]; the result is
// [..., out_features]. W is used as stored (no transposed copy).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// While training, zeroes each element with probability p and scales the rest
// by 1/(1 - p), with the mask drawn from `gen` (reseed it to redraw the same
// mask); the identity when not training or p = 0. p must lie in [0, 1].
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);
// Same, drawing from the calling thread's default generator.
Tensor dropout(const Tensor& x, double p = 0.5, bool training = true);

// The running statistics of batch_norm, which it reads in evaluation and
// changes in place while training. Pointers, so that a call says which
// tensors it changes: batch_norm(x, {&mean, &var, &count}, ...); `{}` for
// none. mean and var are [C] in x's dtype, given both or neither;
// num_batches_tracked is an int64 0-d count, optional unless momentum is
// std::nullopt.
struct BatchNormRunningStats {
    Tensor* mean = nullptr;
    Tensor* var = nullptr;
    Tensor* num_batches_tracked = nullptr;
};

// Batch normalisation of x [N, C, ...] per channel C, PyTorch's F.batch_norm
// and nn.BatchNorm2d's update of its buffers.
// Training: normalises with the batch mean and (biased) variance over every
// axis but 1, and, when running statistics are given, first adds 1 to
// num_batches_tracked (when given; even for an empty batch, as BatchNorm2d
// does), then updates mean and var in place:
//   running = (1 - factor)·running + factor·batch statistic,
// with the unbiased variance for var, and factor = momentum, or, for momentum
// std::nullopt, 1 / num_batches_tracked: the cumulative average of every
// batch so far. An empty batch leaves mean and var as they are.
// Evaluation: normalises with the running mean and var, changing nothing.
// weight (γ) and bias (β), of shape [C], are optional. Nothing is changed
// when an argument is refused.
Tensor batch_norm(const Tensor& x, const BatchNormRunningStats& running, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), bool training = true, std::optional<double> momentum = 0.1,
                  double eps = 1e-5);

// batch_norm's argument checks, and its update of the running statistics
// from a batch's mean ([C], x's dtype) and biased variance ([C], float64) of
// `count` values per channel (num_batches_tracked first, then mean and var
// unless count is 0): for normalisations that gather their statistics
// another way (tg::dist::sync_batch_norm, across processes).
void check_batch_norm_arguments(const Tensor& x, const BatchNormRunningStats& running, const Tensor& weight,
                                const Tensor& bias, bool training, std::optional<double> momentum, double eps);
void update_batch_norm_running_stats(const BatchNormRunningStats& running, const Tensor& mean, const Tensor& var,
                                     int64_t count, std::optional<double> momentum);

// Normalises over the trailing axes given by normalized_shape (mean and biased
// variance per leading index), then scales by weight and adds bias, both of
// shape normalized_shape and optional.
Tensor layer_norm(const Tensor& x, const shape_type& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

// Normalises x [N, C, ...] over each group of C / num_groups channels and
// the spatial axes (mean and biased variance per sample and group), then
// scales and shifts per channel by weight and bias [C] (optional).
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                  double eps = 1e-5);
// Each channel of each sample over its spatial axes: group_norm with one
// group per channel. (PyTorch's running statistics for it are not kept.)
Tensor instance_norm(const Tensor& x, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                     double eps = 1e-5);
}  // namespace tg
