#pragma once
/// Natural-gradient preconditioners for the trainer (SPEC §1b "Uses"): θ ← θ − η (F + λI)⁻¹ ∇L
/// with F the classifier's Fisher of p(y|x) estimated on the training batches, as a gradient
/// transform (include/nfk/trainer.h) that composes with loss terms such as EWC's penalty.
///
///   ngd-diag  F ≈ diag(F), a running average (decay β) of the batch's diagonal Fisher, refreshed
///             every `update_every` steps: g_j ← g_j / (F_jj + λ);
///   kfac      F ≈ A ⊗ G per Linear / Conv2d layer (include/nfk/kfac.h), the factors a running
///             average of the batch's, refreshed every `update_every` steps, their
///             eigendecompositions every `inverse_every` steps; damping exact ((A⊗G + λI)⁻¹) or
///             factored Tikhonov (Martens & Grosse 2015 §6.3). Parameters outside those layers
///             get g / λ.
/// The optimizer that follows (SGD with momentum in `nfk train classifier`) steps along the
/// preconditioned gradient. An optional KL clip (Ba et al. 2017) rescales the direction d so
/// that η² gᵀd ≤ kl_clip.

#include <torch/torch.h>

#include <memory>
#include <string>

#include "nfk/classifier_fisher.h"
#include "nfk/kfac.h"
#include "nfk/trainer.h"
#include "nfk/zoo.h"

namespace nfk {

struct NaturalGradientOptions {
  FisherForm form = FisherForm::kDiag;  // kDiag (ngd-diag) or kKfac
  ClassifierFisherOptions fisher;       // estimator of the batch Fisher (true, mc, empirical)
  double damping = 1e-2;                // λ
  KfacDamping damping_kind = KfacDamping::kExact;  // kfac only
  double decay = 0.95;                             // β of the running average
  int64_t update_every = 1;                        // steps between Fisher refreshes
  int64_t inverse_every = 1;                       // kfac: steps between eigendecompositions
  double learning_rate = 0;                        // η, for the KL clip only (0: no clip)
  double kl_clip = 0;                              // > 0: clip η² gᵀd to this
  uint64_t seed = 0;                               // mc labels
};

/// The preconditioner's state (running Fisher, step count) for one module.
class NaturalGradient {
 public:
  explicit NaturalGradient(NaturalGradientOptions options);

  /// Preconditions `model`'s parameter gradients in place (param.grad() ← (F + λI)⁻¹ grad), after
  /// refreshing F from `batch` (inputs and labels) when the step count says so. Leaves the
  /// module's training mode as it found it.
  void apply(const ZooModule& model, const Batch& batch);

  /// The gradient transform "natural-gradient" calling `apply`; this object must outlive it.
  GradientTransform transform(const std::string& optimizer = "");

  /// The running diagonal [P] (ngd-diag) or factors (kfac); undefined / null before a step.
  const torch::Tensor& diag() const { return diag_; }
  const KfacFactors* factors() const { return factors_.get(); }
  int64_t steps() const { return steps_; }

  /// The preconditioned direction (F + λI)⁻¹ g for a flattened gradient g [P] under the current
  /// state (for tests and for callers that step themselves).
  torch::Tensor precondition(const torch::Tensor& g) const;

 private:
  void refresh(const ZooModule& model, const Batch& batch);

  NaturalGradientOptions options_;
  torch::Tensor diag_;
  std::unique_ptr<KfacFactors> factors_;
  int64_t steps_ = 0;
};

}  // namespace nfk
