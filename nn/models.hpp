// Models that the samples, the benchmarks and the tests share, each the same
// network as its PyTorch twin in ../shared/bench, so numbers line up.
#pragma once

#include <memory>

#include "module.hpp"

namespace tg::nn {

// The reference CNN of the benchmarks (torch_ref.py, fmnist_train.py):
// conv 1→32 3×3 pad 1, ReLU, max-pool 2, conv 32→64 3×3 pad 1, ReLU,
// max-pool 2, flatten, linear 3136→128, ReLU, linear 128→10 (421,642 parameters).
std::shared_ptr<Sequential> reference_cnn(Generator* gen = nullptr);

// The small CNN of torch_gradcheck.py: conv 1→4, conv 4→8, linear 392→32→10
// on 28×28 inputs (13,242 parameters).
std::shared_ptr<Sequential> small_cnn(Generator* gen = nullptr);

// The MLP of torch_ref.py's "train step MLP 784-256-128-10".
std::shared_ptr<Sequential> reference_mlp(Generator* gen = nullptr);

}  // namespace tg::nn
