// Losses, with PyTorch's semantics and defaults.
//
// Class targets are int64 tensors of class indices: logits [N, C] go with a
// target [N], logits [N, C, d1, ...] with a target [N, d1, ...] (classes along
// axis 1), and logits [C] with a 0-d target. A target outside [0, C) that is
// not ignore_index is an error naming its position and value.
//
// Every loss takes a Reduction: none (one loss per element or target), sum, or
// mean; the class-target losses' mean is weighted (see CrossEntropyOptions).
// The losses with several options also take them as a struct, so a call site
// names what it sets:
//     tg::cross_entropy(logits, y, {.weight = w, .label_smoothing = 0.1})
// (designated initializers, in the order the struct declares them).
#pragma once

#include <concepts>

#include "../engine/core/tensor.hpp"
#include "options.hpp"

namespace tg {

struct CrossEntropyOptions {
    // [C], one weight per class, of the logits' dtype. With class-index
    // targets it is a constant, as in PyTorch (a weight that requires grad is
    // an error while grad mode is on); with probability targets it is
    // differentiable, as in PyTorch.
    Tensor weight = Tensor();
    int64_t ignore_index = -100;  // class-index targets only (probability targets: must be negative)
    Reduction reduction = Reduction::mean;
    double label_smoothing = 0.0;  // in [0, 1]
};

// Cross-entropy of softmax(logits), from the logits (stable for any finite
// logits), against either
// - class indices (int64, shaped as above; one fused pass): the loss of one
//   target t is (1 - ε)·w[t]·(-log p_t) + ε/C·Σ_c w[c]·(-log p_c) with label
//   smoothing ε and class weights w (all 1 if not given); targets equal to
//   ignore_index contribute 0. mean divides the sum by Σ w[t] over the targets
//   that are not ignored (their count, without weights), for both terms, as
//   PyTorch 1.13 does: no target left, or a total weight of 0, gives NaN.
// - class probabilities (a float target of the logits' shape, differentiable):
//   the loss of a row is -Σ_c w[c]·q'_c·log p_c with q' = (1 - ε)·q + ε/C;
//   mean divides by the number of rows (N·d1·..., every row counts).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& options = {});
// The positional form. (Each loss's positional form is a template only so
// that `{...}` at a call site always means the options: `{}` would otherwise
// make Reduction{}, which is none.)
template <std::same_as<Reduction> R>
Tensor cross_entropy(const Tensor& logits, const Tensor& target, R reduction, int64_t ignore_index = -100,
                     double label_smoothing = 0.0)
{
    return cross_entropy(logits, target,
                         {.ignore_index = ignore_index, .reduction = reduction, .label_smoothing = label_smoothing});
}

struct NllLossOptions {
    Tensor weight = Tensor();  // [C], a constant as for cross_entropy's class-index targets
    int64_t ignore_index = -100;
    Reduction reduction = Reduction::mean;
};

// Negative log-likelihood of log-probabilities (e.g. log_softmax's output):
// -w[target]·log_probs[target], same shapes, weights and weighted mean as
// cross_entropy with class indices.
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& options = {});
template <std::same_as<Reduction> R>
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, R reduction, int64_t ignore_index = -100)
{
    return nll_loss(log_probs, target, {.ignore_index = ignore_index, .reduction = reduction});
}

// The elementwise losses: input and target of the same shape, both
// differentiable, mean over all elements (an empty input's mean is NaN).

// (input - target)².
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);

// |input - target| (its gradient at input == target is 0, as PyTorch's).
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);

// d = input - target: 0.5·d²/beta where |d| < beta, else |d| - 0.5·beta.
// beta >= 0. beta = 0 is |d| with PyTorch's gradient: sign(d), but -1 at d = 0
// (l1_loss's is 0 there).
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean,
                      double beta = 1.0);

// d = input - target: 0.5·d² where |d| < delta, else delta·(|d| - 0.5·delta);
// delta > 0. (huber_loss = delta·smooth_l1_loss with beta = delta.)
Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean,
                  double delta = 1.0);

struct KlDivOptions {
    // mean averages over all elements (PyTorch's default, which PyTorch warns
    // about); batchmean divides the sum by the first axis's size (a 0-d input: the sum).
    Reduction reduction = Reduction::mean;
    bool log_target = false;  // the target holds log-probabilities
};

// Kullback-Leibler divergence of the target from the input, which holds
// log-probabilities: target·(log target - input), 0 where target = 0
// (PyTorch's xlogy; its gradient for the target there is NaN, as PyTorch's),
// or exp(target)·(target - input) with log_target.
Tensor kl_div(const Tensor& input, const Tensor& target, const KlDivOptions& options = {});
template <std::same_as<Reduction> R>
Tensor kl_div(const Tensor& input, const Tensor& target, R reduction, bool log_target = false)
{
    return kl_div(input, target, {.reduction = reduction, .log_target = log_target});
}

struct BinaryCrossEntropyOptions {
    Tensor weight = Tensor();  // broadcast to the input's shape; differentiable (PyTorch refuses a weight that requires grad)
    Reduction reduction = Reduction::mean;
};

// -w·[t·log p + (1 - t)·log(1 - p)] of probabilities p in [0, 1] (anything
// else, NaN included, is an error, as in PyTorch), each log clamped at -100 as
// PyTorch does, so p = 0 or 1 gives a finite loss. The gradients are
// PyTorch's: w·(p - t)/max(p·(1 - p), 1e-12) for p, w·(log(1 - p) - log p)
// for t (infinite at p = 0 or 1).
Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, const BinaryCrossEntropyOptions& options = {});
template <std::same_as<Reduction> R>
Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, R reduction)
{
    return binary_cross_entropy(input, target, {.reduction = reduction});
}

struct BinaryCrossEntropyWithLogitsOptions {
    Tensor weight = Tensor();  // broadcast to the logits' shape; differentiable (PyTorch refuses one that requires grad)
    Reduction reduction = Reduction::mean;
    Tensor pos_weight = Tensor();  // broadcast to the logits' shape (e.g. [C], one per class along the last axis)
};

// -w·[p·t·log σ(x) + (1 - t)·log(1 - σ(x))] from the logits x, computed as
// (1 - t)·x + (1 + (p - 1)·t)·log(1 + e^-x) in a form that is stable for any
// finite x. pos_weight p (optional) multiplies the positive term, weight w
// (optional) the whole loss of each element; both are differentiable.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const BinaryCrossEntropyWithLogitsOptions& options = {});
template <std::same_as<Reduction> R>
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, R reduction,
                                        const Tensor& pos_weight = Tensor())
{
    return binary_cross_entropy_with_logits(logits, target, {.reduction = reduction, .pos_weight = pos_weight});
}

}  // namespace tg
