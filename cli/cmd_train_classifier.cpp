#include <cstdio>

#include "train_common.h"

namespace nfk::cli {

void add_train_classifier(CLI::App* train) {
  struct Flags {
    TrainFlags run;
    ClassifierTrainOptions options;
    struct {
      std::string estimator = "true";
      bool tikhonov = false;
    } natural_flags;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = train->add_subcommand(
      "classifier",
      "Train a classifier by cross-entropy (Adam, SGD, or natural gradient: ngd-diag, kfac); "
      "writes DIR/classifier.zoo");
  f->run.add_to(cmd, /*default_epochs=*/1, /*default_batch=*/64);
  cmd->add_option("--arch", f->options.arch, "Architecture")
      ->check(CLI::IsMember({"lenet5", "mlp", "wrn"}))
      ->capture_default_str();
  cmd->add_option("--depth", f->options.wrn_depth, "WideResNet depth (6n + 4; --arch wrn only)")
      ->capture_default_str();
  cmd->add_option("--widen-factor", f->options.wrn_widen_factor,
                  "WideResNet widen factor k (--arch wrn only)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--optimizer", f->options.optimizer,
                  "adam | sgd (with --momentum) | ngd-diag (SGD along (diag F + damping)^-1 g) | "
                  "kfac (SGD along the K-FAC natural gradient); F: the classifier's Fisher of "
                  "p(y|x) on the batch, a running average")
      ->check(CLI::IsMember({"adam", "sgd", "ngd-diag", "kfac"}))
      ->capture_default_str();
  cmd->add_option("--lr", f->options.learning_rate, "Learning rate (Adam's or SGD's)")
      ->check(finite_in(0, 100))
      ->capture_default_str();
  cmd->add_option("--momentum", f->options.momentum, "sgd, ngd-diag, kfac: SGD momentum")
      ->check(CLI::Range(0.0, 0.999))
      ->capture_default_str();
  auto& n = f->natural_flags;
  cmd->add_option("--fisher", n.estimator,
                  "ngd-diag, kfac: the batch Fisher's estimator: true | "
                  "mc | empirical")
      ->check(CLI::IsMember({"true", "mc", "empirical"}))
      ->capture_default_str();
  cmd->add_option("--mc-samples", f->options.natural.fisher.mc_samples,
                  "ngd-diag, kfac with --fisher mc: labels drawn per example")
      ->check(count_in(1, 10000))
      ->capture_default_str();
  cmd->add_option("--damping", f->options.natural.damping, "ngd-diag, kfac: damping lambda")
      ->check(finite_in(0, 1e6))
      ->capture_default_str();
  cmd->add_flag(
      "--tikhonov", n.tikhonov,
      "kfac: factored Tikhonov damping (A + pi sqrt(l) I) x (G + sqrt(l)/pi I) instead of "
      "the exact (A x G + l I)^-1");
  cmd->add_option("--fisher-decay", f->options.natural.decay,
                  "ngd-diag, kfac: running-average decay of the Fisher")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  cmd->add_option("--update-every", f->options.natural.update_every,
                  "ngd-diag, kfac: steps between Fisher refreshes")
      ->check(count_in(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--inverse-every", f->options.natural.inverse_every,
                  "kfac: steps between the factors' eigendecompositions")
      ->check(count_in(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--kl-clip", f->options.natural.kl_clip,
                  "ngd-diag, kfac: > 0 scales the step so that lr^2 g.d <= this (Martens & "
                  "Grosse); while it "
                  "binds, the step length no longer depends on --lr (0: off)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--eval-every", f->options.eval_every,
                  "Also measure the test accuracy every this many steps (0: at epoch ends only); "
                  "train_log.json's \"evaluations\" holds {step, epoch, train_seconds, "
                  "test_accuracy}, train_seconds counting the training steps only")
      ->check(count_in(0, int64_t{1} << 40))
      ->capture_default_str();
  cmd->callback([f] {
    f->options.natural.fisher.estimator = parse_fisher_estimator(f->natural_flags.estimator);
    f->options.natural.damping_kind =
        f->natural_flags.tikhonov ? KfacDamping::kFactoredTikhonov : KfacDamping::kExact;
    // Before prepare() makes the output folder: a refused run leaves nothing behind.
    TORCH_CHECK(f->options.eval_every == 0 || !f->run.test_data.empty(),
                "nfk: --eval-every needs --test-data (a labelled test set)");
    const auto t0 = std::chrono::steady_clock::now();
    auto [run, train_set, test] = f->run.prepare();
    ProgressLine progress("train", f->run.quiet);
    auto log = train_classifier(train_set, test, run, f->options, progress.fn());
    progress.finish();
    if (f->run.quiet) return;
    std::printf("nfk train classifier: %s, %s, %lld epochs", f->options.arch.c_str(),
                f->options.optimizer.c_str(), static_cast<long long>(run.epochs));
    if (!log["epochs"].empty()) {
      std::printf(", final loss %.4f", log["epochs"].back()["loss"].get<double>());
    }
    if (log.contains("test_accuracy")) {
      std::printf(", test accuracy %.2f%%", 100 * log["test_accuracy"].get<double>());
    }
    std::printf("; wrote %s/classifier.zoo in %.1f s\n", run.out_dir.c_str(), seconds_since(t0));
  });
}

}  // namespace nfk::cli
