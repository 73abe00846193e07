// Losses. cross_entropy is a fused primitive: one pass over the logits
// forward (log-sum-exp and the picked logit per row), one pass backward
// ((softmax - target distribution)·scale), both in engine/kernels/softmax.cpp;
// its differentiable backward is written in ops, so it can be differentiated again.
// nll_loss rests on two primitives that are each other's adjoint (pick a
// class per row, place a value per row); mse_loss and
// binary_cross_entropy_with_logits are composites.
#include "ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/core/op.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/softmax.hpp"
#include "ops/elementwise.hpp"
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

// A Reduction made from an integer (a cast, a file) can hold any value.
void check_reduction(const char* op, Reduction reduction)
{
    TG_CHECK(reduction == Reduction::none || reduction == Reduction::mean || reduction == Reduction::sum, op,
             ": reduction ", int(reduction), " is not one of Reduction::none (0), mean (1), sum (2)");
}

Tensor reduce_loss(const Tensor& loss, Reduction reduction)
{
    switch (reduction) {
    case Reduction::none: return loss;
    case Reduction::sum: return sum(loss);
    case Reduction::mean: return mean(loss);
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
    int64_t valid = 0;  // targets that are not ignore_index
};

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

// The fused primitive on rows: inputs logits [M, C] and targets [M]; the
// result is [M] for Reduction::none, else 0-d.
struct CrossEntropyRows : Op<CrossEntropyRows> {
    static constexpr const char* name = "cross_entropy";
    static constexpr Saves saves = save_input(0) | save_input(1);
    using Attrs = XentConfig;  // forward counts `valid`
    // Keeps log Σ exp of each row, as its max and log Σ exp(z - max).
    static Tensor forward(TensorRefs in, Attrs& cfg, OpContext& ctx)
    {
        const Tensor &z = in[0], &t = in[1];
        cfg.valid = count_valid("cross_entropy", z, t, cfg.ignore_index);
        int64_t m = z.shape()[0], c = z.shape()[1];
        Tensor lse = Tensor::empty({m, 2}, z.dtype());  // per row: max, log Σ exp(z - max)
        bool per_row = cfg.reduction == Reduction::none;
        Tensor out = Tensor::empty(per_row ? shape_type{m} : shape_type{}, z.dtype());
        TG_DISPATCH_FLOATING(z.dtype(), "cross_entropy", [&] {
            using T = scalar_t;
            std::vector<T> row_loss(per_row ? 0 : size_t(m));
            T* loss = per_row ? out.data<T>() : row_loss.data();
            kernels::cross_entropy_forward(z.data<T>(), t.data<int64_t>(), m, c, cfg.ignore_index, cfg.smoothing,
                                           lse.data<T>(), loss);
            if (!per_row) {
                double total = 0;
                for (int64_t r = 0; r < m; ++r) total += double(loss[r]);
                // A mean over no targets is NaN, as in PyTorch.
                out.data<T>()[0] = T(cfg.reduction == Reduction::mean ? total / double(cfg.valid) : total);
            }
        });
        ctx.keep(lse);
        return out;
    }
    static double row_scale(const Attrs& cfg)
    {
        return cfg.reduction == Reduction::mean ? (cfg.valid > 0 ? 1.0 / double(cfg.valid) : 0.0) : 1.0;
    }
    static tensor_list fused_backward(const BackwardArgs& b, const Attrs& cfg)
    {
        const Tensor &z = b.input(0), &t = b.input(1), &lse = b.kept(0), &g = b.grad;
        int64_t m = z.shape()[0], c = z.shape()[1];
        bool per_row = cfg.reduction == Reduction::none;
        Tensor dz = Tensor::empty(z.shape(), z.dtype());
        TG_DISPATCH_FLOATING(z.dtype(), "cross_entropy", [&] {
            using T = scalar_t;
            const T* gp = g.data<T>();
            kernels::cross_entropy_backward(z.data<T>(), t.data<int64_t>(), lse.data<T>(), gp, per_row,
                                            per_row ? T(0) : T(double(gp[0]) * row_scale(cfg)), m, c, cfg.ignore_index,
                                            cfg.smoothing, dz.data<T>());
        });
        return {dz, Tensor()};
    }
    // (softmax(z) - q)·w in ops, with the target distribution q and the row
    // weights' mask as constants.
    static tensor_list backward(const BackwardArgs& b, const Attrs& cfg)
    {
        const Tensor &z = b.input(0), &t = b.input(1), &g = b.grad;
        int64_t m = z.shape()[0], c = z.shape()[1];
        bool per_row = cfg.reduction == Reduction::none;
        Tensor q = zeros({m, c}, z.dtype()), mask = zeros({m, 1}, z.dtype());
        TG_DISPATCH_FLOATING(z.dtype(), "cross_entropy", [&] {
            using T = scalar_t;
            const int64_t* tp = t.data<int64_t>();
            T *qp = q.data<T>(), *mp = mask.data<T>();
            for (int64_t r = 0; r < m; ++r) {
                if (tp[r] == cfg.ignore_index) continue;
                std::fill(qp + r * c, qp + (r + 1) * c, T(cfg.smoothing / double(c)));
                qp[r * c + tp[r]] += T(1 - cfg.smoothing);
                mp[r] = T(row_scale(cfg));
            }
        });
        Tensor w = mul(per_row ? reshape(g, {m, 1}) : g, mask);
        return {mul(sub(softmax(z, 1), q), w), Tensor()};
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

Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction, int64_t ignore_index,
                     double label_smoothing)
{
    check_reduction("cross_entropy", reduction);
    TG_CHECK(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy: label_smoothing ", label_smoothing,
             " is outside [0, 1]");
    Rows rows = as_rows("cross_entropy", "logits", logits, target, ignore_index);
    Tensor loss = CrossEntropyRows::call({rows.x, rows.target}, {reduction, ignore_index, label_smoothing});
    return reduction == Reduction::none ? to_target_shape(loss, target) : loss;
}

// Through the public function, which views any logits as rows.
std::vector<OpSample> CrossEntropyRows::samples()
{
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
    };
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction reduction, int64_t ignore_index)
{
    check_reduction("nll_loss", reduction);
    Rows rows = as_rows("nll_loss", "log_probs", log_probs, target, ignore_index);
    Tensor loss = neg(pick_rows(rows.x, rows.target, ignore_index));
    switch (reduction) {
    case Reduction::none: return to_target_shape(loss, target);
    case Reduction::sum: return sum(loss);
    case Reduction::mean: break;
    }
    // Over the targets that are not ignored (none: NaN, as in PyTorch).
    return div(sum(loss), scalar(double(rows.valid), loss.dtype()));
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
});

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction)
{
    check_reduction("mse_loss", reduction);
    TG_CHECK(input.defined() && target.defined(), "mse_loss: undefined operand");
    TG_CHECK(input.shape() == target.shape(), "mse_loss: input of shape ", input.shape(),
             " and target of shape ", target.shape(), " differ");
    TG_CHECK(input.dtype() == target.dtype() && is_floating(input.dtype()), "mse_loss: input is ",
             dtype_name(input.dtype()), ", target is ", dtype_name(target.dtype()), " (both float32 or both float64)");
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

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction,
                                        const Tensor& pos_weight)
{
    const char* op = "binary_cross_entropy_with_logits";
    check_reduction(op, reduction);
    TG_CHECK(logits.defined() && target.defined(), op, ": undefined operand");
    TG_CHECK(logits.shape() == target.shape(), op, ": logits of shape ", logits.shape(),
             " and target of shape ", target.shape(), " differ");
    TG_CHECK(logits.dtype() == target.dtype() && is_floating(logits.dtype()), op, ": logits are ",
             dtype_name(logits.dtype()), ", target is ", dtype_name(target.dtype()), " (both float32 or both float64)");
    if (!pos_weight.defined()) return reduce_loss(BceWithLogits::call({logits, target}), reduction);
    TG_CHECK(pos_weight.dtype() == logits.dtype(), op, ": pos_weight is ", dtype_name(pos_weight.dtype()),
             ", logits are ", dtype_name(logits.dtype()));
    TG_CHECK(kernels::broadcasts_to(pos_weight.shape(), logits.shape()), op, ": pos_weight of shape ",
             pos_weight.shape(), " does not broadcast to the logits' shape ", logits.shape());
    return reduce_loss(BceWithLogits::call({logits, target, pos_weight}), reduction);
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
});

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_loss_ops() {}
}  // namespace detail

}  // namespace tg
