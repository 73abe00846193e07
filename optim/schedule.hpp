// Learning-rate schedules, as the closed forms of PyTorch's
// torch.optim.lr_scheduler: a schedule maps the step (or epoch) count t and
// a group's base rate to the group's rate for t; LrScheduler applies it to
// every parameter group with the group's own base rate, as PyTorch's
// schedulers scale each group's initial_lr. Whether t counts steps or epochs
// is up to the caller of LrScheduler::step(). OneCycleLR and
// ReduceLROnPlateau, which also set momentum or follow a metric, are classes
// of their own below.
//
//   // 5 steps of linear warm-up from lr/10, then cosine down to 0 by step 100:
//   optim::LrScheduler sched(opt, optim::sequential_lr(
//       {optim::linear_lr(0.1, 1.0, 5), optim::cosine_annealing_lr(95)}, {5}));
//   for (...) { ...; opt.step(); sched.step(); }
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "optimizer.hpp"

namespace tg::optim {

using Schedule = std::function<double(int64_t t, double base_lr)>;

// StepLR: base_lr * gamma^floor(t / step_size).
Schedule step_lr(int64_t step_size, double gamma = 0.1);
// CosineAnnealingLR: eta_min + (base_lr - eta_min) * (1 + cos(pi * t / t_max)) / 2.
Schedule cosine_annealing_lr(int64_t t_max, double eta_min = 0.0);
// LinearLR (warm-up): base_lr * (start + (end - start) * min(t, total_iters) / total_iters).
Schedule linear_lr(double start_factor = 1.0 / 3, double end_factor = 1.0, int64_t total_iters = 5);
// SequentialLR: schedules[i] from milestones[i-1] on, each counting from 0 at
// its milestone; milestones are increasing, one fewer than the schedules.
Schedule sequential_lr(std::vector<Schedule> schedules, std::vector<int64_t> milestones);
// Linear warm-up from start_factor * base_lr over `warmup` steps, then cosine
// annealing to eta_min at step `total`: sequential_lr of the two above.
Schedule warmup_cosine_lr(int64_t warmup, int64_t total, double eta_min = 0.0, double start_factor = 1e-3);

// Drives the learning rates of an optimizer's groups. A group's base rate is
// its rate at construction, which is then set to schedule(0, base). (PyTorch
// takes a group's initial_lr instead when an earlier scheduler on the same
// optimizer stored one; here two schedules are chained with sequential_lr.)
class LrScheduler {
public:
    LrScheduler(Optimizer& optimizer, Schedule schedule);
    // t = t + 1 and each group's rate becomes schedule(t, its base). A group
    // added to the optimizer after the scheduler was made is an error (it has
    // no base rate), where PyTorch would leave it unscheduled.
    void step();
    // The count of step() calls, to save in a checkpoint.
    int64_t last_step() const { return t_; }
    // Resumes at count t (sets the groups' rates for t).
    void set_last_step(int64_t t);
    // The base rate all groups share (an error if they differ), and each group's.
    double base_lr() const;
    const std::vector<double>& base_lrs() const { return base_lrs_; }
    // The count and base rates as "<prefix>step" (int64) and "<prefix>base_lrs"
    // (float64 [groups]); loading restores both, so a scheduler built on an
    // optimizer whose rates were already restored still resumes exactly. A
    // checkpoint from before parameter groups holds one "<prefix>base_lr":
    // it loads into a scheduler of a one-group optimizer.
    void save_to(Checkpoint& ckpt, const std::string& prefix) const;
    void load_from(const Checkpoint& ckpt, const std::string& prefix);
    double lr() const { return optimizer_.lr(); }

private:
    void apply();

    Optimizer& optimizer_;
    Schedule schedule_;
    std::vector<double> base_lrs_;
    int64_t t_ = 0;
};

// --- OneCycleLR ------------------------------------------------------------------------

enum class AnnealStrategy { cos, linear };

// torch.optim.lr_scheduler.OneCycleLR's arguments. A list with one value
// applies to every group; otherwise it has one value per group.
struct OneCycleOptions {
    std::vector<double> max_lr = {};  // required
    int64_t total_steps = 0;       // or, when 0, epochs * steps_per_epoch
    int64_t epochs = 0;
    int64_t steps_per_epoch = 0;
    double pct_start = 0.3;        // the share of the cycle spent raising the rate
    AnnealStrategy anneal_strategy = AnnealStrategy::cos;
    bool cycle_momentum = true;    // SGD's momentum, Adam's beta1, inversely to the rate
    std::vector<double> base_momentum = {0.85};
    std::vector<double> max_momentum = {0.95};
    double div_factor = 25;        // initial_lr = max_lr / div_factor
    double final_div_factor = 1e4; // min_lr = initial_lr / final_div_factor
    bool three_phase = false;      // up, back down to initial_lr, then to min_lr
};

// The 1cycle policy, exactly as PyTorch 1.13: from initial_lr up to max_lr
// over pct_start * total_steps steps, then down to min_lr (three_phase:
// down to initial_lr first, symmetrically, then to min_lr); momentum moves
// the other way between max_momentum and base_momentum. Call step() after
// each batch; step() past total_steps is an error. Construction sets every
// group's rate to its initial_lr (and momentum to max_momentum). At step
// total_steps, one past the cycle's last step, torch extrapolates the last
// phase, which with linear annealing gives a negative rate; that rate is 0 here.
class OneCycleLR {
public:
    OneCycleLR(Optimizer& optimizer, OneCycleOptions options);
    void step();
    int64_t last_step() const { return t_; }
    void set_last_step(int64_t t);
    int64_t total_steps() const { return total_steps_; }
    // "<prefix>step" and "<prefix>total_steps" (checked against this scheduler's on load).
    void save_to(Checkpoint& ckpt, const std::string& prefix) const;
    void load_from(const Checkpoint& ckpt, const std::string& prefix);

private:
    struct Phase {
        double end_step;
        int start_lr, end_lr, start_momentum, end_momentum;  // 0 initial/max_momentum, 1 max/base_momentum, 2 min
    };
    void apply();

    Optimizer& optimizer_;
    OneCycleOptions options_;
    int64_t total_steps_ = 0;
    std::vector<Phase> phases_;
    std::vector<double> initial_lr_, max_lr_, min_lr_, base_momentum_, max_momentum_;
    int64_t t_ = 0;
};

// --- ReduceLROnPlateau -----------------------------------------------------------------

enum class PlateauMode { min, max };
enum class ThresholdMode { rel, abs };

struct ReduceLROnPlateauOptions {
    PlateauMode mode = PlateauMode::min;  // min: the metric should fall (a loss); max: rise (an accuracy)
    double factor = 0.1;                  // new_lr = lr * factor, in [0, 1)
    int64_t patience = 10;                // bad epochs tolerated before a reduction
    double threshold = 1e-4;              // how much better counts as better
    ThresholdMode threshold_mode = ThresholdMode::rel;
    int64_t cooldown = 0;                 // epochs after a reduction when bad epochs are not counted
    std::vector<double> min_lr = {0.0};   // one value for every group, or one per group
    double eps = 1e-8;                    // a change smaller than eps is not made
};

// torch.optim.lr_scheduler.ReduceLROnPlateau, exactly as PyTorch 1.13: step(metric)
// after each epoch. An epoch is better when the metric beats the best so far
// by the threshold (rel: best * (1 - threshold) in min mode, best * (1 +
// threshold) in max mode; abs: best -/+ threshold); after more than
// `patience` epochs that are not better, each group's rate becomes
// max(lr * factor, min_lr) if that changes it by more than eps, and
// `cooldown` epochs follow in which bad epochs are not counted. A NaN metric
// is never better (so it counts as a bad epoch), as in PyTorch.
class ReduceLROnPlateau {
public:
    ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options = {});
    void step(double metric);
    double best() const { return best_; }
    int64_t num_bad_epochs() const { return num_bad_epochs_; }
    int64_t cooldown_counter() const { return cooldown_counter_; }
    int64_t last_epoch() const { return last_epoch_; }
    bool in_cooldown() const { return cooldown_counter_ > 0; }
    // "<prefix>best", "<prefix>num_bad_epochs", "<prefix>cooldown_counter", "<prefix>last_epoch".
    void save_to(Checkpoint& ckpt, const std::string& prefix) const;
    void load_from(const Checkpoint& ckpt, const std::string& prefix);

private:
    bool is_better(double a, double best) const;

    Optimizer& optimizer_;
    ReduceLROnPlateauOptions options_;
    std::vector<double> min_lrs_;
    double best_;
    int64_t num_bad_epochs_ = 0, cooldown_counter_ = 0, last_epoch_ = 0;
};

}  // namespace tg::optim
