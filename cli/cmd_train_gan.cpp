#include <cstdio>

#include "train_common.h"

namespace nfk::cli {

void add_train_gan(CLI::App* train) {
  struct Flags {
    TrainFlags run;
    GanTrainOptions options;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = train->add_subcommand(
      "gan",
      "Train a DCGAN as a variational EBM (AFV): D(x) = -E(x) models the data, G samples "
      "from it; writes DIR/discriminator.pt and DIR/generator.pt (EMA)");
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
  cmd->add_option("--monitor-every", o.monitor_every,
                  "Epochs between Fisher-similarity checks on --test-data (0: never)")
      ->capture_default_str();
  cmd->add_option("--monitor-samples", o.monitor_samples,
                  "Generated and held-out examples per Fisher-similarity check")
      ->capture_default_str();
  cmd->add_option("--snapshot-every", o.snapshot_every,
                  "Keep D and G every E epochs in OUT/snapshots/epoch_NNNN (for `nfk monitor`; "
                  "0: never)")
      ->capture_default_str();
  cmd->callback([f] {
    const auto t0 = std::chrono::steady_clock::now();
    auto run = f->run.to_run();
    auto [train_set, held_out] = f->run.load_sets();
    ProgressLine progress("train", f->run.quiet);
    auto log = train_gan(train_set, held_out, run, f->options, progress.fn());
    progress.finish();
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
    std::printf("; wrote %s/{discriminator,generator}.pt in %.1f s\n", run.out_dir.c_str(),
                seconds_since(t0));
  });
}

}  // namespace nfk::cli
