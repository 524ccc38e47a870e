// Diagonal and K-FAC natural-gradient preconditioners as a trainer gradient transform.
#include "nfk/natural_gradient.h"

#include <cmath>

namespace nfk {
namespace {

// Eigendecompositions of a layer's (averaged) factors, eigenvalues clamped at 0 as K-FAC keeps
// them.
void refresh_eigenbases(KfacLayer& l) {
  auto [eig_a, qa] = torch::linalg::eigh(l.a, "L");
  auto [eig_g, qg] = torch::linalg::eigh(l.g, "L");
  l.eig_a = eig_a.clamp_min(0);
  l.qa = qa;
  l.eig_g = eig_g.clamp_min(0);
  l.qg = qg;
}

}  // namespace

NaturalGradient::NaturalGradient(NaturalGradientOptions options) : options_(std::move(options)) {
  TORCH_CHECK(options_.form == FisherForm::kDiag || options_.form == FisherForm::kKfac,
              "nfk: natural gradient takes the diag or kfac form, got ", to_string(options_.form));
  TORCH_CHECK(options_.damping > 0 && std::isfinite(options_.damping),
              "nfk: natural-gradient damping must be positive, got ", options_.damping);
  TORCH_CHECK(options_.decay >= 0 && options_.decay < 1,
              "nfk: the running-average decay must be in [0, 1), got ", options_.decay);
  TORCH_CHECK(options_.update_every >= 1 && options_.inverse_every >= 1,
              "nfk: Fisher update and inverse intervals must be >= 1");
  TORCH_CHECK(
      options_.fisher.estimator != FisherEstimator::kBatched,
      "nfk: natural gradient needs a Fisher estimator (true, mc or empirical), not batched");
}

void NaturalGradient::refresh(const ZooModule& model, const Batch& batch) {
  auto params = model.module->parameters();
  ModelOptions mo;
  mo.model_path = "the model in training";
  mo.device = params.front().device();
  mo.dtype = params.front().scalar_type();
  ScoreModel score_model(ModelKind::kClassifier, wrap_zoo_module(model), nullptr, mo);
  RunOptions run;
  run.batch_size = batch.inputs.size(0);
  run.seed = options_.seed + static_cast<uint64_t>(steps_);
  const ClassifierData data{batch.inputs, batch.labels};
  const double beta = steps_ == 0 ? 0 : options_.decay;
  if (options_.form == FisherForm::kDiag) {
    auto d = classifier_fisher_diag(score_model, data, options_.fisher, run).diag;
    diag_ = diag_.defined() ? beta * diag_ + (1 - beta) * d : d;
  } else {
    auto fresh = kfac_factors(score_model, data, options_.fisher, run);
    if (!factors_) {
      factors_ = std::make_unique<KfacFactors>(std::move(fresh));
    } else {
      for (size_t i = 0; i < factors_->layers.size(); ++i) {
        auto& l = factors_->layers[i];
        l.a = beta * l.a + (1 - beta) * fresh.layers[i].a;
        l.g = beta * l.g + (1 - beta) * fresh.layers[i].g;
      }
    }
  }
}

torch::Tensor NaturalGradient::precondition(const torch::Tensor& g) const {
  if (options_.form == FisherForm::kDiag) {
    TORCH_CHECK(diag_.defined(), "nfk: natural gradient: no Fisher yet (no step taken)");
    return g / (diag_.to(g.dtype()) + options_.damping);
  }
  TORCH_CHECK(factors_, "nfk: natural gradient: no K-FAC factors yet (no step taken)");
  return factors_->inverse_mv(g, options_.damping, options_.damping_kind);
}

void NaturalGradient::apply(const ZooModule& model, const Batch& batch) {
  torch::NoGradGuard no_grad;
  if (steps_ % options_.update_every == 0) {
    torch::AutoGradMode grad_on(true);
    refresh(model, batch);
  }
  if (factors_ && steps_ % options_.inverse_every == 0) {
    for (auto& l : factors_->layers) refresh_eigenbases(l);
  }
  ++steps_;
  auto params = model.module->parameters();
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    grads.push_back(p.grad().defined() ? p.grad().reshape(-1)
                                       : torch::zeros({p.numel()}, p.options()));
  auto g = torch::cat(grads);
  auto d = precondition(g);
  if (options_.kl_clip > 0 && options_.learning_rate > 0) {
    const double quadratic =
        options_.learning_rate * options_.learning_rate * g.dot(d).item<double>();
    if (quadratic > options_.kl_clip) d = d * std::sqrt(options_.kl_clip / quadratic);
  }
  int64_t offset = 0;
  for (auto& p : params) {
    auto piece = d.narrow(0, offset, p.numel()).view_as(p).to(p.dtype());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(piece);
    } else {
      p.mutable_grad() = piece.clone();
    }
    offset += p.numel();
  }
}

GradientTransform NaturalGradient::transform(const std::string& optimizer) {
  return {"natural-gradient",
          [this](const ZooModule& model, const Batch& batch) { apply(model, batch); }, optimizer};
}

}  // namespace nfk
