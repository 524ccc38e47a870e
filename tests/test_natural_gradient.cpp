// Natural-gradient preconditioners (include/nfk/natural_gradient.h) against dense float64 truth:
// g / (diag F + λ), (A ⊗ G + λI)⁻¹ g from the factors' dense blocks, the running average, and the
// trainer's hooks composed (EWC's loss term + the K-FAC transform in one step).
#include "nfk/ewc.h"
#include "nfk/natural_gradient.h"
#include "support.h"

namespace nfk {
namespace {

ZooModule mlp(uint64_t seed) {
  test::seed(seed);
  auto m = make_zoo_module("mlp", {{"in_features", 6}, {"hidden", {5}}, {"out_features", 4}});
  m.module->to(torch::kFloat64);
  return m;
}

Batch batch_of(uint64_t seed, int64_t n = 10) {
  test::seed(seed);
  Batch b;
  b.inputs = torch::randn({n, 6}, torch::kFloat64);
  b.labels = torch::randint(0, 4, {n}, torch::kLong);
  return b;
}

torch::Tensor flat_grad(const ZooModule& m) {
  std::vector<torch::Tensor> g;
  for (const auto& p : m.module->parameters()) g.push_back(p.grad().reshape(-1).clone());
  return torch::cat(g);
}

torch::Tensor flat(const ZooModule& m) {
  std::vector<torch::Tensor> v;
  for (const auto& p : m.module->parameters()) v.push_back(p.detach().reshape(-1).clone());
  return torch::cat(v);
}

void backward_ce(const ZooModule& m, const Batch& b) {
  for (auto& p : m.module->parameters()) p.mutable_grad() = torch::Tensor();
  torch::nn::functional::cross_entropy(m.forward(b.inputs), b.labels).backward();
}

ScoreModel view(const ZooModule& m) {
  ModelOptions mo;
  mo.dtype = torch::kFloat64;
  return ScoreModel(ModelKind::kClassifier, wrap_zoo_module(m), nullptr, mo);
}

NaturalGradientOptions options(FisherForm form) {
  NaturalGradientOptions o;
  o.form = form;
  o.damping = 0.05;
  o.decay = 0.7;
  o.update_every = 1;
  o.inverse_every = 1;
  o.kl_clip = 0;
  return o;
}

TEST(NaturalGradient, DiagonalStepDividesByTheRunningFisherPlusDamping) {
  auto m = mlp(1);
  NaturalGradient ngd(options(FisherForm::kDiag));
  torch::Tensor running;
  for (uint64_t step = 0; step < 2; ++step) {
    auto b = batch_of(10 + step);
    backward_ce(m, b);
    auto g = flat_grad(m);
    auto sm = view(m);
    RunOptions run;
    run.batch_size = b.inputs.size(0);
    auto f = classifier_fisher_diag(sm, {b.inputs, b.labels}, {}, run).diag;
    running = running.defined() ? 0.7 * running + 0.3 * f : f;
    m.module->train();
    ngd.apply(m, b);
    EXPECT_TRUE(m.module->is_training());  // the mode it found
    test::expect_close(flat_grad(m), g / (running + 0.05), 1e-12, "step " + std::to_string(step));
  }
}

TEST(NaturalGradient, KfacStepSolvesTheDampedBlockSystem) {
  for (auto damping : {KfacDamping::kExact, KfacDamping::kFactoredTikhonov}) {
    auto m = mlp(2);
    auto o = options(FisherForm::kKfac);
    o.damping_kind = damping;
    NaturalGradient ngd(o);
    auto b = batch_of(20);
    backward_ce(m, b);
    auto g = flat_grad(m);
    ngd.apply(m, b);
    ASSERT_NE(ngd.factors(), nullptr);
    // Dense truth per layer block (row-major vec(M) = θ[theta_index]).
    auto expected = torch::zeros_like(g);
    for (size_t i = 0; i < ngd.factors()->layers.size(); ++i) {
      const auto& l = ngd.factors()->layers[i];
      torch::Tensor block;
      if (damping == KfacDamping::kExact) {
        block = torch::kron(l.g, l.a) + 0.05 * torch::eye(l.out() * l.in(), torch::kFloat64);
      } else {  // (A + π√λ I) ⊗ (G + √λ/π I), π² = (tr A / in') / (tr G / out)
        const double pi = std::sqrt((l.a.trace().item<double>() / l.in()) /
                                    (l.g.trace().item<double>() / l.out()));
        const double root = std::sqrt(0.05);
        block = torch::kron(l.g + root / pi * torch::eye(l.out(), torch::kFloat64),
                            l.a + pi * root * torch::eye(l.in(), torch::kFloat64));
      }
      auto gi = g.index_select(0, l.theta_index);
      expected.index_copy_(0, l.theta_index,
                           torch::linalg::solve(block, gi.unsqueeze(1), true).squeeze(1));
    }
    test::expect_close(flat_grad(m), expected, 1e-10,
                       damping == KfacDamping::kExact ? "exact" : "tikhonov");
  }
}

TEST(NaturalGradient, HooksComposeEwcPenaltyWithKfacInOneStep) {
  auto m = mlp(3);
  EwcOptions eo;
  eo.lambda = 2;
  EwcPenalty ewc(eo);
  auto old = batch_of(30, 12);
  ewc.consolidate(m, {old.inputs, old.labels});
  {
    torch::NoGradGuard no_grad;
    for (auto& p : m.module->parameters()) p.add_(0.1 * torch::randn_like(p));
  }
  auto b = batch_of(31, 16);
  // By hand: g = ∇(CE + EWC), d = (F̃ + λI)⁻¹ g with F̃ from this batch, θ ← θ − η d.
  for (auto& p : m.module->parameters()) p.mutable_grad() = torch::Tensor();
  (torch::nn::functional::cross_entropy(m.forward(b.inputs), b.labels) + ewc.value(m)).backward();
  auto g = flat_grad(m);
  auto sm = view(m);
  RunOptions run;
  run.batch_size = 16;
  auto factors = kfac_factors(sm, {b.inputs, b.labels}, {}, run);
  auto expected = flat(m) - 0.1 * factors.inverse_mv(g, 0.05);

  NaturalGradient ngd(options(FisherForm::kKfac));
  TrainLoopOptions loop;
  loop.run.epochs = 1;
  loop.run.batch_size = 16;
  loop.checkpoints = false;
  TrainHooks hooks;
  hooks.loss_terms.push_back(ewc.loss_term());
  hooks.gradient_transforms.push_back(ngd.transform());
  Trainer trainer(loop, hooks);
  torch::optim::SGD sgd(m.module->parameters(), torch::optim::SGDOptions(0.1));
  trainer.add_module("net", &m);
  trainer.add_optimizer("sgd", &sgd, &m);
  // One batch holding the whole set, in its shuffled order (the Fisher does not depend on it).
  trainer.run(Dataset{b.inputs, b.labels}, [&](Trainer& t, const Batch& batch) {
    auto loss = torch::nn::functional::cross_entropy(m.forward(batch.inputs), batch.labels);
    t.optimize("sgd", loss, batch);
    return StepMetrics{{"loss", loss.item<double>()}};
  });
  test::expect_close(flat(m), expected, 1e-10, "θ after one EWC + K-FAC step");
}

TEST(NaturalGradient, BadOptionsAreRefused) {
  auto o = options(FisherForm::kEkfac);
  EXPECT_NE(test::error_of([&] { NaturalGradient n(o); }).find("diag or kfac"), std::string::npos);
  o = options(FisherForm::kDiag);
  o.damping = 0;
  EXPECT_NE(test::error_of([&] { NaturalGradient n(o); }).find("damping"), std::string::npos);
  o = options(FisherForm::kDiag);
  o.fisher.estimator = FisherEstimator::kBatched;
  EXPECT_NE(test::error_of([&] { NaturalGradient n(o); }).find("batched"), std::string::npos);
}

}  // namespace
}  // namespace nfk
