#pragma once
/// K-FAC and EK-FAC forms of the classifier's Fisher of p(y|x) (SPEC §1b; Martens & Grosse 2015,
/// Grosse & Martens 2016 for convolutions, George et al. 2018 for EK-FAC).
///
/// Per Linear or Conv2d layer whose weight is in θ, the layer's gradient for one Fisher row
/// (example i, logit cotangent c[r, i] of fisher_rows.h) is the matrix
///   D_ir = Σ_t δ_irt ā_itᵀ   [out, in'],  in' = in (+1 with a bias column of ones),
/// t over the layer's positions (1 for a Linear on [B, in]; the output's H·W for a conv, whose
/// ā_it is the unfolded input patch at position t; the middle dims of a Linear on [B, ..., in]).
/// The factors, averaged over the N examples of the data:
///   A = (1/(N·T)) Σ_i Σ_t ā_it ā_itᵀ          [in', in']  (averaged over positions)
///   G = (1/N) Σ_i Σ_r Σ_t δ_irt δ_irtᵀ        [out, out]  (summed over positions and rows r)
/// so that the weight block of F, (1/N) Σ_ir vec(D_ir) vec(D_ir)ᵀ, is approximated by A ⊗ G in
/// column-major vec (KFC's spatially-uncorrelated-derivatives assumption puts a factor T between
/// the two; this convention puts it in G). With one example and one position the block is
/// exactly A ⊗ G. θ flattens a weight [out, in, (kh, kw)] row-major and its bias [out] apart; the
/// layer's entries of θ, read as the matrix M [out, in'] (the bias as the last column), are
/// row-major vec(M) = θ[theta_index], whose block is kron(G, A).
/// EK-FAC keeps the eigenbases A = Q_A Λ_A Q_Aᵀ, G = Q_G Λ_G Q_Gᵀ and re-fits the diagonal in that
/// basis per Fisher row: S = (1/N) Σ_i Σ_r (Q_Gᵀ D_ir Q_A)² [out, in'] (a second pass over the
/// data).
///
/// Covered: Linear (unmasked) and Conv2d (zero padding, any stride and dilation), called once per
/// forward. A conv with groups > 1 gives one block per group (its weight rows and input channels;
/// blocks between groups are zero, as between layers). Other parameters (norms, embeddings,
/// transposed convs, shared or masked weights) are left out, with the reason: the approximation has
/// zero curvature there (mv gives 0; inverse_mv gives v / damping). The layer tape must cover the
/// whole model (every parameter used by a taped layer), else the call throws: K-FAC reads the
/// recorded layer inputs and output gradients. Estimators true, mc and empirical; `batched` is
/// refused (its rows are batch sums, not per-example rows, so it has no per-example factors).

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nfk/classifier_fisher.h"
#include "nfk/layer_tape.h"
#include "nfk/linalg.h"

namespace nfk {

/// One layer's factors. Tensors are float64 on the model's device.
struct KfacLayer {
  std::string name;  // "layer03.conv2d" (covered layer calls in order), "layer03.conv2d.group1"
  TapedLayer kind = TapedLayer::kLinear;  // kLinear or kConv2d
  std::vector<int64_t> weight_shape;      // [out, in] or [out, in/groups, kh, kw], whole layer
  int64_t group = 0, groups = 1;          // this block's conv group, of `groups`
  int64_t weight_index = -1;              // index of the weight tensor in model.parameters()
  int64_t bias_index = -1;                // the bias tensor's index, -1 without a bias in θ
  int64_t weight_offset = 0;              // offsets of the two tensors in θ [P]
  int64_t bias_offset = -1;
  int64_t positions = 1;               // T per example (conv: output H·W)
  torch::Tensor theta_index;           // [out·in'] int64: θ index of row-major vec(M) entries
  torch::Tensor a, g;                  // A [in', in'], G [out, out]
  torch::Tensor qa, eig_a, qg, eig_g;  // eigh of A and G (eigenvalues ascending, clamped ≥ 0)
  torch::Tensor scalings;              // EK-FAC only: S [out, in']; undefined for K-FAC
  int64_t out() const { return g.size(0); }  // out / groups
  int64_t in() const { return a.size(0); }   // in' (bias column included)
};

/// A parameter tensor that K-FAC does not cover.
struct KfacLeftOut {
  int64_t index = 0;  // in model.parameters()
  std::vector<int64_t> shape;
  std::string reason;
};

/// How `inverse_mv` damps each block.
enum class KfacDamping {
  kExact,  // (A ⊗ G + λ I)⁻¹ exactly, via the eigenbases (EK-FAC: (S + λ)⁻¹ there)
  kFactoredTikhonov,  // (A + π√λ I)⁻¹ ⊗ (G + √λ/π I)⁻¹, π² = (tr A / in') / (tr G / out)
};                    // (Martens & Grosse 2015 §6.3); K-FAC only

/// K-FAC (or EK-FAC) factors of a classifier Fisher: a block-diagonal approximation of F over
/// the covered layers, zero elsewhere.
struct KfacFactors {
  FisherForm form = FisherForm::kKfac;  // kKfac or kEkfac
  FisherEstimator estimator = FisherEstimator::kTrue;
  int64_t n_examples = 0;
  int64_t num_params = 0;  // P
  std::vector<KfacLayer> layers;
  std::vector<KfacLeftOut> left_out;

  /// F̃ v for v [P] or [P, u] (any float dtype/device; returned in v's dtype and device).
  /// Example: `auto fv = factors.mv(v);`
  torch::Tensor mv(const torch::Tensor& v) const;
  /// (F̃ + damping I)⁻¹ v per block (damping > 0), v [P] or [P, u]; left-out entries: v / damping.
  /// Example: `auto step = factors.inverse_mv(grad, 1e-3);` (a natural-gradient direction)
  torch::Tensor inverse_mv(const torch::Tensor& v, double damping,
                           KfacDamping how = KfacDamping::kExact) const;
  /// Layer `layer`'s block [out·in', out·in'] (float64) in row-major vec(M) order: kron(G, A)
  /// for K-FAC, (Q_G ⊗ Q_A) diag(vec S) (Q_G ⊗ Q_A)ᵀ for EK-FAC. For tests and small layers.
  torch::Tensor dense_block(size_t layer) const;
};

/// `factors` as a symmetric LinearOperator [P, P] (apply = apply_t = mv, float64 on the factors'
/// device), e.g. for linalg/'s randomized SVD: the approximation's top eigenvalues. Holds a
/// reference: `factors` must outlive it.
/// Example: `nfk::KfacOperator op(factors); auto svd = nfk::randomized_svd(op, {.rank = 10});`
class KfacOperator : public LinearOperator {
 public:
  explicit KfacOperator(const KfacFactors& factors) : factors_(factors) {}
  int64_t rows() const override { return factors_.num_params; }
  int64_t cols() const override { return factors_.num_params; }
  torch::Tensor apply(const torch::Tensor& q_pu) override {
    return factors_.mv(q_pu.to(options()));
  }
  torch::Tensor apply_t(const torch::Tensor& m_pu) override { return apply(m_pu); }
  torch::TensorOptions options() const override;

 private:
  const KfacFactors& factors_;
};

/// K-FAC factors of the classifier Fisher of `model` (kind classifier) over `data`, for the
/// estimator of `options` (true, mc, empirical): one taped forward and R backward passes per
/// batch. With `run.group`, every rank takes its shard and the sums are all-reduced once.
/// Example: `auto k = nfk::kfac_factors(model, {x, y}, {.estimator = FisherEstimator::kTrue});`
KfacFactors kfac_factors(ScoreModel& model, const ClassifierData& data,
                         const ClassifierFisherOptions& options, const RunOptions& run = {});

/// EK-FAC: the K-FAC eigenbases with the diagonal re-fitted per Fisher row (two passes over the
/// data; the same mc labels in both). Same arguments and rules as `kfac_factors`.
KfacFactors ekfac_factors(ScoreModel& model, const ClassifierData& data,
                          const ClassifierFisherOptions& options, const RunOptions& run = {});

}  // namespace nfk
