#include "dist/sync_batch_norm.hpp"

#include "dist/communicator.hpp"
#include "dist/gradcheck.hpp"
#include "engine/core/error.hpp"
#include "engine/core/op.hpp"
#include "engine/core/parallel.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduction.hpp"
#include "ops/shape.hpp"

namespace tg::dist {

namespace {

// Σ over the ranks. Not replayable: a replay would communicate from the
// checker's threads, each with its own perturbation, while the other ranks
// replay theirs.
struct AllReduceSum : Op<AllReduceSum> {
    static constexpr const char* name = "dist.all_reduce_sum";
    static constexpr ReplayForm replay = ReplayForm::none;
    static Tensor forward(TensorRefs in)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), "dist::all_reduce_sum: undefined input");
        TG_CHECK(is_floating(x.dtype()), "dist::all_reduce_sum: expected float32 or float64, got ", dtype_name(x.dtype()));
        Tensor y = x.detach().clone();
        if (world_size() == 1) return y;
        TG_CHECK(!in_parallel_region(), "dist::all_reduce_sum: called inside a parallel region (a gradcheck on ",
                 "several threads?); a collective must run on every rank in the same order: check it with "
                 "tg::dist::gradcheck_in_lockstep");
        TG_CHECK(!in_split_gradcheck(), "dist::all_reduce_sum: the function communicates across ranks, so "
                 "tg::dist::gradcheck cannot split its elements (each rank would perturb others); check it with "
                 "tg::dist::gradcheck_in_lockstep");
        allreduce(y, ReduceOp::sum);
        return y;
    }
    static tensor_list backward(const BackwardArgs& a) { return {all_reduce_sum(a.grad)}; }
    static std::vector<OpSample> samples()
    {
        return {sample("[3,4]", {real("x", {3, 4})}), sample("0-d", {real("x", {})})};
    }
};
TG_REGISTER_OP(AllReduceSum);

}  // namespace

Tensor all_reduce_sum(const Tensor& x) { return AllReduceSum::call({x}); }

Tensor sync_batch_norm(const Tensor& x, const BatchNormRunningStats& running, const Tensor& weight, const Tensor& bias,
                       bool training, std::optional<double> momentum, double eps)
{
    check_batch_norm_arguments(x, running, weight, bias, training, momentum, eps);
    if (!training) return batch_norm(x, running, weight, bias, false, momentum, eps);
    const int64_t c = x.shape()[1];
    axes_type axes;
    shape_type channel_shape(size_t(x.dim()), 1);
    channel_shape[1] = c;
    // Nothing to normalise (every rank has x's channels): batch_norm's empty result.
    if (c == 0) return batch_norm(x, running, weight, bias, true, momentum, eps);
    int64_t local = 1;  // values per channel on this rank: x.numel() / c, which fits
    for (int64_t d = 0; d < x.dim(); ++d)
        if (d != 1) {
            axes.push_back(d);
            local *= x.shape()[size_t(d)];
        }
    Tensor count = scalar(local, int64);
    allreduce(count, ReduceOp::sum);
    const int64_t n = *count.data<int64_t>();
    TG_CHECK(n != 1, "sync_batch_norm: expected more than 1 value per channel over all ranks when training, got ",
             "an input of shape ", x.shape(), " here and 1 value in all");
    // Nothing anywhere: batch_norm's empty result, its count of batches.
    if (n == 0) return batch_norm(x, running, weight, bias, true, momentum, eps);

    const Tensor total = scalar(double(n), x.dtype());
    const Tensor mean = div(all_reduce_sum(sum(x, axes)), total);
    const Tensor centered = sub(x, reshape(mean, channel_shape));
    const Tensor var = div(all_reduce_sum(sum(mul(centered, centered), axes)), total);  // biased
    Tensor scale = div(scalar(1.0, x.dtype()), sqrt(add(var, scalar(eps, x.dtype()))));
    if (weight.defined()) scale = mul(scale, weight);
    Tensor y = mul(centered, reshape(scale, channel_shape));
    if (bias.defined()) y = add(y, reshape(bias, channel_shape));
    {
        NoGradGuard off;
        update_batch_norm_running_stats(running, mean.detach(), var.detach().to(float64), n, momentum);
    }
    return y;
}

Tensor SyncBatchNorm2d::forward(const Tensor& x)
{
    if (world_size() == 1) return nn::BatchNorm2d::forward(x);
    return sync_batch_norm(check_input(x), {&running_mean, &running_var, &num_batches_tracked}, weight, bias,
                           is_training(), momentum_, eps_);
}

std::string SyncBatchNorm2d::describe() const
{
    return "SyncBatchNorm2d(" + std::to_string(channels_) + (momentum_ ? "" : ", momentum=None") + ")";
}

namespace detail {
void link_dist_ops() {}
}  // namespace detail

}  // namespace tg::dist
