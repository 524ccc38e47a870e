#pragma once
/// Fisher distances between sets of examples (AFV; SPEC §1).

#include <torch/torch.h>

#include <cstdint>

#include "nfk/embed.h"
#include "nfk/progress.h"

namespace nfk {

struct SetDistance {
  double fisher = 0;     // ‖mean_A V − mean_B V‖ over all P Fisher-vector coordinates
  double embedding = 0;  // ‖mean_A e − mean_B e‖ in the projector's rank-k NFK embedding
};

/// Distance between the sets `a` [N_A, ...] and `b` [N_B, ...] under the projector's z and I:
/// each set's mean Fisher vector is one VJP pass (Vᵀ 1/N), so nothing of size N×P is stored.
/// Example: `auto d = nfk::fisher_set_distance(proj, model, x_sevens, x_ones);`
SetDistance fisher_set_distance(const Projector& projector, ScoreModel& model,
                                const torch::Tensor& a, const torch::Tensor& b,
                                int64_t batch_size = 256, const ProgressFn& progress = {});

}  // namespace nfk
