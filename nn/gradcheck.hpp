// Whole-model gradcheck: every element of every parameter of a model,
// checked against finite differences of its loss in float64.
#pragma once

#include <functional>

#include "../data/dataset.hpp"
#include "../engine/check/gradcheck.hpp"
#include "module.hpp"

namespace tg {

// The loss of `model` on `batch` (say, cross_entropy(model(batch.x), batch.y)).
using ModelLossFn = std::function<Tensor(nn::Module& model, const Batch& batch)>;

// Full mode: every element of every parameter, one by one.
inline GradcheckOptions model_gradcheck_options()
{
    GradcheckOptions o;
    o.mode = GradcheckMode::full;
    return o;
}

// Checks d loss_fn(model, batch) / d parameter for every parameter of the
// model. It runs on float64 stand-ins for the parameters and buffers, swapped
// into the model for the check and swapped back after (the model's own
// tensors, and any optimizer holding them, are never touched; batch-norm
// running statistics included). The loss is recorded once; each perturbed
// element replays only the tape entries downstream of its parameter, so a
// linear layer's weight costs a few multiply-adds per element, not a forward.
// The model's mode (train or eval) is used as it is; dropout in training
// mode is checked with the masks of the recorded forward.
GradcheckResult gradcheck(nn::Module& model, const ModelLossFn& loss_fn, const Batch& batch,
                          GradcheckOptions options = model_gradcheck_options());

}  // namespace tg
