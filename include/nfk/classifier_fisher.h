#pragma once
/// The classifier's Fisher of p(y|x) (SPEC §1b) — distinct from the NFK score's Fisher of
/// fisher.h. For logits f(x) [C], p = softmax(f) and g_y(x) = ∇θ log p(y|x), all uncentred
/// (Kunstner et al. 2019):
///   true       F = (1/N) Σ_x Σ_y p(y|x) g_y g_yᵀ = (1/N) Σ_x J_fᵀ (diag p − p pᵀ) J_f;
///   mc         y ~ p(y|x), S labels per example, seeded: (1/NS) Σ_x Σ_s g_{y_s} g_{y_s}ᵀ;
///   empirical  y = the data's label: (1/N) Σ_x g_{y_x} g_{y_x}ᵀ (a different matrix);
///   batched    (1/n_B) Σ_batches ḡ_b ḡ_bᵀ, ḡ_b the batch's mean gradient of the cross-entropy on
///              the data's labels — the common error in EWC code, *not* a Fisher estimate: for
///              batches of B examples drawn with replacement its expectation is
///              F_emp / B + (1 − 1/B) ḡḡᵀ (ḡ the full-data mean gradient); over the batches of a
///              random partition of N examples, ḡḡᵀ + (N − B) / (B (N − 1)) (F_emp − ḡḡᵀ).
/// Every estimator is a sum of outer products of "Fisher rows": one per (example, output-space
/// factor) — C rows √p_c g_c (true), S rows g_{y_s}/√S (mc), one row g_y (empirical) — or one
/// per batch (batched). Each row is ∂⟨c, f(x)⟩/∂θ for a logit cotangent c, so the rows of a
/// batch come from one forward and one backward per cotangent on the layer tape.

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "nfk/fisher.h"
#include "nfk/linalg.h"
#include "nfk/model.h"
#include "nfk/names.h"
#include "nfk/run_options.h"

namespace nfk {

/// Which labels the classifier's Fisher takes its expectation over (see the file comment).
enum class FisherEstimator { kTrue, kMonteCarlo, kEmpirical, kBatched };
/// "true" | "mc" | "empirical" | "batched"; throws on anything else.
const Names<FisherEstimator>& fisher_estimator_names();  // true, mc, empirical, batched
inline FisherEstimator parse_fisher_estimator(const std::string& name) {
  return fisher_estimator_names().parse(name);
}
inline std::string to_string(FisherEstimator value) {
  return fisher_estimator_names().name(value);
}
/// Whether the estimator reads the data's labels (empirical, batched).
bool needs_labels(FisherEstimator estimator);

/// How the Fisher is kept: its diagonal, Kronecker factors per layer (K-FAC, include/nfk/kfac.h)
/// or K-FAC's eigenbases with re-fitted diagonal scalings (EK-FAC).
enum class FisherForm { kDiag, kKfac, kEkfac };
/// "diag" | "kfac" | "ekfac"; throws on anything else.
const Names<FisherForm>& fisher_form_names();  // diag, kfac, ekfac
inline FisherForm parse_fisher_form(const std::string& name) {
  return fisher_form_names().parse(name);
}
inline std::string to_string(FisherForm value) {
  return fisher_form_names().name(value);
}

/// What the classifier's Fisher is taken over. Batch size (also the B of `batched`), seed (the
/// mc labels), process group and progress come with the call's RunOptions.
struct ClassifierFisherOptions {
  FisherEstimator estimator = FisherEstimator::kTrue;
  int64_t mc_samples = 1;  // kMonteCarlo: labels drawn per example
  GradientPath gradient_path = GradientPath::kAuto;
};

/// The data of a classifier's Fisher: inputs x [N, ...] and labels y [N] (integers in [0, C)),
/// which may be undefined for the true and mc estimators.
struct ClassifierData {
  torch::Tensor inputs;
  torch::Tensor labels;
};

/// A diagonal classifier Fisher and how it was obtained.
struct ClassifierFisherDiag {
  torch::Tensor diag;  // [P] in θ's order (model dtype and device), F_jj
  FisherEstimator estimator = FisherEstimator::kTrue;
  int64_t n_examples = 0;
  int64_t n_rows = 0;       // outer products summed (N·C, N·S, N or batches)
  GradientPathChoice path;  // the per-example path taken, and why
};

/// diag(F) for `model` (kind classifier: forward(x) → logits [B, C]) over `data`: the Fisher
/// rows squared and summed, one forward and R backward passes per batch on the layer tape (the
/// per-example loop where the tape does not cover the model). With `run.group` every rank takes
/// its shard (whole batches) and the sums are all-reduced once: the same result on every rank.
/// Example: `auto f = nfk::classifier_fisher_diag(model, {x, y}, {.estimator = kEmpirical});`
ClassifierFisherDiag classifier_fisher_diag(ScoreModel& model, const ClassifierData& data,
                                            const ClassifierFisherOptions& options,
                                            const RunOptions& run = {});

/// The Fisher rows of `data` as an operator W [n_rows, P] with F = Wᵀ W (rows scaled by
/// 1/√N, or 1/√n_batches for `batched`): its singular values squared are F's eigenvalues, so the
/// randomized SVD of linalg/ gives F's top-k spectrum (and "the NFK of the true Fisher"). Rows
/// are recomputed on every pass (never stored); row (i, r) of example i is row i·R + r.
class ClassifierFisherRows : public LinearOperator {
 public:
  /// `path`: the per-example gradient path (kAuto: probe it as classifier_fisher_diag does;
  /// pass its `path.path` to skip a second probe).
  ClassifierFisherRows(ScoreModel& model, ClassifierData data, ClassifierFisherOptions options,
                       RunOptions run, GradientPath path = GradientPath::kAuto);
  int64_t rows() const override;
  int64_t cols() const override;
  torch::Tensor apply(const torch::Tensor& q_pu) override;
  torch::Tensor apply_t(const torch::Tensor& m_nu) override;
  torch::TensorOptions options() const override;

 private:
  ScoreModel& model_;
  ClassifierData data_;
  ClassifierFisherOptions options_;
  RunOptions run_;
  int64_t rows_per_batch_unit_;  // R (rows per example), or 1 for batched
  GradientPath path_;
};

/// F v without forming F (the curvlinops approach): per batch one forward-mode JVP of the logits
/// along v, the output-space Fisher H_x = Σ_r c_r c_rᵀ of the estimator, and one VJP:
/// F v = (1/N) Σ_x J_fᵀ H_x J_f v. A symmetric LinearOperator [P, P] (apply = apply_t). The mc
/// labels are drawn as `classifier_fisher_diag` draws them, so both describe the same matrix.
class FisherVectorProduct : public LinearOperator {
 public:
  FisherVectorProduct(ScoreModel& model, ClassifierData data, ClassifierFisherOptions options,
                      RunOptions run);
  int64_t rows() const override;
  int64_t cols() const override;
  torch::Tensor apply(const torch::Tensor& v_pu) override;
  torch::Tensor apply_t(const torch::Tensor& v_pu) override { return apply(v_pu); }
  torch::TensorOptions options() const override;

 private:
  ScoreModel& model_;
  ClassifierData data_;
  ClassifierFisherOptions options_;
  RunOptions run_;
};

/// Capacity statistics of a classifier Fisher (seed: "FIM as a statistic of
/// over-parameterisation").
struct FisherCapacity {
  double trace = 0;                   // Σ_j F_jj, exact from the diagonal
  torch::Tensor top_eigenvalues;      // λ_1 ≥ … ≥ λ_k of F [k] (float64)
  double effective_rank_entropy = 0;  // exp(−Σ p_i log p_i), p = λ / Σλ over the top k
  double effective_rank_ratio = 0;    // (Σλ)² / Σλ² over the top k
  double top_k_share = 0;             // Σ_{i≤k} λ_i / trace
  double sloppy_threshold = 0;        // absolute: relative threshold × mean diagonal
  double sloppy_fraction = 0;         // share of parameters with F_jj < sloppy_threshold
  int64_t iterations = 0;             // the eigenvalue SVD's iterations
  double estimated_error = -1;        // its estimate of the top-k √λ's max relative error
};

/// Options of `fisher_capacity`.
struct CapacityOptions {
  int64_t top_k = 20;  // eigenvalues by the randomized SVD of ClassifierFisherRows
  int64_t oversample = 10;
  int64_t power_iters = 6;  // the SVD's most iterations
  /// The SVD stops once its estimate of the top-k σ = √λ's max relative error is at most this
  /// (λ's is about twice it); < 0: 2e-4 in float32, 1e-8 in float64; 0: every iteration.
  double tol = -1;
  double sloppy_relative = 1e-3;  // "sloppy": F_jj below this × mean(F_jj)
};

/// Trace, top-k eigenvalues, effective ranks and the sloppy share of the Fisher whose diagonal
/// is `diag` (from `classifier_fisher_diag` with the same options and data). `path`: the gradient
/// path that call took (its `path.path`), or kAuto to probe it again.
FisherCapacity fisher_capacity(ScoreModel& model, const ClassifierData& data,
                               const ClassifierFisherOptions& options, const RunOptions& run,
                               const torch::Tensor& diag, const CapacityOptions& capacity = {},
                               GradientPath path = GradientPath::kAuto);

}  // namespace nfk
