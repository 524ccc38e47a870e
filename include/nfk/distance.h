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

/// Class-to-class Fisher distances D[a, b] = ‖mean_{y=a} V − mean_{y=b} V‖ [C, C] float64 (C =
/// max label + 1; an absent class gives NaN rows/columns), from one VJP pass with C columns.
/// Example: `auto d = nfk::class_distance_matrix(proj, model, ds.inputs, ds.labels);`
torch::Tensor class_distance_matrix(const Projector& projector, ScoreModel& model,
                                    const torch::Tensor& inputs, const torch::Tensor& labels,
                                    int64_t batch_size = 256, const ProgressFn& progress = {});

/// Example-to-example Fisher distances d(a_i, b_j) = ‖V_{a_i} − V_{b_j}‖ [N_A, N_B] float64,
/// from the materialised Fisher vectors of both (small) sets.
torch::Tensor pairwise_fisher_distances(const Projector& projector, ScoreModel& model,
                                        const torch::Tensor& a, const torch::Tensor& b,
                                        int64_t batch_size = 256, const ProgressFn& progress = {});

}  // namespace nfk
