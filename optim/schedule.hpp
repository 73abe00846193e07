// Learning-rate schedules, as the closed forms of PyTorch's
// torch.optim.lr_scheduler: a schedule maps the step (or epoch) count t and
// the optimizer's base rate to the rate for t. Whether t counts steps or
// epochs is up to the caller of LrScheduler::step().
//
//   // 5 steps of linear warm-up from lr/10, then cosine down to 0 by step 100:
//   optim::LrScheduler sched(opt, optim::sequential_lr(
//       {optim::linear_lr(0.1, 1.0, 5), optim::cosine_annealing_lr(95)}, {5}));
//   for (...) { ...; opt.step(); sched.step(); }
#pragma once

#include <cstdint>
#include <functional>
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

// Drives an optimizer's learning rate. The base rate is the optimizer's rate
// at construction, which is then set to schedule(0, base).
class LrScheduler {
public:
    LrScheduler(Optimizer& optimizer, Schedule schedule);
    // t = t + 1 and the optimizer's rate becomes schedule(t, base).
    void step();
    // The count of step() calls, to save in a checkpoint.
    int64_t last_step() const { return t_; }
    // Resumes at count t (sets the optimizer's rate for t).
    void set_last_step(int64_t t);
    double base_lr() const { return base_lr_; }
    // The count and base rate as "<prefix>step" and "<prefix>base_lr"; loading
    // restores both, so a scheduler built on an optimizer whose rate was
    // already restored still resumes exactly.
    void save_to(Checkpoint& ckpt, const std::string& prefix) const;
    void load_from(const Checkpoint& ckpt, const std::string& prefix);
    double lr() const { return optimizer_.lr(); }

private:
    Optimizer& optimizer_;
    Schedule schedule_;
    double base_lr_;
    int64_t t_ = 0;
};

}  // namespace tg::optim
