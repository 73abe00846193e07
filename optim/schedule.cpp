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

LrScheduler::LrScheduler(Optimizer& optimizer, Schedule schedule)
    : optimizer_(optimizer), schedule_(std::move(schedule)), base_lr_(optimizer.lr())
{
    TG_CHECK(bool(schedule_), "LrScheduler: empty schedule");
    optimizer_.set_lr(schedule_(0, base_lr_));
}

void LrScheduler::step()
{
    TG_CHECK(t_ < INT64_MAX, "LrScheduler::step: the step count is at its maximum, ", t_);
    set_last_step(t_ + 1);
}

void LrScheduler::set_last_step(int64_t t)
{
    TG_CHECK(t >= 0, "LrScheduler::set_last_step: negative step ", t);
    t_ = t;
    optimizer_.set_lr(schedule_(t_, base_lr_));
}

void LrScheduler::save_to(Checkpoint& ckpt, const std::string& prefix) const
{
    ckpt.set_int(prefix + "step", t_);
    ckpt.set_double(prefix + "base_lr", base_lr_);
}

void LrScheduler::load_from(const Checkpoint& ckpt, const std::string& prefix)
{
    double base = ckpt.get_double(prefix + "base_lr");
    TG_CHECK(std::isfinite(base) && base >= 0, "LrScheduler::load_from: invalid base_lr ", base, " in ",
             ckpt.source().empty() ? std::string("the checkpoint") : quote(ckpt.source()));
    base_lr_ = base;
    set_last_step(ckpt.get_int(prefix + "step"));
}

}  // namespace tg::optim
