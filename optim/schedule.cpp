#include "optim/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

namespace tg::optim {

Schedule step_lr(int64_t step_size, double gamma)
{
    TG_CHECK(step_size > 0, "step_lr: step_size must be positive, got ", step_size);
    TG_CHECK(std::isfinite(gamma) && gamma >= 0, "step_lr: gamma must be a finite number >= 0, got ", gamma);
    return [=](int64_t t, double base) { return base * std::pow(gamma, double(t / step_size)); };
}

Schedule cosine_annealing_lr(int64_t t_max, double eta_min)
{
    TG_CHECK(t_max > 0, "cosine_annealing_lr: t_max must be positive, got ", t_max);
    TG_CHECK(std::isfinite(eta_min) && eta_min >= 0, "cosine_annealing_lr: eta_min must be a finite number >= 0, got ",
             eta_min);
    return [=](int64_t t, double base) {
        return eta_min + (base - eta_min) * (1 + std::cos(std::numbers::pi * double(t) / double(t_max))) / 2;
    };
}

Schedule linear_lr(double start_factor, double end_factor, int64_t total_iters)
{
    TG_CHECK(start_factor > 0 && start_factor <= 1, "linear_lr: start_factor must be in (0, 1], got ", start_factor);
    TG_CHECK(end_factor >= 0 && end_factor <= 1, "linear_lr: end_factor must be in [0, 1], got ", end_factor);
    TG_CHECK(total_iters > 0, "linear_lr: total_iters must be positive, got ", total_iters);
    return [=](int64_t t, double base) {
        double done = double(std::min(t, total_iters)) / double(total_iters);
        return base * (start_factor + (end_factor - start_factor) * done);
    };
}

Schedule sequential_lr(std::vector<Schedule> schedules, std::vector<int64_t> milestones)
{
    TG_CHECK(!schedules.empty(), "sequential_lr: no schedules");
    TG_CHECK(milestones.size() + 1 == schedules.size(), "sequential_lr: ", schedules.size(),
             " schedules need ", schedules.size() - 1, " milestones, got ", milestones.size());
    for (size_t i = 0; i < milestones.size(); ++i)
        TG_CHECK(milestones[i] > 0 && (i == 0 || milestones[i] > milestones[i - 1]),
                 "sequential_lr: milestones must be positive and increasing, got ", milestones);
    for (const Schedule& s : schedules) TG_CHECK(bool(s), "sequential_lr: an empty schedule");
    return [schedules = std::move(schedules), milestones = std::move(milestones)](int64_t t, double base) {
        size_t i = size_t(std::upper_bound(milestones.begin(), milestones.end(), t) - milestones.begin());
        int64_t start = i == 0 ? 0 : milestones[i - 1];
        return schedules[i](t - start, base);
    };
}

Schedule warmup_cosine_lr(int64_t warmup, int64_t total, double eta_min, double start_factor)
{
    TG_CHECK(warmup >= 0 && warmup < total, "warmup_cosine_lr: need 0 <= warmup < total, got warmup ", warmup,
             " and total ", total);
    if (warmup == 0) return cosine_annealing_lr(total, eta_min);
    return sequential_lr({linear_lr(start_factor, 1.0, warmup), cosine_annealing_lr(total - warmup, eta_min)},
                         {warmup});
}

namespace {
std::string in_group_text(size_t group, size_t groups)
{
    return groups > 1 ? " for group " + std::to_string(group) : std::string();
}

std::string checkpoint_label(const Checkpoint& ckpt)
{
    return ckpt.source().empty() ? std::string("the checkpoint") : "checkpoint " + quote(ckpt.source());
}

// One value per group from a list of one (for every group) or of one per group.
std::vector<double> per_group(const char* op, const char* what, const std::vector<double>& values, size_t groups)
{
    TG_CHECK(values.size() == 1 || values.size() == groups, op, ": expected ", groups, " values for ", what,
             " (one per parameter group) or one for all, got ", values.size());
    return values.size() == groups ? values : std::vector<double>(groups, values[0]);
}
}  // namespace

// --- LrScheduler ----------------------------------------------------------------------------

LrScheduler::LrScheduler(Optimizer& optimizer, Schedule schedule)
    : optimizer_(optimizer), schedule_(std::move(schedule))
{
    TG_CHECK(bool(schedule_), "LrScheduler: empty schedule");
    for (size_t g = 0; g < optimizer_.num_groups(); ++g) base_lrs_.push_back(optimizer_.lr(g));
    apply();
}

double LrScheduler::base_lr() const
{
    for (size_t g = 1; g < base_lrs_.size(); ++g)
        TG_CHECK(base_lrs_[g] == base_lrs_[0], "LrScheduler::base_lr: the groups have different base rates (group 0 ",
                 base_lrs_[0], ", group ", g, " ", base_lrs_[g], "); ask base_lrs()");
    return base_lrs_.empty() ? 0.0 : base_lrs_[0];
}

void LrScheduler::apply()
{
    TG_CHECK(optimizer_.num_groups() == base_lrs_.size(), "LrScheduler: the optimizer has ", optimizer_.num_groups(),
             " parameter groups but had ", base_lrs_.size(),
             " when the scheduler was made; a group added later has no base rate (make the scheduler after "
             "add_param_group)");
    // Every rate computed (and so checked) before any is set.
    std::vector<double> rates;
    for (double base : base_lrs_) rates.push_back(schedule_(t_, base));
    for (size_t g = 0; g < rates.size(); ++g) optimizer_.set_lr(g, rates[g]);
}

void LrScheduler::step()
{
    TG_CHECK(t_ < INT64_MAX, "LrScheduler::step: the step count is at its maximum, ", t_);
    set_last_step(t_ + 1);
}

namespace {
// Puts a schedule at step t; when applying it there throws, it stays where it was.
template <class Apply>
void move_to_step(int64_t& step, int64_t t, Apply&& apply)
{
    const int64_t before = step;
    step = t;
    try {
        apply();
    } catch (...) {
        step = before;
        throw;
    }
}
}  // namespace

void LrScheduler::set_last_step(int64_t t)
{
    TG_CHECK(t >= 0, "LrScheduler::set_last_step: negative step ", t);
    move_to_step(t_, t, [this] { apply(); });
}

void LrScheduler::save_to(Checkpoint& ckpt, const std::string& prefix) const
{
    ckpt.set_int(prefix + "step", t_);
    ckpt.set_tensor(prefix + "base_lrs", from_values(base_lrs_, {int64_t(base_lrs_.size())}, float64));
}

void LrScheduler::load_from(const Checkpoint& ckpt, const std::string& prefix)
{
    std::vector<double> bases;
    if (!ckpt.contains(prefix + "base_lrs") && ckpt.contains(prefix + "base_lr")) {
        // Written before parameter groups: one base rate.
        TG_CHECK(base_lrs_.size() == 1, "LrScheduler::load_from: ", checkpoint_label(ckpt),
                 " was written before parameter groups (one base rate, ", quote(prefix + "base_lr"),
                 "); it loads into a scheduler of a one-group optimizer, this one has ", base_lrs_.size(), " groups");
        bases.push_back(ckpt.get_double(prefix + "base_lr"));
    } else {
        Tensor t = ckpt.tensor(prefix + "base_lrs");
        TG_CHECK(t.dtype() == float64 && t.shape() == shape_type{int64_t(base_lrs_.size())},
                 "LrScheduler::load_from: ", quote(prefix + "base_lrs"), " in ", checkpoint_label(ckpt), " is ",
                 dtype_name(t.dtype()), " ", t.shape(), " but this scheduler's optimizer has ", base_lrs_.size(),
                 " groups (float64 [", base_lrs_.size(), "])");
        bases = t.to_vector();
    }
    for (size_t g = 0; g < bases.size(); ++g)
        TG_CHECK(std::isfinite(bases[g]) && bases[g] >= 0, "LrScheduler::load_from: invalid base_lr ", bases[g],
                 in_group_text(g, bases.size()), " in ", checkpoint_label(ckpt));
    const int64_t t = ckpt.get_int(prefix + "step");
    TG_CHECK(t >= 0, "LrScheduler::load_from: negative step ", t, " in ", checkpoint_label(ckpt));
    const std::vector<double> before = base_lrs_;
    const int64_t before_t = t_;
    base_lrs_ = bases;
    try {
        set_last_step(t);
    } catch (...) {
        base_lrs_ = before;
        t_ = before_t;
        throw;
    }
}

// --- OneCycleLR -------------------------------------------------------------------------------

OneCycleLR::OneCycleLR(Optimizer& optimizer, OneCycleOptions o) : optimizer_(optimizer), options_(std::move(o))
{
    const OneCycleOptions& op = options_;
    const size_t groups = optimizer_.num_groups();
    if (op.total_steps != 0) {
        TG_CHECK(op.total_steps > 0, "OneCycleLR: expected a positive total_steps, got ", op.total_steps);
        total_steps_ = op.total_steps;
    } else {
        TG_CHECK(op.epochs != 0 || op.steps_per_epoch != 0,
                 "OneCycleLR: give either total_steps or epochs and steps_per_epoch");
        TG_CHECK(op.epochs > 0, "OneCycleLR: expected a positive epochs, got ", op.epochs);
        TG_CHECK(op.steps_per_epoch > 0, "OneCycleLR: expected a positive steps_per_epoch, got ", op.steps_per_epoch);
        TG_CHECK(!__builtin_mul_overflow(op.epochs, op.steps_per_epoch, &total_steps_), "OneCycleLR: epochs ",
                 op.epochs, " times steps_per_epoch ", op.steps_per_epoch, " overflows int64");
    }
    TG_CHECK(op.pct_start >= 0 && op.pct_start <= 1, "OneCycleLR: expected pct_start in [0, 1], got ", op.pct_start);
    TG_CHECK(op.anneal_strategy == AnnealStrategy::cos || op.anneal_strategy == AnnealStrategy::linear,
             "OneCycleLR: anneal_strategy is cos or linear, got ", int(op.anneal_strategy));
    TG_CHECK(std::isfinite(op.div_factor) && op.div_factor > 0, "OneCycleLR: invalid div_factor ", op.div_factor,
             " (must be a finite number > 0)");
    TG_CHECK(std::isfinite(op.final_div_factor) && op.final_div_factor > 0, "OneCycleLR: invalid final_div_factor ",
             op.final_div_factor, " (must be a finite number > 0)");
    TG_CHECK(!op.max_lr.empty(), "OneCycleLR: max_lr is required");
    max_lr_ = per_group("OneCycleLR", "max_lr", op.max_lr, groups);
    for (double m : max_lr_)
        TG_CHECK(std::isfinite(m) && m >= 0, "OneCycleLR: invalid max_lr ", m, " (must be a finite number >= 0)");
    const double T = double(total_steps_);
    if (op.three_phase)
        phases_ = {{op.pct_start * T - 1, 0, 1, 0, 1}, {2 * op.pct_start * T - 2, 1, 0, 1, 0}, {T - 1, 0, 2, 0, 0}};
    else
        phases_ = {{op.pct_start * T - 1, 0, 1, 0, 1}, {T - 1, 1, 2, 1, 0}};
    for (double m : max_lr_) {
        initial_lr_.push_back(m / op.div_factor);
        min_lr_.push_back(initial_lr_.back() / op.final_div_factor);
    }
    if (op.cycle_momentum) {
        TG_CHECK(!op.base_momentum.empty() && !op.max_momentum.empty(),
                 "OneCycleLR: base_momentum and max_momentum need a value each");
        base_momentum_ = per_group("OneCycleLR", "base_momentum", op.base_momentum, groups);
        max_momentum_ = per_group("OneCycleLR", "max_momentum", op.max_momentum, groups);
        for (size_t g = 0; g < groups; ++g)
            TG_CHECK(std::isfinite(base_momentum_[g]) && std::isfinite(max_momentum_[g]),
                     "OneCycleLR: invalid momentum bounds ", base_momentum_[g], " and ", max_momentum_[g]);
    }
    apply();
}

void OneCycleLR::apply()
{
    TG_CHECK(t_ <= total_steps_, "OneCycleLR: tried to step ", t_, " times; the specified number of total steps is ",
             total_steps_);
    const size_t groups = max_lr_.size();
    TG_CHECK(optimizer_.num_groups() == groups, "OneCycleLR: the optimizer has ", optimizer_.num_groups(),
             " parameter groups but had ", groups, " when the scheduler was made");
    const bool cos = options_.anneal_strategy == AnnealStrategy::cos;
    auto anneal = [&](double start, double end, double pct) {
        if (cos) return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1);
        return (end - start) * pct + start;
    };
    const double step = double(t_);
    std::vector<double> rates(groups), momenta(groups);
    for (size_t g = 0; g < groups; ++g) {
        const double lrs[3] = {initial_lr_[g], max_lr_[g], min_lr_[g]};
        double start_step = 0;
        for (size_t i = 0; i < phases_.size(); ++i) {
            const Phase& ph = phases_[i];
            if (step <= ph.end_step || i == phases_.size() - 1) {
                TG_CHECK(ph.end_step != start_step, "OneCycleLR: step ", t_, " falls in phase ", i,
                         " of the schedule, which has zero length (pct_start ", options_.pct_start, " of ",
                         total_steps_, " steps)");
                const double pct = (step - start_step) / (ph.end_step - start_step);
                // Only step total_steps extrapolates past the last phase's end, where
                // linear annealing falls below 0: torch sets that rate, an optimizer
                // here refuses it, so it is 0 (the cycle is over; no update should use it).
                rates[g] = std::max(0.0, anneal(lrs[ph.start_lr], lrs[ph.end_lr], pct));
                if (options_.cycle_momentum) {
                    const double ms[2] = {max_momentum_[g], base_momentum_[g]};
                    momenta[g] = anneal(ms[ph.start_momentum], ms[ph.end_momentum], pct);
                }
                break;
            }
            start_step = ph.end_step;
        }
    }
    for (size_t g = 0; g < groups; ++g) {
        if (options_.cycle_momentum) optimizer_.set_hyperparameter(g, optimizer_.momentum_name(), momenta[g]);
        optimizer_.set_lr(g, rates[g]);
    }
}

void OneCycleLR::step()
{
    TG_CHECK(t_ < total_steps_, "OneCycleLR: tried to step ", t_ + 1, " times; the specified number of total steps is ",
             total_steps_);
    set_last_step(t_ + 1);
}

void OneCycleLR::set_last_step(int64_t t)
{
    TG_CHECK(t >= 0 && t <= total_steps_, "OneCycleLR::set_last_step: step ", t, " is outside [0, ", total_steps_,
             "]");
    move_to_step(t_, t, [this] { apply(); });
}

void OneCycleLR::save_to(Checkpoint& ckpt, const std::string& prefix) const
{
    ckpt.set_int(prefix + "step", t_);
    ckpt.set_int(prefix + "total_steps", total_steps_);
}

void OneCycleLR::load_from(const Checkpoint& ckpt, const std::string& prefix)
{
    const int64_t total = ckpt.get_int(prefix + "total_steps");
    TG_CHECK(total == total_steps_, "OneCycleLR::load_from: ", checkpoint_label(ckpt), " is a cycle of ", total,
             " steps but this scheduler's is ", total_steps_);
    const int64_t t = ckpt.get_int(prefix + "step");
    TG_CHECK(t >= 0 && t <= total_steps_, "OneCycleLR::load_from: step ", t, " in ", checkpoint_label(ckpt),
             " is outside [0, ", total_steps_, "]");
    set_last_step(t);
}

// --- ReduceLROnPlateau --------------------------------------------------------------------------

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions o)
    : optimizer_(optimizer), options_(std::move(o))
{
    const ReduceLROnPlateauOptions& op = options_;
    TG_CHECK(op.factor >= 0 && op.factor < 1, "ReduceLROnPlateau: factor should be in [0, 1), got ", op.factor);
    TG_CHECK(op.mode == PlateauMode::min || op.mode == PlateauMode::max, "ReduceLROnPlateau: mode ", int(op.mode),
             " is unknown (min or max)");
    TG_CHECK(op.threshold_mode == ThresholdMode::rel || op.threshold_mode == ThresholdMode::abs,
             "ReduceLROnPlateau: threshold mode ", int(op.threshold_mode), " is unknown (rel or abs)");
    TG_CHECK(op.patience >= 0, "ReduceLROnPlateau: invalid patience ", op.patience);
    TG_CHECK(op.cooldown >= 0, "ReduceLROnPlateau: invalid cooldown ", op.cooldown);
    TG_CHECK(std::isfinite(op.threshold) && op.threshold >= 0, "ReduceLROnPlateau: invalid threshold ", op.threshold,
             " (must be a finite number >= 0)");
    TG_CHECK(std::isfinite(op.eps) && op.eps >= 0, "ReduceLROnPlateau: invalid eps ", op.eps,
             " (must be a finite number >= 0)");
    TG_CHECK(!op.min_lr.empty(), "ReduceLROnPlateau: min_lr needs a value");
    min_lrs_ = per_group("ReduceLROnPlateau", "min_lr", op.min_lr, optimizer_.num_groups());
    for (double m : min_lrs_)
        TG_CHECK(std::isfinite(m) && m >= 0, "ReduceLROnPlateau: invalid min_lr ", m, " (must be a finite number >= 0)");
    best_ = op.mode == PlateauMode::min ? INFINITY : -INFINITY;
}

bool ReduceLROnPlateau::is_better(double a, double best) const
{
    const double th = options_.threshold;
    if (options_.mode == PlateauMode::min)
        return options_.threshold_mode == ThresholdMode::rel ? a < best * (1. - th) : a < best - th;
    return options_.threshold_mode == ThresholdMode::rel ? a > best * (th + 1.) : a > best + th;
}

void ReduceLROnPlateau::step(double metric)
{
    TG_CHECK(optimizer_.num_groups() == min_lrs_.size(), "ReduceLROnPlateau: the optimizer has ",
             optimizer_.num_groups(), " parameter groups but had ", min_lrs_.size(), " when the scheduler was made");
    TG_CHECK(last_epoch_ < INT64_MAX, "ReduceLROnPlateau::step: the epoch count is at its maximum");
    ++last_epoch_;
    if (is_better(metric, best_)) {
        best_ = metric;
        num_bad_epochs_ = 0;
    } else {
        ++num_bad_epochs_;
    }
    if (in_cooldown()) {
        --cooldown_counter_;
        num_bad_epochs_ = 0;  // bad epochs in cooldown are not counted
    }
    if (num_bad_epochs_ > options_.patience) {
        for (size_t g = 0; g < min_lrs_.size(); ++g) {
            const double old_lr = optimizer_.lr(g);
            const double new_lr = std::max(old_lr * options_.factor, min_lrs_[g]);
            if (old_lr - new_lr > options_.eps) optimizer_.set_lr(g, new_lr);
        }
        cooldown_counter_ = options_.cooldown;
        num_bad_epochs_ = 0;
    }
}

void ReduceLROnPlateau::save_to(Checkpoint& ckpt, const std::string& prefix) const
{
    ckpt.set_double(prefix + "best", best_);
    ckpt.set_int(prefix + "num_bad_epochs", num_bad_epochs_);
    ckpt.set_int(prefix + "cooldown_counter", cooldown_counter_);
    ckpt.set_int(prefix + "last_epoch", last_epoch_);
}

void ReduceLROnPlateau::load_from(const Checkpoint& ckpt, const std::string& prefix)
{
    const double best = ckpt.get_double(prefix + "best");
    const int64_t bad = ckpt.get_int(prefix + "num_bad_epochs");
    const int64_t cooldown = ckpt.get_int(prefix + "cooldown_counter");
    const int64_t epoch = ckpt.get_int(prefix + "last_epoch");
    // What no run with these options reaches.
    TG_CHECK(!std::isnan(best), "ReduceLROnPlateau::load_from: best is NaN in ", checkpoint_label(ckpt));
    TG_CHECK(bad >= 0 && bad <= options_.patience, "ReduceLROnPlateau::load_from: num_bad_epochs ", bad, " in ",
             checkpoint_label(ckpt), " is outside [0, patience ", options_.patience, "]");
    TG_CHECK(cooldown >= 0 && cooldown <= options_.cooldown, "ReduceLROnPlateau::load_from: cooldown_counter ",
             cooldown, " in ", checkpoint_label(ckpt), " is outside [0, cooldown ", options_.cooldown, "]");
    TG_CHECK(epoch >= 0, "ReduceLROnPlateau::load_from: negative last_epoch ", epoch, " in ", checkpoint_label(ckpt));
    best_ = best;
    num_bad_epochs_ = bad;
    cooldown_counter_ = cooldown;
    last_epoch_ = epoch;
}

}  // namespace tg::optim
