#pragma once
/// Continual-learning penalties for the trainer (SPEC §1b "Uses"): elastic weight consolidation
/// with the classifier's Fisher (Kirkpatrick et al. 2017) — a separate penalty per task, or
/// online EWC (Schwarz et al. 2018: one running Fisher with decay γ and the latest anchor) — and
/// the plain baselines, fine-tuning (no penalty) and an L2 pull to the previous task's weights.
///
///   ewc         (λ/2) Σ_t (θ − θ*_t)ᵀ F_t (θ − θ*_t)
///   online-ewc  (λ/2) (θ − θ*_T)ᵀ F̃_T (θ − θ*_T),  F̃_t = γ F̃_{t−1} + F_t
///   l2          (λ/2) ‖θ − θ*_T‖²
///
/// F_t is the classifier's Fisher of p(y|x) at θ*_t on task t's data, by any estimator of
/// include/nfk/classifier_fisher.h (true, mc, empirical, or the "batched" error to show it), in
/// diagonal form or as K-FAC / EK-FAC factors (include/nfk/kfac.h; online EWC then keeps the
/// decayed sum Σ_t γ^{T−t} F_t exactly, as a list of factored terms).
/// Example: after each task, `ewc.consolidate(net, task_data)`; the trainer adds
/// `ewc.loss_term()` to every step's loss.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "nfk/classifier_fisher.h"
#include "nfk/kfac.h"
#include "nfk/names.h"
#include "nfk/trainer.h"
#include "nfk/zoo.h"

namespace nfk {

/// How a continual-learning run protects earlier tasks.
enum class ContinualMethod { kFinetune, kL2, kEwc, kOnlineEwc };
/// "finetune" | "l2" | "ewc" | "online-ewc"; throws on anything else.
const Names<ContinualMethod>& continual_method_names();  // finetune, l2, ewc, online-ewc
inline ContinualMethod parse_continual_method(const std::string& name) {
  return continual_method_names().parse(name);
}
inline std::string to_string(ContinualMethod value) {
  return continual_method_names().name(value);
}

struct EwcOptions {
  ContinualMethod method = ContinualMethod::kEwc;
  ClassifierFisherOptions fisher;       // the estimator of F_t (ewc, online-ewc)
  FisherForm form = FisherForm::kDiag;  // F_t's form: diag, kfac or ekfac
  double lambda = 1;                    // λ
  double gamma = 1;                     // online-ewc: decay of the running Fisher, in (0, 1]
  int64_t fisher_examples = 1000;       // F_t over the task's first n examples (0: all)
  int64_t batch_size = 256;             // of the Fisher pass (and the B of `batched`)
  uint64_t seed = 0;                    // mc labels
};

/// The state of a continual-learning penalty: anchors θ*_t and diagonal Fishers F_t per
/// consolidated task (one running pair for online-ewc and l2).
class EwcPenalty {
 public:
  explicit EwcPenalty(EwcOptions options);

  /// After training a task: records θ* = the model's current parameters and (ewc, online-ewc)
  /// F_t at θ* on `data` (inputs [N, ...], labels [N] where the estimator needs them).
  /// `classes` (optional): the task's classes when its outputs are a subset of the model's
  /// logits (task-incremental, "multi-head" by masking): p(y|x) is then the softmax over them,
  /// and labels are given in the model's class numbering. Leaves the module in eval mode.
  void consolidate(const ZooModule& model, const ClassifierData& data,
                   const std::vector<int64_t>& classes = {});

  /// The penalty at the model's parameters (differentiable; 0 before any consolidation).
  torch::Tensor value(const ZooModule& model) const;

  /// The trainer's loss term "ewc" (or "l2"), evaluating `value`.
  LossTerm loss_term(const std::string& optimizer = "") const;

  const EwcOptions& options() const { return options_; }
  int64_t consolidated() const { return consolidated_; }

  /// One quadratic of the penalty: weight · (θ − anchor)ᵀ F (θ − anchor), F diagonal (`diag`
  /// [P], ones for l2) or factored (`factors`).
  struct Term {
    torch::Tensor anchor;                        // θ* [P], flattened in parameter order
    torch::Tensor diag;                          // [P] (diag form and l2), else undefined
    std::shared_ptr<const KfacFactors> factors;  // kfac / ekfac form, else null
    double weight = 1;                           // online-ewc: γ^{T−t}
  };
  /// One term per task for ewc; for online-ewc one diagonal term (F̃, the latest anchor) or one
  /// factored term per task (decayed weights, the latest anchor); for l2 one term (F = 1).
  const std::vector<Term>& terms() const { return terms_; }

 private:
  EwcOptions options_;
  int64_t consolidated_ = 0;
  std::vector<Term> terms_;
};

}  // namespace nfk
