// tapegrad: define, check and train neural networks in plain C++.
//
//   #include <tapegrad/tapegrad.hpp>
//   tg::Tensor x = tg::randn({3, 4}).requires_grad_();
//   tg::Tensor loss = tg::sum(tg::tanh(x) * x);
//   loss.backward();                      // x.grad() now holds d loss / d x
#pragma once

// xtensor interop (from_xarray, as_xarray, to_xarray) is in <tapegrad/xtensor.hpp>,
// kept apart because xtensor's headers are slow to compile.

#include "engine/autograd.hpp"
#include "engine/dtype.hpp"
#include "engine/error.hpp"
#include "engine/gradcheck.hpp"
#include "engine/memory.hpp"
#include "engine/npy.hpp"
#include "engine/parallel.hpp"
#include "engine/random.hpp"
#include "engine/registry.hpp"
#include "engine/replay.hpp"
#include "engine/tensor.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/reduction.hpp"
#include "ops/shape.hpp"
#include "nn/module.hpp"
#include "nn/models.hpp"
#include "nn/gradcheck.hpp"
#include "ops/conv.hpp"
#include "data/dataset.hpp"
#include "data/idx.hpp"
#include "engine/checkpoint.hpp"
#include "optim/optimizer.hpp"
#include "optim/schedule.hpp"
#include "ops/softmax.hpp"
#include "ops/loss.hpp"
#include "ops/layers.hpp"
#include "ops/pool.hpp"
