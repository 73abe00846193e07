// Losses. cross_entropy is a fused primitive: one pass over the logits
// forward (log-sum-exp and the picked logit per row), one pass backward
// ((softmax - target distribution)·scale), both in engine/kernels/softmax.cpp;
// its differentiable backward is written in ops, so it can be differentiated again.
// nll_loss rests on two primitives that are each other's adjoint (pick a
// class per row, place a value per row). bce_with_logits, binary_cross_entropy
// and kl_div's pointwise loss are ops of their own, for PyTorch's gradients at
// their edges; cross_entropy with probability targets, mse, l1, smooth_l1 and
// huber are composites.
#include "ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/core/autograd.hpp"
#include "engine/core/op.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/softmax.hpp"
#include "ops/elementwise.hpp"
#include "ops/elementwise_op.hpp"
#include "ops/reduction.hpp"
#include "ops/shape.hpp"
#include "ops/softmax.hpp"

namespace tg {

namespace {

// The class-target losses work on rows: inputs [M, C] and a flat target [M].
struct Rows {
    Tensor x;           // [M, C]
    Tensor target;      // [M], int64
    int64_t classes = 0;
    int64_t valid = 0;  // targets that are not ignore_index
};

// "[7]" for a 1-d target, "[1, 3]" for a multi-axis one, "" for a 0-d one.
std::string position(int64_t flat, const shape_type& shape)
{
    if (shape.empty()) return "";
    shape_type index(shape.size());
    for (size_t d = shape.size(); d-- > 0;) {
        index[d] = flat % shape[d];
        flat /= shape[d];
    }
    return shape_str(index);
}

// Checks shapes, dtypes and the targets' range, and views the input as rows
// (classes moved to the last axis when they are on axis 1 of a [N, C, d...]).
Rows as_rows(const char* op, const char* what, const Tensor& x, const Tensor& target, int64_t ignore_index)
{
    TG_CHECK(x.defined() && target.defined(), op, ": undefined operand");
    TG_CHECK(is_floating(x.dtype()), op, ": ", what, " must be float32 or float64, got ",
             dtype_name(x.dtype()), " of shape ", x.shape());
    TG_CHECK(target.dtype() == int64, op, ": target must hold int64 class indices, got ",
             dtype_name(target.dtype()), " of shape ", target.shape());
    TG_CHECK(x.dim() >= 1, op, ": ", what, " must have a class axis, got a 0-d tensor");
    int64_t class_axis = x.dim() == 1 ? 0 : 1;
    shape_type want = x.shape();
    want.erase(want.begin() + class_axis);
    TG_CHECK(target.shape() == want, op, ": ", what, " of shape ", x.shape(), " (classes along axis ",
             class_axis, ") need a target of shape ", want, ", got ", target.shape());
    Rows r;
    r.classes = x.shape()[size_t(class_axis)];
    TG_CHECK(r.classes > 0, op, ": ", what, " of shape ", x.shape(), " have no classes");
    const int64_t* t = target.data<int64_t>();
    for (int64_t i = 0; i < target.numel(); ++i) {
        if (t[i] == ignore_index) continue;
        TG_CHECK(t[i] >= 0 && t[i] < r.classes, op, ": target", position(i, target.shape()), " = ", t[i],
                 " is out of range for ", r.classes, " classes");
        ++r.valid;
    }
    int64_t m = target.numel();
    if (x.dim() == 2) {
        r.x = x;
    } else if (x.dim() == 1) {
        r.x = reshape(x, {1, r.classes});
    } else {
        std::vector<int64_t> perm{0};
        for (int64_t d = 2; d < x.dim(); ++d) perm.push_back(d);
        perm.push_back(1);
        r.x = reshape(permute(x, perm), {m, r.classes});  // rows now follow the target's order
    }
    r.target = target.dim() == 1 ? target : reshape(target, {m});
    return r;
}

// A Reduction made from an integer (a cast, a file) can hold any value;
// batchmean is kl_div's alone, as in PyTorch.
void check_reduction(const char* op, Reduction reduction, bool batchmean_too = false)
{
    TG_CHECK(reduction != Reduction::batchmean || batchmean_too, op,
             ": Reduction::batchmean is only for kl_div (as in PyTorch); use mean, sum or none");
    TG_CHECK(reduction == Reduction::none || reduction == Reduction::mean || reduction == Reduction::sum ||
                 reduction == Reduction::batchmean,
             op, ": reduction ", int(reduction), " is not one of Reduction::none (0), mean (1), sum (2)",
             batchmean_too ? ", batchmean (3)" : "");
}

// Class weights [C] of the input's dtype. `constant`: as in PyTorch, the
// class-index losses do not differentiate them, and say so rather than
// silently dropping a gradient.
void check_class_weight(const char* op, const Tensor& weight, const Tensor& x, int64_t classes, bool constant)
{
    if (!weight.defined()) return;
    TG_CHECK(weight.dim() == 1 && weight.shape()[0] == classes, op, ": weight of shape ", weight.shape(),
             " must have one element per class: [", classes, "] for input of shape ", x.shape());
    TG_CHECK(weight.dtype() == x.dtype(), op, ": weight is ", dtype_name(weight.dtype()), ", input is ",
             dtype_name(x.dtype()));
    TG_CHECK(!constant || !weight.requires_grad() || !grad_enabled(), op,
             ": weight requires grad, but the class weights of class-index targets are not differentiable "
             "(as in PyTorch): detach it");
}

// input and target of one shape and one floating dtype (the elementwise losses).
void check_pair(const char* op, const char* what, const Tensor& input, const Tensor& target)
{
    TG_CHECK(input.defined() && target.defined(), op, ": undefined operand");
    TG_CHECK(input.shape() == target.shape(), op, ": ", what, " of shape ", input.shape(), " and target of shape ",
             target.shape(), " differ");
    TG_CHECK(input.dtype() == target.dtype() && is_floating(input.dtype()), op, ": ", what, " is ",
             dtype_name(input.dtype()), ", target is ", dtype_name(target.dtype()), " (both float32 or both float64)");
}

// A weight broadcast to the input's shape (the binary losses).
void check_broadcast_weight(const char* op, const char* what, const Tensor& weight, const Tensor& x)
{
    if (!weight.defined()) return;
    TG_CHECK(weight.dtype() == x.dtype(), op, ": ", what, " is ", dtype_name(weight.dtype()), ", input is ",
             dtype_name(x.dtype()));
    TG_CHECK(kernels::broadcasts_to(weight.shape(), x.shape()), op, ": ", what, " of shape ", weight.shape(),
             " does not broadcast to the input's shape ", x.shape());
}

Tensor reduce_loss(const Tensor& loss, Reduction reduction)
{
    switch (reduction) {
    case Reduction::none: return loss;
    case Reduction::sum: return sum(loss);
    case Reduction::mean: return mean(loss);
    case Reduction::batchmean: break;  // kl_div's, which reduces itself
    }
    return loss;  // unreachable: every public loss checks its reduction first
}

Tensor to_target_shape(const Tensor& loss, const Tensor& target)
{
    return loss.shape() == target.shape() ? loss : reshape(loss, target.shape());
}

// --- cross_entropy ----------------------------------------------------------------------

struct XentConfig {
    Reduction reduction;
    int64_t ignore_index;
    double smoothing;
    int64_t valid = 0;          // targets that are not ignore_index
    double total_weight = 0;    // Σ w[t] over them (their count without weights): the mean's divisor
};

// Σ weight[t] over the targets that are not ignored; their count if there are no weights.
double target_weight_sum(const Tensor& t, const Tensor& weight, int64_t ignore_index, int64_t valid)
{
    if (!weight.defined()) return double(valid);
    double total = 0;
    TG_DISPATCH_FLOATING(weight.dtype(), "cross_entropy", [&] {
        const scalar_t* w = weight.data<scalar_t>();
        const int64_t* tp = t.data<int64_t>();
        for (int64_t r = 0; r < t.numel(); ++r)
            if (tp[r] != ignore_index) total += double(w[tp[r]]);
    });
    return total;
}

// What multiplies each counted row's gradient under `reduction`: 1/total
// weight for mean (NaN when the targets left weigh 0, as PyTorch's 0·∞).
double mean_scale(Reduction reduction, int64_t valid, double total_weight)
{
    if (reduction != Reduction::mean) return 1.0;
    if (valid == 0) return 0.0;  // no row counts: nothing flows back
    return total_weight == 0 ? std::nan("") : 1.0 / total_weight;
}

// The target input with some entries set to `value` (samples that hit ignore_index).
Tensor with_targets(const Tensor& t, std::initializer_list<int64_t> at, int64_t value)
{
    TG_CHECK(t.defined() && t.dtype() == int64, "with_targets: targets must be int64");
    Tensor c = t.clone();
    for (int64_t i : at) c.data<int64_t>()[i] = value;
    return c;
}

Tensor pick_rows(const Tensor& x, const Tensor& t, int64_t ignore_index);
Tensor place_rows(const Tensor& g, const Tensor& t, int64_t classes, int64_t ignore_index);

// Checks class targets against rows of `classes` classes and counts the ones
// that are not ignore_index.
int64_t count_valid(const char* op, const Tensor& z, const Tensor& t, int64_t ignore_index)
{
    TG_CHECK(z.defined() && t.defined(), op, ": undefined operand");
    TG_CHECK(z.dim() == 2 && is_floating(z.dtype()), op, ": expected float rows [M, C], got ", dtype_name(z.dtype()),
             " ", z.shape());
    TG_CHECK(t.dtype() == int64 && t.dim() == 1 && t.shape()[0] == z.shape()[0], op, ": targets must be int64 [",
             z.shape()[0], "], got ", dtype_name(t.dtype()), " ", t.shape());
    const int64_t* tp = t.data<int64_t>();
    int64_t valid = 0;
    for (int64_t r = 0; r < t.numel(); ++r) {
        if (tp[r] == ignore_index) continue;
        TG_CHECK(tp[r] >= 0 && tp[r] < z.shape()[1], op, ": target[", r, "] = ", tp[r], " is out of range for ",
                 z.shape()[1], " classes");
        ++valid;
    }
    return valid;
}

// The fused primitive on rows: inputs logits [M, C], targets [M] and,
// optionally, class weights [C] (a constant); the result is [M] for
// Reduction::none, else 0-d.
struct CrossEntropyRows : Op<CrossEntropyRows> {
    static constexpr const char* name = "cross_entropy";
    static constexpr Saves saves = save_input(0) | save_input(1);
    using Attrs = XentConfig;  // forward counts `valid` and `total_weight`
    // Keeps log Σ exp of each row, as its max and log Σ exp(z - max), and a
    // copy of the weights (a constant: changing them later changes nothing).
    static Tensor forward(TensorRefs in, Attrs& cfg, OpContext& ctx)
    {
        const Tensor &z = in[0], &t = in[1];
        cfg.valid = count_valid("cross_entropy", z, t, cfg.ignore_index);
        const Tensor weight = in.size() > 2 ? in[2] : Tensor();
        check_class_weight("cross_entropy", weight, z, z.shape()[1], false);
        check_reduction("cross_entropy", cfg.reduction);
        TG_CHECK(cfg.smoothing >= 0 && cfg.smoothing <= 1, "cross_entropy: label_smoothing ", cfg.smoothing,
                 " is outside [0, 1]");
        cfg.total_weight = target_weight_sum(t, weight, cfg.ignore_index, cfg.valid);
        int64_t m = z.shape()[0], c = z.shape()[1];
        Tensor lse = Tensor::empty({m, 2}, z.dtype());  // per row: max, log Σ exp(z - max)
        bool per_row = cfg.reduction == Reduction::none;
        Tensor out = Tensor::empty(per_row ? shape_type{m} : shape_type{}, z.dtype());
        TG_DISPATCH_FLOATING(z.dtype(), "cross_entropy", [&] {
            using T = scalar_t;
            std::vector<T> row_loss(per_row ? 0 : size_t(m));
            T* loss = per_row ? out.data<T>() : row_loss.data();
            kernels::cross_entropy_forward(z.data<T>(), t.data<int64_t>(), m, c, cfg.ignore_index, cfg.smoothing,
                                           weight.defined() ? weight.data<T>() : nullptr, lse.data<T>(), loss);
            if (!per_row) {
                double total = 0;
                for (int64_t r = 0; r < m; ++r) total += double(loss[r]);
                // A mean over no targets, or over targets of total weight 0, is NaN, as in PyTorch.
                // (With smoothing the sum need not be 0 then; PyTorch's NaN comes from its nll part, 0/0.)
                out.data<T>()[0] = T(cfg.reduction != Reduction::mean ? total
                                     : cfg.total_weight == 0       ? std::nan("")
                                                                   : total / cfg.total_weight);
            }
        });
        ctx.keep(lse);
        if (weight.defined()) ctx.keep(weight.clone());
        return out;
    }
    static tensor_list fused_backward(const BackwardArgs& b, const Attrs& cfg)
    {
        const Tensor &z = b.input(0), &t = b.input(1), &lse = b.kept(0), &g = b.grad;
        const Tensor weight = b.inputs() > 2 ? b.kept(1) : Tensor();
        int64_t m = z.shape()[0], c = z.shape()[1];
        bool per_row = cfg.reduction == Reduction::none;
        Tensor dz = Tensor::empty(z.shape(), z.dtype());
        TG_DISPATCH_FLOATING(z.dtype(), "cross_entropy", [&] {
            using T = scalar_t;
            const T* gp = g.data<T>();
            const double scale = mean_scale(cfg.reduction, cfg.valid, cfg.total_weight);
            kernels::cross_entropy_backward(z.data<T>(), t.data<int64_t>(), lse.data<T>(), gp, per_row,
                                            per_row ? T(0) : T(double(gp[0]) * scale), m, c, cfg.ignore_index,
                                            cfg.smoothing, weight.defined() ? weight.data<T>() : nullptr,
                                            dz.data<T>());
        });
        tensor_list grads{dz, Tensor()};
        if (b.inputs() > 2) grads.push_back(Tensor());
        return grads;
    }
    // (softmax(z)·a - q)·s in ops, with the smoothed, weighted target q, its
    // row sums a and the rows' scales s (0 for ignored rows) as constants.
    static tensor_list backward(const BackwardArgs& b, const Attrs& cfg)
    {
        const Tensor &z = b.input(0), &t = b.input(1), &g = b.grad;
        const Tensor weight = b.inputs() > 2 ? b.kept(1) : Tensor();
        int64_t m = z.shape()[0], c = z.shape()[1];
        bool per_row = cfg.reduction == Reduction::none;
        Tensor q = zeros({m, c}, z.dtype()), row_sum = zeros({m, 1}, z.dtype()), mask = zeros({m, 1}, z.dtype());
        TG_DISPATCH_FLOATING(z.dtype(), "cross_entropy", [&] {
            using T = scalar_t;
            const int64_t* tp = t.data<int64_t>();
            const T* w = weight.defined() ? weight.data<T>() : nullptr;
            double weight_sum = double(c);
            if (w) {
                weight_sum = 0;
                for (int64_t k = 0; k < c; ++k) weight_sum += double(w[k]);
            }
            const double on = 1 - cfg.smoothing, off = cfg.smoothing / double(c);
            T *qp = q.data<T>(), *ap = row_sum.data<T>(), *mp = mask.data<T>();
            for (int64_t r = 0; r < m; ++r) {
                if (tp[r] == cfg.ignore_index) continue;
                const double wt = w ? double(w[tp[r]]) : 1.0;
                for (int64_t k = 0; k < c; ++k) qp[r * c + k] = T(off * (w ? double(w[k]) : 1.0));
                qp[r * c + tp[r]] += T(on * wt);
                ap[r] = T(on * wt + off * weight_sum);
                mp[r] = T(mean_scale(cfg.reduction, cfg.valid, cfg.total_weight));
            }
        });
        Tensor s = mul(per_row ? reshape(g, {m, 1}) : g, mask);
        tensor_list grads{mul(sub(mul(softmax(z, 1), row_sum), q), s), Tensor()};
        if (b.inputs() > 2) grads.push_back(Tensor());
        return grads;
    }
    static std::vector<OpSample> samples();
};
TG_REGISTER_OP(CrossEntropyRows);

// --- nll_loss's primitives -----------------------------------------------------------------

// out[r] = x[r, t[r]] (0 where t[r] is ignore_index); inputs x [M, C] and t [M].
struct PickRows : Op<PickRows> {
    static constexpr const char* name = "pick_rows";
    static constexpr Saves saves = save_input(1);
    static constexpr ReplayForm replay = ReplayForm::index_map;
    struct Attrs {
        int64_t ignore_index;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor &x = in[0], &t = in[1];
        count_valid("pick_rows", x, t, a.ignore_index);
        int64_t m = x.shape()[0], c = x.shape()[1];
        Tensor out = Tensor::empty({m}, x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), "pick_rows", [&] {
            const scalar_t* xp = x.data<scalar_t>();
            const int64_t* tp = t.data<int64_t>();
            scalar_t* o = out.data<scalar_t>();
            for (int64_t r = 0; r < m; ++r) o[r] = tp[r] == a.ignore_index ? scalar_t(0) : xp[r * c + tp[r]];
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& b, const Attrs& a)
    {
        return {place_rows(b.grad, b.input(1), b.input_shape(0)[1], a.ignore_index), Tensor()};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[5,7]", {real("x", {5, 7}), index("target", {5}, 7)}, Attrs{-100}),
                tg::sample("[6,4] ignore_index 1 hit", {real("x", {6, 4}), index("target", {6}, 4)},
                           [](const tensor_list& x) { return pick_rows(x[0], with_targets(x[1], {2, 5}, 1), 1); })};
    }
};
TG_REGISTER_OP(PickRows);

// The adjoint of pick_rows: out [M, C] zero except out[r, t[r]] = g[r].
struct PlaceRows : Op<PlaceRows> {
    static constexpr const char* name = "place_rows";
    static constexpr Saves saves = save_input(1);
    static constexpr ReplayForm replay = ReplayForm::index_map;
    struct Attrs {
        int64_t classes, ignore_index;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor &g = in[0], &t = in[1];
        TG_CHECK(g.defined() && g.dim() == 1 && is_floating(g.dtype()), "place_rows: expected float values [M], got ",
                 g.defined() ? g.shape() : shape_type{});
        TG_CHECK(a.classes > 0, "place_rows: ", a.classes, " classes");
        int64_t m = g.shape()[0];
        TG_CHECK(t.defined() && t.dtype() == int64 && t.shape() == shape_type{m}, "place_rows: targets must be int64 [",
                 m, "]");
        Tensor out = zeros({m, a.classes}, g.dtype());
        TG_DISPATCH_FLOATING(g.dtype(), "place_rows", [&] {
            const scalar_t* gp = g.data<scalar_t>();
            const int64_t* tp = t.data<int64_t>();
            scalar_t* o = out.data<scalar_t>();
            for (int64_t r = 0; r < m; ++r) {
                if (tp[r] == a.ignore_index) continue;
                TG_CHECK(tp[r] >= 0 && tp[r] < a.classes, "place_rows: target[", r, "] = ", tp[r],
                         " is out of range for ", a.classes, " classes");
                o[r * a.classes + tp[r]] = gp[r];
            }
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& b, const Attrs& a)
    {
        return {pick_rows(b.grad, b.input(1), a.ignore_index), Tensor()};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[5] into [5,7]", {real("g", {5}), index("target", {5}, 7)}, Attrs{7, -100})};
    }
};
TG_REGISTER_OP(PlaceRows);

Tensor pick_rows(const Tensor& x, const Tensor& t, int64_t ignore_index) { return PickRows::call({x, t}, {ignore_index}); }
Tensor place_rows(const Tensor& g, const Tensor& t, int64_t classes, int64_t ignore_index)
{
    return PlaceRows::call({g, t}, {classes, ignore_index});
}

}  // namespace

// --- public ops ---------------------------------------------------------------------------

namespace {

// Class weights for a sample, in the logits' dtype: constants, never differentiated.
Tensor class_weights(const Tensor& like, const std::vector<double>& w)
{
    return from_values(w, {int64_t(w.size())}, like.dtype());
}

// [C] viewed to broadcast along the class axis of an input of `dim` axes.
Tensor along_class_axis(const Tensor& w, int64_t dim)
{
    if (dim <= 1) return w;
    shape_type s(size_t(dim), 1);
    s[1] = w.shape()[0];
    return reshape(w, s);
}

// Cross-entropy against class probabilities, a composite of log_softmax:
// PyTorch's formula, so the target and the weight are differentiable.
Tensor cross_entropy_with_probabilities(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& o)
{
    const char* op = "cross_entropy";
    TG_CHECK(is_floating(target.dtype()), op, ": a target of the logits' shape ", target.shape(),
             " holds class probabilities and must be floating, got ", dtype_name(target.dtype()));
    TG_CHECK(is_floating(logits.dtype()) && logits.dtype() == target.dtype(), op, ": logits are ",
             dtype_name(logits.dtype()), ", probability target is ", dtype_name(target.dtype()),
             " (both float32 or both float64)");
    TG_CHECK(o.ignore_index < 0, op, ": ignore_index ", o.ignore_index,
             " is not supported for class-probability targets (as in PyTorch)");
    TG_CHECK(logits.dim() >= 1, op, ": logits must have a class axis, got a 0-d tensor");
    const int64_t class_axis = logits.dim() == 1 ? 0 : 1;
    const int64_t classes = logits.shape()[size_t(class_axis)];
    check_class_weight(op, o.weight, logits, classes, false);
    Tensor q = target;
    if (o.label_smoothing > 0) q = target * (1 - o.label_smoothing) + o.label_smoothing / double(classes);
    if (o.weight.defined()) q = mul(q, along_class_axis(o.weight, logits.dim()));
    Tensor loss = neg(sum(mul(log_softmax(logits, class_axis), q), {class_axis}));
    switch (o.reduction) {
    case Reduction::none: return loss;
    case Reduction::sum: return sum(loss);
    default: break;
    }
    // Over every row (N·d1·...): no rows give NaN, as in PyTorch.
    return div(sum(loss), scalar(double(loss.numel()), loss.dtype()));
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& o)
{
    check_reduction("cross_entropy", o.reduction);
    TG_CHECK(o.label_smoothing >= 0 && o.label_smoothing <= 1, "cross_entropy: label_smoothing ", o.label_smoothing,
             " is outside [0, 1]");
    TG_CHECK(logits.defined() && target.defined(), "cross_entropy: undefined operand");
    // As PyTorch: a target of the logits' shape holds probabilities.
    if (logits.dim() >= 1 && target.shape() == logits.shape())
        return cross_entropy_with_probabilities(logits, target, o);
    Rows rows = as_rows("cross_entropy", "logits", logits, target, o.ignore_index);
    check_class_weight("cross_entropy", o.weight, logits, rows.classes, true);
    tensor_list inputs{rows.x, rows.target};
    if (o.weight.defined()) inputs.push_back(o.weight.detach());
    Tensor loss = CrossEntropyRows::call(inputs, {o.reduction, o.ignore_index, o.label_smoothing});
    return o.reduction == Reduction::none ? to_target_shape(loss, target) : loss;
}

// Through the public function, which views any logits as rows.
std::vector<OpSample> CrossEntropyRows::samples()
{
    using O = CrossEntropyOptions;
    // Weights of either sign of 1 and other values, so a wrong index or normaliser shows.
    auto w5 = [](const Tensor& like) { return class_weights(like, {0.5, 2.0, 1.0, 0.25, 1.5}); };
    auto w4 = [](const Tensor& like) { return class_weights(like, {1.5, 0.25, 2.0, 0.75}); };
    auto w3 = [](const Tensor& like) { return class_weights(like, {0.3, 1.7, 1.1}); };
    auto w7 = [](const Tensor& like) { return class_weights(like, {0.5, 2.0, 1.0, 0.25, 1.5, 3.0, 0.1}); };
    return {
        tg::sample("[5,7] mean", {real("logits", {5, 7}), index("target", {5}, 7)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1]); }),
        tg::sample("[5,7] sum", {real("logits", {5, 7}), index("target", {5}, 7)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1], Reduction::sum); }),
        tg::sample("[5,7] none", {real("logits", {5, 7}), index("target", {5}, 7)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1], Reduction::none); }),
        tg::sample("[3,19] mean, rows longer than a vector", {real("logits", {3, 19}), index("target", {3}, 19)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1]); }),
        tg::sample("[4,16] sum, rows of whole vectors", {real("logits", {4, 16}), index("target", {4}, 16)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1], Reduction::sum); }),
        tg::sample("[5,2] none, two classes", {real("logits", {5, 2}), index("target", {5}, 2)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1], Reduction::none); }),
        tg::sample("[6,4] label smoothing 0.2", {real("logits", {6, 4}), index("target", {6}, 4)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1], Reduction::mean, -100, 0.2); }),
        tg::sample("[6,5] ignore_index 2 hit, smoothing 0.1, mean", {real("logits", {6, 5}), index("target", {6}, 5)},
           [](const tensor_list& x) {
               return cross_entropy(x[0], with_targets(x[1], {0, 3}, 2), Reduction::mean, 2, 0.1);
           }),
        tg::sample("[6,5] ignore_index -100 hit, none", {real("logits", {6, 5}), index("target", {6}, 5)},
           [](const tensor_list& x) {
               return cross_entropy(x[0], with_targets(x[1], {1, 4}, -100), Reduction::none);
           }),
        tg::sample("[3,4,5] classes on axis 1, sum", {real("logits", {3, 4, 5}), index("target", {3, 5}, 4)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1], Reduction::sum); }),
        tg::sample("[2,3,2,2] classes on axis 1, none", {real("logits", {2, 3, 2, 2}), index("target", {2, 2, 2}, 3)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1], Reduction::none); }),
        tg::sample("[7] 1-d logits, 0-d target", {real("logits", {7}), index("target", {}, 7)},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1]); }),
        // Class weights: the weighted mean, with smoothing, ignore_index and classes on axis 1.
        tg::sample("[6,5] weight, mean", {real("logits", {6, 5}), index("target", {6}, 5)},
           [w5](const tensor_list& x) { return cross_entropy(x[0], x[1], O{.weight = w5(x[0])}); }),
        tg::sample("[6,5] weight, none", {real("logits", {6, 5}), index("target", {6}, 5)},
           [w5](const tensor_list& x) {
               return cross_entropy(x[0], x[1], O{.weight = w5(x[0]), .reduction = Reduction::none});
           }),
        tg::sample("[6,5] weight, sum, smoothing 0.3", {real("logits", {6, 5}), index("target", {6}, 5)},
           [w5](const tensor_list& x) {
               return cross_entropy(x[0], x[1],
                                    O{.weight = w5(x[0]), .reduction = Reduction::sum, .label_smoothing = 0.3});
           }),
        tg::sample("[6,5] weight, ignore_index 2 hit, smoothing 0.1, mean",
                   {real("logits", {6, 5}), index("target", {6}, 5)},
           [w5](const tensor_list& x) {
               return cross_entropy(x[0], with_targets(x[1], {0, 3}, 2),
                                    O{.weight = w5(x[0]), .ignore_index = 2, .label_smoothing = 0.1});
           }),
        tg::sample("[6,5] weight, ignore_index hit, smoothing 0.25, none",
                   {real("logits", {6, 5}), index("target", {6}, 5)},
           [w5](const tensor_list& x) {
               return cross_entropy(x[0], with_targets(x[1], {1, 5}, -100),
                                    O{.weight = w5(x[0]), .reduction = Reduction::none, .label_smoothing = 0.25});
           }),
        tg::sample("[2,4,3] weight, classes on axis 1, ignore_index hit, smoothing 0.2, mean",
                   {real("logits", {2, 4, 3}), index("target", {2, 3}, 4)},
           [w4](const tensor_list& x) {
               return cross_entropy(x[0], with_targets(x[1], {4}, -100),
                                    O{.weight = w4(x[0]), .label_smoothing = 0.2});
           }),
        tg::sample("[2,3,2,2] weight, classes on axis 1, none", {real("logits", {2, 3, 2, 2}), index("target", {2, 2, 2}, 3)},
           [w3](const tensor_list& x) {
               return cross_entropy(x[0], x[1], O{.weight = w3(x[0]), .reduction = Reduction::none});
           }),
        tg::sample("[7] 1-d logits, weight, smoothing 0.5",
                   {real("logits", {7}), index("target", {}, 7)},
           [w7](const tensor_list& x) {
               return cross_entropy(x[0], x[1], O{.weight = w7(x[0]), .label_smoothing = 0.5});
           }),
        // Class probabilities: the target (and a weight given as an input) differentiable.
        tg::sample("[4,5] probabilities, mean", {real("logits", {4, 5}), unit_interval("target", {4, 5})},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1]); }),
        tg::sample("[4,5] probabilities, weight, smoothing 0.2, sum",
                   {real("logits", {4, 5}), unit_interval("target", {4, 5}), positive("weight", {5})},
           [](const tensor_list& x) {
               return cross_entropy(x[0], x[1],
                                    O{.weight = x[2], .reduction = Reduction::sum, .label_smoothing = 0.2});
           }),
        tg::sample("[2,3,2,2] probabilities, classes on axis 1, weight, none",
                   {real("logits", {2, 3, 2, 2}), unit_interval("target", {2, 3, 2, 2}), positive("weight", {3})},
           [](const tensor_list& x) {
               return cross_entropy(x[0], x[1], O{.weight = x[2], .reduction = Reduction::none});
           }),
        tg::sample("[2,4,3] probabilities, classes on axis 1, smoothing 0.1, mean",
                   {real("logits", {2, 4, 3}), unit_interval("target", {2, 4, 3})},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1], O{.label_smoothing = 0.1}); }),
        tg::sample("[6] probabilities, 1-d", {real("logits", {6}), unit_interval("target", {6})},
           [](const tensor_list& x) { return cross_entropy(x[0], x[1]); }),
    };
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& o)
{
    check_reduction("nll_loss", o.reduction);
    Rows rows = as_rows("nll_loss", "log_probs", log_probs, target, o.ignore_index);
    check_class_weight("nll_loss", o.weight, log_probs, rows.classes, true);
    Tensor picked = pick_rows(rows.x, rows.target, o.ignore_index);
    double total_weight = double(rows.valid);
    if (o.weight.defined()) {
        // w[t] per row (0 where ignored), a constant.
        Tensor row_weight = zeros({rows.target.numel()}, log_probs.dtype());
        TG_DISPATCH_FLOATING(log_probs.dtype(), "nll_loss", [&] {
            const scalar_t* w = o.weight.data<scalar_t>();
            const int64_t* tp = rows.target.data<int64_t>();
            scalar_t* out = row_weight.data<scalar_t>();
            for (int64_t r = 0; r < rows.target.numel(); ++r)
                if (tp[r] != o.ignore_index) out[r] = w[tp[r]];
        });
        total_weight = target_weight_sum(rows.target, o.weight, o.ignore_index, rows.valid);
        picked = mul(picked, row_weight);
    }
    Tensor loss = neg(picked);
    switch (o.reduction) {
    case Reduction::none: return to_target_shape(loss, target);
    case Reduction::sum: return sum(loss);
    default: break;
    }
    // Over the targets that are not ignored, weighted (none, or weight 0: NaN, as in PyTorch).
    return div(sum(loss), scalar(total_weight, loss.dtype()));
}

TG_REGISTER_SAMPLES("nll_loss", {
    sample("[5,7] mean", {real("log_probs", {5, 7}), index("target", {5}, 7)},
           [](const tensor_list& x) { return nll_loss(x[0], x[1]); }),
    sample("[5,7] sum", {real("log_probs", {5, 7}), index("target", {5}, 7)},
           [](const tensor_list& x) { return nll_loss(x[0], x[1], Reduction::sum); }),
    sample("[5,7] none", {real("log_probs", {5, 7}), index("target", {5}, 7)},
           [](const tensor_list& x) { return nll_loss(x[0], x[1], Reduction::none); }),
    sample("[6,4] ignore_index 1 hit, mean", {real("log_probs", {6, 4}), index("target", {6}, 4)},
           [](const tensor_list& x) { return nll_loss(x[0], with_targets(x[1], {2, 5}, 1), Reduction::mean, 1); }),
    sample("[3,4,5] classes on axis 1, none", {real("log_probs", {3, 4, 5}), index("target", {3, 5}, 4)},
           [](const tensor_list& x) { return nll_loss(x[0], x[1], Reduction::none); }),
    sample("log_softmax then nll, [4,6]", {real("logits", {4, 6}), index("target", {4}, 6)},
           [](const tensor_list& x) { return nll_loss(log_softmax(x[0], 1), x[1]); }),
    sample("[6,4] weight, ignore_index 1 hit, mean", {real("log_probs", {6, 4}), index("target", {6}, 4)},
           [](const tensor_list& x) {
               return nll_loss(x[0], with_targets(x[1], {2, 5}, 1),
                               {.weight = class_weights(x[0], {1.5, 0.25, 2.0, 0.75}), .ignore_index = 1});
           }),
    sample("[3,4,5] weight, classes on axis 1, none", {real("log_probs", {3, 4, 5}), index("target", {3, 5}, 4)},
           [](const tensor_list& x) {
               return nll_loss(x[0], x[1],
                               {.weight = class_weights(x[0], {1.5, 0.25, 2.0, 0.75}), .reduction = Reduction::none});
           }),
    sample("[5,3] weight, sum", {real("log_probs", {5, 3}), index("target", {5}, 3)},
           [](const tensor_list& x) {
               return nll_loss(x[0], x[1], {.weight = class_weights(x[0], {0.3, 1.7, 1.1}), .reduction = Reduction::sum});
           }),
});

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction)
{
    check_reduction("mse_loss", reduction);
    check_pair("mse_loss", "input", input, target);
    Tensor d = sub(input, target);
    return reduce_loss(mul(d, d), reduction);
}
TG_REGISTER_SAMPLES("mse_loss", {
    sample("[3,5] mean", {real("input", {3, 5}), real("target", {3, 5})},
           [](const tensor_list& x) { return mse_loss(x[0], x[1]); }),
    sample("[2,3,4] sum", {real("input", {2, 3, 4}), real("target", {2, 3, 4})},
           [](const tensor_list& x) { return mse_loss(x[0], x[1], Reduction::sum); }),
    sample("[7] none", {real("input", {7}), real("target", {7})},
           [](const tensor_list& x) { return mse_loss(x[0], x[1], Reduction::none); }),
});

// --- l1, smooth_l1, huber ---------------------------------------------------------------

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction)
{
    check_reduction("l1_loss", reduction);
    check_pair("l1_loss", "input", input, target);
    return reduce_loss(abs(sub(input, target)), reduction);
}

// The quadratic piece where |d| < width, the linear one elsewhere, joined
// with equal value and slope; the piece is chosen on the value (a constant
// mask), so the second derivative is 1/width inside and 0 outside (at |d| =
// width too), as PyTorch's.
Tensor quadratic_then_linear(const Tensor& d, double width)
{
    Tensor ad = abs(d);
    Tensor inside = lt(ad, width);
    Tensor quadratic = mul(d, d) * (0.5 / width), linear = ad - 0.5 * width;
    return add(mul(inside, quadratic), mul(1.0 - inside, linear));
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction, double beta)
{
    check_reduction("smooth_l1_loss", reduction);
    TG_CHECK(beta >= 0 && std::isfinite(beta), "smooth_l1_loss: beta ", beta, " must be finite and >= 0");
    check_pair("smooth_l1_loss", "input", input, target);
    Tensor d = sub(input, target);
    if (beta == 0) {
        // |d| with PyTorch's slopes, -1 for both input and target at d = 0 (its
        // d <= -beta branch, the target's with the operands swapped), not l1_loss's 0:
        // input·a + target·b + c, the masks a, b and c = |d| - input·a - target·b constants.
        Tensor a = gt(d, 0.0) * 2.0 - 1.0, b = lt(d, 0.0) * 2.0 - 1.0;
        Tensor linear = add(mul(input, a), mul(target, b));
        Tensor c = sub(abs(d), linear).detach();
        return reduce_loss(add(linear, c), reduction);
    }
    return reduce_loss(quadratic_then_linear(d, beta), reduction);
}

Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction reduction, double delta)
{
    check_reduction("huber_loss", reduction);
    TG_CHECK(delta > 0 && std::isfinite(delta), "huber_loss: delta ", delta, " must be finite and > 0");
    check_pair("huber_loss", "input", input, target);
    return reduce_loss(quadratic_then_linear(sub(input, target), delta) * delta, reduction);
}

namespace {

// Inputs whose difference stays a distance from the kinks of the piecewise
// losses (|d| = width, d = 0): input = width·c + x/100 with c cycling through
// values at least 0.2 from ±1 and 0, target = x/100.
Tensor away_from_kinks(const Tensor& x, double width)
{
    static const double centers[] = {-2.3, 0.45, 1.6, -0.6, 0.3, -1.4, 0.75, 2.1, -0.35};
    std::vector<double> c(size_t(x.numel()));
    for (size_t i = 0; i < c.size(); ++i) c[i] = width * centers[i % 9];
    return add(from_values(c, x.shape(), x.dtype()), x * 0.01);
}

}  // namespace

TG_REGISTER_SAMPLES("l1_loss", {
    sample("[3,5] mean", {real("input", {3, 5}), real("target", {3, 5})},
           [](const tensor_list& x) { return l1_loss(away_from_kinks(x[0], 1.0), x[1] * 0.01); }),
    sample("[2,3,4] sum", {real("input", {2, 3, 4}), real("target", {2, 3, 4})},
           [](const tensor_list& x) { return l1_loss(away_from_kinks(x[0], 1.0), x[1] * 0.01, Reduction::sum); }),
    sample("[7] none", {real("input", {7}), real("target", {7})},
           [](const tensor_list& x) { return l1_loss(away_from_kinks(x[0], 1.0), x[1] * 0.01, Reduction::none); }),
});
TG_REGISTER_SAMPLES("smooth_l1_loss", {
    sample("[3,5] mean, beta 1", {real("input", {3, 5}), real("target", {3, 5})},
           [](const tensor_list& x) { return smooth_l1_loss(away_from_kinks(x[0], 1.0), x[1] * 0.01); }),
    sample("[2,3,4] sum, beta 0.5", {real("input", {2, 3, 4}), real("target", {2, 3, 4})},
           [](const tensor_list& x) {
               return smooth_l1_loss(away_from_kinks(x[0], 0.5), x[1] * 0.01, Reduction::sum, 0.5);
           }),
    sample("[9] none, beta 2.5", {real("input", {9}), real("target", {9})},
           [](const tensor_list& x) {
               return smooth_l1_loss(away_from_kinks(x[0], 2.5), x[1] * 0.01, Reduction::none, 2.5);
           }),
    sample("[3,4] mean, beta 0 (l1)", {real("input", {3, 4}), real("target", {3, 4})},
           [](const tensor_list& x) {
               return smooth_l1_loss(away_from_kinks(x[0], 1.0), x[1] * 0.01, Reduction::mean, 0.0);
           }),
});
TG_REGISTER_SAMPLES("huber_loss", {
    sample("[3,5] mean, delta 1", {real("input", {3, 5}), real("target", {3, 5})},
           [](const tensor_list& x) { return huber_loss(away_from_kinks(x[0], 1.0), x[1] * 0.01); }),
    sample("[2,3,4] sum, delta 0.5", {real("input", {2, 3, 4}), real("target", {2, 3, 4})},
           [](const tensor_list& x) {
               return huber_loss(away_from_kinks(x[0], 0.5), x[1] * 0.01, Reduction::sum, 0.5);
           }),
    sample("[9] none, delta 2.5", {real("input", {9}), real("target", {9})},
           [](const tensor_list& x) {
               return huber_loss(away_from_kinks(x[0], 2.5), x[1] * 0.01, Reduction::none, 2.5);
           }),
});

// --- kl_div -------------------------------------------------------------------------------

namespace {

// t·(log t - x), with PyTorch's xlogy(t, t) = 0 at t = 0 (and NaN for t < 0);
// its gradients are PyTorch's: -t for x, log t + t/t - x for t (NaN at t = 0).
struct KlDivPointwise : BinaryOp<KlDivPointwise> {
    static constexpr const char* name = "kl_div_pointwise";
    static constexpr Saves saves = save_input(0) | save_input(1);
    static constexpr Domain b_domain = Domain::positive;
    static auto f(auto x, auto t)
    {
        using T = decltype(x);
        return (t == T(0) ? T(0) : t * std::log(t)) - t * x;
    }
    static tensor_list backward(const BackwardArgs& g)
    {
        const Tensor &x = g.input(0), &t = g.input(1);
        return {g.needs_grad(0) ? sum_to(neg(mul(g.grad, t)), x.shape()) : Tensor(),
                g.needs_grad(1) ? sum_to(mul(g.grad, sub(add(log(t), div(t, t)), x)), t.shape()) : Tensor()};
    }
};
TG_REGISTER_OP(KlDivPointwise);

}  // namespace

Tensor kl_div(const Tensor& input, const Tensor& target, const KlDivOptions& o)
{
    check_reduction("kl_div", o.reduction, true);
    check_pair("kl_div", "input", input, target);
    Tensor loss = o.log_target ? mul(exp(target), sub(target, input)) : KlDivPointwise::call({input, target});
    if (o.reduction != Reduction::batchmean) return reduce_loss(loss, o.reduction);
    // The sum over the batch (the first axis; a 0-d input is its own batch, as in PyTorch).
    Tensor total = sum(loss);
    if (input.dim() == 0) return total;
    return div(total, scalar(double(input.shape()[0]), total.dtype()));
}

TG_REGISTER_SAMPLES("kl_div", {
    sample("[3,5] mean", {real("input", {3, 5}), positive("target", {3, 5})},
           [](const tensor_list& x) { return kl_div(x[0], x[1]); }),
    sample("[3,5] batchmean", {real("input", {3, 5}), positive("target", {3, 5})},
           [](const tensor_list& x) { return kl_div(x[0], x[1], Reduction::batchmean); }),
    sample("[2,3,4] sum, log_target", {real("input", {2, 3, 4}), real("target", {2, 3, 4})},
           [](const tensor_list& x) { return kl_div(x[0], x[1], {.reduction = Reduction::sum, .log_target = true}); }),
    sample("[4,3] batchmean, log_target", {real("input", {4, 3}), real("target", {4, 3})},
           [](const tensor_list& x) { return kl_div(x[0], x[1], Reduction::batchmean, true); }),
    sample("[7] none", {real("input", {7}), positive("target", {7})},
           [](const tensor_list& x) { return kl_div(x[0], x[1], Reduction::none); }),
    sample("0-d batchmean", {real("input", {}), positive("target", {})},
           [](const tensor_list& x) { return kl_div(x[0], x[1], Reduction::batchmean); }),
});

// --- binary cross-entropy -----------------------------------------------------------------

namespace {

// -[t·max(log p, -100) + (1 - t)·max(log(1 - p), -100)] of p in [0, 1]:
// PyTorch's forward, and its gradients: (p - t)/max(p·(1 - p), 1e-12) for p,
// -logit(p) for t.
Tensor bce_input_grad(const Tensor& g, const Tensor& p, const Tensor& t);

struct BinaryCrossEntropy : BinaryOp<BinaryCrossEntropy> {
    static constexpr const char* name = "binary_cross_entropy";
    static constexpr Saves saves = save_input(0) | save_input(1);
    static constexpr Domain a_domain = Domain::unit_interval, b_domain = Domain::unit_interval;
    static auto f(auto p, auto t)
    {
        using T = decltype(p);
        return (t - T(1)) * std::max(T(std::log(T(1) - p)), T(-100)) - t * std::max(T(std::log(p)), T(-100));
    }
    static Tensor forward(TensorRefs in)
    {
        const Tensor& p = in[0];
        TG_CHECK(p.defined() && in[1].defined(), "binary_cross_entropy: undefined operand");
        TG_DISPATCH_FLOATING(p.dtype(), "binary_cross_entropy", [&] {
            const scalar_t* v = p.data<scalar_t>();
            for (int64_t i = 0; i < p.numel(); ++i)
                TG_CHECK(v[i] >= 0 && v[i] <= 1, name, ": input[", i, "] = ", double(v[i]),
                         " is not a probability in [0, 1]");
        });
        return map_binary(name, p, in[1], [](auto a, auto b) { return f(a, b); });
    }
    static tensor_list backward(const BackwardArgs& g)
    {
        const Tensor &p = g.input(0), &t = g.input(1);
        tensor_list out(2);
        if (g.needs_grad(0)) {
            out[0] = sum_to(bce_input_grad(g.grad, p, t), p.shape());
        }
        // -logit(p), whose own derivative is PyTorch's -1/(p·(1 - p)): infinite, not NaN, at p = 0 or 1.
        if (g.needs_grad(1)) out[1] = sum_to(mul(g.grad, sub(log(1.0 - p), log(p))), t.shape());
        return out;
    }
};
TG_REGISTER_OP(BinaryCrossEntropy);

// g·(p - t)/max(p·(1 - p), 1e-12), binary_cross_entropy's gradient for p, as
// an op for PyTorch's second derivatives: for p, g·(p² - 2pt + t)/((p + ε)²·(1 - p + ε)²)
// with ε = 1e-12 (not the exact derivative of this forward, but PyTorch's
// numbers); for t, -g/max(p·(1 - p), ε); for g, the forward over g.
struct BceInputGrad : Op<BceInputGrad> {
    static constexpr const char* name = "binary_cross_entropy_backward";
    static constexpr Saves saves = save_input(0) | save_input(1) | save_input(2);
    static Tensor forward(TensorRefs in)
    {
        const Tensor &g = in[0], &p = in[1], &t = in[2];
        return div(mul(g, sub(p, t)), floored(p));
    }
    static tensor_list backward(const BackwardArgs& b)
    {
        const Tensor &g = b.input(0), &p = b.input(1), &t = b.input(2), &gg = b.grad;
        tensor_list out(3);
        if (b.needs_grad(0)) out[0] = sum_to(div(mul(gg, sub(p, t)), floored(p)), g.shape());
        if (b.needs_grad(1)) {
            Tensor a = p + 1e-12, c = (1.0 - p) + 1e-12;
            Tensor numerator = add(sub(mul(p, p), mul(p, t) * 2.0), t);
            out[1] = sum_to(div(mul(mul(gg, g), numerator), mul(mul(a, a), mul(c, c))), p.shape());
        }
        // (Here PyTorch's floor is the double 1e-12.)
        if (b.needs_grad(2))
            out[2] = sum_to(neg(div(mul(gg, g), maximum(mul(p, 1.0 - p), scalar(1e-12, p.dtype())))), t.shape());
        return out;
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[3,4]", {real("g", {3, 4}), unit_interval("p", {3, 4}), unit_interval("t", {3, 4})}),
                sample("broadcast g [] p [2,3] t [3]", {real("g", {}), unit_interval("p", {2, 3}), unit_interval("t", {3})})};
    }

private:
    // PyTorch's floor is the float 1e-12f, also for float64: 9.99999996e-13.
    static Tensor floored(const Tensor& p) { return maximum(mul(p, 1.0 - p), scalar(double(1e-12f), p.dtype())); }
};
TG_REGISTER_OP(BceInputGrad);

Tensor bce_input_grad(const Tensor& g, const Tensor& p, const Tensor& t) { return BceInputGrad::call({g, p, t}); }

}  // namespace

Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, const BinaryCrossEntropyOptions& o)
{
    const char* op = "binary_cross_entropy";
    check_reduction(op, o.reduction);
    check_pair(op, "input", input, target);
    check_broadcast_weight(op, "weight", o.weight, input);
    Tensor loss = BinaryCrossEntropy::call({input, target});
    return reduce_loss(o.weight.defined() ? mul(loss, o.weight) : loss, o.reduction);
}

TG_REGISTER_SAMPLES("binary_cross_entropy", {
    sample("[4,5] mean", {unit_interval("input", {4, 5}), unit_interval("target", {4, 5})},
           [](const tensor_list& x) { return binary_cross_entropy(x[0], x[1]); }),
    sample("[3,4] sum, weight [4]", {unit_interval("input", {3, 4}), unit_interval("target", {3, 4}), positive("weight", {4})},
           [](const tensor_list& x) {
               return binary_cross_entropy(x[0], x[1], {.weight = x[2], .reduction = Reduction::sum});
           }),
    sample("[2,3] none, weight [2,1]", {unit_interval("input", {2, 3}), unit_interval("target", {2, 3}), positive("weight", {2, 1})},
           [](const tensor_list& x) {
               return binary_cross_entropy(x[0], x[1], {.weight = x[2], .reduction = Reduction::none});
           }),
});
// The unreduced loss ℓ = (1 − t)·x + w·log(1 + e^−x), w = 1 + (p − 1)·t, as
// one op: its forward is the stable form for any x, its backward PyTorch's
// dℓ/dx = w·σ(x) − p·t. (Differentiating the forward's composite instead
// gives (1 − t) − w·σ(−x): equal, but 0 where σ(x) is below float32's
// resolution of 1, x < −17, where PyTorch gives σ(x).) Inputs: logits,
// target and, optionally, pos_weight p broadcast to the logits.
struct BceWithLogits : Op<BceWithLogits> {
    static constexpr const char* name = "bce_with_logits";
    static constexpr Saves saves = save_input(0) | save_input(1) | save_input(2);
    static Tensor forward(TensorRefs in)
    {
        const Tensor &x = in[0], &t = in[1];
        Tensor log_sigmoid_neg = softplus(neg(x));  // log(1 + e^−x), stable for any x
        return add(sub(x, mul(t, x)), in.size() > 2 ? mul(weight(in[2], t), log_sigmoid_neg) : log_sigmoid_neg);
    }
    static tensor_list backward(const BackwardArgs& a)
    {
        const Tensor &x = a.input(0), &t = a.input(1);
        const bool has_p = a.inputs() > 2;
        tensor_list g(a.inputs());
        if (a.needs_grad(0))
            g[0] = mul(a.grad, has_p ? sub(mul(weight(a.input(2), t), sigmoid(x)), mul(a.input(2), t))
                                     : sub(sigmoid(x), t));
        if (!has_p) {
            if (a.needs_grad(1)) g[1] = mul(a.grad, neg(x));
            return g;
        }
        Tensor log_sigmoid_neg = softplus(neg(x));
        if (a.needs_grad(1)) g[1] = mul(a.grad, sub(mul(a.input(2) - 1.0, log_sigmoid_neg), x));
        if (a.needs_grad(2)) g[2] = sum_to(mul(a.grad, mul(t, log_sigmoid_neg)), a.input_shape(2));
        return g;
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[4,5]", {real("logits", {4, 5}), unit_interval("target", {4, 5})}),
                sample("[3,5] pos_weight [5]",
                       {real("logits", {3, 5}), unit_interval("target", {3, 5}), positive("pos_weight", {5})}),
                sample("[2,3] pos_weight [2,1]",
                       {real("logits", {2, 3}), unit_interval("target", {2, 3}), positive("pos_weight", {2, 1})})};
    }

private:
    static Tensor weight(const Tensor& p, const Tensor& t) { return (p - 1.0) * t + 1.0; }  // w
};
TG_REGISTER_OP(BceWithLogits);

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const BinaryCrossEntropyWithLogitsOptions& o)
{
    const char* op = "binary_cross_entropy_with_logits";
    check_reduction(op, o.reduction);
    TG_CHECK(logits.defined() && target.defined(), op, ": undefined operand");
    TG_CHECK(logits.shape() == target.shape(), op, ": logits of shape ", logits.shape(),
             " and target of shape ", target.shape(), " differ");
    TG_CHECK(logits.dtype() == target.dtype() && is_floating(logits.dtype()), op, ": logits are ",
             dtype_name(logits.dtype()), ", target is ", dtype_name(target.dtype()), " (both float32 or both float64)");
    for (const auto& [what, w] : {std::pair<const char*, const Tensor&>{"pos_weight", o.pos_weight}, {"weight", o.weight}}) {
        if (!w.defined()) continue;
        TG_CHECK(w.dtype() == logits.dtype(), op, ": ", what, " is ", dtype_name(w.dtype()), ", logits are ",
                 dtype_name(logits.dtype()));
        TG_CHECK(kernels::broadcasts_to(w.shape(), logits.shape()), op, ": ", what, " of shape ", w.shape(),
                 " does not broadcast to the logits' shape ", logits.shape());
    }
    Tensor loss = o.pos_weight.defined() ? BceWithLogits::call({logits, target, o.pos_weight})
                                         : BceWithLogits::call({logits, target});
    return reduce_loss(o.weight.defined() ? mul(loss, o.weight) : loss, o.reduction);
}

TG_REGISTER_SAMPLES("binary_cross_entropy_with_logits", {
    sample("[4,5] mean", {real("logits", {4, 5}), unit_interval("target", {4, 5})},
           [](const tensor_list& x) { return binary_cross_entropy_with_logits(x[0], x[1]); }),
    sample("[3,4] sum", {real("logits", {3, 4}), unit_interval("target", {3, 4})},
           [](const tensor_list& x) { return binary_cross_entropy_with_logits(x[0], x[1], Reduction::sum); }),
    sample("[7] none", {real("logits", {7}), unit_interval("target", {7})},
           [](const tensor_list& x) { return binary_cross_entropy_with_logits(x[0], x[1], Reduction::none); }),
    sample("[3,5] pos_weight [5], mean", {real("logits", {3, 5}), unit_interval("target", {3, 5}), positive("pos_weight", {5})},
           [](const tensor_list& x) {
               return binary_cross_entropy_with_logits(x[0], x[1], Reduction::mean, x[2]);
           }),
    sample("[3,5] weight [3,1], sum", {real("logits", {3, 5}), unit_interval("target", {3, 5}), positive("weight", {3, 1})},
           [](const tensor_list& x) {
               return binary_cross_entropy_with_logits(x[0], x[1], {.weight = x[2], .reduction = Reduction::sum});
           }),
    sample("[2,4] weight [4] and pos_weight [2,1], none",
           {real("logits", {2, 4}), unit_interval("target", {2, 4}), positive("weight", {4}), positive("pos_weight", {2, 1})},
           [](const tensor_list& x) {
               return binary_cross_entropy_with_logits(
                   x[0], x[1], {.weight = x[2], .reduction = Reduction::none, .pos_weight = x[3]});
           }),
});

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_loss_ops() {}
}  // namespace detail

}  // namespace tg
