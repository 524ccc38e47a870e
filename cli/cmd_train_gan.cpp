#include <cstdio>

#include "figures.h"
#include "nfk/gan_eval.h"
#include "train_common.h"

namespace nfk::cli {

namespace {

// 64 samples of the EMA generator `g`, drawn from epoch_generator(seed, 2, 0), as an 8-wide grid.
void write_samples(const ZooModule& g, int64_t latent_dim, uint64_t seed, const std::string& path) {
  if (!pictures_possible()) return;
  torch::NoGradGuard no_grad;
  g.module->eval();
  auto gen = epoch_generator(seed, /*stream=*/2, 0);
  const auto device = g.module->parameters().front().device();
  auto h = at::normal(0.0, 1.0, {64, latent_dim}, gen).to(device);
  plot_images(path, g.forward(h).cpu(), /*columns=*/8);
}

}  // namespace

void add_train_gan(CLI::App* train) {
  struct Flags {
    TrainFlags run;
    GanTrainOptions options;
    GanTrainingMonitorOptions monitor;
    int64_t sample_every = 0;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = train->add_subcommand(
      "gan",
      "Train a DCGAN as a variational EBM (AFV): D(x) = -E(x) models the data, G samples "
      "from it; writes DIR/discriminator.zoo and DIR/generator.zoo (EMA)");
  f->run.add_to(cmd, /*default_epochs=*/10, /*default_batch=*/64);
  auto& o = f->options;
  cmd->add_option("--latent-dim", o.latent_dim, "Dimension of h ~ N(0, I)")->capture_default_str();
  cmd->add_option("--width", o.width, "Base width of D and G")->capture_default_str();
  cmd->add_option("--loss", o.loss, "Adversarial loss")
      ->check(CLI::IsMember({"standard", "least-squares", "hinge"}))
      ->capture_default_str();
  cmd->add_option("--lr-d", o.lr_d, "Adam learning rate of D (beta1 = 0, beta2 = 0.999)")
      ->capture_default_str();
  cmd->add_option("--lr-g", o.lr_g, "Adam learning rate of G")->capture_default_str();
  cmd->add_option("--ema", o.ema_decay, "EMA decay of the saved generator")->capture_default_str();
  cmd->add_option("--mcmc-step", o.mcmc_step,
                  "> 0: MCMC-inspired G update, G regresses onto x + step/2 grad_x D(x) + noise")
      ->capture_default_str();
  cmd->add_option("--mcmc-noise", o.mcmc_noise, "Noise scale of the MCMC-inspired target")
      ->capture_default_str();
  cmd->add_option("--real-mix", o.real_mix,
                  "MCMC update: probability of starting the chain from a real example")
      ->capture_default_str();
  cmd->add_option("--monitor-every", f->monitor.every,
                  "Epochs between Fisher-similarity checks on --test-data (0: never)")
      ->capture_default_str();
  cmd->add_option("--monitor-samples", f->monitor.samples,
                  "Generated and held-out examples per Fisher-similarity check")
      ->capture_default_str();
  cmd->add_option("--snapshot-every", o.snapshot_every,
                  "Keep D and G every E epochs in OUT/snapshots/epoch_NNNN (for `nfk monitor`; "
                  "0: never)")
      ->capture_default_str();
  cmd->add_option("--sample-every", f->sample_every,
                  "Write OUT/samples_epoch_NNNN.png every E epochs (0: only OUT/samples.png)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->callback([f] {
    const auto t0 = std::chrono::steady_clock::now();
    auto [run, train_set, held_out] = f->run.prepare();
    TrainHooks hooks;
    if (held_out.inputs.defined() && f->monitor.every > 0) {
      auto monitor = f->monitor;
      monitor.seed = run.seed;
      hooks.epoch_end.push_back({"fisher_similarity",
                                 [monitor, real = held_out.inputs](Trainer& t, int64_t epochs_done,
                                                                   nlohmann::json& entry) {
                                   auto fs = gan_training_fisher_similarity(
                                       t.module("discriminator"), t.module("generator"), real,
                                       epochs_done, monitor);
                                   entry["fisher_similarity"] = fs.similarity;
                                   entry["fisher_distance"] = fs.distance;
                                 },
                                 monitor.every});
    }
    if (f->sample_every > 0) {
      hooks.epoch_end.push_back(
          {"samples",
           [o = f->options, run](Trainer& t, int64_t epochs_done, nlohmann::json&) {
             char name[40];
             std::snprintf(name, sizeof(name), "/samples_epoch_%04lld.png",
                           static_cast<long long>(epochs_done));
             write_samples(t.module("generator"), o.latent_dim, run.seed, run.out_dir + name);
           },
           f->sample_every});
    }
    ProgressLine progress("train", f->run.quiet);
    auto log = train_gan(train_set, run, f->options, progress.fn(), hooks);
    progress.finish();
    ZooModule g_ema = load_zoo_module(run.out_dir + "/generator.zoo");
    g_ema.module->to(run.device);
    write_samples(g_ema, f->options.latent_dim, run.seed, run.out_dir + "/samples.png");
    if (f->run.quiet) return;
    std::printf("nfk train gan: %lld epochs", static_cast<long long>(run.epochs));
    if (!log["epochs"].empty()) {
      const auto& last = log["epochs"].back();
      std::printf(", loss D %.4f, loss G %.4f", last["loss_d"].get<double>(),
                  last["loss_g"].get<double>());
      if (last.contains("fisher_similarity")) {
        std::printf(", Fisher similarity %.4f", last["fisher_similarity"].get<double>());
      }
    }
    std::printf("; wrote %s/{discriminator,generator}.zoo in %.1f s\n", run.out_dir.c_str(),
                seconds_since(t0));
  });
}

}  // namespace nfk::cli
