// Modules, optimizers, schedules and the data loader fed bad arguments, the
// way the bad-input sweep feeds the ops: every numeric argument of every
// constructor is replaced in turn by 0, -1, NaN, ±Inf and values near 2^62,
// and the result must be a tg::Error naming the class (or function), or an
// object that then works on a valid input (forward, a step, a batch); never a
// crash, another exception, or a hang. Values that can have no meaning
// (NaN or a negative learning rate, a batch size below 1) must be refused.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <tapegrad/tapegrad.hpp>
#include <vector>

#include "tests/helpers.hpp"

using namespace tg;

namespace {

const std::vector<double> bad_reals = {0.0, -1.0, double(NAN), double(INFINITY), -double(INFINITY), 1e300, -1e-300};
const std::vector<int64_t> bad_ints = {0, -1, int64_t(1) << 40, int64_t(1) << 62, INT64_MAX, INT64_MIN};

struct Outcome {
    int tried = 0, refused = 0;
};

// Runs `make_and_use(value)`; a tg::Error must start with `name`.
template <class V>
void try_each(const std::string& name, const std::vector<V>& values, const std::function<void(V)>& make_and_use,
              Outcome& out, const std::function<bool(V)>& must_refuse = nullptr)
{
    for (V v : values) {
        CAPTURE(name);
        CAPTURE(v);
        ++out.tried;
        bool refused = false;
        try {
            make_and_use(v);
        } catch (const Error& e) {
            refused = true;
            const std::string what = e.what();
            INFO(what);
            // `name` may list alternatives: "step_lr|SGD".
            bool named = false;
            for (size_t b = 0, e; b <= name.size(); b = e + 1) {
                e = name.find('|', b);
                if (e == std::string::npos) e = name.size();
                named = named || what.rfind("tapegrad: " + name.substr(b, e - b), 0) == 0;
            }
            CHECK(named);
        } catch (const std::exception& e) {
            FAIL_CHECK((std::string("not a tg::Error: ") + e.what()));
        }
        out.refused += refused;
        if (must_refuse && must_refuse(v)) CHECK_MESSAGE(refused, "a meaningless value was accepted");
    }
}

bool not_positive(double v) { return !(v > 0) || std::isinf(v); }
bool negative_or_nan(double v) { return !(v >= 0) || std::isinf(v); }

Tensor image_batch() { return randn({2, 3, 8, 8}); }

}  // namespace

TEST_CASE("bad arguments: module constructors and forward")
{
    Outcome o;
    using nn::make;
    auto use = [](const std::shared_ptr<nn::Module>& m, const Tensor& x) { (void)m->forward(x); };
    try_each<int64_t>("Linear", bad_ints, [&](int64_t v) { use(make<nn::Linear>(v, 4), randn({2, 3})); }, o,
                      [](int64_t v) { return v < 0; });
    try_each<int64_t>("Linear", bad_ints, [&](int64_t v) { use(make<nn::Linear>(3, v), randn({2, 3})); }, o,
                      [](int64_t v) { return v < 0; });
    try_each<int64_t>("Conv2d", bad_ints, [&](int64_t v) { use(make<nn::Conv2d>(v, 2, 3), image_batch()); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<int64_t>("Conv2d", bad_ints, [&](int64_t v) { use(make<nn::Conv2d>(3, v, 3), image_batch()); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<int64_t>("Conv2d", bad_ints, [&](int64_t v) { use(make<nn::Conv2d>(3, 2, v), image_batch()); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<int64_t>("Conv2d", bad_ints,
                      [&](int64_t v) { use(make<nn::Conv2d>(3, 2, 3, nn::Conv2dOptions{.stride = v}), image_batch()); }, o,
                      [](int64_t v) { return v <= 0; });
    // A padding that fits the layer but not the input is the op's error, at the forward.
    try_each<int64_t>("Conv2d|conv2d", bad_ints,
                      [&](int64_t v) { use(make<nn::Conv2d>(3, 2, 3, nn::Conv2dOptions{.padding = v}), image_batch()); },
                      o, [](int64_t v) { return v < 0; });
    try_each<int64_t>("Conv2d", bad_ints,
                      [&](int64_t v) { use(make<nn::Conv2d>(3, 3, 3, nn::Conv2dOptions{.groups = v}), image_batch()); },
                      o, [](int64_t v) { return v != 1 && v != 3; });
    try_each<int64_t>("max_pool2d", bad_ints, [&](int64_t v) { use(make<nn::MaxPool2d>(v), image_batch()); }, o,
                      [](int64_t v) { return v <= 0; });
    // (A stride of -1 is Int2's "not given": the kernel's.)
    try_each<int64_t>("avg_pool2d", bad_ints, [&](int64_t v) { use(make<nn::AvgPool2d>(2, v), image_batch()); }, o,
                      [](int64_t v) { return v <= 0 && v != -1; });
    try_each<int64_t>("adaptive_avg_pool2d", bad_ints, [&](int64_t v) { use(make<nn::AdaptiveAvgPool2d>(v, 2), image_batch()); },
                      o, [](int64_t v) { return v <= 0; });
    try_each<int64_t>("flatten", bad_ints, [&](int64_t v) { use(make<nn::Flatten>(v), image_batch()); }, o,
                      [](int64_t v) { return v < -4 || v > 3; });
    try_each<double>("Dropout", bad_reals, [&](double v) { use(make<nn::Dropout>(v), image_batch()); }, o,
                     [](double v) { return !(v >= 0 && v <= 1); });
    try_each<int64_t>("BatchNorm2d", bad_ints, [&](int64_t v) { use(make<nn::BatchNorm2d>(v), image_batch()); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<double>("BatchNorm2d", bad_reals, [&](double v) { use(make<nn::BatchNorm2d>(3, v), image_batch()); }, o,
                     negative_or_nan);
    try_each<double>("BatchNorm2d", bad_reals, [&](double v) { use(make<nn::BatchNorm2d>(3, 1e-5, v), image_batch()); },
                     o, [](double v) { return !(v >= 0 && v <= 1); });
    try_each<int64_t>("LayerNorm", bad_ints, [&](int64_t v) { use(make<nn::LayerNorm>(shape_type{v}), randn({2, 8})); },
                      o, [](int64_t v) { return v <= 0; });
    try_each<double>("LayerNorm", bad_reals, [&](double v) { use(make<nn::LayerNorm>(shape_type{8}, v), randn({2, 8})); },
                     o, negative_or_nan);
    try_each<int64_t>("GroupNorm", bad_ints, [&](int64_t v) { use(make<nn::GroupNorm>(v, 3), image_batch()); }, o,
                      [](int64_t v) { return v != 1 && v != 3; });
    try_each<int64_t>("GroupNorm", bad_ints, [&](int64_t v) { use(make<nn::GroupNorm>(1, v), image_batch()); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<double>("GroupNorm", bad_reals, [&](double v) { use(make<nn::GroupNorm>(3, 3, v), image_batch()); }, o,
                     negative_or_nan);
    try_each<int64_t>("InstanceNorm2d", bad_ints, [&](int64_t v) { use(make<nn::InstanceNorm2d>(v), image_batch()); },
                      o, [](int64_t v) { return v <= 0; });
    try_each<double>("InstanceNorm2d", bad_reals,
                     [&](double v) { use(make<nn::InstanceNorm2d>(3, v, true), image_batch()); }, o, negative_or_nan);
    Tensor tokens = from_values({0, 1, 2, 1}, {2, 2}, int64);
    try_each<int64_t>("Embedding", bad_ints, [&](int64_t v) { use(make<nn::Embedding>(v, 4), tokens); }, o,
                      [](int64_t v) { return v <= 2; });
    try_each<int64_t>("Embedding", bad_ints, [&](int64_t v) { use(make<nn::Embedding>(4, v), tokens); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<int64_t>("Embedding", bad_ints,
                      [&](int64_t v) { use(make<nn::Embedding>(4, 2, v), tokens); }, o,
                      [](int64_t v) { return v < -4 || v >= 4; });
    try_each<double>("ELU", bad_reals, [&](double v) { use(make<nn::ELU>(v), image_batch()); }, o,
                     [](double v) { return !std::isfinite(v); });
    try_each<double>("Hardtanh", bad_reals, [&](double v) { use(make<nn::Hardtanh>(v, 0.5), image_batch()); }, o,
                     [](double v) { return !(v <= 0.5); });
    MESSAGE(o.tried, " module constructions, ", o.refused, " refused");
    CHECK(o.tried >= 100);
}

TEST_CASE("bad arguments: optimizers, schedules and the data loader")
{
    Outcome o;
    auto params = [] { return named_tensors{{"w", randn({3, 2}, float64).requires_grad_()}}; };
    // A step on a real gradient, so an accepted value is also used.
    auto step = [](optim::Optimizer& opt) {
        Tensor w = opt.params()[0].second;
        sum(mul(w, w)).backward();
        opt.step();
    };
    for (int field = 0; field < 4; ++field)
        try_each<double>("SGD", bad_reals,
                         [&](double v) {
                             optim::SgdOptions s{.lr = 0.1};
                             (field == 0 ? s.lr : field == 1 ? s.momentum : field == 2 ? s.dampening : s.weight_decay) = v;
                             optim::SGD opt(params(), s);
                             step(opt);
                         },
                         o, field == 2 ? std::function<bool(double)>([](double v) { return !std::isfinite(v); })
                                       : std::function<bool(double)>(negative_or_nan));
    for (int field = 0; field < 5; ++field)
        try_each<double>("Adam", bad_reals,
                         [&](double v) {
                             optim::AdamOptions a{};
                             (field == 0 ? a.lr : field == 1 ? a.beta1 : field == 2 ? a.beta2 : field == 3 ? a.eps
                                                                                                       : a.weight_decay) = v;
                             optim::Adam opt(params(), a);
                             step(opt);
                         },
                         o,
                         field == 1 || field == 2 ? std::function<bool(double)>([](double v) { return !(v >= 0 && v < 1); })
                                                  : std::function<bool(double)>(negative_or_nan));
    try_each<double>("AdamW", bad_reals,
                     [&](double v) {
                         optim::AdamW opt(params(), {.weight_decay = v});
                         step(opt);
                     },
                     o, negative_or_nan);
    try_each<double>("SGD", bad_reals, [&](double v) { optim::SGD(params(), {}).set_lr(v); }, o, negative_or_nan);

    // Schedules: made, then run by a scheduler at a few steps; a rate that
    // grows past the doubles (gamma 1e300) is the optimizer's error.
    auto rates = [&](const optim::Schedule& s) {
        optim::SGD opt(params(), {});
        optim::LrScheduler scheduler(opt, s);
        for (int64_t t : {int64_t(0), int64_t(1), int64_t(7), int64_t(1) << 40}) scheduler.set_last_step(t);
    };
    try_each<int64_t>("step_lr|SGD", bad_ints, [&](int64_t v) { rates(optim::step_lr(v)); }, o, [](int64_t v) { return v <= 0; });
    try_each<double>("step_lr|SGD", bad_reals, [&](double v) { rates(optim::step_lr(3, v)); }, o, negative_or_nan);
    try_each<int64_t>("cosine_annealing_lr|SGD", bad_ints, [&](int64_t v) { rates(optim::cosine_annealing_lr(v)); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<double>("cosine_annealing_lr|SGD", bad_reals, [&](double v) { rates(optim::cosine_annealing_lr(10, v)); }, o,
                     negative_or_nan);
    try_each<double>("linear_lr|SGD", bad_reals, [&](double v) { rates(optim::linear_lr(v)); }, o, not_positive);
    try_each<int64_t>("linear_lr|SGD", bad_ints, [&](int64_t v) { rates(optim::linear_lr(0.5, 1.0, v)); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<int64_t>("warmup_cosine_lr|SGD", bad_ints, [&](int64_t v) { rates(optim::warmup_cosine_lr(v, 100)); }, o,
                      [](int64_t v) { return v < 0; });
    try_each<int64_t>("warmup_cosine_lr|SGD", bad_ints, [&](int64_t v) { rates(optim::warmup_cosine_lr(10, v)); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<int64_t>("sequential_lr|SGD", bad_ints,
                      [&](int64_t v) { rates(optim::sequential_lr({optim::step_lr(2), optim::step_lr(3)}, {v})); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<int64_t>("LrScheduler", bad_ints,
                      [&](int64_t v) {
                          optim::SGD opt(params(), {});
                          optim::LrScheduler s(opt, optim::step_lr(2));
                          s.set_last_step(v);
                          s.step();
                      },
                      o, [](int64_t v) { return v < 0; });

    // OneCycleLR and ReduceLROnPlateau: each argument, then a few steps (a
    // momentum the optimizer refuses is the optimizer's error).
    auto cycle = [&](const optim::OneCycleOptions& c) {
        optim::SGD opt(params(), {.momentum = 0.9});
        optim::OneCycleLR sched(opt, c);
        for (int i = 0; i < 3 && sched.last_step() < sched.total_steps(); ++i) {
            step(opt);
            sched.step();
        }
    };
    const auto not_finite = [](double v) { return !std::isfinite(v); };
    for (int field = 0; field < 6; ++field)
        try_each<double>("OneCycleLR|SGD", bad_reals,
                         [&](double v) {
                             optim::OneCycleOptions c{.max_lr = {0.1}, .total_steps = 10};
                             if (field == 0) c.max_lr = {v};
                             if (field == 1) c.pct_start = v;
                             if (field == 2) c.div_factor = v;
                             if (field == 3) c.final_div_factor = v;
                             if (field == 4) c.base_momentum = {v};
                             if (field == 5) c.max_momentum = {v};
                             cycle(c);
                         },
                         o,
                         field == 0   ? std::function<bool(double)>(negative_or_nan)
                         : field == 1 ? std::function<bool(double)>([](double v) { return !(v >= 0 && v <= 1); })
                         : field <= 3 ? std::function<bool(double)>(not_positive)
                                      : std::function<bool(double)>(not_finite));
    try_each<int64_t>("OneCycleLR", bad_ints, [&](int64_t v) { cycle({.max_lr = {0.1}, .total_steps = v}); }, o,
                      [](int64_t v) { return v <= 0; });
    try_each<int64_t>("OneCycleLR", bad_ints, [&](int64_t v) { cycle({.max_lr = {0.1}, .epochs = v, .steps_per_epoch = 3}); },
                      o, [](int64_t v) { return v <= 0 || v > INT64_MAX / 3; });
    auto plateau = [&](const optim::ReduceLROnPlateauOptions& p) {
        optim::SGD opt(params(), {.lr = 0.1});
        optim::ReduceLROnPlateau sched(opt, p);
        for (double m : {1.0, 1.0, 1.0, 0.5, 1.0, 1.0}) sched.step(m);
    };
    for (int field = 0; field < 4; ++field)
        try_each<double>("ReduceLROnPlateau", bad_reals,
                         [&](double v) {
                             optim::ReduceLROnPlateauOptions p{.patience = 1};
                             if (field == 0) p.factor = v;
                             if (field == 1) p.threshold = v;
                             if (field == 2) p.eps = v;
                             if (field == 3) p.min_lr = {v};
                             plateau(p);
                         },
                         o,
                         field == 0 ? std::function<bool(double)>([](double v) { return !(v >= 0 && v < 1); })
                                    : std::function<bool(double)>(negative_or_nan));
    for (int field = 0; field < 2; ++field)
        try_each<int64_t>("ReduceLROnPlateau", bad_ints,
                          [&](int64_t v) {
                              optim::ReduceLROnPlateauOptions p;
                              (field == 0 ? p.patience : p.cooldown) = v;
                              plateau(p);
                          },
                          o, [](int64_t v) { return v < 0; });
    try_each<double>("clip_grad_value_", bad_reals,
                     [&](double v) {
                         named_tensors ps = params();
                         sum(mul(ps[0].second, ps[0].second)).backward();
                         optim::clip_grad_value_(ps, v);
                     },
                     o, negative_or_nan);

    // The loader: batch sizes, and datasets whose parts disagree.
    const TensorDataset data(randn({10, 3}), zeros({10}, int64));
    try_each<int64_t>("DataLoader", bad_ints,
                      [&](int64_t v) {
                          DataLoader loader(data, {.batch_size = v, .shuffle = true});
                          for (const Batch& b : loader) (void)b.x.shape();
                      },
                      o, [](int64_t v) { return v <= 0; });
    try_each<int64_t>("TensorDataset", {int64_t(9), int64_t(0), int64_t(11)},
                      [&](int64_t v) { TensorDataset(randn({10, 3}), zeros({v}, int64)); }, o,
                      [](int64_t v) { return v != 10; });
    MESSAGE(o.tried, " optimizer, schedule and loader constructions, ", o.refused, " refused");
    CHECK(o.tried >= 250);
}
