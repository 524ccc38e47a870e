#pragma once
/// nfk's generative zoo models (native LibTorch; their trainers are in nfk/train.h):
///
///   * `vae`  — a convolutional variational autoencoder (kind `vae`: elbo(x) → [B], sample(n)),
///   * `made` — a masked autoencoder for distribution estimation (Germain et al. 2015) with an
///              exact log-density (kind `density`: log_prob(x) → [B], sample(n)).
///
/// Both are registered in the zoo (`make_zoo_module("vae", ...)`, `make_zoo_module("made", ...)`)
/// and saved as self-describing zoo archives, so `nfk fit --model DIR/vae.zoo --kind vae` works.
/// Neither uses batch-norm or anything else that mixes examples: s(x_i) depends on x_i alone
/// (and, for the VAE, on the noise drawn from the global RNG, which nfk seeds per batch).

#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "nfk/data.h"
#include "nfk/progress.h"
#include "nfk/zoo.h"

namespace nfk {

// ---------------------------------------------------------------------------------------------
// VAE
// ---------------------------------------------------------------------------------------------

/// Options of the `vae` zoo architecture (images [B, C, S, S] with S divisible by 4, values in
/// [0, 1]).
struct VaeOptions {
  TORCH_ARG(int64_t, channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;
  TORCH_ARG(int64_t, latent_dim) = 16;
  TORCH_ARG(int64_t, width) = 32;  // filters of the first conv; the second has 2 × width
  /// "bernoulli": p(x|z) = Π Bernoulli(x_j; sigmoid(logit_j)) (the usual MNIST choice, applied
  /// to grey levels in [0, 1] as a cross-entropy); "gaussian": p(x|z) = N(x; sigmoid(out), σ² I)
  /// with one scalar σ (a proper density of continuous x).
  TORCH_ARG(std::string, likelihood) = "bernoulli";
  TORCH_ARG(double, sigma) = 0.1;       // gaussian only: σ (initial value if learned)
  TORCH_ARG(bool, learn_sigma) = true;  // gaussian only: σ a parameter (else a fixed buffer)
};

/// Encoder: conv4×4/2(C→w)-relu-conv4×4/2(w→2w)-relu-linear → (μ, log σ²) of q(z|x) = N(μ, σ²).
/// Decoder: linear(latent→2w·S/4·S/4)-relu-deconv4×4/2(2w→w)-relu-deconv4×4/2(w→C) → output
/// (Bernoulli logits, or the pre-sigmoid Gaussian mean). Prior p(z) = N(0, I).
struct VaeImpl : torch::nn::Cloneable<VaeImpl> {
  explicit VaeImpl(const VaeOptions& options = {});
  void reset() override;

  /// (μ [B, latent], log σ² [B, latent]) of q(z|x).
  std::pair<torch::Tensor, torch::Tensor> encode(const torch::Tensor& x);
  /// Decoder output [B, C, S, S]: logits (bernoulli) or pre-sigmoid means (gaussian).
  torch::Tensor decode(const torch::Tensor& z);
  /// Decoder mean E[x|z] in [0, 1]: sigmoid(decode(z)) for both likelihoods.
  torch::Tensor decode_mean(const torch::Tensor& z);
  /// log p(x|z) per example [B] from the decoder output `out` = decode(z).
  torch::Tensor log_likelihood(const torch::Tensor& x, const torch::Tensor& out);
  /// ELBO(x) = log p(x|z) − KL(q(z|x) ‖ p(z)) [B], one reparameterised sample
  /// z = μ + σ ⊙ ε, ε = randn_like(μ) from the global RNG; the KL term is analytic.
  torch::Tensor elbo(const torch::Tensor& x);
  torch::Tensor forward(const torch::Tensor& x) { return elbo(x); }
  /// Decoder means E[x|z] for z ~ N(0, I) from the global RNG: [n, C, S, S].
  torch::Tensor sample(int64_t n);
  /// Decoder mean at the posterior mean: E[x | z = μ(x)], [B, C, S, S].
  torch::Tensor reconstruct(const torch::Tensor& x);

  VaeOptions options;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear enc_mean{nullptr}, enc_logvar{nullptr}, project{nullptr};
  torch::nn::ConvTranspose2d deconv1{nullptr}, deconv2{nullptr};
  torch::Tensor log_sigma;  // gaussian only: scalar log σ (parameter or buffer)
};
TORCH_MODULE(Vae);

/// The VaeImpl inside a zoo module of arch "vae"; throws if it is not one.
VaeImpl& as_vae(const ZooModule& zoo);

/// Importance-weighted log-likelihood estimate (Burda et al. 2016, IWAE bound) per example [B]:
/// log (1/K) Σ_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x), computed with logsumexp. Its expectation
/// is ≥ E[ELBO] and increases to log p(x) as K grows. Noise comes from `gen` only (the global
/// RNG is untouched). No gradients.
torch::Tensor vae_importance_log_likelihood(const ZooModule& vae, const torch::Tensor& x,
                                            int64_t samples, at::Generator gen);

// ---------------------------------------------------------------------------------------------
// MADE (exact density)
// ---------------------------------------------------------------------------------------------

/// Options of the `made` zoo architecture. Inputs x [B, C, S, S] (any [B, ...] with C·S·S
/// entries per example; flattened in C order, which is the autoregressive order: natural order).
struct MadeOptions {
  TORCH_ARG(int64_t, channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;  // D = channels · image_size²
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{512};  // masked ReLU layers
  /// The data model:
  ///  "gaussian" (default): continuous x with entries in [0, 1]. Each entry goes through
  ///    y = logit(α + (1 − 2α) x), and y is modelled autoregressively,
  ///    p(y_d | y_<d) = N(μ_d(y_<d), σ_d(y_<d)²). log_prob(x) = log p(y) + Σ_d log|dy_d/dx_d|
  ///    (the logit Jacobian is included), i.e. an exact, normalised density of x on
  ///    (−α/(1−2α), 1 + α/(1−2α))^D ⊃ [0, 1]^D. For 8-bit data the trainer dequantizes,
  ///    x = (255·x₈ + u)/256 with u ~ U(0, 1)^D, so −log p(x)/D + log 256 (nats) is an upper
  ///    bound on the discrete data's code length, reported as bits/dim.
  ///  "bernoulli": binary x ∈ {0, 1}^D, p(x_d = 1 | x_<d) = sigmoid(logit_d(x_<d)); log_prob
  ///    is the exact log-probability mass (grey levels are treated as soft labels, which is
  ///    not a probability). The trainer binarizes dynamically: x ~ Bernoulli(grey level).
  TORCH_ARG(std::string, likelihood) = "gaussian";
  TORCH_ARG(double, logit_alpha) = 1e-6;  // gaussian only: α of the logit transform
};

/// MADE: masked linear layers with deterministic hidden degrees m_k = 1 + (k mod (D − 1)) and
/// strict output masks, so output d depends on x_<d only (output 1 is a learned constant).
/// log σ_d is soft-clamped to (−7, 7) (7·tanh(a/7)) for numerical safety.
struct MadeImpl : torch::nn::Cloneable<MadeImpl> {
  explicit MadeImpl(const MadeOptions& options = {});
  void reset() override;

  int64_t dim() const { return options.channels() * options.image_size() * options.image_size(); }
  /// The autoregressive network on flat inputs v [B, D] (y for gaussian, x for bernoulli):
  /// gaussian → {μ [B, D], log σ [B, D]}; bernoulli → {logits [B, D], undefined}.
  std::pair<torch::Tensor, torch::Tensor> conditionals(const torch::Tensor& v);
  /// Exact log p(x) per example [B] (see MadeOptions::likelihood for the data model).
  torch::Tensor log_prob(const torch::Tensor& x);
  torch::Tensor forward(const torch::Tensor& x) { return log_prob(x); }
  /// n exact samples [n, C, S, S] from the global RNG (D sequential steps; the first hidden
  /// layer is updated incrementally, so the cost is about D · n · (H₁ + deeper layers)).
  /// Gaussian: x = (sigmoid(y) − α)/(1 − 2α) (may lie slightly outside [0, 1]); bernoulli: {0, 1}.
  torch::Tensor sample(int64_t n);

  MadeOptions options;
  torch::nn::ModuleList layers{nullptr};  // Linear layers; masks in the buffers mask0, mask1, ...
  std::vector<torch::Tensor> masks;
};
TORCH_MODULE(Made);

/// The MadeImpl inside a zoo module of arch "made"; throws if it is not one.
MadeImpl& as_made(const ZooModule& zoo);

}  // namespace nfk
