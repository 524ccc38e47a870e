#pragma once
/// nfk Fisher layer (SPEC §1–2): per-example score gradients, the mean score z and diagonal
/// Fisher I from a reference distribution, and the Fisher-vector operator V = (J − 1zᵀ) I^{-1/2}
/// whose products stream over the data (JVP for VQ, VJP for VᵀM).

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

#include "nfk/dist.h"
#include "nfk/linalg.h"
#include "nfk/model.h"
#include "nfk/names.h"
#include "nfk/progress.h"
#include "nfk/run_options.h"

namespace nfk {

/// Which distribution z and I are taken over.
/// kTrue: the model's own (generator samples for GANs, sample(n) for VAE/density);
/// kEmpirical: the data; kAuto: true where the model can sample, else empirical;
/// kNone: z = 0, I = 1 (forced for kind `ntk`).
enum class Estimator { kAuto, kTrue, kEmpirical, kNone };
const Names<Estimator>& estimator_names();  // auto, true, empirical, none
/// A user's choice: auto, true or empirical ("none" is the ntk kind's, never chosen).
Estimator parse_estimator(const std::string& name);
inline std::string to_string(Estimator value) {
  return estimator_names().name(value);
}

/// How per-example gradients are formed (SPEC §2 per-example fast path).
/// kLayerTape: one backward per batch from the layer tape (include/nfk/layer_tape.h);
/// kLoop: one backward per example (always correct, B times the work);
/// kAuto: decided once per computation by `choose_gradient_path` on its first batch.
enum class GradientPath { kAuto, kLayerTape, kLoop };
const Names<GradientPath>& gradient_path_names();  // auto, layer-tape, loop
inline std::string to_string(GradientPath value) {
  return gradient_path_names().name(value);
}

/// A probe's verdict: the path, and why the layer tape is not used ("" when it is).
struct GradientPathChoice {
  GradientPath path = GradientPath::kLoop;
  std::string reason;
};

/// Whether the layer tape covers `model`, by an explicit probe on x_b [B, ...] (a few examples
/// suffice): the tape's rows must exist and equal the per-example loop's on up to two examples
/// (a parameter used outside its taped layer, or examples that interact, turn it off). Leaves the
/// model unchanged. `first_index`: x_b[0]'s index in its data set (seeds the VAE's noise).
/// Example: `auto c = nfk::choose_gradient_path(model, x.slice(0, 0, 4));`
GradientPathChoice choose_gradient_path(ScoreModel& model, const torch::Tensor& x_b,
                                        int64_t first_index = 0);

/// What z and I are taken over. Batch size, seed (model samples, data subsets), process group
/// and progress come with the call's RunOptions.
struct FisherOptions {
  Estimator estimator = Estimator::kAuto;
  int64_t reference_samples = 0;  // 0: as many as the data has examples
  double floor = 1e-8;            // I is floored at floor × mean(I) (SPEC: "floored by ε")
  GradientPath gradient_path = GradientPath::kAuto;  // per-example gradients (a plan's choice)
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
/// `path` kAuto probes this batch (choose_gradient_path); a computation over many batches decides
/// once instead (GradientBlocks). Where the tape fails on a batch the loop gives its rows, with
/// a one-line warning.
torch::Tensor per_example_gradients(ScoreModel& model, const torch::Tensor& x_b,
                                    int64_t first_index = 0, torch::Tensor out_bp = {},
                                    GradientPath path = GradientPath::kAuto);

/// Per-example gradient blocks of one computation over many batches: the path is the one given,
/// or (kAuto) probed on the first batch and then kept. Holds no state on the model.
class GradientBlocks {
 public:
  GradientBlocks(ScoreModel& model, GradientPath path) : model_(model), choice_{path, ""} {}
  /// J_b of x_b [B, ...] into out_bp [B, P] (see per_example_gradients).
  torch::Tensor operator()(const torch::Tensor& x_b, int64_t first_index, torch::Tensor out_bp);
  /// The path in use (kAuto until the first batch).
  const GradientPathChoice& choice() const { return choice_; }

 private:
  ScoreModel& model_;
  GradientPathChoice choice_;
};

/// The estimator `requested` resolves to for this model (kAuto → kTrue where the model can
/// sample its own distribution, else kEmpirical; always kNone for `ntk`).
Estimator resolve_estimator(ScoreModel& model, Estimator requested);

/// The reference inputs for z and I: model samples (true) or a subset of `data` (empirical),
/// drawn from `seed`. Throws if `true` is asked of a model that cannot sample.
torch::Tensor reference_inputs(ScoreModel& model, const torch::Tensor& data,
                               const FisherOptions& options, uint64_t seed, Estimator* resolved,
                               std::string* reference);

/// z = E_ref[∇s], I = E_ref[(∇s − z)²], floored; one pass of per-example gradients over the
/// reference. For kind `ntk` returns z = 0, I = 1 without touching the data.
/// With `run.group`, every rank draws the same reference, takes its shard of it
/// (dist::shard_range in whole batches) and the sums are all-reduced: same result on every rank.
FisherStats compute_fisher_stats(ScoreModel& model, const torch::Tensor& data,
                                 const FisherOptions& options, const RunOptions& run = {});

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
/// With `run.group` (world size > 1) only this rank's rows are returned:
/// V[shard] [shard.size(), P] for shard = dist::shard_range(N, batch_size, rank, world), and
/// `stats` holds the global statistics.
torch::Tensor materialize_fisher_vectors(ScoreModel& model, const torch::Tensor& inputs,
                                         const FisherOptions& options, const RunOptions& run,
                                         FisherStats* stats);

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
                     int64_t batch_size, ProgressFn progress, int64_t first_index,
                     GradientPath gradient_path);

  ScoreModel& model_;
  GradientBlocks gradients_;  // per-example gradient blocks (dense(), PerExampleOperator)
  torch::Tensor inputs_;      // [N, ...]
  torch::Tensor z_;           // [P]
  torch::Tensor inv_sqrt_;    // [P]
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
                       int64_t batch_size, ProgressFn progress = {}, int64_t first_index = 0,
                       GradientPath gradient_path = GradientPath::kAuto)
      : StreamingVOperator(model, std::move(inputs), stats, batch_size, std::move(progress),
                           first_index, gradient_path) {}
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
                     int64_t batch_size, ProgressFn progress = {}, int64_t first_index = 0,
                     GradientPath gradient_path = GradientPath::kAuto);
  torch::Tensor apply(const torch::Tensor& q_pu) override;
  torch::Tensor apply_t(const torch::Tensor& m_nu) override;
  /// V Q and Vᵀ M from one pass over the per-example blocks.
  std::pair<torch::Tensor, torch::Tensor> apply_pair(const torch::Tensor& q_pu,
                                                     const torch::Tensor& m_nl) override;
  /// VᵀV Q from one pass: each block's V_b Q and V_bᵀ(V_b Q) from the same J_b.
  torch::Tensor apply_gram(const torch::Tensor& q_pu) override;
  bool fuses_gram() const override { return true; }

 private:
  torch::Tensor j_bp_;  // [B, P] reused gradient block
};

/// How a streaming V forms its products: GEMMs on per-example gradient blocks recomputed per
/// pass (PerExampleOperator), or forward/reverse-mode passes (FisherVectorOperator).
enum class VProducts { kPerExampleBlocks, kMatrixFree };

/// What a plan decides about the operator over V (embed/'s FitPlan holds one).
struct VOperatorSpec {
  VProducts products = VProducts::kPerExampleBlocks;
  GradientPath gradient_path = GradientPath::kAuto;  // per-example gradients (blocks, dense())
  int64_t batch_size = 256;
};

/// The streaming V [N, P] over `inputs` [N, ...] that `spec` describes.
/// Example: `auto op = nfk::make_v_operator({VProducts::kMatrixFree}, model, x, stats);`
std::unique_ptr<StreamingVOperator> make_v_operator(const VOperatorSpec& spec, ScoreModel& model,
                                                    torch::Tensor inputs, const FisherStats& stats,
                                                    ProgressFn progress = {},
                                                    int64_t first_index = 0);

}  // namespace nfk
