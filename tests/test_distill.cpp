// Knowledge distillation (include/nfk/distill.h): the KD and NFKD terms against explicit float64
// formulas and finite differences, the objective the trainer differentiates against an explicit
// per-example sum, the reduced-label setting never reading hidden labels, and Q_t vs transform.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "nfk/distill.h"
#include "nfk/embed.h"
#include "nfk/model.h"
#include "nfk/zoo.h"
#include "support.h"

namespace nfk {
namespace {

torch::TensorOptions f64() {
  return torch::TensorOptions().dtype(torch::kFloat64);
}

TEST(Distill, ZooClassifiersForwardIsClassifyOfFeatures) {
  torch::manual_seed(0);
  struct Case {
    std::string arch;
    nlohmann::json options;
    torch::Tensor x;
  };
  std::vector<Case> cases = {
      {"lenet5", {{"num_classes", 3}}, torch::randn({3, 1, 28, 28})},
      {"mlp",
       {{"in_features", 12}, {"hidden", {5, 4}}, {"out_features", 3}},
       torch::randn({3, 12})},
      {"mlp",
       {{"in_features", 12}, {"hidden", std::vector<int64_t>{}}, {"out_features", 3}},
       torch::randn({3, 12})},
      {"wrn",
       {{"depth", 10}, {"in_channels", 1}, {"image_size", 8}, {"num_classes", 3}},
       torch::randn({3, 1, 8, 8})}};
  for (const auto& c : cases) {
    auto m = make_zoo_module(c.arch, c.options);
    m.module->eval();
    torch::NoGradGuard no_grad;
    auto features = m.call("features", c.x);
    EXPECT_EQ(features.dim(), 2) << c.arch;
    EXPECT_TRUE(torch::equal(m.forward(c.x), m.call("classify", features))) << c.arch;
  }
}

TEST(Distill, KdLossIsTheScaledKlOfSoftenedOutputsWithItsGradient) {
  torch::manual_seed(1);
  const int64_t b = 5, c = 4;
  const double t = 3;
  auto s = torch::randn({b, c}, f64()).requires_grad_(), te = torch::randn({b, c}, f64()) * 2;
  auto loss = kd_loss(s, te, t);
  double explicit_sum = 0;
  auto ps = torch::softmax(s.detach() / t, 1), pt = torch::softmax(te / t, 1);
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < c; ++j) {
      const double p = pt[i][j].item<double>(), q = ps[i][j].item<double>();
      explicit_sum += p * std::log(p / q);
    }
  }
  EXPECT_NEAR(loss.item<double>(), t * t * explicit_sum / b, 1e-12);
  loss.backward();
  // d/ds [T² KL(p_t ‖ softmax(s/T))] = T (p_s − p_t), averaged over the batch.
  EXPECT_TRUE(torch::allclose(s.grad(), t * (ps - pt) / b, 1e-10, 1e-12));
  EXPECT_NE(test::error_of([&] { kd_loss(s, te, 0); }).find("temperature"), std::string::npos);
}

TEST(Distill, NfkdTargetLossesMatchExplicitSumsAndFiniteDifferences) {
  torch::manual_seed(2);
  const int64_t b = 4, k = 3;
  auto q = torch::randn({b, k}, f64());
  auto h0 = torch::randn({b, k}, f64());
  auto explicit_loss = [&](const torch::Tensor& h, TargetLoss kind) {
    double sum = 0;
    for (int64_t i = 0; i < b; ++i) {
      double d2 = 0, dot = 0, hh = 0, qq = 0;
      for (int64_t j = 0; j < k; ++j) {
        const double x = h[i][j].item<double>(), y = q[i][j].item<double>();
        d2 += (x - y) * (x - y);
        dot += x * y;
        hh += x * x;
        qq += y * y;
      }
      sum += kind == TargetLoss::kL2 ? d2 : 1 - dot / std::sqrt(hh * qq);
    }
    return sum / b;
  };
  for (auto kind : {TargetLoss::kL2, TargetLoss::kCosine}) {
    auto h = h0.clone().requires_grad_();
    auto loss = nfkd_target_loss(h, q, kind);
    EXPECT_NEAR(loss.item<double>(), explicit_loss(h0, kind), 1e-12) << to_string(kind);
    loss.backward();
    const double eps = 1e-6;
    for (int64_t i = 0; i < b; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        auto plus = h0.clone(), minus = h0.clone();
        plus[i][j] += eps;
        minus[i][j] -= eps;
        const double fd = (explicit_loss(plus, kind) - explicit_loss(minus, kind)) / (2 * eps);
        EXPECT_NEAR(h.grad()[i][j].item<double>(), fd, 1e-7) << to_string(kind);
      }
    }
  }
  EXPECT_NE(test::error_of([&] {
              nfkd_target_loss(h0, q.slice(1, 0, 2), TargetLoss::kL2);
            }).find("[B, k]"),
            std::string::npos);
}

// A labelled toy set: 8×8 one-channel images, 3 classes.
Dataset toy_set(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 1, 8, 8});
  auto y = (x.flatten(1).slice(1, 0, 3)).argmax(1);
  return {x, y};
}

// Runs train_student in a fresh folder: epochs = 0 leaves the initial student (and head).
nlohmann::json train(const std::string& name, const Dataset& data, const DistillOptions& o,
                     const DistillTeacher& teacher, int64_t epochs, int64_t batch) {
  TrainRun run;
  run.out_dir = test::temp_dir(name);
  run.epochs = epochs;
  run.batch_size = batch;
  run.seed = 5;
  run.resume = false;
  return train_student(data, Dataset{}, run, o, teacher);
}

TEST(Distill, TheTrainerDifferentiatesTheDistillationObjective) {
  // One step over the whole set: the logged loss is the objective at the initial weights, which
  // the epochs = 0 run leaves on disk; recomputed here example by example in float64.
  const int64_t n = 24, k = 3;
  auto data = toy_set(n, 3);
  DistillTeacher teacher;
  teacher.logits = torch::randn({n, 3}) * 2;
  teacher.targets = torch::randn({n, k});
  for (auto method : {DistillMethod::kNone, DistillMethod::kKd, DistillMethod::kNfkd}) {
    for (auto kind : {TargetLoss::kL2, TargetLoss::kCosine}) {
      if (method != DistillMethod::kNfkd && kind == TargetLoss::kCosine) continue;
      DistillOptions o;
      o.method = method;
      o.alpha = 0.3;
      o.temperature = 2;
      o.target_loss = kind;
      o.student_options = {{"hidden", {6}}};
      const std::string name = "distill_" + to_string(method) + "_" + to_string(kind);
      train(name + "_init", data, o, teacher, 0, n);
      auto log = train(name, data, o, teacher, 1, n);
      const double logged = log["epochs"][0]["loss"].get<double>();

      auto student = load_zoo_module(test::temp_dir(name + "_init") + "/student.zoo");
      student.module->to(torch::kFloat64);
      student.module->eval();
      torch::NoGradGuard no_grad;
      auto x = data.inputs.to(torch::kFloat64);
      auto features = student.call("features", x);
      auto logits = student.forward(x);
      torch::Tensor head_out;
      if (method == DistillMethod::kNfkd) {
        auto head = load_zoo_module(test::temp_dir(name + "_init") + "/head.zoo");
        head.module->to(torch::kFloat64);
        head_out = head.forward(features);
      }
      double total = 0;
      for (int64_t i = 0; i < n; ++i) {
        auto z = logits[i];
        const double lse = torch::logsumexp(z, 0).item<double>();
        const double ce = lse - z[data.labels[i].item<int64_t>()].item<double>();
        double term = 0;
        if (method == DistillMethod::kKd) {
          auto log_ps = torch::log_softmax(z / o.temperature, 0);
          auto log_pt =
              torch::log_softmax(teacher.logits[i].to(torch::kFloat64) / o.temperature, 0);
          for (int64_t c = 0; c < 3; ++c) {
            const double lp = log_pt[c].item<double>();
            term += std::exp(lp) * (lp - log_ps[c].item<double>());
          }
          term *= o.temperature * o.temperature;
        } else if (method == DistillMethod::kNfkd) {
          auto h = head_out[i], q = teacher.targets[i].to(torch::kFloat64);
          term = kind == TargetLoss::kL2
                     ? (h - q).pow(2).sum().item<double>()
                     : 1 - (h * q).sum().item<double>() / (h.norm() * q.norm()).item<double>();
        }
        total += method == DistillMethod::kNone ? ce : o.alpha * ce + (1 - o.alpha) * term;
      }
      total /= n;
      EXPECT_NEAR(logged, total, 1e-5 * std::max(1.0, std::abs(total))) << name;
      if (method != DistillMethod::kNone) {
        const std::string key = method == DistillMethod::kKd ? "loss_kd" : "loss_nfkd";
        EXPECT_TRUE(log["epochs"][0].contains(key)) << name;
      }
    }
  }
}

TEST(Distill, ReducedLabelsNeverReadTheHiddenLabels) {
  // With 8 labelled examples of 24, scrambling the other 16 labels changes nothing; scrambling a
  // labelled one does.
  const int64_t n = 24;
  auto data = toy_set(n, 4);
  DistillTeacher teacher;
  teacher.targets = torch::randn({n, 2});
  DistillOptions o;
  o.method = DistillMethod::kNfkd;
  o.labels = 8;
  o.student_options = {{"hidden", {6}}};
  auto labelled = random_subset(n, o.labels, o.label_seed);
  auto weights = [&](const Dataset& d, const std::string& name) {
    train(name, d, o, teacher, 2, 8);
    auto m = load_zoo_module(test::temp_dir(name) + "/student.zoo");
    std::vector<torch::Tensor> flat;
    for (const auto& p : m.module->parameters()) flat.push_back(p.flatten());
    return torch::cat(flat);
  };
  auto base = weights(data, "distill_labels_base");
  auto hidden = data;
  hidden.labels = data.labels.clone();
  auto is_labelled = torch::zeros({n}, torch::kBool).index_fill_(0, labelled, true);
  hidden.labels.masked_fill_(is_labelled.logical_not(), 0);
  EXPECT_TRUE(torch::equal(base, weights(hidden, "distill_labels_hidden")));
  auto changed = data;
  changed.labels = data.labels.clone();
  changed.labels[labelled[0].item<int64_t>()] = (data.labels[labelled[0].item<int64_t>()] + 1) % 3;
  EXPECT_FALSE(torch::equal(base, weights(changed, "distill_labels_changed")));
}

TEST(Distill, RandomSubsetIsSortedSeededAndComplete) {
  auto a = random_subset(100, 10, 3), b = random_subset(100, 10, 3), c = random_subset(100, 10, 4);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_EQ(std::get<0>(at::_unique(a)).numel(), 10);
  EXPECT_TRUE(torch::equal(a, std::get<0>(a.sort())));
  EXPECT_TRUE(torch::equal(random_subset(7, 0, 1), torch::arange(7, torch::kLong)));
  EXPECT_TRUE(torch::equal(random_subset(7, 9, 1), torch::arange(7, torch::kLong)));
}

TEST(Distill, NfkTargetsAreTheTransformScaledToUnitMeanSquaredNorm) {
  torch::manual_seed(6);
  auto teacher_zoo =
      make_zoo_module("mlp", {{"in_features", 64}, {"hidden", {5}}, {"out_features", 3}});
  ModelOptions mo;
  ScoreModel teacher(ModelKind::kClassifier, wrap_zoo_module(teacher_zoo), nullptr, mo);
  auto data = toy_set(40, 7);
  FitOptions fo;
  fo.method = FitMethod::kExact;
  fo.svd.rank = 4;
  auto fitted = fit(teacher, data.inputs, fo);
  auto t = nfk_targets(fitted.projector, teacher, data.inputs, 3);
  auto e = transform(fitted.projector, teacher, data.inputs).slice(1, 0, 3);
  EXPECT_TRUE(torch::allclose(t.embedding, e.to(torch::kFloat32), 1e-6, 1e-7));
  EXPECT_NEAR(t.q().to(torch::kFloat64).pow(2).sum(1).mean().item<double>(), 1.0, 1e-6);
  EXPECT_NE(test::error_of([&] {
              nfk_targets(fitted.projector, teacher, data.inputs, 5);
            }).find("exceeds"),
            std::string::npos);
}

}  // namespace
}  // namespace nfk
