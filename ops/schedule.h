// Learning-rate schedules. An update computes its rate from the step it runs at, so a
// schedule changes the rate at every step with no recompiling, and a restored run resumes it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace tessel {

struct LrSchedule {
  // The first `warmup_steps` updates rise linearly to the optimizer's lr: update t (from 0)
  // uses lr * (t + 1) / warmup_steps.
  int64_t warmup_steps = 0;
  // none: lr after the warmup. cosine: from lr down to min_lr along half a cosine, reached at
  // update `total_steps` and kept after it.
  enum class Decay { none, cosine } decay = Decay::none;
  int64_t total_steps = 0;
  double min_lr = 0;
};

// The rate of update `update` (0 for the first).
inline double scheduled_lr(double lr, const LrSchedule& schedule, int64_t update) {
  if (update < schedule.warmup_steps) {
    return lr * static_cast<double>(update + 1) / static_cast<double>(schedule.warmup_steps);
  }
  if (schedule.decay == LrSchedule::Decay::none) return lr;
  const int64_t span = schedule.total_steps - schedule.warmup_steps;
  const double progress =
      span <= 0 ? 1.0 : std::min(1.0, static_cast<double>(update - schedule.warmup_steps) / static_cast<double>(span));
  return schedule.min_lr + 0.5 * (lr - schedule.min_lr) * (1 + std::cos(M_PI * progress));
}

}  // namespace tessel
