#pragma once
// The classifier Fisher's rows (internal to fisher/): logit cotangents per estimator, and a
// batch-by-batch walk over the rows that the diagonal, the rows operator and K-FAC share.
#include <functional>

#include "fisher/tape_gradients.h"
#include "nfk/classifier_fisher.h"

namespace nfk::detail {

/// Logit cotangents of one batch, c [R, B, C]: the estimator's output-space Fisher of example i
/// is H_i = Σ_r c[r, i] c[r, i]ᵀ, so its Fisher rows are ∂⟨c[r, i], f(x_i)⟩/∂θ:
///   true       R = C, c[r, i] = √p_ir (e_r − p_i)        (Σ_r c cᵀ = diag p − p pᵀ);
///   mc         R = S, c[s, i] = (e_{y_is} − p_i) / √S,  y_is ~ p_i drawn from (seed, first_index);
///   empirical  R = 1, c[0, i] = e_{y_i} − p_i;
///   batched    R = 1, c[0, i] = (e_{y_i} − p_i) / B, and the batch has a single row: the
///              gradient of ⟨c, f⟩ summed over its examples (the mean cross-entropy's gradient).
/// `logits_bc` is detached; labels_b [B] (int64, same device) is needed by empirical/batched.
torch::Tensor logit_cotangents(const torch::Tensor& logits_bc, const torch::Tensor& labels_b,
                               const ClassifierFisherOptions& options, uint64_t seed,
                               int64_t first_index);

/// R for the estimator and C classes (1 for batched).
int64_t cotangents_per_example(const ClassifierFisherOptions& options, int64_t classes);

/// Checks `data` for `options` at the public boundary (kind classifier, inputs [N, ...] with
/// N ≥ 1, labels [N] integral in [0, C) where the estimator needs them) and returns C from the
/// logits of the first example. Throws "nfk: ..." lines.
int64_t check_classifier_data(ScoreModel& model, const ClassifierData& data,
                              const ClassifierFisherOptions& options);

/// One batch's rows for each cotangent r: rows_bp [B, P] (per example) or [1, P] (batched).
using RowBlockFn =
    std::function<void(int64_t start, int64_t end, int64_t r, const torch::Tensor& rows_bp)>;

/// Walks the Fisher rows of data[shard] batch by batch (shard: this rank's whole batches under
/// run.group, else all), on the layer tape or the per-example loop (`path`: kLayerTape or kLoop).
/// Progress is reported as ("fisher rows", done, total). `stage` names the pass for progress.
void for_each_row_block(ScoreModel& model, const ClassifierData& data,
                        const ClassifierFisherOptions& options, const RunOptions& run,
                        GradientPath path, const char* stage, const RowBlockFn& visit);

/// The path for the whole computation: options.gradient_path, or (kAuto) the probe's verdict on
/// the first ≤ 8 examples (the same on every rank).
GradientPathChoice choose_classifier_path(ScoreModel& model, const ClassifierData& data,
                                          const ClassifierFisherOptions& options);

/// [start, end) of this rank's examples (whole batches), or [0, N).
std::pair<int64_t, int64_t> rank_range(int64_t n, const RunOptions& run);

/// F's normaliser: N for per-example estimators, the number of batches for batched.
double row_normaliser(int64_t n, const ClassifierFisherOptions& options, int64_t batch_size);

}  // namespace nfk::detail
