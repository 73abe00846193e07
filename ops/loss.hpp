// Losses, with PyTorch's semantics and defaults.
//
// Class targets are int64 tensors of class indices: logits [N, C] go with a
// target [N], logits [N, C, d1, ...] with a target [N, d1, ...] (classes along
// axis 1), and logits [C] with a 0-d target. A target outside [0, C) that is
// not ignore_index is an error naming its position and value.
#pragma once

#include "../engine/core/tensor.hpp"
#include "options.hpp"

namespace tg {

// Cross-entropy of softmax(logits) against class indices, from the logits (one
// fused pass; stable for any finite logits). With label smoothing ε the loss
// of one target is (1 - ε)·(-log p_target) + ε·mean over classes of (-log p_c).
// Targets equal to ignore_index contribute nothing and do not count in the mean.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::mean,
                     int64_t ignore_index = -100, double label_smoothing = 0.0);

// Negative log-likelihood of log-probabilities (e.g. log_softmax's output):
// -log_probs[target], same shapes and options as cross_entropy.
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction reduction = Reduction::mean,
                int64_t ignore_index = -100);

// (input - target)², input and target of the same shape; both differentiable.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);

// -[t·log σ(x) + (1 - t)·log(1 - σ(x))] from the logits x, computed as
// (1 - t)·x + log(1 + e^-x) in a form that is stable for any finite x.
// pos_weight (optional, broadcast against the logits, e.g. one per class along
// the last axis) multiplies the positive term t·log σ(x).
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction reduction = Reduction::mean,
                                        const Tensor& pos_weight = Tensor());

}  // namespace tg
