// EWC, online EWC and the L2 baseline as the trainer's loss term (include/nfk/ewc.h).
#include "nfk/ewc.h"

#include <algorithm>
#include <cmath>

namespace nfk {
namespace {

torch::Tensor flat_parameters(const ZooModule& model) {
  std::vector<torch::Tensor> flat;
  for (const auto& p : model.module->parameters()) flat.push_back(p.detach().reshape(-1));
  return torch::cat(flat).clone();
}

}  // namespace

const Names<ContinualMethod>& continual_method_names() {
  static const Names<ContinualMethod> names("continual-learning method",
                                            {{ContinualMethod::kFinetune, "finetune"},
                                             {ContinualMethod::kL2, "l2"},
                                             {ContinualMethod::kEwc, "ewc"},
                                             {ContinualMethod::kOnlineEwc, "online-ewc"}});
  return names;
}

EwcPenalty::EwcPenalty(EwcOptions options) : options_(std::move(options)) {
  TORCH_CHECK(options_.lambda >= 0 && std::isfinite(options_.lambda),
              "nfk: EWC: lambda must be finite and >= 0, got ", options_.lambda);
  TORCH_CHECK(options_.gamma > 0 && options_.gamma <= 1,
              "nfk: online EWC: gamma must be in (0, 1], got ", options_.gamma);
  TORCH_CHECK(options_.fisher_examples >= 0, "nfk: EWC: fisher_examples must be >= 0");
}

void EwcPenalty::consolidate(const ZooModule& model, const ClassifierData& data,
                             const std::vector<int64_t>& classes) {
  ++consolidated_;
  const auto method = options_.method;
  if (method == ContinualMethod::kFinetune) return;
  auto theta = flat_parameters(model);
  if (method == ContinualMethod::kL2) {
    terms_ = {{theta, torch::ones_like(theta), nullptr, 1}};
    return;
  }
  const int64_t n = options_.fisher_examples > 0
                        ? std::min(options_.fisher_examples, data.inputs.size(0))
                        : data.inputs.size(0);
  ClassifierData subset{data.inputs.slice(0, 0, n),
                        data.labels.defined() ? data.labels.slice(0, 0, n) : torch::Tensor()};
  auto net = wrap_zoo_module(model);
  if (!classes.empty()) {
    net = class_subset_network(std::move(net), classes);
    if (subset.labels.defined()) subset.labels = labels_in_subset(subset.labels, classes);
  }
  ModelOptions mo;
  mo.model_path = "the model after task " + std::to_string(consolidated_);
  mo.device = theta.device();
  mo.dtype = theta.scalar_type();
  ScoreModel score_model(ModelKind::kClassifier, std::move(net), nullptr, mo);
  RunOptions run;
  run.batch_size = options_.batch_size;
  run.seed = options_.seed + static_cast<uint64_t>(consolidated_);
  Term term{theta, {}, nullptr, 1};
  if (options_.form == FisherForm::kDiag) {
    term.diag = classifier_fisher_diag(score_model, subset, options_.fisher, run).diag;
  } else {
    term.factors = std::make_shared<const KfacFactors>(
        options_.form == FisherForm::kKfac
            ? kfac_factors(score_model, subset, options_.fisher, run)
            : ekfac_factors(score_model, subset, options_.fisher, run));
  }
  if (method == ContinualMethod::kEwc) {
    terms_.push_back(std::move(term));
    return;
  }
  // online: F̃_t = γ F̃_{t−1} + F_t, anchored at the latest θ*.
  if (term.diag.defined()) {
    if (!terms_.empty()) term.diag = options_.gamma * terms_.front().diag + term.diag;
    terms_ = {std::move(term)};
    return;
  }
  for (auto& t : terms_) {
    t.weight *= options_.gamma;
    t.anchor = theta;
  }
  terms_.push_back(std::move(term));
}

torch::Tensor EwcPenalty::value(const ZooModule& model) const {
  auto params = model.module->parameters();
  auto total = torch::zeros({}, params.front().options());
  if (terms_.empty()) return total;
  std::vector<torch::Tensor> flat;
  for (const auto& p : params) flat.push_back(p.reshape(-1));
  auto theta = torch::cat(flat);
  for (const auto& t : terms_) {
    TORCH_CHECK(theta.numel() == t.anchor.numel(),
                "nfk: EWC: the model's parameters changed shape since it was consolidated");
    auto delta = theta - t.anchor;
    if (t.diag.defined()) {
      total = total + t.weight * (t.diag * delta.square()).sum();
    } else {
      // Δᵀ F Δ with F applied to the detached Δ: u = F Δ, value 2 Δ·u − Δ̄·u = Δᵀ F Δ and
      // gradient 2 u, as for the quadratic itself (F is symmetric).
      auto u = t.factors->mv(delta.detach());
      total = total + t.weight * (2 * (delta * u).sum() - (delta.detach() * u).sum());
    }
  }
  return 0.5 * options_.lambda * total;
}

LossTerm EwcPenalty::loss_term(const std::string& optimizer) const {
  const std::string name = options_.method == ContinualMethod::kL2 ? "l2" : "ewc";
  return {name, [this](const ZooModule& model, const Batch&) { return value(model); }, optimizer};
}

}  // namespace nfk
