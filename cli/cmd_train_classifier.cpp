#include <cstdio>

#include "train_common.h"

namespace nfk::cli {

void add_train_classifier(CLI::App* train) {
  struct Flags {
    TrainFlags run;
    ClassifierTrainOptions options;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = train->add_subcommand("classifier",
                                    "Train a classifier by cross-entropy (Adam); "
                                    "writes DIR/classifier.pt");
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
  cmd->add_option("--lr", f->options.learning_rate, "Adam learning rate")->capture_default_str();
  cmd->callback([f] {
    const auto t0 = std::chrono::steady_clock::now();
    auto run = f->run.to_run();
    auto [train_set, test] = f->run.load_sets();
    ProgressLine progress("train", f->run.quiet);
    auto log = train_classifier(train_set, test, run, f->options, progress.fn());
    progress.finish();
    if (f->run.quiet) return;
    std::printf("nfk train classifier: %s, %lld epochs", f->options.arch.c_str(),
                static_cast<long long>(run.epochs));
    if (!log["epochs"].empty()) {
      std::printf(", final loss %.4f", log["epochs"].back()["loss"].get<double>());
    }
    if (log.contains("test_accuracy")) {
      std::printf(", test accuracy %.2f%%", 100 * log["test_accuracy"].get<double>());
    }
    std::printf("; wrote %s/classifier.pt in %.1f s\n", run.out_dir.c_str(), seconds_since(t0));
  });
}

}  // namespace nfk::cli
