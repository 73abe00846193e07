// softmax and log_softmax along any axis. Both subtract the maximum along the
// axis before exponentiating, so logits of any finite size give finite
// outputs and gradients.
#pragma once

#include "../engine/core/tensor.hpp"

namespace tg {

Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);


}  // namespace tg
