// The VAE of the generative zoo: likelihood math against independent truth (the IWAE bound is its
// definition, equals the ELBO at one sample and lies above it beyond Monte Carlo error), noise from
// the global RNG, samples, and the builder's options.
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "generative_support.h"

namespace nfk {
namespace {

using test::tiny_vae;

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

}  // namespace
}  // namespace nfk
