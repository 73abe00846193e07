// The layers' ops. linear, dropout, layer_norm and batch_norm in evaluation
// are composed of primitives (bmm, mul, mean, ...), so their gradients, first
// and second order, come from those; batch_norm in training is a fused
// primitive whose create_graph backward is written in ops.
#include "ops/layers.hpp"

#include <algorithm>
#include <cmath>

#include "engine/core/activation_checkpoint.hpp"
#include "engine/core/op.hpp"
#include "engine/core/parallel.hpp"
#include "engine/core/random.hpp"
#include "engine/kernels/norm.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/reduction.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

void check_same_dtype(const char* op, const char* what, const Tensor& t, const Tensor& x)
{
    TG_CHECK(t.dtype() == x.dtype(), op, ": ", what, " is ", dtype_name(t.dtype()), " of shape ", t.shape(),
             ", the input is ", dtype_name(x.dtype()));
}

void check_parameter(const char* op, const char* what, const Tensor& t, const shape_type& shape, const Tensor& x)
{
    if (!t.defined()) return;
    TG_CHECK(t.shape() == shape, op, ": ", what, " of shape ", t.shape(), " for an input of shape ", x.shape(),
             " (expected ", shape, ")");
    check_same_dtype(op, what, t, x);
}

}  // namespace

// --- linear ------------------------------------------------------------------------------

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias)
{
    TG_CHECK(x.defined() && weight.defined(), "linear: undefined operand");
    TG_CHECK(is_floating(x.dtype()) && x.dtype() == weight.dtype(), "linear: input (", dtype_name(x.dtype()),
             ") and weight (", dtype_name(weight.dtype()), ") must be float32 or float64, the same");
    TG_CHECK(weight.dim() == 2, "linear: weight must be [out_features, in_features], got ", weight.shape());
    int64_t out = weight.shape()[0], in = weight.shape()[1];
    TG_CHECK(x.dim() >= 1 && x.shape().back() == in, "linear: input of shape ", x.shape(),
             " does not end in the weight's ", in, " input features (weight ", weight.shape(), ")");
    check_same_dtype("linear", "weight", weight, x);
    check_parameter("linear", "bias", bias, {out}, x);
    // Every leading axis folds into the rows of one GEMM against Wᵀ.
    int64_t rows = in > 0 ? x.numel() / in : numel_of(shape_type(x.shape().begin(), x.shape().end() - 1));
    Tensor y = bmm(reshape(x, {1, rows, in}), reshape(weight, {1, out, in}), false, true);
    shape_type shape = x.shape();
    shape.back() = out;
    y = reshape(y, shape);
    return bias.defined() ? add(y, bias) : y;
}
TG_REGISTER_SAMPLES("linear", {
    sample("[3,4] x [5,4] + [5]", {real("x", {3, 4}), real("weight", {5, 4}), real("bias", {5})},
           [](const tensor_list& x) { return linear(x[0], x[1], x[2]); }),
    sample("[3,4] x [5,4], no bias", {real("x", {3, 4}), real("weight", {5, 4})},
           [](const tensor_list& x) { return linear(x[0], x[1]); }),
    sample("1-d [4] x [3,4] + [3]", {real("x", {4}), real("weight", {3, 4}), real("bias", {3})},
           [](const tensor_list& x) { return linear(x[0], x[1], x[2]); }),
    sample("3-d [2,3,4] x [5,4] + [5]", {real("x", {2, 3, 4}), real("weight", {5, 4}), real("bias", {5})},
           [](const tensor_list& x) { return linear(x[0], x[1], x[2]); }),
});

// --- dropout -------------------------------------------------------------------------------

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen)
{
    TG_CHECK(x.defined(), "dropout: undefined operand");
    TG_CHECK(p >= 0 && p <= 1, "dropout: probability p = ", p, " is outside [0, 1]");
    if (!training || p == 0) return x;
    // The mask holds 0 or 1/(1-p), so the output is one mul and its gradient g·mask.
    detail::note_draw(gen);
    Tensor mask = Tensor::empty(x.shape(), x.dtype());
    TG_DISPATCH_FLOATING(x.dtype(), "dropout", [&] {
        scalar_t* m = mask.data<scalar_t>();
        if (p == 1) {
            std::fill(m, m + x.numel(), scalar_t(0));
            return;
        }
        scalar_t keep = scalar_t(1 / (1 - p));
        for (int64_t i = 0; i < x.numel(); ++i) m[i] = gen.uniform() >= p ? keep : scalar_t(0);
    });
    return mul(x, mask);
}

Tensor dropout(const Tensor& x, double p, bool training) { return dropout(x, p, training, default_generator()); }

TG_REGISTER_SAMPLES("dropout", {
    // The generator is made inside the function, so every evaluation draws the same mask.
    sample("[4,5] p 0.3 training", {real("x", {4, 5})},
           [](const tensor_list& x) {
               Generator gen(1234);
               return dropout(x[0], 0.3, true, gen);
           }),
    sample("[2,3,4] p 0.5 training", {real("x", {2, 3, 4})},
           [](const tensor_list& x) {
               Generator gen(7);
               return dropout(x[0], 0.5, true, gen);
           }),
    sample("[3,4] eval (identity)", {real("x", {3, 4})},
           [](const tensor_list& x) {
               Generator gen(1234);
               return dropout(x[0], 0.3, false, gen);
           }),
});

// --- batch_norm ------------------------------------------------------------------------------

namespace {

// Training-mode batch norm as one primitive: forward and first-order backward
// in fused loops; its differentiable backward is written in ops, with the
// batch statistics recomputed from x, so it differentiates again.
// Inputs: x, weight, bias (either may be undefined).
struct BatchNormTraining : Op<BatchNormTraining> {
    static constexpr const char* name = "batch_norm";
    static constexpr Saves saves = save_input(0) | save_input(1);
    struct Attrs {
        double eps;
    };
    // Keeps the batch mean and 1/sqrt(var + eps) (x's dtype), and the biased
    // variance (float64, for the running statistics).
    static Tensor forward(TensorRefs in, const Attrs& a, OpContext& ctx)
    {
        const Tensor &x = in[0], &weight = in[1], &bias = in[2];
        kernels::ChannelView v = channels(x);
        Tensor y = Tensor::empty(x.shape(), x.dtype());
        Tensor mean = Tensor::empty({v.c}, x.dtype()), invstd = Tensor::empty({v.c}, x.dtype());
        Tensor var = Tensor::empty({v.c}, float64);
        TG_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
            using T = scalar_t;
            kernels::batch_norm_forward<T>(x.data<T>(), weight.defined() ? weight.data<T>() : nullptr,
                          bias.defined() ? bias.data<T>() : nullptr, v, a.eps, y.data<T>(), mean.data<T>(),
                          invstd.data<T>(), var.data<double>());
        });
        ctx.keep(mean);
        ctx.keep(invstd);
        ctx.keep(var);
        return y;
    }
    static tensor_list fused_backward(const BackwardArgs& b)
    {
        const Tensor &x = b.input(0), &w = b.input(1), &mean = b.kept(0), &invstd = b.kept(1), &g = b.grad;
        kernels::ChannelView v = channels(x);
        bool need_x = b.needs_grad(0), need_w = b.needs_grad(1), need_b = b.needs_grad(2);
        Tensor dx = need_x ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
        Tensor dw = need_w ? Tensor::empty({v.c}, x.dtype()) : Tensor();
        Tensor db = need_b ? Tensor::empty({v.c}, x.dtype()) : Tensor();
        TG_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
            using T = scalar_t;
            kernels::batch_norm_backward<T>(x.data<T>(), g.data<T>(), w.defined() ? w.data<T>() : nullptr, mean.data<T>(),
                           invstd.data<T>(), v, need_x ? dx.data<T>() : nullptr, need_w ? dw.data<T>() : nullptr,
                           need_b ? db.data<T>() : nullptr);
        });
        return {dx, dw, db};
    }
    static tensor_list backward(const BackwardArgs& b, const Attrs& a)
    {
        const Tensor &x = b.input(0), &w = b.input(1), &g = b.grad;
        kernels::ChannelView v = channels(x);
        std::vector<int64_t> axes{0};
        for (int64_t d = 2; d < x.dim(); ++d) axes.push_back(d);
        shape_type channel_shape(size_t(x.dim()), 1);
        channel_shape[1] = v.c;
        Tensor inv_m = scalar(1.0 / double(v.count()), x.dtype());
        Tensor centered = sub(x, mul(sum(x, axes, true), inv_m));
        Tensor is = div(scalar(1.0, x.dtype()), sqrt(mul(sum(mul(centered, centered), axes, true), inv_m) + a.eps));
        Tensor xhat = mul(centered, is);
        Tensor sg = sum(g, axes, true), sgx = sum(mul(g, xhat), axes, true);
        Tensor dx;
        if (b.needs_grad(0)) {
            Tensor scale = w.defined() ? mul(is, reshape(w, channel_shape)) : is;
            dx = mul(sub(sub(g, mul(sg, inv_m)), mul(xhat, mul(sgx, inv_m))), scale);
        }
        return {dx, b.needs_grad(1) ? reshape(sgx, {v.c}) : Tensor(), b.needs_grad(2) ? reshape(sg, {v.c}) : Tensor()};
    }
    static kernels::ChannelView channels(const Tensor& x)
    {
        return {x.shape()[0], x.shape()[1], x.numel() / std::max<int64_t>(x.shape()[0] * x.shape()[1], 1)};
    }
    static std::vector<OpSample> samples();
};
TG_REGISTER_OP(BatchNormTraining);

}  // namespace

namespace {
// The running statistics given to batch_norm, checked against x before anything changes.
void check_running_stats(const Tensor& x, const BatchNormRunningStats& running, bool training,
                         const std::optional<double>& momentum)
{
    const int64_t c = x.shape()[1];
    TG_CHECK((running.mean == nullptr) == (running.var == nullptr), "batch_norm: give both running_mean and ",
             "running_var, or neither");
    TG_CHECK(running.mean || !running.num_batches_tracked, "batch_norm: num_batches_tracked without running_mean ",
             "and running_var");
    if (!running.mean) return;
    TG_CHECK(running.mean->defined() && running.var->defined(), "batch_norm: ",
             running.mean->defined() ? "running_var" : "running_mean", " points to an undefined tensor");
    check_parameter("batch_norm", "running_mean", *running.mean, {c}, x);
    check_parameter("batch_norm", "running_var", *running.var, {c}, x);
    TG_CHECK(running.mean->impl().storage != running.var->impl().storage, "batch_norm: running_mean and running_var ",
             "share their memory: an update of one would change the other");
    if (const Tensor* n = running.num_batches_tracked) {
        TG_CHECK(n->defined(), "batch_norm: num_batches_tracked points to an undefined tensor");
        TG_CHECK(n->dtype() == int64 && n->dim() == 0, "batch_norm: num_batches_tracked must be an int64 0-d tensor, ",
                 "got ", dtype_name(n->dtype()), " of shape ", n->shape());
        const int64_t count = *n->data<int64_t>();
        TG_CHECK(count >= 0 && count < INT64_MAX, "batch_norm: num_batches_tracked ", count,
                 " is not a count that can go up by one");
    }
    TG_CHECK(!training || momentum || running.num_batches_tracked, "batch_norm: momentum None (the cumulative ",
             "average of every batch) needs num_batches_tracked");
}
}  // namespace

void check_batch_norm_arguments(const Tensor& x, const BatchNormRunningStats& running, const Tensor& weight,
                                const Tensor& bias, bool training, std::optional<double> momentum, double eps)
{
    TG_CHECK(x.defined(), "batch_norm: undefined input");
    TG_CHECK(x.dim() >= 2, "batch_norm: input must be [N, C, ...], got ", x.shape());
    TG_CHECK(is_floating(x.dtype()), "batch_norm: input must be float32 or float64, got ", dtype_name(x.dtype()));
    int64_t c = x.shape()[1];
    check_running_stats(x, running, training, momentum);
    check_parameter("batch_norm", "weight", weight, {c}, x);
    check_parameter("batch_norm", "bias", bias, {c}, x);
    TG_CHECK(std::isfinite(eps) && eps >= 0, "batch_norm: eps ", eps, " is not a finite number >= 0");
    TG_CHECK(!momentum || (*momentum >= 0 && *momentum <= 1), "batch_norm: momentum ", momentum.value_or(0),
             " is outside [0, 1]");
}

void update_batch_norm_running_stats(const BatchNormRunningStats& running, const Tensor& mean, const Tensor& var,
                                     int64_t count, std::optional<double> momentum)
{
    // An activation checkpoint's recomputation of a forward leaves the
    // statistics alone: they move once per step, as without the checkpoint.
    if (!running.mean || checkpoint_recomputing()) return;
    // Off the tape; the version counters record the changes.
    double factor = momentum.value_or(0);
    if (Tensor* tracked = running.num_batches_tracked) {
        int64_t& batches = *tracked->data<int64_t>();
        ++batches;
        tracked->bump_version();
        if (!momentum) factor = 1 / double(batches);
    }
    if (count == 0) return;
    Tensor &rm = *running.mean, &rv = *running.var;
    const int64_t c = rm.numel();
    TG_CHECK(mean.dtype() == rm.dtype() && mean.numel() == c && var.dtype() == float64 && var.numel() == c,
             "batch_norm: batch statistics of ", mean.shape(), " ", dtype_name(mean.dtype()), " and ", var.shape(), " ",
             dtype_name(var.dtype()), " for running statistics of ", rm.shape(), " ", dtype_name(rm.dtype()),
             " (the variance is float64)");
    TG_DISPATCH_FLOATING(rm.dtype(), "batch_norm", [&] {
        using T = scalar_t;
        kernels::batch_norm_update_running<T>(rm.data<T>(), rv.data<T>(), mean.data<T>(), var.data<double>(), c, factor,
                                              double(count) / double(count - 1));
    });
    rm.bump_version();
    rv.bump_version();
}

Tensor batch_norm(const Tensor& x, const BatchNormRunningStats& running, const Tensor& weight, const Tensor& bias,
                  bool training, std::optional<double> momentum, double eps)
{
    check_batch_norm_arguments(x, running, weight, bias, training, momentum, eps);
    const int64_t c = x.shape()[1];
    // Per-channel values broadcast as [1, C, 1, ...].
    shape_type channel_shape(size_t(x.dim()), 1);
    channel_shape[1] = c;
    auto per_channel = [&](const Tensor& t) { return reshape(t, channel_shape); };

    if (!training) {
        TG_CHECK(running.mean, "batch_norm: evaluation mode needs running_mean and running_var");
        const Tensor &running_mean = *running.mean, &running_var = *running.var;
        // y = x·scale + shift with scale = γ/√(var + eps), shift = β - mean·scale: two full-size ops.
        Tensor scale = div(scalar(1.0, x.dtype()), sqrt(running_var + eps));
        if (weight.defined()) scale = mul(scale, weight);
        Tensor shift = neg(mul(running_mean, scale));
        if (bias.defined()) shift = add(shift, bias);
        return add(mul(x, per_channel(scale)), per_channel(shift));
    }

    // As PyTorch: one value per channel has no variance to estimate; none
    // (an empty batch) gives an empty result and leaves the statistics alone.
    int64_t count = 1;  // saturated: past 2^63 it only matters that it is not 0 or 1
    for (size_t d = 0; d < x.shape().size(); ++d)
        if (d != 1 && __builtin_mul_overflow(count, x.shape()[d], &count)) count = INT64_MAX;
    if (x.numel() == 0 && c > 0) count = 0;
    TG_CHECK(count != 1, "batch_norm: expected more than 1 value per channel when training, got an input of shape ",
             x.shape());
    OpResult r = call_op_kept<BatchNormTraining>({x, weight, bias}, {eps});
    update_batch_norm_running_stats(running, r.kept[0], r.kept[2], count, momentum);
    return r.output;
}

namespace {
// Running statistics made inside a sample's function, so every evaluation starts from the same ones.
Tensor channel_values(const Tensor& like, std::vector<double> values)
{
    return from_values(values, {int64_t(values.size())}, like.dtype());
}
}  // namespace

// Through the public function: training and evaluation, running statistics or none.
std::vector<OpSample> BatchNormTraining::samples()
{
    return {
        tg::sample("[5,3] training, affine", {real("x", {5, 3}), real("weight", {3}), real("bias", {3})},
           [](const tensor_list& x) {
               Tensor rm = channel_values(x[0], {0, 0, 0}), rv = channel_values(x[0], {1, 1, 1});
               return batch_norm(x[0], {&rm, &rv}, x[1], x[2], true);
           }),
        tg::sample("[3,2,3,3] training, no affine, no running stats", {real("x", {3, 2, 3, 3})},
           [](const tensor_list& x) { return batch_norm(x[0], {}, Tensor(), Tensor(), true); }),
        tg::sample("[2,3,5] training, weight only", {real("x", {2, 3, 5}), real("weight", {3})},
           [](const tensor_list& x) {
               Tensor rm = channel_values(x[0], {0.1, -0.2, 0.3}), rv = channel_values(x[0], {1, 2, 0.5});
               return batch_norm(x[0], {&rm, &rv}, x[1], Tensor(), true, 0.2);
           }),
        tg::sample("[4,3,5] training, bias only, momentum None", {real("x", {4, 3, 5}), real("bias", {3})},
           [](const tensor_list& x) {
               Tensor rm = channel_values(x[0], {0.1, -0.2, 0.3}), rv = channel_values(x[0], {1, 2, 0.5});
               Tensor tracked = scalar(3.0, int64);
               return batch_norm(x[0], {&rm, &rv, &tracked}, Tensor(), x[1], true, std::nullopt);
           }),
        tg::sample("[4,3,2,2] eval, affine", {real("x", {4, 3, 2, 2}), real("weight", {3}), real("bias", {3})},
           [](const tensor_list& x) {
               Tensor rm = channel_values(x[0], {0.5, -1, 0.25}), rv = channel_values(x[0], {0.8, 1.5, 2});
               return batch_norm(x[0], {&rm, &rv}, x[1], x[2], false);
           }),
        tg::sample("[3,4] eval, no affine, momentum None", {real("x", {3, 4})},
           [](const tensor_list& x) {
               Tensor rm = channel_values(x[0], {0.5, -1, 0.25, 0}), rv = channel_values(x[0], {0.8, 1.5, 2, 1});
               return batch_norm(x[0], {&rm, &rv}, Tensor(), Tensor(), false, std::nullopt);
           }),
    };
}

// --- layer_norm -------------------------------------------------------------------------------

Tensor layer_norm(const Tensor& x, const shape_type& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps)
{
    TG_CHECK(x.defined(), "layer_norm: undefined input");
    TG_CHECK(is_floating(x.dtype()), "layer_norm: input must be float32 or float64, got ", dtype_name(x.dtype()));
    int64_t k = int64_t(normalized_shape.size());
    TG_CHECK(k >= 1, "layer_norm: normalized_shape is empty");
    bool fits = x.dim() >= k && std::equal(normalized_shape.begin(), normalized_shape.end(), x.shape().end() - k);
    TG_CHECK(fits, "layer_norm: input of shape ", x.shape(), " does not end in normalized_shape ", normalized_shape);
    check_parameter("layer_norm", "weight", weight, normalized_shape, x);
    check_parameter("layer_norm", "bias", bias, normalized_shape, x);
    TG_CHECK(std::isfinite(eps) && eps >= 0, "layer_norm: eps ", eps, " is not a finite number >= 0");
    std::vector<int64_t> axes;
    for (int64_t d = x.dim() - k; d < x.dim(); ++d) axes.push_back(d);
    Tensor centered = sub(x, mean(x, axes, true));
    Tensor var = mean(mul(centered, centered), axes, true);
    Tensor y = div(centered, sqrt(var + eps));
    if (weight.defined()) y = mul(y, weight);
    return bias.defined() ? add(y, bias) : y;
}
TG_REGISTER_SAMPLES("layer_norm", {
    sample("[3,5] over [5], affine", {real("x", {3, 5}), real("weight", {5}), real("bias", {5})},
           [](const tensor_list& x) { return layer_norm(x[0], {5}, x[1], x[2]); }),
    sample("[2,3,4] over [3,4], affine", {real("x", {2, 3, 4}), real("weight", {3, 4}), real("bias", {3, 4})},
           [](const tensor_list& x) { return layer_norm(x[0], {3, 4}, x[1], x[2]); }),
    sample("[4,3] over [3], no affine", {real("x", {4, 3})},
           [](const tensor_list& x) { return layer_norm(x[0], {3}); }),
});

// x [N, C, ...] seen as [N, groups, C/groups · spatial]: mean and biased
// variance per (n, group), then the per-channel weight and bias.
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps)
{
    TG_CHECK(x.defined(), "group_norm: undefined input");
    TG_CHECK(is_floating(x.dtype()), "group_norm: input must be float32 or float64, got ", dtype_name(x.dtype()));
    TG_CHECK(x.dim() >= 2, "group_norm: input must be [N, C, ...], got ", x.shape());
    const int64_t n = x.shape()[0], c = x.shape()[1];
    TG_CHECK(num_groups >= 1 && c % num_groups == 0, "group_norm: ", c, " channels (input ", x.shape(),
             ") do not divide into ", num_groups, " groups");
    check_parameter("group_norm", "weight", weight, {c}, x);
    check_parameter("group_norm", "bias", bias, {c}, x);
    TG_CHECK(std::isfinite(eps) && eps >= 0, "group_norm: eps ", eps, " is not a finite number >= 0");
    try {
        // From numel, which fits in int64: the product of the axes need not
        // when one of them is 0 (then any grouping of no elements will do).
        const int64_t per_group = x.numel() == 0 ? 0 : x.numel() / (n * num_groups);
        Tensor xg = reshape(x, {n, num_groups, per_group});
        Tensor centered = sub(xg, mean(xg, {2}, true));
        Tensor var = mean(mul(centered, centered), {2}, true);
        Tensor y = reshape(div(centered, sqrt(var + eps)), x.shape());
        shape_type channel_shape(size_t(x.dim()), 1);
        channel_shape[1] = c;
        if (weight.defined()) y = mul(y, reshape(weight, channel_shape));
        return bias.defined() ? add(y, reshape(bias, channel_shape)) : y;
    } catch (const Error&) {
        detail::rethrow_naming("group_norm");
    }
}
TG_REGISTER_SAMPLES("group_norm", {
    sample("[2,6,3,3] 3 groups, affine", {real("x", {2, 6, 3, 3}), real("weight", {6}), real("bias", {6})},
           [](const tensor_list& x) { return group_norm(x[0], 3, x[1], x[2]); }),
    sample("[3,4,5] 1 group, no affine", {real("x", {3, 4, 5})},
           [](const tensor_list& x) { return group_norm(x[0], 1); }),
    sample("[2,4] 2 groups (no spatial axes), weight only", {real("x", {2, 4}), real("weight", {4})},
           [](const tensor_list& x) { return group_norm(x[0], 2, x[1]); }),
});

Tensor instance_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps)
{
    TG_CHECK(x.defined(), "instance_norm: undefined input");
    TG_CHECK(x.dim() >= 3, "instance_norm: input must be [N, C, spatial...], got ", x.shape());
    try {
        return group_norm(x, x.shape()[1], weight, bias, eps);
    } catch (const Error&) {
        detail::rethrow_naming("instance_norm");
    }
}
TG_REGISTER_SAMPLES("instance_norm", {
    sample("[2,3,4,3], affine", {real("x", {2, 3, 4, 3}), real("weight", {3}), real("bias", {3})},
           [](const tensor_list& x) { return instance_norm(x[0], x[1], x[2]); }),
    sample("[3,2,5], no affine", {real("x", {3, 2, 5})}, [](const tensor_list& x) { return instance_norm(x[0]); }),
});

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_layers_ops() {}
}  // namespace detail

}  // namespace tg
