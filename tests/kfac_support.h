#pragma once
// K-FAC test helpers: a tiny taped classifier (conv → linear → layer norm → linear), its K-FAC
// factors by explicit float64 loops (patches gathered index by index, output gradients by
// autograd on each example alone), and the dense classifier Fisher by enumerating every class.
#include <torch/csrc/autograd/autograd.h>

#include "fisher/fisher_rows.h"
#include "nfk/kfac.h"
#include "nfk/layer_tape.h"
#include "nfk/zoo.h"
#include "support.h"

namespace nfk::test {

namespace nn = torch::nn;

/// x [B, 2, side, side] → conv (options given) → tanh → Linear(·, 5, no bias) → tanh →
/// LayerNorm(5) → Linear(5, 3): logits [B, 3]. K-FAC covers conv, fc and out; ln is left out.
struct KfacNet : nn::Module {
  KfacNet(const nn::Conv2dOptions& conv_options, int64_t side) {
    conv = register_module("conv", nn::Conv2d(conv_options));
    const int64_t flat = conv->forward(torch::zeros({1, 2, side, side})).numel();
    fc = register_module("fc", nn::Linear(nn::LinearOptions(flat, 5).bias(false)));
    ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({5})));
    out = register_module("out", nn::Linear(5, 3));
    torch::NoGradGuard no_grad;
    for (auto& p : parameters()) p.normal_(0, 0.7);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::tanh(taped(*conv, x)).flatten(1);
    h = taped(*ln, torch::tanh(taped(*fc, h)));
    return taped(*out, h);
  }
  nn::Conv2d conv{nullptr};
  nn::Linear fc{nullptr}, out{nullptr};
  nn::LayerNorm ln{nullptr};
};

/// A float64 classifier around a KfacNet (seeded).
inline ScoreModel kfac_model(std::shared_ptr<KfacNet> net) {
  ZooModule zoo;
  zoo.arch = "test";
  zoo.module = net;
  zoo.methods["forward"] = [net](const torch::Tensor& x) { return net->forward(x); };
  ModelOptions o;
  o.dtype = torch::kFloat64;
  o.seed = 5;
  return ScoreModel(ModelKind::kClassifier, wrap_zoo_module(zoo), nullptr, o);
}

/// The default net: a strided, padded, dilated conv with 3 × 3 output positions.
inline std::shared_ptr<KfacNet> kfac_net() {
  seed(0);
  return std::make_shared<KfacNet>(nn::Conv2dOptions(2, 3, 3).stride(2).padding(2).dilation(2),
                                   /*side=*/6);
}

/// Explicit A and G of the three covered layers (conv, fc, out), in that order.
struct ExplicitFactors {
  std::vector<torch::Tensor> a, g;
};

/// Patches of one example x [C, H, W] for a k × k kernel with stride s, zero padding `pad` and
/// dilation d, index by index: [T, C·k·k].
inline torch::Tensor explicit_patches(const torch::Tensor& x, int64_t k, int64_t s, int64_t pad,
                                      int64_t d) {
  const int64_t c = x.size(0), h = x.size(1), w = x.size(2);
  const int64_t oh = (h + 2 * pad - d * (k - 1) - 1) / s + 1,
                ow = (w + 2 * pad - d * (k - 1) - 1) / s + 1;
  auto patches = torch::zeros({oh * ow, c * k * k}, x.options());
  auto xa = x.accessor<double, 3>();
  auto pa = patches.accessor<double, 2>();
  for (int64_t i = 0; i < oh; ++i)
    for (int64_t j = 0; j < ow; ++j)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t u = 0; u < k; ++u)
          for (int64_t v = 0; v < k; ++v) {
            const int64_t row = i * s + u * d - pad, col = j * s + v * d - pad;
            if (row >= 0 && row < h && col >= 0 && col < w)
              pa[i * ow + j][(ch * k + u) * k + v] = xa[ch][row][col];
          }
  return patches;
}

inline torch::Tensor with_ones(const torch::Tensor& a_tn) {
  return torch::cat({a_tn, torch::ones({a_tn.size(0), 1}, a_tn.options())}, 1);
}

/// kfac_net()'s K-FAC A and G by loops over examples, cotangents and positions. The cotangents of
/// each batch of `batch` examples come from detail::logit_cotangents (so mc draws the same labels).
inline ExplicitFactors explicit_kfac(KfacNet& net, const torch::Tensor& x, const torch::Tensor& y,
                                     const ClassifierFisherOptions& options, int64_t batch,
                                     uint64_t seed_value) {
  const int64_t n = x.size(0);
  ExplicitFactors f;
  f.a = {torch::zeros({19, 19}, torch::kFloat64), torch::zeros({27, 27}, torch::kFloat64),
         torch::zeros({6, 6}, torch::kFloat64)};
  f.g = {torch::zeros({3, 3}, torch::kFloat64), torch::zeros({5, 5}, torch::kFloat64),
         torch::zeros({3, 3}, torch::kFloat64)};
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t stop = std::min(n, start + batch);
    torch::Tensor c;
    {
      torch::NoGradGuard no_grad;
      c = detail::logit_cotangents(net.forward(x.slice(0, start, stop)),
                                   y.defined() ? y.slice(0, start, stop) : y, options, seed_value,
                                   start);
    }
    for (int64_t i = start; i < stop; ++i) {
      auto z1 = net.conv->forward(x.slice(0, i, i + 1));  // [1, 3, 3, 3]
      auto h1 = torch::tanh(z1).flatten(1);
      auto z2 = net.fc->forward(h1);
      auto h3 = net.ln->forward(torch::tanh(z2));
      auto logits = net.out->forward(h3);
      auto patches =
          with_ones(explicit_patches(x[i], /*k=*/3, /*s=*/2, /*pad=*/2, /*d=*/2));  // [9, 19]
      f.a[0] += patches.t().mm(patches) / (9.0 * n);
      f.a[1] += h1.t().mm(h1).detach() / n;
      auto a3 = with_ones(h3.detach());
      f.a[2] += a3.t().mm(a3) / n;
      for (int64_t r = 0; r < c.size(0); ++r) {
        auto cr = c[r].slice(0, i - start, i - start + 1);  // [1, 3]
        auto g = torch::autograd::grad({logits}, {z1, z2}, {cr}, /*retain_graph=*/true);
        auto d1 = g[0][0].reshape({3, 9}).t();  // [positions, out]
        f.g[0] += d1.t().mm(d1) / n;
        f.g[1] += g[1].t().mm(g[1]) / n;
        f.g[2] += cr.t().mm(cr) / n;
      }
    }
  }
  return f;
}

/// θ [P] of `model`.
inline torch::Tensor theta_of(ScoreModel& model) {
  std::vector<torch::Tensor> flat;
  for (const auto& p : model.parameters()) flat.push_back(p.detach().reshape(-1));
  return torch::cat(flat);
}

/// The true Fisher (1/N) Σ_x Σ_y p(y|x) g_y g_yᵀ [P, P], one autograd backward per class.
inline torch::Tensor dense_true_fisher(ScoreModel& model, const torch::Tensor& x) {
  auto params = model.parameters();
  const int64_t p = model.num_parameters(), n = x.size(0);
  auto f = torch::zeros({p, p}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    auto logp = torch::log_softmax(model.network().call("forward", x.slice(0, i, i + 1)), 1)[0];
    for (int64_t y = 0; y < logp.size(0); ++y) {
      auto g = torch::autograd::grad({logp[y]}, params, {}, /*retain_graph=*/true,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      std::vector<torch::Tensor> flat;
      for (size_t k = 0; k < g.size(); ++k)
        flat.push_back(g[k].defined() ? g[k].reshape(-1) : torch::zeros({params[k].numel()}));
      auto gv = torch::cat(flat).to(torch::kFloat64);
      f += std::exp(logp[y].item<double>()) * torch::outer(gv, gv) / n;
    }
  }
  return f;
}

/// The block of `f` [P, P] on the entries `index` [n].
inline torch::Tensor block_of(const torch::Tensor& f, const torch::Tensor& index) {
  return f.index_select(0, index).index_select(1, index);
}

/// K-FAC's approximation as a dense [P, P] matrix: its blocks at their θ entries, zero elsewhere.
inline torch::Tensor dense_kfac(const KfacFactors& k) {
  auto f = torch::zeros({k.num_params, k.num_params}, torch::kFloat64);
  for (size_t i = 0; i < k.layers.size(); ++i) {
    const auto& idx = k.layers[i].theta_index;
    auto rows = torch::zeros({idx.numel(), k.num_params}, torch::kFloat64);
    rows.index_copy_(1, idx, k.dense_block(i));
    f.index_copy_(0, idx, rows);
  }
  return f;
}

}  // namespace nfk::test
