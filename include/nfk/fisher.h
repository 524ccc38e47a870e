#pragma once
/// nfk Fisher layer (SPEC §1–2): per-example score gradients, the mean score z and diagonal
/// Fisher I from a reference distribution, and the Fisher-vector operator V = (J − 1zᵀ) I^{-1/2}
/// whose products stream over the data (JVP for VQ, VJP for VᵀM).

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "nfk/dist.h"
#include "nfk/linalg.h"
#include "nfk/model.h"
#include "nfk/progress.h"

namespace nfk {

/// Which distribution z and I are taken over.
/// kTrue: the model's own (generator samples for GANs, sample(n) for VAE/density);
/// kEmpirical: the data; kAuto: true where the model can sample, else empirical;
/// kNone: z = 0, I = 1 (forced for kind `ntk`).
enum class Estimator { kAuto, kTrue, kEmpirical, kNone };
Estimator parse_estimator(const std::string& name);  // "auto" | "true" | "empirical"
std::string to_string(Estimator e);

struct FisherOptions {
  Estimator estimator = Estimator::kAuto;
  int64_t reference_samples = 0;  // 0: as many as the data has examples
  double floor = 1e-8;            // I is floored at floor × mean(I) (SPEC: "floored by ε")
  int64_t batch_size = 256;
  uint64_t seed = 0;             // seeds model samples and data subsets
  dist::Group* group = nullptr;  // data-parallel ranks (not owned); null: this process alone
};

/// z, I and how they were obtained; stored with every projector.
struct FisherStats {
  torch::Tensor mean_score;                // z [P] (zeros for ntk)
  torch::Tensor fisher_diag;               // I [P], floored (ones for ntk)
  Estimator estimator = Estimator::kNone;  // resolved: kTrue, kEmpirical or kNone
  std::string reference;                   // "generator samples", "model samples", "data" or "none"
  int64_t n_reference = 0;
  double floor_value = 0;  // absolute ε applied
  int64_t n_floored = 0;   // entries of I raised to ε (zero-variance parameters)

  /// I^{-1/2} [P].
  torch::Tensor inv_sqrt() const { return fisher_diag.rsqrt(); }
};

/// Flattens per-parameter tensors (undefined = zeros) into one vector in `params` order.
torch::Tensor flatten_like(const std::vector<torch::Tensor>& grads,
                           const std::vector<torch::Tensor>& params);

/// Per-example gradients ∇θ s(x_i) of a batch x_b [B, ...] → J_b [B, P] (model dtype/device).
/// `first_index` is x_b[0]'s index in its data set (fixes the VAE's per-example noise).
/// If `out_bp` is given ([B, P], model dtype/device) the rows are written there and it is returned.
/// The first batch picks the path (layer tape or one backward per example) and records it on
/// `model`: `model.gradient_path()`, and `model.gradient_path_note()` says in words why the tape
/// was not taken (e.g. which op's output an in-place op overwrites), for the caller to print.
torch::Tensor per_example_gradients(ScoreModel& model, const torch::Tensor& x_b,
                                    int64_t first_index = 0, torch::Tensor out_bp = {});

/// Streams per-example gradient rows into the mean score z and diagonal Fisher I, accumulated
/// in float64 around a shift (the first rows' mean) so that E[d²] − E[d]² does not cancel.
class FisherAccumulator {
 public:
  void add(const torch::Tensor& j_bp);
  /// z, I floored at floor × mean(I), in `dtype`; throws if I is zero everywhere.
  FisherStats finish(double floor, torch::Dtype dtype, const std::string& reference) const;
  int64_t count() const { return count_; }
  /// Sums the statistics of every rank of `group` (each rank added its own rows), so that
  /// finish() gives the statistics of all rows on every rank. `p`/`device`: the row size and
  /// device, for ranks that added no rows. Every rank must call it.
  void reduce(dist::Group& group, int64_t p, torch::Device device);

 private:
  torch::Tensor shift_, sum_, sum_sq_;
  int64_t count_ = 0;
};

/// The estimator `requested` resolves to for this model (kAuto → kTrue where the model can
/// sample its own distribution, else kEmpirical; always kNone for `ntk`).
Estimator resolve_estimator(ScoreModel& model, Estimator requested);

/// The reference inputs for z and I: model samples (true) or a seeded subset of `data`
/// (empirical). Throws if `true` is asked of a model that cannot sample.
torch::Tensor reference_inputs(ScoreModel& model, const torch::Tensor& data,
                               const FisherOptions& options, Estimator* resolved,
                               std::string* reference);

/// z = E_ref[∇s], I = E_ref[(∇s − z)²], floored; one pass of per-example gradients over the
/// reference. For kind `ntk` returns z = 0, I = 1 without touching the data.
/// With `options.group`, every rank draws the same reference, takes its shard of it
/// (dist::shard_range in whole batches) and the sums are all-reduced: same result on every rank.
FisherStats compute_fisher_stats(ScoreModel& model, const torch::Tensor& data,
                                 const FisherOptions& options, const ProgressFn& progress = {});

/// GAN monitoring (AFV, SPEC §1): with z and I from `n_generated` generator samples (seeded),
/// the Fisher similarity exp(−c · mean_i ((ū_real,i − z_i)² / I_i)) of a held-out real set,
/// ū_real its mean score. 1 when the real set's mean score matches the generator's; it falls
/// as D separates them. Also returns ‖mean_real V‖ (the AFV Fisher distance to the samples).
/// `floor` (relative to mean I) is larger than the fit's default: parameters the samples never
/// move (dead units) would otherwise dominate the mean with huge standardized differences.
struct FisherSimilarity {
  double similarity = 0;
  double distance = 0;
};
FisherSimilarity fisher_similarity(ScoreModel& gan, const torch::Tensor& real, int64_t n_generated,
                                   uint64_t seed, double c = 1.0, double floor = 1e-3,
                                   int64_t batch_size = 256);
/// The same against statistics already drawn by `generated_fisher_stats`: compare several real
/// sets (train and test) with one generated reference without computing it again.
FisherStats generated_fisher_stats(ScoreModel& gan, int64_t n_generated, uint64_t seed,
                                   double floor = 1e-3, int64_t batch_size = 256);
FisherSimilarity fisher_similarity(ScoreModel& gan, const FisherStats& generated,
                                   const torch::Tensor& real, double c = 1.0,
                                   int64_t batch_size = 256);

/// V [N, P] = (J − 1zᵀ) I^{-1/2} materialised from per-example gradients, with its Fisher
/// statistics in `stats`. When the reference is all of `inputs` (empirical, no subsampling) z and
/// I come from the same pass over the data as J; otherwise `compute_fisher_stats` runs first.
/// With `options.group` (world size > 1) only this rank's rows are returned:
/// V[shard] [shard.size(), P] for shard = dist::shard_range(N, batch_size, rank, world), and
/// `stats` holds the global statistics.
torch::Tensor materialize_fisher_vectors(ScoreModel& model, const torch::Tensor& inputs,
                                         const FisherOptions& options, int64_t batch_size,
                                         FisherStats* stats, const ProgressFn& progress = {});

/// What the streaming V operators share: the data (on a GPU moved there once when it takes at
/// most 1 GiB, else per batch), z and I^{-1/2} on the model's device and dtype, the batch size
/// and the progress callback; and dense(), V materialised from per-example gradients.
class StreamingVOperator : public LinearOperator {
 public:
  int64_t rows() const override { return inputs_.size(0); }
  int64_t cols() const override { return z_.size(0); }
  torch::TensorOptions options() const override { return z_.options(); }
  torch::Tensor dense() override;

 protected:
  /// `first_index`: the index of inputs[0] in its data set (a rank's shard starts past 0), which
  /// seeds per-example noise of stochastic scores.
  StreamingVOperator(ScoreModel& model, torch::Tensor inputs, const FisherStats& stats,
                     int64_t batch_size, ProgressFn progress, int64_t first_index);

  ScoreModel& model_;
  torch::Tensor inputs_;    // [N, ...]
  torch::Tensor z_;         // [P]
  torch::Tensor inv_sqrt_;  // [P]
  int64_t batch_size_;
  ProgressFn progress_;
  int64_t first_index_;
};

/// V [N, P] over `inputs` [N, ...] as a streaming operator (SPEC §2 matrix-free):
/// apply(Q) = V Q by forward-mode AD (dual tensors on the parameters), apply_t(M) = Vᵀ M by
/// reverse-mode AD; neither stores J, V or K.
class FisherVectorOperator : public StreamingVOperator {
 public:
  FisherVectorOperator(ScoreModel& model, torch::Tensor inputs, const FisherStats& stats,
                       int64_t batch_size, ProgressFn progress = {}, int64_t first_index = 0)
      : StreamingVOperator(model, std::move(inputs), stats, batch_size, std::move(progress),
                           first_index) {}
  torch::Tensor apply(const torch::Tensor& q_pu) override;
  torch::Tensor apply_t(const torch::Tensor& m_nu) override;

 private:
  /// The score with dual parameters. PyTorch's fused kernels (e.g. the transformer encoder's
  /// fast path) have no forward-mode AD and run only with grad mode off: on the first such
  /// failure the JVPs switch grad mode on (the slower, differentiable path) and retry.
  torch::Tensor forward_mode_score(const torch::Tensor& x_b, int64_t first_index);
  bool jvp_with_grad_mode_ = false;
};

/// V [N, P] over `inputs` [N, ...] as GEMMs on per-example gradient blocks recomputed on every
/// pass (SPEC §2 per-example fast path when V does not fit the memory budget):
/// apply(Q) = Σ_b V_b Q and apply_t(M) = Σ_b V_bᵀ M_b with V_b = (J_b − 1zᵀ) I^{-1/2} from
/// `per_example_gradients` (one backward per batch where the layer tape covers the model).
/// Memory O(B·P + P·u); the products equal FisherVectorOperator's.
class PerExampleOperator : public StreamingVOperator {
 public:
  PerExampleOperator(ScoreModel& model, torch::Tensor inputs, const FisherStats& stats,
                     int64_t batch_size, ProgressFn progress = {}, int64_t first_index = 0);
  torch::Tensor apply(const torch::Tensor& q_pu) override;
  torch::Tensor apply_t(const torch::Tensor& m_nu) override;
  /// V Q and Vᵀ M from one pass over the per-example blocks.
  std::pair<torch::Tensor, torch::Tensor> apply_pair(const torch::Tensor& q_pu,
                                                     const torch::Tensor& m_nl) override;

 private:
  torch::Tensor j_bp_;  // [B, P] reused gradient block
};

}  // namespace nfk
