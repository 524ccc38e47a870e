#include "nfk/data.h"
#include "nfk/gan_eval.h"

namespace nfk {

torch::Tensor GanInversion::latents(const torch::Tensor& embeddings) const {
  TORCH_CHECK(embeddings.dim() == 2 && embeddings.size(1) >= weight.size(0),
              "nfk: GAN inversion needs embeddings [M, >= ", weight.size(0), "], got ",
              embeddings.sizes());
  auto e = embeddings.slice(/*dim=*/1, 0, weight.size(0)).to(torch::kFloat64).cpu();
  return ((e - mean_e).mm(weight) + mean_h).to(torch::kFloat32);
}

torch::Tensor generate(Network& generator, const torch::Tensor& latents, int64_t batch_size) {
  TORCH_CHECK(batch_size > 0, "nfk: batch size must be positive");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  auto params = generator.parameters();
  auto opts = params.empty() ? torch::TensorOptions(torch::kFloat32) : params[0].options();
  for (int64_t start = 0; start < latents.size(0); start += batch_size) {
    auto h = latents.slice(0, start, std::min(latents.size(0), start + batch_size));
    out.push_back(generator.call("forward", h.to(opts.device(), opts.dtype()))
                      .to(torch::kCPU, torch::kFloat32));
  }
  return torch::cat(out);
}

GanInversion fit_gan_inversion(const Projector& p, ScoreModel& gan, Network& generator,
                               const GanInversionOptions& o, const ProgressFn& progress) {
  TORCH_CHECK(p.kind == ModelKind::kGan, "nfk: GAN inversion needs a projector of kind gan, got ",
              to_string(p.kind));
  const int64_t k = o.components < 0 ? p.rank() : o.components;
  TORCH_CHECK(k >= 1 && k <= p.rank(), "nfk: GAN inversion components must be in [1, ", p.rank(),
              "], got ", k);
  TORCH_CHECK(o.samples > k, "nfk: GAN inversion needs more samples (", o.samples,
              ") than embedding dimensions (", k, ")");
  TORCH_CHECK(o.l2 >= 0, "nfk: GAN inversion l2 must be >= 0");
  const int64_t latent = p.model.latent_dim;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto h = at::normal(0.0, 1.0, {o.samples, latent}, gen).to(torch::kFloat32);
  generator.to(p.model.device, torch::kFloat32);
  auto x = generate(generator, h, o.batch_size);
  auto e = transform(p, gan, x, {o.batch_size, o.seed, nullptr, progress})
               .slice(/*dim=*/1, 0, k)
               .to(torch::kFloat64)
               .cpu();
  check_finite(e, "NFK embeddings of generated samples");
  GanInversion inv;
  auto h64 = h.to(torch::kFloat64);
  inv.mean_e = e.mean(0);
  inv.mean_h = h64.mean(0);
  auto ec = e - inv.mean_e, hc = h64 - inv.mean_h;
  auto gram = ec.t().mm(ec);  // [k, k]
  const double lambda = o.l2 * gram.trace().item<double>() / gram.size(0);
  inv.weight = torch::linalg::solve(gram + lambda * torch::eye(gram.size(0), gram.options()),
                                    ec.t().mm(hc), /*left=*/true);
  const double residual = (hc - ec.mm(inv.weight)).square().sum().item<double>();
  inv.fit_r2 = 1 - residual / hc.square().sum().item<double>();
  return inv;
}

}  // namespace nfk
