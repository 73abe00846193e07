// tapegrad: define, check and train neural networks in plain C++.
//
//   #include <tapegrad/tapegrad.hpp>
//   tg::Tensor x = tg::randn({3, 4}).requires_grad_();
//   tg::Tensor loss = tg::sum(tg::tanh(x) * x);
//   loss.backward();                      // x.grad() now holds d loss / d x
#pragma once

// xtensor interop (views, tensors from expressions, ops in xtensor) is in <tapegrad/xtensor.hpp>,
// kept apart because xtensor's headers are slow to compile. The includes are
// relative to this file where it is installed (<prefix>/include/tapegrad/);
// in the tree the include path finds them.

#include "engine/core/activation_checkpoint.hpp"
#include "engine/core/anomaly.hpp"
#include "engine/core/autograd.hpp"
#include "engine/core/dtype.hpp"
#include "engine/core/error.hpp"
#include "engine/core/hooks.hpp"
#include "engine/check/gradcheck.hpp"
#include "engine/core/memory.hpp"
#include "engine/core/module_scope.hpp"
#include "engine/io/graph_dot.hpp"
#include "engine/io/npy.hpp"
#include "engine/io/npz.hpp"
#include "engine/core/parallel.hpp"
#include "engine/core/random.hpp"
#include "engine/core/registry.hpp"
#include "engine/check/replay.hpp"
#include "engine/core/tensor.hpp"
#include "ops/elementwise.hpp"
#include "ops/indexing.hpp"
#include "ops/matmul.hpp"
#include "ops/padding.hpp"
#include "ops/reduction.hpp"
#include "ops/shape.hpp"
#include "nn/module.hpp"
#include "nn/models.hpp"
#include "nn/gradcheck.hpp"
#include "ops/builtin.hpp"
#include "ops/conv.hpp"
#include "data/dataset.hpp"
#include "data/idx.hpp"
#include "engine/io/checkpoint.hpp"
#include "optim/optimizer.hpp"
#include "optim/schedule.hpp"
#include "dist/communicator.hpp"
#include "dist/data_parallel.hpp"
#include "dist/gradcheck.hpp"
#include "dist/sync_batch_norm.hpp"
#include "ops/softmax.hpp"
#include "ops/loss.hpp"
#include "ops/layers.hpp"
#include "ops/pool.hpp"

namespace tg::detail {
namespace {
// In every file that includes this header: a reference that links each op
// file of a static libtapegrad.a into the program, so registered_ops() is
// whole (ops/builtin.hpp); with the shared library it changes nothing.
[[maybe_unused]] const bool builtin_ops_linked = (link_builtin_ops(), tg::dist::detail::link_dist_ops(), true);
}  // namespace
}  // namespace tg::detail
