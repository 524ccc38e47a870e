#pragma once
// Shared test helpers: seeding, closeness checks, and tiny TorchScript models of every kind built
// in C++ (torch::jit::Module::define), so protocol tests need no Python.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "nfk/model.h"

namespace nfk::test {

inline void seed(uint64_t s = 0) {
  torch::manual_seed(s);
}

/// Max |a − b| / (max |b| + tiny): a scale-aware relative error.
inline double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  auto a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
  return ((a64 - b64).abs().max() / (b64.abs().max() + 1e-300)).item<double>();
}

/// max_i |a_i − b_i| / |b_i|: every entry relative to itself (for spectra).
inline double max_entry_rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  auto a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
  return ((a64 - b64).abs() / b64.abs()).max().item<double>();
}

inline void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol,
                         const std::string& what = "") {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_LE(rel_err(a, b), tol) << what;
}

/// The message of the c10::Error that `fn` throws (without backtrace), or "<no error>".
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "<no error>";
}

/// A training log without its wall clock: "epoch_seconds" (one entry per finished epoch, also
/// per task) is checked for length and removed, so that a resumed run's log can equal the
/// uninterrupted one's.
inline nlohmann::json without_clock(nlohmann::json log) {
  std::function<void(nlohmann::json&)> strip = [&](nlohmann::json& j) {
    if (!j.is_object()) return;
    if (j.contains("epoch_seconds")) {
      EXPECT_EQ(j["epoch_seconds"].size(), j["epochs"].size());
      j.erase("epoch_seconds");
    }
    if (j.contains("tasks"))
      for (auto& t : j["tasks"]) strip(t);
  };
  strip(log);
  return log;
}

/// A fresh temp folder per call.
inline std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::path(::testing::TempDir()) /
             ("nfk_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

/// Inputs are [B, 1, 4, 4] (D = 16); hidden width 5.
constexpr int64_t kSide = 4, kDim = 16, kHidden = 5, kLatent = 3;

inline torch::jit::Module mlp_module(int64_t out, const std::string& body) {
  torch::jit::Module m("TestNet");
  auto o = torch::dtype(torch::kFloat64);
  m.register_parameter("w1", (torch::randn({kHidden, kDim}, o) * 0.5).requires_grad_(true), false);
  m.register_parameter("b1", (torch::randn({kHidden}, o) * 0.1).requires_grad_(true), false);
  m.register_parameter("w2", (torch::randn({out, kHidden}, o) * 0.5).requires_grad_(true), false);
  m.register_parameter("b2", (torch::randn({out}, o) * 0.1).requires_grad_(true), false);
  m.define(body);
  return m;
}

/// A TorchScript model of `kind` with random float64 weights; for `gan` also see generator().
inline torch::jit::Module kind_module(ModelKind kind) {
  const std::string hidden = "        h = torch.tanh(x.flatten(1) @ self.w1.t() + self.b1)\n";
  switch (kind) {
    case ModelKind::kClassifier:
      return mlp_module(
          3, "def forward(self, x):\n" + hidden + "        return h @ self.w2.t() + self.b2\n");
    case ModelKind::kGan:
    case ModelKind::kScore:
      return mlp_module(
          1, "def forward(self, x):\n" + hidden + "        return h @ self.w2.t() + self.b2\n");
    case ModelKind::kNtk:
      return mlp_module(
          2, "def forward(self, x):\n" + hidden + "        return h @ self.w2.t() + self.b2\n");
    case ModelKind::kVae: {
      // Encoder mean = w1 x + b1, log-std b2[0]; decoder logits = w1ᵀ h + b; Bernoulli-ish ELBO
      // on continuous x with one reparameterised sample (randn_like: noise inside s).
      auto m = mlp_module(
          1,
          "def elbo(self, x):\n"
          "        xf = x.flatten(1)\n"
          "        mu = xf @ self.w1.t() + self.b1\n"
          "        std = torch.exp(self.b2[0]) * torch.ones_like(mu)\n"
          "        z = mu + std * torch.randn_like(mu)\n"
          "        logits = torch.tanh(z) @ self.w1 + self.w2[0, 0]\n"
          "        rec = (xf * torch.log(torch.sigmoid(logits)) + (1 - xf) * "
          "torch.log(torch.sigmoid(-logits))).sum(1)\n"
          "        kl = 0.5 * (mu * mu + std * std - 1.0 - 2.0 * torch.log(std)).sum(1)\n"
          "        return rec - kl\n"
          "def forward(self, x):\n"
          "        return self.elbo(x)\n"
          "def sample(self, n: int):\n"
          "        z = torch.randn(n, self.b1.size(0), dtype=self.b1.dtype)\n"
          "        return torch.sigmoid(torch.tanh(z) @ self.w1 + self.w2[0, 0])"
          ".view(n, 1, 4, 4)\n");
      return m;
    }
    case ModelKind::kDensity: {
      // A diagonal Gaussian whose mean is an MLP of nothing (a learned vector) — exact log p.
      auto m = mlp_module(kDim,
                          "def log_prob(self, x):\n"
                          "        xf = x.flatten(1)\n"
                          "        mean = torch.tanh(self.b1) @ self.w2.t() + self.b2\n"
                          "        log_std = 0.1 * (self.w1 * self.w1).sum(0)\n"
                          "        r = (xf - mean) / torch.exp(log_std)\n"
                          "        return (-0.5 * r * r - log_std - 0.9189385332046727).sum(1)\n"
                          "def forward(self, x):\n"
                          "        return self.log_prob(x)\n"
                          "def sample(self, n: int):\n"
                          "        mean = torch.tanh(self.b1) @ self.w2.t() + self.b2\n"
                          "        log_std = 0.1 * (self.w1 * self.w1).sum(0)\n"
                          "        eps = torch.randn(n, mean.size(0), dtype=mean.dtype)\n"
                          "        return (mean + torch.exp(log_std) * eps).view(n, 1, 4, 4)\n");
      return m;
    }
  }
  return torch::jit::Module("unreachable");
}

/// Generator G(h) [B, kLatent] → [B, 1, 4, 4] for the `gan` test model.
inline torch::jit::Module generator_module() {
  torch::jit::Module g("TestGen");
  auto o = torch::dtype(torch::kFloat64);
  g.register_parameter("w", (torch::randn({kDim, kLatent}, o)).requires_grad_(true), false);
  g.register_parameter("b", (torch::randn({kDim}, o) * 0.1).requires_grad_(true), false);
  g.define(
      "def forward(self, h):\n"
      "        return torch.sigmoid(h @ self.w.t() + self.b).view(h.size(0), 1, 4, 4)\n");
  return g;
}

/// Saves the test model of `kind` (and its generator for `gan`) under `dir`, loads it as a
/// ScoreModel in float64.
inline ScoreModel make_test_model(ModelKind kind, const std::string& dir, uint64_t seed_value = 0) {
  seed(seed_value);
  ModelOptions o;
  o.dtype = torch::kFloat64;
  o.model_path = dir + "/" + to_string(kind) + ".pt";
  kind_module(kind).save(o.model_path);
  if (kind == ModelKind::kGan) {
    o.generator_path = dir + "/generator.pt";
    o.latent_dim = kLatent;
    generator_module().save(o.generator_path);
  }
  if (kind == ModelKind::kNtk) o.output = 1;
  o.seed = 7;
  return load_score_model(kind, o, torch::rand({2, 1, kSide, kSide}, torch::kFloat64));
}

inline torch::Tensor test_inputs(int64_t n, uint64_t seed_value = 1) {
  seed(seed_value);
  return torch::rand({n, 1, kSide, kSide}, torch::kFloat64);
}

/// Central finite differences of a vector function of the parameters: column c is
/// (f(θ + h e_c) − f(θ − h e_c)) / 2h for the c-th (tensor index, flat entry) of `coords`; each
/// entry of `params` is perturbed in place and restored. f() → [M]; the result is [M, #coords].
/// Runs f without autograd (the parameters are leaves that require grad).
inline torch::Tensor central_differences(const std::vector<torch::Tensor>& params,
                                         const std::function<torch::Tensor()>& f,
                                         const std::vector<std::pair<size_t, int64_t>>& coords,
                                         double h = 1e-6) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> cols;
  for (const auto& [t, c] : coords) {
    auto flat = params.at(t).view(-1);
    const double orig = flat[c].item<double>();
    flat[c] = orig + h;
    auto up = f();
    flat[c] = orig - h;
    auto down = f();
    flat[c] = orig;
    cols.push_back((up - down) / (2 * h));
  }
  return torch::stack(cols, /*dim=*/1);
}

/// The same over every coordinate of every parameter, in `params` order: [M, P], the layout of
/// per_example_gradients.
inline torch::Tensor central_differences(const std::vector<torch::Tensor>& params,
                                         const std::function<torch::Tensor()>& f, double h = 1e-6) {
  std::vector<std::pair<size_t, int64_t>> coords;
  for (size_t t = 0; t < params.size(); ++t) {
    for (int64_t c = 0; c < params[t].numel(); ++c) coords.emplace_back(t, c);
  }
  return central_differences(params, f, coords, h);
}

/// J [N, P] by an explicit loop, one example at a time, independent of nfk's batched paths.
/// For stochastic models each example's score is taken from the batch evaluation (same noise).
inline torch::Tensor explicit_jacobian(ScoreModel& model, const torch::Tensor& x,
                                       int64_t batch_size) {
  auto params = model.parameters();
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < x.size(0); ++i) {
    torch::Tensor s_i;
    if (model.stochastic()) {
      const int64_t start = (i / batch_size) * batch_size;
      const int64_t end = std::min(x.size(0), start + batch_size);
      s_i = model.score(x.slice(0, start, end), start)[i - start];
    } else {
      s_i = model.score(x.slice(0, i, i + 1), i)[0];
    }
    auto g = torch::autograd::grad({s_i}, params, {}, false, false, true);
    std::vector<torch::Tensor> flat;
    for (size_t k = 0; k < params.size(); ++k) {
      flat.push_back(g[k].defined() ? g[k].reshape(-1)
                                    : torch::zeros({params[k].numel()}, params[k].options()));
    }
    rows.push_back(torch::cat(flat));
  }
  return torch::stack(rows);
}

}  // namespace nfk::test
