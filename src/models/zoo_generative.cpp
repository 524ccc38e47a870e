// Generative zoo modules: the convolutional VAE and the MADE density
// (include/nfk/zoo_generative.h).
#include "nfk/zoo_generative.h"

#include <cmath>

#include "models/zoo_options.h"
#include "nfk/layer_tape.h"

namespace nfk {

namespace nnf = torch::nn::functional;

namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;  // ½ log 2π

// log p(x) of Bernoulli(sigmoid(logits)), elementwise (x may be a grey level: cross-entropy).
torch::Tensor bernoulli_log_prob(const torch::Tensor& logits, const torch::Tensor& x) {
  return -nnf::binary_cross_entropy_with_logits(
      logits, x, nnf::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// VAE
// ---------------------------------------------------------------------------------------------

VaeImpl::VaeImpl(const VaeOptions& options_) : options(options_) {
  reset();
}

void VaeImpl::reset() {
  TORCH_CHECK(options.image_size() % 4 == 0 && options.image_size() >= 4,
              "nfk: vae: image_size must be a positive multiple of 4, got ", options.image_size());
  TORCH_CHECK(options.channels() > 0 && options.latent_dim() > 0 && options.width() > 0,
              "nfk: vae: channels, latent_dim and width must be positive");
  TORCH_CHECK(options.likelihood() == "bernoulli" || options.likelihood() == "gaussian",
              "nfk: vae: likelihood must be bernoulli or gaussian, got `", options.likelihood(),
              "`");
  TORCH_CHECK(options.sigma() > 0, "nfk: vae: sigma must be positive, got ", options.sigma());
  const int64_t w = options.width(), side = options.image_size() / 4;
  const int64_t flat = 2 * w * side * side;
  conv1 = register_module(
      "conv1",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(options.channels(), w, 4).stride(2).padding(1)));
  conv2 = register_module(
      "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(w, 2 * w, 4).stride(2).padding(1)));
  enc_mean = register_module("enc_mean", torch::nn::Linear(flat, options.latent_dim()));
  enc_logvar = register_module("enc_logvar", torch::nn::Linear(flat, options.latent_dim()));
  project = register_module("project", torch::nn::Linear(options.latent_dim(), flat));
  deconv1 = register_module(
      "deconv1", torch::nn::ConvTranspose2d(
                     torch::nn::ConvTranspose2dOptions(2 * w, w, 4).stride(2).padding(1)));
  deconv2 = register_module(
      "deconv2",
      torch::nn::ConvTranspose2d(
          torch::nn::ConvTranspose2dOptions(w, options.channels(), 4).stride(2).padding(1)));
  if (options.likelihood() == "gaussian") {
    auto init = torch::full({}, std::log(options.sigma()));
    log_sigma = options.learn_sigma() ? register_parameter("log_sigma", init)
                                      : register_buffer("log_sigma", init);
  } else {
    log_sigma = torch::Tensor();
  }
}

std::pair<torch::Tensor, torch::Tensor> VaeImpl::encode(const torch::Tensor& x) {
  auto h = torch::relu(taped(*conv1, x));
  h = torch::relu(taped(*conv2, h)).flatten(/*start_dim=*/1);
  return {taped(*enc_mean, h), taped(*enc_logvar, h)};
}

torch::Tensor VaeImpl::decode(const torch::Tensor& z) {
  const int64_t side = options.image_size() / 4;
  auto h = torch::relu(taped(*project, z)).view({z.size(0), 2 * options.width(), side, side});
  h = torch::relu(taped(*deconv1, h));
  return taped(*deconv2, h);
}

torch::Tensor VaeImpl::decode_mean(const torch::Tensor& z) {
  return torch::sigmoid(decode(z));
}

torch::Tensor VaeImpl::log_likelihood(const torch::Tensor& x, const torch::Tensor& out) {
  const auto xr = x.reshape(out.sizes());
  if (options.likelihood() == "bernoulli") {
    return bernoulli_log_prob(out, xr).flatten(/*start_dim=*/1).sum(1);
  }
  auto r = (xr - torch::sigmoid(out)) * torch::exp(-log_sigma);
  return (-0.5 * r * r - log_sigma - kHalfLog2Pi).flatten(/*start_dim=*/1).sum(1);
}

torch::Tensor VaeImpl::elbo(const torch::Tensor& x) {
  auto [mu, logvar] = encode(x);
  auto z = mu + torch::exp(0.5 * logvar) * torch::randn_like(mu);
  auto rec = log_likelihood(x, decode(z));
  auto kl = 0.5 * (mu * mu + torch::exp(logvar) - 1.0 - logvar).sum(1);
  return rec - kl;
}

torch::Tensor VaeImpl::sample(int64_t n) {
  TORCH_CHECK(n >= 0, "nfk: vae: sample(n) needs n >= 0");
  torch::NoGradGuard no_grad;
  const auto& w = project->weight;
  auto z = torch::randn({n, options.latent_dim()}, w.options());
  return decode_mean(z);
}

torch::Tensor VaeImpl::reconstruct(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  return decode_mean(encode(x).first);
}

VaeImpl& as_vae(const ZooModule& zoo) {
  auto* p = dynamic_cast<VaeImpl*>(zoo.module.get());
  TORCH_CHECK(p, "nfk: expected a zoo `vae`, got `", zoo.arch, "`");
  return *p;
}

torch::Tensor vae_importance_log_likelihood(const ZooModule& zoo, const torch::Tensor& x,
                                            int64_t samples, at::Generator gen) {
  TORCH_CHECK(samples > 0, "nfk: IWAE needs at least one sample, got ", samples);
  VaeImpl& vae = as_vae(zoo);
  torch::NoGradGuard no_grad;
  const auto& w = vae.project->weight;
  const int64_t n = x.size(0), latent = vae.options.latent_dim();
  const int64_t chunk = std::max<int64_t>(1, 4096 / samples);  // examples per decoder batch
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t end = std::min(n, start + chunk), b = end - start;
    auto xb = x.slice(0, start, end).to(w.options());
    auto [mu, logvar] = vae.encode(xb);
    auto eps = at::randn({b, samples, latent}, gen, torch::dtype(w.scalar_type())).to(w.device());
    auto z = mu.unsqueeze(1) + torch::exp(0.5 * logvar).unsqueeze(1) * eps;  // [b, K, L]
    auto zf = z.reshape({b * samples, latent});
    std::vector<int64_t> rep_shape = {b, samples};
    for (int64_t d = 1; d < xb.dim(); ++d) rep_shape.push_back(xb.size(d));
    auto xr = xb.unsqueeze(1).expand(rep_shape).reshape({b * samples, -1});
    auto log_px_z = vae.log_likelihood(xr, vae.decode(zf)).view({b, samples});
    auto log_pz = (-0.5 * z * z - kHalfLog2Pi).sum(2);
    auto log_qz = (-0.5 * eps * eps - 0.5 * logvar.unsqueeze(1) - kHalfLog2Pi).sum(2);
    parts.push_back(torch::logsumexp(log_px_z + log_pz - log_qz, /*dim=*/1) -
                    std::log(static_cast<double>(samples)));
  }
  if (parts.empty()) return torch::empty({0}, w.options());
  return torch::cat(parts);
}

NFK_ZOO_OPTIONS_JSON(VaeOptions, channels, image_size, latent_dim, width, likelihood, sigma,
                     learn_sigma)

ZooModule make_vae(const nlohmann::json& o) {
  const auto options = o.get<VaeOptions>();
  Vae net(options);
  ZooModule zoo;
  zoo.arch = "vae";
  zoo.options = options;
  zoo.module = net.ptr();
  zoo.methods = {{"elbo", [net](const torch::Tensor& x) mutable { return net->elbo(x); }},
                 {"forward", [net](const torch::Tensor& x) mutable { return net->elbo(x); }}};
  zoo.sample = [net](int64_t n) mutable { return net->sample(n); };
  return zoo;
}

// ---------------------------------------------------------------------------------------------
// MADE
// ---------------------------------------------------------------------------------------------

MadeImpl::MadeImpl(const MadeOptions& options_) : options(options_) {
  reset();
}

void MadeImpl::reset() {
  TORCH_CHECK(options.channels() > 0 && options.image_size() > 0,
              "nfk: made: channels and image_size must be positive");
  TORCH_CHECK(options.likelihood() == "gaussian" || options.likelihood() == "bernoulli",
              "nfk: made: likelihood must be gaussian or bernoulli, got `", options.likelihood(),
              "`");
  TORCH_CHECK(options.logit_alpha() >= 0 && options.logit_alpha() < 0.5,
              "nfk: made: logit_alpha must be in [0, 0.5), got ", options.logit_alpha());
  for (int64_t h : options.hidden()) TORCH_CHECK(h > 0, "nfk: made: hidden sizes must be positive");
  const int64_t d = dim();
  const int64_t outs = options.likelihood() == "gaussian" ? 2 : 1;
  layers = register_module("layers", torch::nn::ModuleList());
  masks.clear();

  // Degrees: inputs 1..D; hidden units 1 + (k mod (D − 1)) (0 when D = 1: no input reaches them);
  // output r (dimension r mod D) has degree (r mod D) + 1 and sees strictly smaller degrees.
  auto in_deg = torch::arange(1, d + 1, torch::kLong);
  auto prev = in_deg;
  int64_t width = d;
  int64_t index = 0;
  for (int64_t h : options.hidden()) {
    auto deg = d > 1 ? torch::arange(h, torch::kLong).remainder(d - 1) + 1
                     : torch::zeros({h}, torch::kLong);
    auto mask = (deg.unsqueeze(1) >= prev.unsqueeze(0)).to(torch::kFloat32);  // [h, width]
    layers->push_back(torch::nn::Linear(width, h));
    masks.push_back(register_buffer("mask" + std::to_string(index++), mask));
    prev = deg;
    width = h;
  }
  auto out_deg = torch::arange(outs * d, torch::kLong).remainder(d) + 1;
  auto mask = (out_deg.unsqueeze(1) > prev.unsqueeze(0)).to(torch::kFloat32);
  layers->push_back(torch::nn::Linear(width, outs * d));
  masks.push_back(register_buffer("mask" + std::to_string(index), mask));
}

std::pair<torch::Tensor, torch::Tensor> MadeImpl::conditionals(const torch::Tensor& v) {
  const int64_t d = dim();
  auto h = v.reshape({v.size(0), d});
  const size_t n = layers->size();
  for (size_t i = 0; i < n; ++i) {
    h = taped_masked_linear(*layers[i]->as<torch::nn::Linear>(), masks[i], h);
    if (i + 1 < n) h = torch::relu(h);
  }
  if (options.likelihood() == "bernoulli") return {h, torch::Tensor()};
  auto mu = h.narrow(1, 0, d);
  auto log_sigma = 7.0 * torch::tanh(h.narrow(1, d, d) / 7.0);
  return {mu, log_sigma};
}

torch::Tensor MadeImpl::log_prob(const torch::Tensor& x) {
  const int64_t d = dim();
  TORCH_CHECK(x.dim() >= 1 && x.numel() == x.size(0) * d, "nfk: made: expected inputs with ", d,
              " entries per example, got ", x.sizes());
  auto xf = x.reshape({x.size(0), d});
  if (options.likelihood() == "bernoulli") {
    return bernoulli_log_prob(conditionals(xf).first, xf).sum(1);
  }
  const double a = options.logit_alpha();
  auto s = a + (1 - 2 * a) * xf;
  auto log_s = torch::log(s), log_1ms = torch::log1p(-s);
  auto y = log_s - log_1ms;
  auto log_det = (std::log1p(-2 * a) - log_s - log_1ms).sum(1);
  auto [mu, ls] = conditionals(y);
  auto r = (y - mu) * torch::exp(-ls);
  return (-0.5 * r * r - ls - kHalfLog2Pi).sum(1) + log_det;
}

torch::Tensor MadeImpl::sample(int64_t n) {
  TORCH_CHECK(n >= 0, "nfk: made: sample(n) needs n >= 0");
  torch::NoGradGuard no_grad;
  const int64_t d = dim();
  const bool gaussian = options.likelihood() == "gaussian";
  const size_t n_layers = layers->size();
  std::vector<torch::Tensor> w, b;
  for (size_t i = 0; i < n_layers; ++i) {
    auto* lin = layers[i]->as<torch::nn::Linear>();
    w.push_back(lin->weight * masks[i]);
    b.push_back(lin->bias);
  }
  const auto opts = w.front().options();
  auto v = torch::zeros({n, d}, opts);  // y (gaussian) or x (bernoulli), filled in order
  // First layer pre-activations, updated by one rank-1 term per sampled dimension.
  torch::Tensor a1 =
      n_layers > 1 ? b[0].unsqueeze(0).expand({n, b[0].size(0)}).clone() : torch::Tensor();
  auto w0_t = n_layers > 1 ? w[0].t().contiguous() : torch::Tensor();  // [D, H1]
  auto w_last = w.back(), b_last = b.back();
  for (int64_t j = 0; j < d; ++j) {
    torch::Tensor h;
    if (n_layers > 1) {
      h = torch::relu(a1);
      for (size_t i = 1; i + 1 < n_layers; ++i) h = torch::relu(nnf::linear(h, w[i], b[i]));
    } else {
      h = v;
    }
    // Output rows of dimension j only: j (μ or logit) and D + j (log σ).
    auto first = nnf::linear(h, w_last.narrow(0, j, 1), b_last.narrow(0, j, 1)).squeeze(1);
    torch::Tensor value;
    if (gaussian) {
      auto raw = nnf::linear(h, w_last.narrow(0, d + j, 1), b_last.narrow(0, d + j, 1)).squeeze(1);
      auto ls = 7.0 * torch::tanh(raw / 7.0);
      value = first + torch::exp(ls) * torch::randn({n}, opts);
    } else {
      value = torch::bernoulli(torch::sigmoid(first));
    }
    v.select(1, j).copy_(value);
    if (n_layers > 1) a1.add_(value.unsqueeze(1) * w0_t[j].unsqueeze(0));
  }
  if (gaussian) {
    const double a = options.logit_alpha();
    // In float32 sigmoid saturates at exactly 0 or 1, which maps outside [0, 1] here and would
    // give log p = NaN at the model's own samples.
    v = ((torch::sigmoid(v) - a) / (1 - 2 * a)).clamp_(0, 1);
  }
  return v.view({n, options.channels(), options.image_size(), options.image_size()});
}

MadeImpl& as_made(const ZooModule& zoo) {
  auto* p = dynamic_cast<MadeImpl*>(zoo.module.get());
  TORCH_CHECK(p, "nfk: expected a zoo `made`, got `", zoo.arch, "`");
  return *p;
}

NFK_ZOO_OPTIONS_JSON(MadeOptions, channels, image_size, hidden, likelihood, logit_alpha)

ZooModule make_made(const nlohmann::json& o) {
  const auto options = o.get<MadeOptions>();
  Made net(options);
  ZooModule zoo;
  zoo.arch = "made";
  zoo.options = options;
  zoo.module = net.ptr();
  zoo.methods = {{"log_prob", [net](const torch::Tensor& x) mutable { return net->log_prob(x); }},
                 {"forward", [net](const torch::Tensor& x) mutable { return net->log_prob(x); }}};
  zoo.sample = [net](int64_t n) mutable { return net->sample(n); };
  return zoo;
}

}  // namespace nfk
