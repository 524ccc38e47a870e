#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "detail/atomic_file.h"
#include "nfk/fisher.h"
#include "nfk/image.h"
#include "nfk/model.h"
#include "nfk/train.h"

namespace nfk {
namespace {

namespace F = torch::nn::functional;

torch::Tensor d_loss(const std::string& loss, const torch::Tensor& real,
                     const torch::Tensor& fake) {
  if (loss == "least-squares") return ((real - 1).square() + fake.square()).mean() / 2;
  if (loss == "hinge") return (torch::relu(1 - real) + torch::relu(1 + fake)).mean();
  return (F::softplus(-real) + F::softplus(fake)).mean();  // standard: D is a logit
}

torch::Tensor g_adversarial_loss(const std::string& loss, const torch::Tensor& fake) {
  if (loss == "least-squares") return (fake - 1).square().mean() / 2;
  if (loss == "hinge") return -fake.mean();
  return F::softplus(-fake).mean();  // non-saturating
}

// ema ← decay · ema + (1 − decay) · g, parameters; buffers (batch-norm statistics) copied.
void update_ema(const ZooModule& ema, const ZooModule& g, double decay) {
  torch::NoGradGuard no_grad;
  auto pe = ema.module->parameters(), pg = g.module->parameters();
  for (size_t i = 0; i < pe.size(); ++i) pe[i].mul_(decay).add_(pg[i], 1 - decay);
  auto be = ema.module->buffers(), bg = g.module->buffers();
  for (size_t i = 0; i < be.size(); ++i) be[i].copy_(bg[i]);
}

// The MCMC-inspired target for G (AFV §3.3): one noisy gradient-ascent step on D from x.
torch::Tensor mcmc_target(const ZooModule& d, const torch::Tensor& x, double step, double noise,
                          at::Generator& gen) {
  auto x0 = x.detach().requires_grad_(true);
  auto grad = torch::autograd::grad({d.forward(x0).sum()}, {x0})[0];
  auto eps = at::normal(0.0, 1.0, x.sizes(), gen, x.options().device(torch::kCPU)).to(x.device());
  return (x0 + 0.5 * step * grad + std::sqrt(step) * noise * eps).detach();
}

}  // namespace

nlohmann::json train_gan(const Dataset& train, const Dataset& held_out, const TrainRun& run,
                         const GanTrainOptions& o, const ProgressFn& progress) {
  TORCH_CHECK(train.inputs.dim() == 4 && train.inputs.size(2) == train.inputs.size(3),
              "nfk: GAN training expects square images [N, C, S, S], got ", train.inputs.sizes());
  TORCH_CHECK(o.loss == "standard" || o.loss == "least-squares" || o.loss == "hinge",
              "nfk: unknown GAN loss `", o.loss, "` (standard, least-squares or hinge)");
  TORCH_CHECK(o.latent_dim > 0 && o.width > 0, "nfk: latent dim and width must be positive");
  TORCH_CHECK(o.real_mix >= 0 && o.real_mix <= 1, "nfk: --real-mix is a probability");
  const int64_t n = train.inputs.size(0), channels = train.inputs.size(1),
                side = train.inputs.size(2);
  torch::manual_seed(run.seed);
  ZooModule d = make_zoo_module("dcgan-d",
                                {{"channels", channels}, {"image_size", side}, {"width", o.width}});
  nlohmann::json g_options = {{"latent_dim", o.latent_dim},
                              {"channels", channels},
                              {"image_size", side},
                              {"width", o.width}};
  ZooModule g = make_zoo_module("dcgan-g", g_options);
  ZooModule g_ema = make_zoo_module("dcgan-g", g_options);
  for (auto* m : {&d, &g, &g_ema}) m->module->to(run.device);
  update_ema(g_ema, g, /*decay=*/0);  // start equal
  auto adam = [](const ZooModule& m, double lr) {
    return torch::optim::Adam(m.module->parameters(),
                              torch::optim::AdamOptions(lr).betas({0.0, 0.999}));
  };
  torch::optim::Adam opt_d = adam(d, o.lr_d), opt_g = adam(g, o.lr_g);

  const std::string ckpt = run.out_dir + "/checkpoint";
  const std::map<std::string, ZooModule*> modules = {
      {"discriminator", &d}, {"generator_raw", &g}, {"generator", &g_ema}};
  const std::map<std::string, torch::optim::Optimizer*> optimizers = {{"adam_d", &opt_d},
                                                                      {"adam_g", &opt_g}};
  nlohmann::json log = {{"family", "gan"},
                        {"loss", o.loss},
                        {"latent_dim", o.latent_dim},
                        {"mcmc_step", o.mcmc_step},
                        {"epochs", nlohmann::json::array()}};
  int64_t first_epoch = run.resume ? load_checkpoint(ckpt, modules, optimizers, &log) : 0;

  auto opts = torch::TensorOptions().device(run.device);
  for (int64_t epoch = first_epoch; epoch < run.epochs; ++epoch) {
    auto gen = epoch_generator(run.seed, /*stream=*/1, epoch);
    auto order = at::randperm(n, gen, torch::kLong);
    double sum_d = 0, sum_g = 0, sum_real = 0, sum_fake = 0;
    int64_t steps = 0;
    for (int64_t start = 0; start + run.batch_size <= n; start += run.batch_size) {
      d.module->train();
      g.module->train();
      auto x = train.inputs.index_select(0, order.slice(0, start, start + run.batch_size))
                   .to(run.device);
      auto h = at::normal(0.0, 1.0, {run.batch_size, o.latent_dim}, gen).to(run.device);
      // D step: real data up, generated samples down.
      auto fake = g.forward(h);
      auto real_score = d.forward(x), fake_score = d.forward(fake.detach());
      auto loss_d = d_loss(o.loss, real_score, fake_score);
      opt_d.zero_grad();
      loss_d.backward();
      opt_d.step();
      // G step: adversarial, or regress onto the MCMC-inspired target.
      torch::Tensor loss_g;
      if (o.mcmc_step > 0) {
        auto start_x = fake.detach();
        if (o.real_mix > 0) {
          auto mix = (at::rand({run.batch_size}, gen) < o.real_mix).to(run.device);
          start_x = torch::where(mix.view({-1, 1, 1, 1}), x, start_x);
        }
        auto target = mcmc_target(d, start_x, o.mcmc_step, o.mcmc_noise, gen);
        loss_g = (fake - target).square().flatten(1).sum(1).mean();
      } else {
        loss_g = g_adversarial_loss(o.loss, d.forward(fake));
      }
      opt_g.zero_grad();
      loss_g.backward();
      opt_g.step();
      update_ema(g_ema, g, o.ema_decay);
      sum_d += loss_d.item<double>();
      sum_g += loss_g.item<double>();
      sum_real += real_score.mean().item<double>();
      sum_fake += fake_score.mean().item<double>();
      ++steps;
      if (progress) {
        progress("train", (epoch - first_epoch) * n + start + run.batch_size,
                 (run.epochs - first_epoch) * n);
      }
    }
    TORCH_CHECK(steps > 0, "nfk: the training set (", n, ") is smaller than one batch");
    nlohmann::json entry = {{"epoch", epoch + 1},
                            {"loss_d", sum_d / steps},
                            {"loss_g", sum_g / steps},
                            {"d_real", sum_real / steps},
                            {"d_fake", sum_fake / steps}};
    if (o.monitor_every > 0 && (epoch + 1) % o.monitor_every == 0 && held_out.inputs.defined()) {
      ModelOptions mo;
      mo.model_path = "discriminator (training)";
      mo.latent_dim = o.latent_dim;
      mo.device = run.device;
      ScoreModel model(ModelKind::kGan, wrap_zoo_module(d), wrap_zoo_module(g_ema), mo);
      const int64_t m = std::min(o.monitor_samples, held_out.inputs.size(0));
      auto fs = fisher_similarity(model, held_out.inputs.slice(0, 0, m), m,
                                  run.seed + 7919 * static_cast<uint64_t>(epoch), o.monitor_scale);
      entry["fisher_similarity"] = fs.similarity;
      entry["fisher_distance"] = fs.distance;
    }
    log["epochs"].push_back(entry);
    if (o.snapshot_every > 0 && (epoch + 1) % o.snapshot_every == 0) {
      char name[32];
      std::snprintf(name, sizeof(name), "/snapshots/epoch_%04lld",
                    static_cast<long long>(epoch + 1));
      const std::string dir = run.out_dir + name;
      std::filesystem::create_directories(dir);
      save_zoo_module(dir + "/discriminator.pt", d);
      save_zoo_module(dir + "/generator.pt", g_ema);
    }
    if ((epoch + 1) % run.checkpoint_every == 0 || epoch + 1 == run.epochs) {
      save_checkpoint(ckpt, epoch + 1,
                      {{"discriminator", &d}, {"generator_raw", &g}, {"generator", &g_ema}},
                      optimizers, log);
    }
  }
  d.module->eval();
  g_ema.module->eval();
  std::filesystem::create_directories(run.out_dir);
  save_zoo_module(run.out_dir + "/discriminator.pt", d);
  save_zoo_module(run.out_dir + "/generator.pt", g_ema);
  {
    torch::NoGradGuard no_grad;
    auto gen = epoch_generator(run.seed, /*stream=*/2, 0);
    auto h = at::normal(0.0, 1.0, {64, o.latent_dim}, gen).to(run.device);
    write_png(run.out_dir + "/samples.png", image_grid(g_ema.forward(h).cpu(), /*columns=*/8));
  }
  detail::write_file_atomic(run.out_dir + "/train_log.json", log.dump(2) + "\n");
  return log;
}

}  // namespace nfk
