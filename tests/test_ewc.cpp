// EWC, online EWC and the L2 pull (include/nfk/ewc.h) against their definitions: the penalty and
// its gradient on an explicit quadratic, F_t from the classifier's Fisher on the task's data (and
// its class subset), the online running Fisher, and the loss term inside the trainer.
#include "nfk/ewc.h"
#include "support.h"

namespace nfk {
namespace {

ZooModule small_mlp(uint64_t seed) {
  test::seed(seed);
  auto m = make_zoo_module("mlp", {{"in_features", 6}, {"hidden", {5}}, {"out_features", 4}});
  m.module->to(torch::kFloat64);
  return m;
}

torch::Tensor flat(const ZooModule& m) {
  std::vector<torch::Tensor> v;
  for (const auto& p : m.module->parameters()) v.push_back(p.detach().reshape(-1));
  return torch::cat(v);
}

void perturb(ZooModule& m, double scale, uint64_t seed) {
  torch::NoGradGuard no_grad;
  test::seed(seed);
  for (auto& p : m.module->parameters()) p.add_(torch::randn_like(p) * scale);
}

ClassifierData task_data(uint64_t seed, int64_t n = 12, int64_t classes = 4) {
  test::seed(seed);
  return {torch::randn({n, 6}, torch::kFloat64), torch::randint(0, classes, {n}, torch::kLong)};
}

// diag(F) of `m` by the library's own classifier Fisher on a ScoreModel view (tested against
// enumeration in test_classifier_fisher.cpp), with the task's batch size and seed.
torch::Tensor fisher_of(const ZooModule& m, const ClassifierData& d, const EwcOptions& o,
                        int64_t task, const std::vector<int64_t>& classes = {}) {
  ModelOptions mo;
  mo.dtype = torch::kFloat64;
  auto net = wrap_zoo_module(m);
  if (!classes.empty()) net = class_subset_network(std::move(net), classes);
  ScoreModel sm(ModelKind::kClassifier, std::move(net), nullptr, mo);
  RunOptions run;
  run.batch_size = o.batch_size;
  run.seed = o.seed + static_cast<uint64_t>(task);
  return classifier_fisher_diag(sm, d, o.fisher, run).diag;
}

EwcOptions options(ContinualMethod method, FisherEstimator est = FisherEstimator::kTrue) {
  EwcOptions o;
  o.method = method;
  o.fisher.estimator = est;
  o.lambda = 3.5;
  o.gamma = 0.6;
  o.batch_size = 5;
  return o;
}

TEST(Ewc, PenaltyAndGradientAreTheSumOfTaskQuadratics) {
  auto m = small_mlp(1);
  EwcPenalty ewc(options(ContinualMethod::kEwc, FisherEstimator::kEmpirical));
  EXPECT_EQ(ewc.value(m).item<double>(), 0.0);  // nothing consolidated yet
  std::vector<torch::Tensor> anchors, fishers;
  for (int64_t t = 0; t < 2; ++t) {
    auto d = task_data(10 + t);
    anchors.push_back(flat(m));
    fishers.push_back(fisher_of(m, d, ewc.options(), t + 1));
    ewc.consolidate(m, d);
    perturb(m, 0.3, 20 + t);
  }
  ASSERT_EQ(ewc.terms().size(), 2u);
  for (int64_t t = 0; t < 2; ++t) {
    test::expect_close(ewc.terms()[t].diag, fishers[t], 1e-14, "F_t");
    test::expect_close(ewc.terms()[t].anchor, anchors[t], 0, "anchor");
  }
  auto theta = flat(m);
  double expected = 0;
  auto grad = torch::zeros_like(theta);
  for (int64_t t = 0; t < 2; ++t) {
    auto d = theta - anchors[t];
    expected += 0.5 * 3.5 * (fishers[t] * d.square()).sum().item<double>();
    grad += 3.5 * fishers[t] * d;
  }
  auto value = ewc.value(m);
  EXPECT_NEAR(value.item<double>(), expected, 1e-12 * expected);
  EXPECT_GT(expected, 0);
  auto params = m.module->parameters();
  auto g = flatten_like(torch::autograd::grad({value}, params), params);
  test::expect_close(g, grad, 1e-12, "gradient");
}

TEST(Ewc, OnlineEwcKeepsOneDecayedFisherAndTheLatestAnchor) {
  auto m = small_mlp(2);
  auto o = options(ContinualMethod::kOnlineEwc);
  EwcPenalty online(o);
  torch::Tensor running;
  for (int64_t t = 0; t < 3; ++t) {
    auto d = task_data(30 + t);
    auto f = fisher_of(m, d, o, t + 1);
    running = running.defined() ? 0.6 * running + f : f;
    online.consolidate(m, d);
    ASSERT_EQ(online.terms().size(), 1u);
    test::expect_close(online.terms()[0].diag, running, 1e-14, "F~_t");
    test::expect_close(online.terms()[0].anchor, flat(m), 0, "latest anchor");
    perturb(m, 0.2, 40 + t);
  }
  auto theta = flat(m);
  const double expected =
      0.5 * 3.5 * (running * (theta - online.terms()[0].anchor).square()).sum().item<double>();
  EXPECT_NEAR(online.value(m).item<double>(), expected, 1e-12 * expected);
}

// K-FAC and EK-FAC forms: the penalty is ½λ Σ_t w_t Δ_tᵀ F̃_t Δ_t with F̃_t the factors' dense
// matrix (built from mv on the identity), its gradient λ Σ_t w_t F̃_t Δ_t; online EWC keeps
// every task's factors with weights γ^{T−t} at the latest anchor.
TEST(Ewc, FactoredFormsPenaliseTheFactorsQuadratic) {
  for (auto form : {FisherForm::kKfac, FisherForm::kEkfac}) {
    for (auto method : {ContinualMethod::kEwc, ContinualMethod::kOnlineEwc}) {
      auto m = small_mlp(7);
      auto o = options(method);
      o.form = form;
      EwcPenalty ewc(o);
      for (int64_t t = 0; t < 2; ++t) {
        ewc.consolidate(m, task_data(70 + t));
        perturb(m, 0.2, 80 + t);
      }
      ASSERT_EQ(ewc.terms().size(), 2u);
      const auto p = flat(m).numel();
      auto eye = torch::eye(p, torch::kFloat64);
      double expected = 0;
      auto grad = torch::zeros({p}, torch::kFloat64);
      for (const auto& term : ewc.terms()) {
        ASSERT_TRUE(term.factors != nullptr);
        auto dense = term.factors->mv(eye);
        test::expect_close(dense, dense.t(), 1e-12, "symmetric");
        auto d = flat(m) - term.anchor;
        expected += 0.5 * 3.5 * term.weight * d.dot(dense.mv(d)).item<double>();
        grad += 3.5 * term.weight * dense.mv(d);
      }
      if (method == ContinualMethod::kOnlineEwc) {
        EXPECT_DOUBLE_EQ(ewc.terms()[0].weight, 0.6);
        EXPECT_TRUE(torch::equal(ewc.terms()[0].anchor, ewc.terms()[1].anchor));
      }
      auto value = ewc.value(m);
      EXPECT_NEAR(value.item<double>(), expected, 1e-12 * expected) << to_string(form);
      auto params = m.module->parameters();
      auto g = flatten_like(torch::autograd::grad({value}, params), params);
      test::expect_close(g, grad, 1e-12, to_string(form) + " gradient");
    }
  }
}

TEST(Ewc, L2AndFinetuneBaselines) {
  auto m = small_mlp(3);
  EwcPenalty l2(options(ContinualMethod::kL2)), none(options(ContinualMethod::kFinetune));
  auto anchor = flat(m);
  l2.consolidate(m, task_data(1));
  none.consolidate(m, task_data(1));
  perturb(m, 0.1, 4);
  const double expected = 0.5 * 3.5 * (flat(m) - anchor).square().sum().item<double>();
  EXPECT_NEAR(l2.value(m).item<double>(), expected, 1e-12 * expected);
  EXPECT_EQ(none.value(m).item<double>(), 0.0);
  EXPECT_EQ(l2.loss_term().name, "l2");
}

TEST(Ewc, TaskClassesRestrictTheFisherToTheirSoftmax) {
  auto m = small_mlp(5);
  const std::vector<int64_t> classes = {3, 1};
  auto d = task_data(50);
  d.labels = torch::where(d.labels < 2, torch::full_like(d.labels, 3), torch::ones_like(d.labels));
  auto o = options(ContinualMethod::kEwc, FisherEstimator::kEmpirical);
  EwcPenalty ewc(o);
  ewc.consolidate(m, d, classes);
  // By hand: log softmax over logits (3, 1); label 3 is position 0, label 1 position 1.
  auto params = m.module->parameters();
  auto sum = torch::zeros_like(flat(m));
  for (int64_t i = 0; i < d.inputs.size(0); ++i) {
    auto logits = m.forward(d.inputs.slice(0, i, i + 1))[0];
    auto sub = torch::stack({logits[3], logits[1]});
    auto lp = torch::log_softmax(sub, 0)[d.labels[i].item<int64_t>() == 3 ? 0 : 1];
    sum += flatten_like(torch::autograd::grad({lp}, params), params).square();
  }
  test::expect_close(ewc.terms()[0].diag, sum / static_cast<double>(d.inputs.size(0)), 1e-12,
                     "subset F");
  auto bad = d;
  bad.labels = torch::zeros_like(d.labels);  // class 0 is not in the task
  EXPECT_NE(test::error_of([&] { ewc.consolidate(m, bad, classes); }).find("task's classes"),
            std::string::npos);
}

TEST(Ewc, TheLossTermPullsTrainingBackToTheAnchor) {
  // After consolidation, training on a new task with a large λ keeps θ near θ*; with λ = 0 it
  // moves freely. The term is logged by the trainer as loss_ewc.
  auto train = [](double lambda) {
    auto m = small_mlp(6);
    auto o = options(ContinualMethod::kEwc);
    o.lambda = lambda;
    EwcPenalty ewc(o);
    ewc.consolidate(m, task_data(60));
    auto anchor = flat(m);
    TrainLoopOptions loop;
    loop.run.epochs = 3;
    loop.run.batch_size = 8;
    loop.checkpoints = false;
    TrainHooks hooks;
    hooks.loss_terms.push_back(ewc.loss_term());
    Trainer trainer(loop, hooks);
    torch::optim::SGD opt(m.module->parameters(), torch::optim::SGDOptions(0.1));
    trainer.add_module("net", &m);
    trainer.add_optimizer("sgd", &opt, &m);
    auto d = task_data(61, 32);
    Dataset set{d.inputs, d.labels};
    auto log = trainer.run(set, [&](Trainer& t, const Batch& b) {
      auto loss = torch::nn::functional::cross_entropy(m.forward(b.inputs), b.labels);
      t.optimize("sgd", loss, b);
      return StepMetrics{{"loss", loss.item<double>()}};
    });
    EXPECT_TRUE(log["epochs"].back().contains("loss_ewc"));
    return (flat(m) - anchor).norm().item<double>();
  };
  const double free = train(0), held = train(30);  // lr·λ·max F < 2: stable
  EXPECT_GT(free, 0.05);
  EXPECT_LT(held, 0.5 * free);
}

}  // namespace
}  // namespace nfk
