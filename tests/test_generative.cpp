// Generative zoo models (VAE, MADE): likelihood math against independent truth (IWAE ≥ ELBO,
// normalisation on a grid / over all binary vectors, autoregressive masks via autograd, the
// incremental sampler against a naive one), training, checkpoint resume, archives, and nfk's
// model protocol (scores, sampling, per-example gradients vs finite differences, V products).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nfk/data.h"
#include "nfk/fisher.h"
#include "nfk/zoo_generative.h"
#include "support.h"

namespace nfk {
namespace {

ZooModule tiny_vae(const std::string& likelihood = "bernoulli", int64_t image_size = 8,
                   int64_t width = 4, int64_t latent = 3) {
  test::seed(0);
  return make_zoo_module("vae", {{"image_size", image_size},
                                 {"width", width},
                                 {"latent_dim", latent},
                                 {"likelihood", likelihood}});
}

ZooModule tiny_made(int64_t channels, int64_t image_size, std::vector<int64_t> hidden,
                    const std::string& likelihood = "gaussian", double alpha = 1e-6) {
  test::seed(0);
  return make_zoo_module("made", {{"channels", channels},
                                  {"image_size", image_size},
                                  {"hidden", hidden},
                                  {"likelihood", likelihood},
                                  {"logit_alpha", alpha}});
}

// 256 training images: the first MNIST digits if installed, else smooth synthetic blobs.
Dataset small_images(int64_t n, uint64_t seed_value) {
  if (std::filesystem::exists(data_dir() + "/mnist/train-images-idx3-ubyte") ||
      std::filesystem::exists(data_dir() + "/mnist/train-images-idx3-ubyte.gz")) {
    auto all = load_dataset("mnist:train[:" + std::to_string(n * 2) + "]");
    const int64_t offset = seed_value % 2 == 0 ? 0 : n;
    return {all.inputs.slice(0, offset, offset + n), all.labels.slice(0, offset, offset + n)};
  }
  test::seed(seed_value);
  auto grid = torch::linspace(-1, 1, 28);
  auto yy = grid.view({28, 1}), xx = grid.view({1, 28});
  auto c = torch::rand({n, 2}) - 0.5;
  auto img = torch::exp(-((xx - c.select(1, 0).view({n, 1, 1})).square() +
                          (yy - c.select(1, 1).view({n, 1, 1})).square()) /
                        0.1);
  return {(img * 255).round().div(255).unsqueeze(1), {}};
}

bool same_parameters(const ZooModule& a, const ZooModule& b) {
  auto pa = a.module->named_parameters(), pb = b.module->named_parameters();
  if (pa.size() != pb.size()) return false;
  for (const auto& item : pa) {
    if (!torch::equal(item.value(), pb[item.key()])) return false;
  }
  auto ba = a.module->named_buffers(), bb = b.module->named_buffers();
  if (ba.size() != bb.size()) return false;
  for (const auto& item : ba) {
    if (!torch::equal(item.value(), bb[item.key()])) return false;
  }
  return true;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  nlohmann::json j;
  in >> j;
  return j;
}

// ----------------------------------------------------------------------------------------------
// VAE
// ----------------------------------------------------------------------------------------------

TEST(Vae, ElboShapeFiniteAndBelowIwae) {
  auto zoo = tiny_vae();
  zoo.module->to(torch::kFloat64);
  zoo.module->eval();
  test::seed(5);
  auto x = torch::rand({32, 1, 8, 8}, torch::kFloat64);
  torch::NoGradGuard no_grad;
  auto e = zoo.call("elbo", x);
  ASSERT_EQ(e.sizes(), torch::IntArrayRef({32}));
  EXPECT_TRUE(torch::isfinite(e).all().item<bool>());
  EXPECT_EQ(zoo.forward(x).sizes(), e.sizes());
  // E[ELBO] by averaging many single-sample ELBOs; IWAE with K = 64.
  double elbo = 0;
  for (int r = 0; r < 50; ++r) elbo += zoo.call("elbo", x).mean().item<double>() / 50;
  auto gen = at::detail::createCPUGenerator(11);
  auto iwae = vae_importance_log_likelihood(zoo, x, 64, gen);
  ASSERT_EQ(iwae.sizes(), torch::IntArrayRef({32}));
  EXPECT_TRUE(torch::isfinite(iwae).all().item<bool>());
  EXPECT_GT(iwae.mean().item<double>(), elbo);
  // Same generator state → same estimate; the global RNG is not used.
  auto again = vae_importance_log_likelihood(zoo, x, 64, at::detail::createCPUGenerator(11));
  EXPECT_TRUE(torch::equal(iwae, again));
}

TEST(Vae, NoiseComesFromTheGlobalRng) {
  auto zoo = tiny_vae();
  auto x = torch::rand({4, 1, 8, 8});
  torch::NoGradGuard no_grad;
  test::seed(3);
  auto a = zoo.call("elbo", x);
  test::seed(3);
  auto b = zoo.call("forward", x);
  auto c = zoo.call("elbo", x);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
}

TEST(Vae, SamplesAndGaussianLikelihood) {
  auto zoo = tiny_vae();
  ASSERT_TRUE(zoo.has_method("sample"));
  auto s = zoo.sample(5);
  ASSERT_EQ(s.sizes(), torch::IntArrayRef({5, 1, 8, 8}));
  EXPECT_GE(s.min().item<double>(), 0.0);
  EXPECT_LE(s.max().item<double>(), 1.0);

  auto g = tiny_vae("gaussian");
  EXPECT_EQ(g.options["likelihood"], "gaussian");
  EXPECT_EQ(g.options["learn_sigma"], true);
  EXPECT_TRUE(g.module->named_parameters().contains("log_sigma"));
  auto x = torch::rand({3, 1, 8, 8});
  auto e = g.call("elbo", x);
  EXPECT_TRUE(torch::isfinite(e).all().item<bool>());
  // log p(x|z) against the closed form with the decoder mean.
  VaeImpl& vae = as_vae(g);
  auto z = torch::randn({3, 3});
  auto out = vae.decode(z);
  const double sigma = 0.1;
  auto r = (x - torch::sigmoid(out)) / sigma;
  auto expect = (-0.5 * r * r - std::log(sigma) - 0.5 * std::log(2 * M_PI)).flatten(1).sum(1);
  test::expect_close(vae.log_likelihood(x, out), expect, 1e-5, "gaussian log p(x|z)");

  auto fixed = make_zoo_module(
      "vae", {{"image_size", 8}, {"likelihood", "gaussian"}, {"learn_sigma", false}, {"width", 2}});
  EXPECT_FALSE(fixed.module->named_parameters().contains("log_sigma"));
  EXPECT_TRUE(fixed.module->named_buffers().contains("log_sigma"));
  EXPECT_THROW(make_zoo_module("vae", {{"likelihood", "poisson"}}), c10::Error);
  EXPECT_THROW(make_zoo_module("vae", {{"image_size", 30}}), c10::Error);
}

TEST(Vae, BuilderWritesBackEveryOption) {
  auto zoo = make_zoo_module("vae", {{"latent_dim", 5}});
  EXPECT_EQ(zoo.arch, "vae");
  for (const char* key :
       {"channels", "image_size", "latent_dim", "width", "likelihood", "sigma", "learn_sigma"}) {
    EXPECT_TRUE(zoo.options.contains(key)) << key;
  }
  EXPECT_EQ(zoo.options["latent_dim"], 5);
  auto made = make_zoo_module("made", {});
  for (const char* key : {"channels", "image_size", "hidden", "likelihood", "logit_alpha"}) {
    EXPECT_TRUE(made.options.contains(key)) << key;
  }
  EXPECT_EQ(made.options["hidden"], nlohmann::json::array({512}));
}

// ----------------------------------------------------------------------------------------------
// MADE
// ----------------------------------------------------------------------------------------------

TEST(Made, ConditionalsAreAutoregressive) {
  for (const std::string lik : {"gaussian", "bernoulli"}) {
    auto zoo = tiny_made(6, 1, {16, 12}, lik);
    MadeImpl& made = as_made(zoo);
    test::seed(2);
    auto y = torch::randn({1, 6}).requires_grad_(true);
    auto [first, second] = made.conditionals(y);
    for (int64_t i = 0; i < 6; ++i) {
      std::vector<torch::Tensor> outs = {first[0][i]};
      if (second.defined()) outs.push_back(second[0][i]);
      for (const auto& o : outs) {
        auto g = torch::autograd::grad({o}, {y}, {}, true, false, true)[0];
        if (!g.defined()) g = torch::zeros_like(y);
        EXPECT_EQ(g[0].slice(0, i).abs().max().item<double>(), 0.0)
            << lik << ": conditional " << i << " depends on x_j, j >= " << i;
        if (i > 0) {
          EXPECT_GT(g[0].slice(0, 0, i).abs().max().item<double>(), 0.0)
              << lik << ": conditional " << i << " ignores its past";
        }
      }
    }
  }
}

TEST(Made, GaussianDensityIntegratesToOne) {
  // D = 2 with a coarse logit (α = 0.05): integrate p(x) over the whole support
  // (−α/(1−2α), 1+α/(1−2α))² by the midpoint rule.
  const double a = 0.05;
  auto zoo = tiny_made(2, 1, {8}, "gaussian", a);
  zoo.module->to(torch::kFloat64);
  const int64_t m = 800;
  const double lo = -a / (1 - 2 * a), hi = (1 - a) / (1 - 2 * a), h = (hi - lo) / m;
  auto t = lo + (torch::arange(m, torch::kFloat64) + 0.5) * h;
  auto grid = torch::stack({t.repeat_interleave(m), t.repeat({m})}, 1);
  torch::NoGradGuard no_grad;
  const double integral = zoo.call("log_prob", grid).exp().sum().item<double>() * h * h;
  EXPECT_NEAR(integral, 1.0, 2e-3);
}

TEST(Made, BernoulliProbabilitiesSumToOne) {
  auto zoo = tiny_made(4, 1, {10}, "bernoulli");
  auto codes = torch::arange(16).unsqueeze(1).bitwise_right_shift(torch::arange(4)).bitwise_and(1);
  torch::NoGradGuard no_grad;
  auto p = zoo.call("log_prob", codes.to(torch::kFloat32).view({16, 4, 1, 1})).exp();
  EXPECT_NEAR(p.sum().item<double>(), 1.0, 1e-5);
}

TEST(Made, IncrementalSamplerMatchesNaiveAncestralSampling) {
  for (std::vector<int64_t> hidden :
       {std::vector<int64_t>{12, 9}, std::vector<int64_t>{7}, std::vector<int64_t>{}}) {
    auto zoo = tiny_made(1, 3, hidden, "gaussian", 1e-3);
    zoo.module->to(torch::kFloat64);
    MadeImpl& made = as_made(zoo);
    test::seed(4);
    auto fast = zoo.sample(6);
    ASSERT_EQ(fast.sizes(), torch::IntArrayRef({6, 1, 3, 3}));
    // Naive: a full pass per dimension, one randn({n}) per dimension in order.
    test::seed(4);
    torch::NoGradGuard no_grad;
    auto v = torch::zeros({6, 9}, torch::kFloat64);
    for (int64_t j = 0; j < 9; ++j) {
      auto [mu, ls] = made.conditionals(v);
      v.select(1, j).copy_(mu.select(1, j) +
                           ls.select(1, j).exp() * torch::randn({6}, torch::kFloat64));
    }
    auto naive = ((torch::sigmoid(v) - 1e-3) / (1 - 2e-3)).view({6, 1, 3, 3});
    test::expect_close(fast, naive, 1e-12, "hidden layers " + std::to_string(hidden.size()));
  }
}

TEST(Made, BernoulliSamplesFollowTheModel) {
  auto zoo = tiny_made(3, 1, {8}, "bernoulli");
  test::seed(6);
  auto s = zoo.sample(20000).view({20000, 3});
  ASSERT_TRUE(((s == 0) | (s == 1)).all().item<bool>());
  auto code = (s.select(1, 0) + 2 * s.select(1, 1) + 4 * s.select(1, 2)).to(torch::kLong);
  auto freq = torch::bincount(code, {}, 8).to(torch::kFloat64) / 20000;
  auto codes = torch::arange(8).unsqueeze(1).bitwise_right_shift(torch::arange(3)).bitwise_and(1);
  torch::NoGradGuard no_grad;
  auto p = zoo.call("log_prob", codes.to(torch::kFloat32)).exp().to(torch::kFloat64);
  EXPECT_LT((freq - p).abs().max().item<double>(), 0.015);
}

// ----------------------------------------------------------------------------------------------
// Archives and nfk's protocol
// ----------------------------------------------------------------------------------------------

TEST(GenerativeZoo, ArchivesRoundTripBitExactly) {
  const auto dir = test::temp_dir("gen_archive");
  auto vae = tiny_vae("gaussian");
  auto made = tiny_made(1, 4, {8, 8});
  save_zoo_module(dir + "/vae.pt", vae);
  save_zoo_module(dir + "/made.pt", made);
  auto vae2 = load_zoo_module(dir + "/vae.pt");
  auto made2 = load_zoo_module(dir + "/made.pt");
  EXPECT_EQ(vae2.arch, "vae");
  EXPECT_EQ(vae2.options, vae.options);
  EXPECT_EQ(made2.options, made.options);
  EXPECT_TRUE(same_parameters(vae, vae2));
  EXPECT_TRUE(same_parameters(made, made2));
  torch::NoGradGuard no_grad;
  auto x = torch::rand({3, 1, 8, 8});
  test::seed(9);
  auto a = vae.call("elbo", x);
  test::seed(9);
  EXPECT_TRUE(torch::equal(a, vae2.call("elbo", x)));
  auto y = torch::rand({3, 1, 4, 4});
  EXPECT_TRUE(torch::equal(made.call("log_prob", y), made2.call("log_prob", y)));
}

// Saves a zoo module and loads it as an nfk ScoreModel in float64.
ScoreModel as_score_model(ModelKind kind, const ZooModule& zoo, const std::string& dir) {
  ModelOptions o;
  o.dtype = torch::kFloat64;
  o.model_path = dir + "/" + zoo.arch + ".pt";
  o.seed = 7;
  save_zoo_module(o.model_path, zoo);
  return load_score_model(kind, o, test::test_inputs(2));
}

class GenerativeKind : public ::testing::TestWithParam<ModelKind> {
 protected:
  ScoreModel model() {
    const auto dir = test::temp_dir("gen_protocol");
    if (GetParam() == ModelKind::kVae) {
      return as_score_model(GetParam(), tiny_vae("bernoulli", test::kSide, 2, 2), dir);
    }
    return as_score_model(GetParam(), tiny_made(1, test::kSide, {6}, "gaussian", 0.01), dir);
  }
};

TEST_P(GenerativeKind, ProtocolScoresAndSamples) {
  auto m = model();
  auto x = test::test_inputs(5);
  torch::NoGradGuard no_grad;
  auto s = m.score(x, 0);
  ASSERT_EQ(s.sizes(), torch::IntArrayRef({5}));
  EXPECT_EQ(s.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::isfinite(s).all().item<bool>());
  EXPECT_TRUE(torch::equal(s, m.score(x, 0)));
  ASSERT_TRUE(m.can_sample());
  auto samples = m.sample(4, 1);
  ASSERT_EQ(samples.sizes(), torch::IntArrayRef({4, 1, test::kSide, test::kSide}));
  EXPECT_TRUE(torch::equal(samples, m.sample(4, 1)));
  EXPECT_EQ(resolve_estimator(m, Estimator::kAuto), Estimator::kTrue);
}

TEST_P(GenerativeKind, PerExampleGradientsMatchFiniteDifferences) {
  auto m = model();
  const int64_t n = 4;
  auto x = test::test_inputs(n);
  auto j = per_example_gradients(m, x, /*first_index=*/0);
  ASSERT_EQ(j.size(1), m.num_parameters());
  auto fd = test::central_differences(m.parameters(), [&] { return m.score(x, 0); });
  test::expect_close(j, fd, 1e-6, to_string(GetParam()));
}

TEST_P(GenerativeKind, OperatorProductsMatchExplicitFisherVectors) {
  auto m = model();
  const int64_t n = 7, batch = 3;
  auto x = test::test_inputs(n);
  FisherOptions fo;
  fo.estimator = Estimator::kEmpirical;
  auto stats = compute_fisher_stats(m, x, fo);
  auto v = (test::explicit_jacobian(m, x, batch) - stats.mean_score) * stats.fisher_diag.rsqrt();
  FisherVectorOperator op(m, x, stats, batch);
  test::seed(3);
  auto q = torch::randn({op.cols(), 3}, torch::kFloat64);
  auto mm = torch::randn({n, 3}, torch::kFloat64);
  test::expect_close(op.apply(q), v.mm(q), 1e-10, "JVP " + to_string(GetParam()));
  test::expect_close(op.apply_t(mm), v.t().mm(mm), 1e-10, "VJP " + to_string(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Kinds, GenerativeKind,
                         ::testing::Values(ModelKind::kVae, ModelKind::kDensity),
                         [](const auto& info) { return to_string(info.param); });

// ----------------------------------------------------------------------------------------------
// Training
// ----------------------------------------------------------------------------------------------

TrainRun small_run(const std::string& dir, int64_t epochs) {
  TrainRun run;
  run.out_dir = dir;
  run.epochs = epochs;
  run.batch_size = 32;
  run.seed = 3;
  return run;
}

VaeTrainOptions small_vae_options() {
  VaeTrainOptions o;
  o.latent_dim = 4;
  o.width = 4;
  o.learning_rate = 3e-3;
  o.iwae_examples = 16;
  o.iwae_samples = 8;
  return o;
}

DensityTrainOptions small_density_options() {
  DensityTrainOptions o;
  o.hidden = {32};
  o.learning_rate = 3e-3;
  return o;
}

TEST(TrainVae, LossDecreasesAndWritesModelAndLog) {
  auto train = small_images(256, 0), test = small_images(64, 1);
  const auto dir = test::temp_dir("train_vae");
  std::filesystem::remove_all(dir);
  auto log = train_vae(train, test, small_run(dir, 3), small_vae_options());
  ASSERT_EQ(log["epochs"].size(), 3u);
  EXPECT_LT(log["epochs"][2]["loss"].get<double>(), log["epochs"][0]["loss"].get<double>());
  EXPECT_LT(log["epochs"][2]["test_elbo"].get<double>(), 0.0);
  EXPECT_GT(log["epochs"][2]["test_elbo"].get<double>(),
            log["epochs"][0]["test_elbo"].get<double>());
  ASSERT_TRUE(log.contains("test_iwae"));
  EXPECT_GT(log["test_iwae"].get<double>(), log["test_elbo"].get<double>() - 5.0);
  EXPECT_EQ(read_json(dir + "/train_log.json"), log);

  // The saved model works as nfk kind `vae`.
  ModelOptions mo;
  mo.model_path = dir + "/vae.pt";
  auto model = load_score_model(ModelKind::kVae, mo, test.inputs.slice(0, 0, 2));
  EXPECT_TRUE(model.can_sample());
  torch::NoGradGuard no_grad;
  auto s = model.score(test.inputs.slice(0, 0, 5), 0);
  ASSERT_EQ(s.sizes(), torch::IntArrayRef({5}));
  EXPECT_TRUE(torch::isfinite(s).all().item<bool>());
  EXPECT_EQ(model.sample(3, 0).sizes(), torch::IntArrayRef({3, 1, 28, 28}));
}

TEST(TrainVae, ResumeRepeatsTheUninterruptedRun) {
  auto train = small_images(96, 0), test = small_images(32, 1);
  const auto a = test::temp_dir("vae_resume_a"), b = test::temp_dir("vae_resume_b");
  std::filesystem::remove_all(a);
  std::filesystem::remove_all(b);
  auto o = small_vae_options();
  auto log_a = train_vae(train, test, small_run(a, 2), o);
  train_vae(train, test, small_run(b, 1), o);
  auto log_b = train_vae(train, test, small_run(b, 2), o);
  EXPECT_EQ(log_a, log_b);
  EXPECT_TRUE(same_parameters(load_zoo_module(a + "/vae.pt"), load_zoo_module(b + "/vae.pt")));
}

TEST(TrainDensity, LossDecreasesAndReportsBitsPerDim) {
  auto train = small_images(256, 0), test = small_images(64, 1);
  const auto dir = test::temp_dir("train_density");
  std::filesystem::remove_all(dir);
  auto log = train_density(train, test, small_run(dir, 3), small_density_options());
  ASSERT_EQ(log["epochs"].size(), 3u);
  EXPECT_LT(log["epochs"][2]["loss"].get<double>(), log["epochs"][0]["loss"].get<double>());
  ASSERT_TRUE(log.contains("test_bits_per_dim"));
  const double ll = log["test_log_likelihood"].get<double>();
  EXPECT_NEAR(log["test_bits_per_dim"].get<double>(), (-ll / 784 + std::log(256.0)) / std::log(2.0),
              1e-9);
  EXPECT_EQ(read_json(dir + "/train_log.json"), log);

  ModelOptions mo;
  mo.model_path = dir + "/density.pt";
  auto model = load_score_model(ModelKind::kDensity, mo, test.inputs.slice(0, 0, 2));
  EXPECT_TRUE(model.can_sample());
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::isfinite(model.score(test.inputs.slice(0, 0, 4), 0)).all().item<bool>());
    EXPECT_EQ(model.sample(2, 0).sizes(), torch::IntArrayRef({2, 1, 28, 28}));
  }

  DensityTrainOptions bern = small_density_options();
  bern.likelihood = "bernoulli";
  auto blog = train_density(train, test, small_run(test::temp_dir("train_bern"), 1), bern, {});
  EXPECT_GT(blog["test_bits_per_dim"].get<double>(), 0.0);
  EXPECT_LT(blog["test_bits_per_dim"].get<double>(), 1.0);
}

TEST(TrainDensity, ResumeRepeatsTheUninterruptedRun) {
  auto train = small_images(96, 0), test = small_images(32, 1);
  const auto a = test::temp_dir("made_resume_a"), b = test::temp_dir("made_resume_b");
  std::filesystem::remove_all(a);
  std::filesystem::remove_all(b);
  auto o = small_density_options();
  auto log_a = train_density(train, test, small_run(a, 2), o);
  train_density(train, test, small_run(b, 1), o);
  auto log_b = train_density(train, test, small_run(b, 2), o);
  EXPECT_EQ(log_a, log_b);
  EXPECT_TRUE(
      same_parameters(load_zoo_module(a + "/density.pt"), load_zoo_module(b + "/density.pt")));
}

}  // namespace
}  // namespace nfk
