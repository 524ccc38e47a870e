// WideResNet zoo classifier: parameter counts against an independent formula, shapes and option
// checks, eval-mode per-example score gradients against central finite differences, batch-norm
// independence of examples in eval mode, and a short training run whose loss falls.
#include <filesystem>
#include <random>

#include "nfk/fisher.h"
#include "nfk/train.h"
#include "nfk/zoo_wrn.h"
#include "support.h"

namespace nfk {
namespace {

// Trainable parameters of WRN-depth-k, summed layer by layer from the textbook formulas:
// conv k×k (no bias) in·out·k², batch-norm 2·ch (γ, β; running stats are buffers), linear
// in·out + out. Shortcut 1×1 projection where a block changes channels or stride.
int64_t wrn_parameter_formula(int64_t depth, int64_t k, int64_t in_channels, int64_t classes) {
  const int64_t n = (depth - 4) / 6;
  const int64_t widths[3] = {16 * k, 32 * k, 64 * k};
  int64_t total = 9 * in_channels * 16;  // stem conv
  int64_t in = 16;
  for (int g = 0; g < 3; ++g) {
    const int64_t out = widths[g];
    for (int64_t b = 0; b < n; ++b) {
      const int64_t stride = (b == 0 && g > 0) ? 2 : 1;
      total += 2 * in + 9 * in * out + 2 * out + 9 * out * out;
      if (in != out || stride != 1) total += in * out;
      in = out;
    }
  }
  return total + 2 * in + in * classes + classes;  // final BN + linear
}

int64_t count_parameters(const ZooModule& zoo) {
  int64_t n = 0;
  for (const auto& p : zoo.module->parameters()) n += p.numel();
  return n;
}

TEST(WideResNet, ParameterCountsMatchTheFormulaAndTheQuotedNumbers) {
  test::seed(0);
  EXPECT_EQ(wrn_parameter_formula(16, 1, 3, 10), 175066);
  EXPECT_EQ(wrn_parameter_formula(40, 2, 3, 10), 2243546);  // the commonly quoted WRN-40-2
  auto wrn16 = make_zoo_module("wrn", {{"depth", 16}, {"widen_factor", 1}});
  EXPECT_EQ(count_parameters(wrn16), 175066);
  auto wrn40 = make_zoo_module("wrn", {{"depth", 40}, {"widen_factor", 2}, {"num_classes", 10}});
  EXPECT_EQ(count_parameters(wrn40), 2243546);
  auto odd = make_zoo_module(
      "wrn", {{"depth", 10}, {"widen_factor", 3}, {"in_channels", 1}, {"num_classes", 7}});
  EXPECT_EQ(count_parameters(odd), wrn_parameter_formula(10, 3, 1, 7));
}

TEST(WideResNet, LogitsShapeOptionsAndRoundTrip) {
  test::seed(1);
  auto zoo = make_zoo_module("wrn", {{"depth", 10}, {"widen_factor", 2}, {"image_size", 8}});
  EXPECT_EQ(zoo.arch, "wrn");
  // Every option is written back, defaults made explicit.
  EXPECT_EQ(zoo.options["depth"], 10);
  EXPECT_EQ(zoo.options["widen_factor"], 2);
  EXPECT_EQ(zoo.options["in_channels"], 3);
  EXPECT_EQ(zoo.options["num_classes"], 10);
  EXPECT_EQ(zoo.options["image_size"], 8);
  EXPECT_EQ(zoo.options["dropout"], 0.0);
  zoo.module->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::rand({3, 3, 8, 8});
  auto logits = zoo.forward(x);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 10}));
  // Global average pooling: other (odd, non-square) sizes work too.
  EXPECT_EQ(zoo.forward(torch::rand({2, 3, 11, 7})).sizes(), (std::vector<int64_t>{2, 10}));

  auto path = test::temp_dir("wrn_rt") + "/wrn.zoo";
  save_zoo_module(path, zoo);
  auto back = load_zoo_module(path);
  EXPECT_EQ(back.options, zoo.options);
  back.module->eval();
  EXPECT_TRUE(torch::equal(back.forward(x), logits));
}

TEST(WideResNet, BadOptionsGiveClearErrors) {
  try {
    make_zoo_module("wrn", {{"depth", 12}});
    FAIL() << "expected an error for depth 12";
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    EXPECT_NE(what.find("depth must be 6n + 4"), std::string::npos) << what;
    EXPECT_NE(what.find("got 12"), std::string::npos) << what;
  }
  EXPECT_THROW(make_zoo_module("wrn", {{"depth", 4}}), c10::Error);
  EXPECT_THROW(make_zoo_module("wrn", {{"widen_factor", 0}}), c10::Error);
  auto zoo = make_zoo_module("wrn", {{"depth", 10}});
  try {
    zoo.forward(torch::rand({1, 1, 8, 8}));
    FAIL() << "expected an error for 1 input channel";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("[B, 3, H, W]"), std::string::npos);
  }
}

// A tiny WRN-10-1 on 8×8 images with non-trivial batch-norm state (running statistics and
// affine parameters away from their initial values), saved and loaded as a float64 classifier.
ScoreModel tiny_wrn_classifier(const std::string& dir) {
  test::seed(3);
  auto zoo = make_zoo_module(
      "wrn", {{"depth", 10}, {"widen_factor", 1}, {"image_size", 8}, {"num_classes", 5}});
  {
    torch::NoGradGuard no_grad;
    for (auto& m : zoo.module->modules(/*include_self=*/false)) {
      if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
        bn->running_mean.copy_(torch::randn_like(bn->running_mean) * 0.2);
        bn->running_var.copy_(torch::rand_like(bn->running_var) + 0.5);
        bn->weight.copy_(1 + 0.3 * torch::randn_like(bn->weight));
        bn->bias.copy_(0.2 * torch::randn_like(bn->bias));
      } else if (auto* fc = m->as<torch::nn::Linear>()) {
        fc->bias.copy_(0.3 * torch::randn_like(fc->bias));
      }
    }
  }
  ModelOptions o;
  o.dtype = torch::kFloat64;
  o.model_path = dir + "/wrn.zoo";
  save_zoo_module(o.model_path, zoo);
  return load_score_model(ModelKind::kClassifier, o, torch::rand({2, 3, 8, 8}));
}

TEST(WideResNet, EvalPerExampleGradientsMatchFiniteDifferences) {
  auto model = tiny_wrn_classifier(test::temp_dir("wrn_fd"));
  test::seed(4);
  auto x = torch::rand({4, 3, 8, 8}, torch::kFloat64);
  auto j = per_example_gradients(model, x);  // [4, P]
  ASSERT_EQ(j.size(1), model.num_parameters());
  EXPECT_EQ(model.num_parameters(), wrn_parameter_formula(10, 1, 3, 5));

  // ~30 coordinates: one random entry of every parameter tensor (stem, every BN γ/β, both convs
  // and the projection shortcuts of every block, the linear layer), plus random extras.
  auto params = model.parameters();
  std::vector<std::pair<size_t, int64_t>> coords;  // (tensor, entry)
  std::mt19937_64 rng(11);
  auto pick = [&](int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(rng); };
  for (size_t t = 0; t < params.size(); ++t) coords.emplace_back(t, pick(params[t].numel()));
  while (coords.size() < 30) {
    const size_t t = static_cast<size_t>(pick(static_cast<int64_t>(params.size())));
    coords.emplace_back(t, pick(params[t].numel()));
  }
  std::vector<int64_t> offsets{0};
  for (const auto& p : params) offsets.push_back(offsets.back() + p.numel());

  auto fd = test::central_differences(
      params, [&] { return model.score(x, 0); }, coords);
  std::vector<torch::Tensor> j_cols;
  for (const auto& [t, c] : coords) j_cols.push_back(j.select(1, offsets[t] + c));
  auto jj = torch::stack(j_cols, 1);
  EXPECT_GT(fd.abs().max().item<double>(), 1e-3);  // the check is not vacuous
  test::expect_close(jj, fd, 1e-6, "wrn per-example gradients vs central differences");
}

TEST(WideResNet, EvalBatchNormKeepsExamplesIndependent) {
  auto model = tiny_wrn_classifier(test::temp_dir("wrn_indep"));
  test::seed(5);
  auto x = torch::rand({5, 3, 8, 8}, torch::kFloat64);
  auto x2 = x.clone();
  x2.slice(0, 1).copy_(torch::rand({4, 3, 8, 8}, torch::kFloat64) * 3 -
                       1);  // other examples change

  auto j = per_example_gradients(model, x), j2 = per_example_gradients(model, x2);
  test::expect_close(j2[0], j[0], 1e-12, "row 0 with other examples changed");
  {
    torch::NoGradGuard no_grad;
    auto s = model.score(x), s2 = model.score(x2), s_alone = model.score(x.slice(0, 0, 1));
    EXPECT_NEAR(s2[0].item<double>(), s[0].item<double>(), 1e-12);
    EXPECT_NEAR(s_alone[0].item<double>(), s[0].item<double>(), 1e-12);
    // Evaluating did not touch the running statistics: the same scores again.
    test::expect_close(model.score(x), s, 0, "scores repeat");
  }
  // The batched graph (used by the streaming V products) agrees with the per-example rows.
  auto params = model.parameters();
  auto g = torch::autograd::grad({model.score(x).sum()}, params, {}, false, false, true);
  test::expect_close(flatten_like(g, params), j.sum(0), 1e-10, "batch VJP = sum of rows");

  // Sanity of the test itself: in train mode (batch statistics) example 0 does depend on the
  // others, which is what eval mode must avoid.
  test::seed(6);
  auto zoo = make_zoo_module("wrn", {{"depth", 10}, {"image_size", 8}});
  zoo.module->to(torch::kFloat64);
  zoo.module->train();
  torch::NoGradGuard no_grad;
  auto a = zoo.forward(x)[0], b = zoo.forward(x2)[0];
  EXPECT_GT((a - b).abs().max().item<double>(), 1e-6);
  zoo.module->eval();
  test::expect_close(zoo.forward(x2)[0], zoo.forward(x)[0], 1e-12, "fresh module in eval mode");
}

// Three classes of 3×8×8 images: the class's colour channel is bright, plus noise.
Dataset colour_classes(int64_t n, uint64_t seed) {
  test::seed(seed);
  auto labels = torch::randint(0, 3, {n}, torch::kLong);
  auto x = torch::rand({n, 3, 8, 8}) * 0.4;
  x += torch::one_hot(labels, 3).to(torch::kFloat32).view({n, 3, 1, 1}) * 0.6;
  return {x, labels};
}

TEST(WideResNet, TrainingReducesTheLoss) {
  auto data = colour_classes(64, 7);
  ClassifierTrainOptions o;
  o.arch = "wrn";
  o.wrn_depth = 10;
  o.wrn_widen_factor = 1;
  o.learning_rate = 3e-3;
  TrainRun run;
  run.out_dir = test::temp_dir("wrn_train");
  run.epochs = 2;
  run.batch_size = 16;
  run.seed = 3;
  auto log = train_classifier(data, Dataset{}, run, o);
  ASSERT_EQ(log["epochs"].size(), 2u);
  const double first = log["epochs"][0]["loss"].get<double>();
  const double second = log["epochs"][1]["loss"].get<double>();
  EXPECT_TRUE(std::isfinite(first) && std::isfinite(second));
  EXPECT_LT(second, first);

  auto zoo = load_zoo_module(run.out_dir + "/classifier.zoo");
  EXPECT_EQ(zoo.arch, "wrn");
  EXPECT_EQ(zoo.options["depth"], 10);
  EXPECT_EQ(zoo.options["in_channels"], 3);
  EXPECT_EQ(zoo.options["image_size"], 8);
  EXPECT_EQ(zoo.options["num_classes"], 3);
}

}  // namespace
}  // namespace nfk
