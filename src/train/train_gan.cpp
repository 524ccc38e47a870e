// GAN training (AFV, variational EBM) on the shared loop. Fisher-similarity monitoring is an
// epoch-end hook the caller passes (nfk::gan_monitor_fisher in eval/, wired by the CLI).
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "nfk/output_files.h"
#include "nfk/train.h"
#include "nfk/trainer.h"

namespace nfk {
namespace {

namespace F = torch::nn::functional;

// epoch_generator stream of the shuffles and the noise of training (0 is the other families').
constexpr uint64_t kGanTrainStream = 1;

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

// The MCMC-inspired target for G (AFV §3.3): one noisy gradient-ascent step on D from x.
torch::Tensor mcmc_target(const ZooModule& d, const torch::Tensor& x, double step, double noise,
                          at::Generator& gen) {
  auto x0 = x.detach().requires_grad_(true);
  auto grad = torch::autograd::grad({d.forward(x0).sum()}, {x0})[0];
  auto eps = at::normal(0.0, 1.0, x.sizes(), gen, x.options().device(torch::kCPU)).to(x.device());
  return (x0 + 0.5 * step * grad + std::sqrt(step) * noise * eps).detach();
}

// D and the EMA generator every `every` epochs in out_dir/snapshots/epoch_NNNN.
EpochEndHook snapshot_hook(const std::string& out_dir, int64_t every) {
  return {"snapshots",
          [out_dir](Trainer& t, int64_t epochs_done, nlohmann::json&) {
            char name[32];
            std::snprintf(name, sizeof(name), "/snapshots/epoch_%04lld",
                          static_cast<long long>(epochs_done));
            const std::string dir = out_dir + name;
            std::filesystem::create_directories(dir);
            save_zoo_module(dir + "/discriminator.zoo", t.module("discriminator"));
            save_zoo_module(dir + "/generator.zoo", t.module("generator"));
          },
          every};
}

}  // namespace

nlohmann::json train_gan(const Dataset& train, const TrainRun& run, const GanTrainOptions& o,
                         const ProgressFn& progress, const TrainHooks& hooks) {
  TORCH_CHECK(train.inputs.dim() == 4 && train.inputs.size(2) == train.inputs.size(3),
              "nfk: GAN training expects square images [N, C, S, S], got ", train.inputs.sizes());
  TORCH_CHECK(o.loss == "standard" || o.loss == "least-squares" || o.loss == "hinge",
              "nfk: unknown GAN loss `", o.loss, "` (standard, least-squares or hinge)");
  TORCH_CHECK(o.latent_dim > 0 && o.width > 0, "nfk: latent dim and width must be positive");
  TORCH_CHECK(o.real_mix >= 0 && o.real_mix <= 1, "nfk: --real-mix is a probability");
  const int64_t channels = train.inputs.size(1), side = train.inputs.size(2);
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

  TrainLoopOptions loop;
  loop.run = run;
  loop.shuffle_stream = kGanTrainStream;
  loop.drop_last = true;
  TrainHooks all = hooks;
  // Snapshots last: they keep the modules as the caller's hooks (monitoring) leave them.
  if (o.snapshot_every > 0) all.epoch_end.push_back(snapshot_hook(run.out_dir, o.snapshot_every));
  Trainer trainer(loop, all);
  trainer.add_ema(&g_ema, &g, o.ema_decay);
  auto adam = [](const ZooModule& m, double lr) {
    return torch::optim::Adam(m.module->parameters(),
                              torch::optim::AdamOptions(lr).betas({0.0, 0.999}));
  };
  torch::optim::Adam opt_d = adam(d, o.lr_d), opt_g = adam(g, o.lr_g);
  trainer.add_module("discriminator", &d);
  trainer.add_module("generator_raw", &g);
  trainer.add_module("generator", &g_ema);  // the EMA weights
  trainer.add_optimizer("adam_d", &opt_d, &d);
  trainer.add_optimizer("adam_g", &opt_g, &g);
  trainer.log() = {{"family", "gan"},
                   {"loss", o.loss},
                   {"latent_dim", o.latent_dim},
                   {"mcmc_step", o.mcmc_step},
                   {"epochs", nlohmann::json::array()}};
  trainer.resume();

  auto step = [&](Trainer& t, const Batch& b) {
    d.module->train();
    g.module->train();
    const int64_t size = b.inputs.size(0);
    at::Generator gen = b.generator;
    auto h = at::normal(0.0, 1.0, {size, o.latent_dim}, gen).to(run.device);
    // D step: real data up, generated samples down.
    auto fake = g.forward(h);
    auto real_score = d.forward(b.inputs), fake_score = d.forward(fake.detach());
    auto loss_d = d_loss(o.loss, real_score, fake_score);
    t.optimize("adam_d", loss_d, b);
    // G step: adversarial, or regress onto the MCMC-inspired target.
    torch::Tensor loss_g;
    if (o.mcmc_step > 0) {
      auto start_x = fake.detach();
      if (o.real_mix > 0) {
        auto mix = (at::rand({size}, gen) < o.real_mix).to(run.device);
        start_x = torch::where(mix.view({-1, 1, 1, 1}), b.inputs, start_x);
      }
      auto target = mcmc_target(d, start_x, o.mcmc_step, o.mcmc_noise, gen);
      loss_g = (fake - target).square().flatten(1).sum(1).mean();
    } else {
      loss_g = g_adversarial_loss(o.loss, d.forward(fake));
    }
    t.optimize("adam_g", loss_g, b);
    return StepMetrics{{"loss_d", loss_d.item<double>()},
                       {"loss_g", loss_g.item<double>()},
                       {"d_real", real_score.mean().item<double>()},
                       {"d_fake", fake_score.mean().item<double>()}};
  };
  nlohmann::json log = trainer.run(train, step, progress);
  d.module->eval();
  g_ema.module->eval();
  std::filesystem::create_directories(run.out_dir);
  save_zoo_module(run.out_dir + "/discriminator.zoo", d);
  save_zoo_module(run.out_dir + "/generator.zoo", g_ema);
  write_file_atomic(run.out_dir + "/train_log.json", log.dump(2) + "\n");
  return log;
}

}  // namespace nfk
