// Generative zoo models (VAE, MADE): likelihood math against independent truth (IWAE ≥ ELBO,
// normalisation on a grid / over all binary vectors, autoregressive masks via autograd, the
// incremental sampler against a naive one), training, checkpoint resume, archives, and nfk's
// model protocol (scores, sampling, per-example gradients vs finite differences, V products).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nfk/data.h"
#include "nfk/fisher.h"
#include "nfk/train.h"
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

// log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x) [B, K] for z_k = μ + σ ⊙ ε_k (ε [B, K, L]),
// one k at a time, with both Gaussian log densities written out here (q evaluated at z itself).
torch::Tensor explicit_log_weights(VaeImpl& vae, const torch::Tensor& x, const torch::Tensor& eps) {
  auto [mu, logvar] = vae.encode(x);
  auto sd = torch::exp(0.5 * logvar);
  const double half_log_2pi = 0.5 * std::log(2 * M_PI);
  std::vector<torch::Tensor> cols;
  for (int64_t k = 0; k < eps.size(1); ++k) {
    auto z = mu + sd * eps.select(1, k);
    auto log_pz = (-0.5 * z.square() - half_log_2pi).sum(1);
    auto log_qz = (-0.5 * ((z - mu) / sd).square() - sd.log() - half_log_2pi).sum(1);
    cols.push_back(vae.log_likelihood(x, vae.decode(z)) + log_pz - log_qz);
  }
  return torch::stack(cols, /*dim=*/1);
}

// log (1/K) Σ_k exp(w_k) per row, by the max shift.
torch::Tensor log_mean_exp(const torch::Tensor& w_bk) {
  auto top = std::get<0>(w_bk.max(/*dim=*/1, /*keepdim=*/true));
  return (w_bk - top).exp().mean(1).log() + top.squeeze(1);
}

// Per-example mean and variance over replicates [R, B] → {mean [B], var of the mean [B]}.
std::pair<torch::Tensor, torch::Tensor> mc_mean(const torch::Tensor& draws_rb) {
  return {draws_rb.mean(0), draws_rb.var(0) / draws_rb.size(0)};
}

TEST(Vae, IwaeIsItsDefinitionAndEqualsTheElboAtOneSample) {
  auto zoo = tiny_vae();
  zoo.module->to(torch::kFloat64);
  zoo.module->eval();
  VaeImpl& vae = as_vae(zoo);
  test::seed(5);
  auto x = torch::rand({32, 1, 8, 8}, torch::kFloat64);
  torch::NoGradGuard no_grad;
  auto e = zoo.call("elbo", x);
  ASSERT_EQ(e.sizes(), torch::IntArrayRef({32}));
  EXPECT_TRUE(torch::isfinite(e).all().item<bool>());
  EXPECT_EQ(zoo.forward(x).sizes(), e.sizes());

  // IWAE_64 against its definition with the same ε (drawn [B, K, L] from the same generator).
  auto iwae = vae_importance_log_likelihood(zoo, x, 64, at::detail::createCPUGenerator(11));
  ASSERT_EQ(iwae.sizes(), torch::IntArrayRef({32}));
  auto eps = at::randn({32, 64, 3}, at::detail::createCPUGenerator(11), torch::kFloat64);
  test::expect_close(iwae, log_mean_exp(explicit_log_weights(vae, x, eps)), 1e-12, "IWAE_64");
  // Same generator state → same estimate; the global RNG is not used.
  auto again = vae_importance_log_likelihood(zoo, x, 64, at::detail::createCPUGenerator(11));
  EXPECT_TRUE(torch::equal(iwae, again));

  // K = 1 with the ε the ELBO draws (global RNG seeded alike): the ELBO with its analytic KL
  // replaced by the one-sample log q(z|x) − log p(z), nothing else.
  test::seed(21);
  auto elbo = zoo.call("elbo", x);
  auto iwae1 = vae_importance_log_likelihood(zoo, x, 1, at::detail::createCPUGenerator(21));
  auto eps1 = at::randn({32, 1, 3}, at::detail::createCPUGenerator(21), torch::kFloat64);
  auto [mu, logvar] = vae.encode(x);
  auto kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1);
  auto z1 = mu + (0.5 * logvar).exp() * eps1.squeeze(1);
  auto rec = vae.log_likelihood(x, vae.decode(z1));  // log p(x|z), z from the shared ε
  test::expect_close(elbo, rec - kl, 1e-12, "ELBO = log p(x|z) − KL, same noise");
  auto w1 = explicit_log_weights(vae, x, eps1).squeeze(1);
  test::expect_close(iwae1, w1, 1e-12, "IWAE_1 = one log weight");
  // So IWAE_1 − ELBO = log p(z) − log q(z|x) + KL, whose expectation over ε is 0.
  auto log_p_over_q = (-0.5 * z1.square() + 0.5 * eps1.squeeze(1).square() + 0.5 * logvar).sum(1);
  test::expect_close(iwae1 - elbo, log_p_over_q + kl, 1e-10, "IWAE_1 − ELBO");
}

TEST(Vae, IwaeBoundIsAboveTheElboBeyondMonteCarloError) {
  // E[IWAE_K] is non-decreasing in K and E[IWAE_1] = E[ELBO] (Burda et al. 2016). Every
  // expectation is estimated from R replicates, with its standard error from the same draws.
  auto zoo = tiny_vae();
  zoo.module->to(torch::kFloat64);
  zoo.module->eval();
  test::seed(6);
  auto x = torch::rand({32, 1, 8, 8}, torch::kFloat64);
  torch::NoGradGuard no_grad;
  // A poor q(z|x) (σ widened e-fold): the bound's gain over the ELBO is then far above the
  // Monte Carlo error (with the untrained q it is ~0.01 nats, about the error of 40 draws).
  as_vae(zoo).enc_logvar->bias.add_(2.0);
  const int replicates = 40;
  std::vector<torch::Tensor> elbo_draws;
  for (int r = 0; r < replicates; ++r) elbo_draws.push_back(zoo.call("elbo", x));
  std::vector<torch::Tensor> iwae_means, iwae_vars;
  auto [elbo_mean, elbo_var] = mc_mean(torch::stack(elbo_draws));
  for (int64_t k : {1, 8, 64}) {
    std::vector<torch::Tensor> draws;
    for (int r = 0; r < replicates; ++r) {
      draws.push_back(
          vae_importance_log_likelihood(zoo, x, k, at::detail::createCPUGenerator(1000 * k + r)));
    }
    auto [m, v] = mc_mean(torch::stack(draws));
    iwae_means.push_back(m.mean());
    iwae_vars.push_back(v.sum() / (x.size(0) * x.size(0)));  // of the mean over examples
  }
  const double elbo = elbo_mean.mean().item<double>();
  const double elbo_se = std::sqrt(elbo_var.sum().item<double>()) / x.size(0);
  std::vector<double> iw, se;
  for (size_t i = 0; i < iwae_means.size(); ++i) {
    iw.push_back(iwae_means[i].item<double>());
    se.push_back(std::sqrt(iwae_vars[i].item<double>()));
  }
  std::printf(
      "[ measured ] E[ELBO] %.4f ± %.4f, IWAE_1 %.4f ± %.4f, IWAE_8 %.4f ± %.4f, "
      "IWAE_64 %.4f ± %.4f\n",
      elbo, elbo_se, iw[0], se[0], iw[1], se[1], iw[2], se[2]);
  auto combined = [](double a, double b) { return std::sqrt(a * a + b * b); };
  // K = 1: the ELBO's expectation, within 4 standard errors.
  EXPECT_NEAR(iw[0], elbo, 4 * combined(se[0], elbo_se));
  // K = 8, 64: above the ELBO and above the smaller K, by more than 4 standard errors (the
  // untrained VAE's posterior is far from q, so the gain is large).
  EXPECT_GT(iw[1] - elbo, 4 * combined(se[1], elbo_se));
  EXPECT_GT(iw[2] - iw[1], 4 * combined(se[2], se[1]));
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
  auto options = small_vae_options();
  options.iwae_examples = 64;  // all test images: the same examples as test_elbo
  auto log = train_vae(train, test, small_run(dir, 3), options);
  ASSERT_EQ(log["epochs"].size(), 3u);
  EXPECT_LT(log["epochs"][2]["loss"].get<double>(), log["epochs"][0]["loss"].get<double>());
  EXPECT_LT(log["epochs"][2]["test_elbo"].get<double>(), 0.0);
  EXPECT_GT(log["epochs"][2]["test_elbo"].get<double>(),
            log["epochs"][0]["test_elbo"].get<double>());
  ASSERT_TRUE(log.contains("test_iwae"));
  EXPECT_EQ(log["test_iwae_examples"].get<int64_t>(), 64);
  {
    // The logged estimates are the saved model's, within their Monte Carlo error (the sd of 300
    // fresh draws of each; 30 draws underestimate it and the logged ELBO, a fixed seeded draw,
    // sits at the 0.3% quantile of 2000 draws), and IWAE_8 ≥ ELBO up to that error.
    auto vae = load_zoo_module(dir + "/vae.pt");
    torch::NoGradGuard no_grad;
    std::vector<double> elbos, iwaes;
    for (int r = 0; r < 300; ++r) {
      test::seed(500 + r);
      elbos.push_back(vae.call("elbo", test.inputs).mean().item<double>());
      iwaes.push_back(vae_importance_log_likelihood(vae, test.inputs, 8,
                                                    at::detail::createCPUGenerator(1000 + r))
                          .mean()
                          .item<double>());
    }
    auto e = torch::tensor(elbos, torch::kFloat64), w = torch::tensor(iwaes, torch::kFloat64);
    const double elbo_sd = e.std().item<double>(), iwae_sd = w.std().item<double>();
    const double test_elbo = log["test_elbo"].get<double>(),
                 test_iwae = log["test_iwae"].get<double>();
    std::printf(
        "[ measured ] test ELBO %.4f (fresh %.4f ± %.4f), IWAE_8 %.4f (fresh %.4f ± %.4f)\n",
        test_elbo, e.mean().item<double>(), elbo_sd, test_iwae, w.mean().item<double>(), iwae_sd);
    EXPECT_NEAR(test_elbo, e.mean().item<double>(), 4 * elbo_sd);
    EXPECT_NEAR(test_iwae, w.mean().item<double>(), 4 * iwae_sd);
    EXPECT_GE(test_iwae, test_elbo - 4 * std::sqrt(elbo_sd * elbo_sd + iwae_sd * iwae_sd));
    EXPECT_GT(w.mean().item<double>(), e.mean().item<double>());  // the bound is tighter
  }
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
