// Batch norm whose statistics are the global batch's: the per-channel sums
// of every rank's share added up (PyTorch's SyncBatchNorm), so a model
// trained data-parallel on small shards normalises as one process on the
// whole batch would.
//
//   nn::make<tg::dist::SyncBatchNorm2d>(32)   // where nn::BatchNorm2d(32) was
//
// The statistics are differentiable: all_reduce_sum's gradient is the sum of
// every rank's gradient, so the backward allreduces too, and a rank's
// gradients are those of the sum of every rank's loss (DataParallel then
// divides by the ranks). Each training forward makes three allreduces (the
// count, the sums, the squared deviations from the global mean, which is
// more accurate than the sums of squares), each backward two; every rank
// must run the same layers in the same order. In evaluation, and in a world
// of one, it is nn::BatchNorm2d.
#pragma once

#include <optional>

#include "../nn/module.hpp"
#include "../ops/layers.hpp"

namespace tg::dist {

// Σ over the ranks of x (same shape and dtype on every rank), differentiable:
// its backward is all_reduce_sum of the gradient. In a world of one, a copy.
// A collective: it must run on the thread that uses tg::dist, never inside a
// parallel region (a gradcheck on several threads).
Tensor all_reduce_sum(const Tensor& x);

// batch_norm with the batch statistics over every rank's x (their shapes
// may differ in every axis but 1). In evaluation, batch_norm.
Tensor sync_batch_norm(const Tensor& x, const BatchNormRunningStats& running, const Tensor& weight = Tensor(),
                       const Tensor& bias = Tensor(), bool training = true, std::optional<double> momentum = 0.1,
                       double eps = 1e-5);

// nn::BatchNorm2d (its parameters, buffers and their names: state dicts
// move between the two) normalising with sync_batch_norm across the ranks.
class SyncBatchNorm2d : public nn::BatchNorm2d {
public:
    using nn::BatchNorm2d::BatchNorm2d;
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
};

namespace detail {
// Referenced from <tapegrad/tapegrad.hpp>, as ops/builtin.hpp's anchors are,
// so that a static link keeps this file and its op's registration.
void link_dist_ops();
}  // namespace detail

}  // namespace tg::dist
