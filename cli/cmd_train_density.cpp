#include <cstdio>

#include "figures.h"
#include "nfk/zoo_generative.h"
#include "train_common.h"

namespace nfk::cli {

void add_train_density(CLI::App* train) {
  struct Flags {
    TrainFlags run;
    DensityTrainOptions options;
    bool no_dequantize = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = train->add_subcommand(
      "density",
      "Train a MADE density model (exact log p) by maximum likelihood (Adam); writes "
      "DIR/density.zoo and DIR/samples.png");
  f->run.add_to(cmd, /*default_epochs=*/5, /*default_batch=*/64);
  cmd->add_option("--arch", f->options.arch, "Architecture")
      ->check(CLI::IsMember({"made"}))
      ->capture_default_str();
  cmd->add_option("--hidden", f->options.hidden, "Masked hidden layer sizes, e.g. --hidden 512 512")
      ->expected(1, -1)
      ->capture_default_str();
  cmd->add_option("--likelihood", f->options.likelihood,
                  "gaussian: continuous x in [0,1], logit-transformed, Gaussian conditionals; "
                  "bernoulli: binary x (training binarizes dynamically)")
      ->check(CLI::IsMember({"gaussian", "bernoulli"}))
      ->capture_default_str();
  cmd->add_option("--logit-alpha", f->options.logit_alpha, "gaussian: y = logit(a + (1-2a) x)")
      ->capture_default_str();
  cmd->add_flag("--no-dequantize", f->no_dequantize,
                "gaussian: train on x as given (default: x = (255 x + u)/256, u ~ U(0,1))");
  cmd->add_option("--lr", f->options.learning_rate, "Adam learning rate")->capture_default_str();
  cmd->callback([f] {
    const auto t0 = std::chrono::steady_clock::now();
    f->options.dequantize = !f->no_dequantize;
    auto [run, train_set, test] = f->run.prepare();
    ProgressLine progress("train", f->run.quiet);
    auto log = train_density(train_set, test, run, f->options, progress.fn());
    progress.finish();

    ZooModule zoo = load_zoo_module(run.out_dir + "/density.zoo");
    MadeImpl& made = as_made(zoo);
    made.eval();
    std::string images;
    if ((made.options.channels() == 1 || made.options.channels() == 3) && pictures_possible()) {
      torch::manual_seed(run.seed);
      plot_images(run.out_dir + "/samples.png", made.sample(64).clamp(0, 1), 8);
      images = ", samples.png";
    }

    if (f->run.quiet) return;
    std::printf("nfk train density: %s (%s), %lld epochs", f->options.arch.c_str(),
                f->options.likelihood.c_str(), static_cast<long long>(run.epochs));
    if (!log["epochs"].empty()) {
      std::printf(", final loss %.2f nats", log["epochs"].back()["loss"].get<double>());
    }
    if (log.contains("test_log_likelihood")) {
      std::printf(", test log-likelihood %.2f nats", log["test_log_likelihood"].get<double>());
    }
    if (log.contains("test_bits_per_dim")) {
      std::printf(" (%.3f bits/dim)", log["test_bits_per_dim"].get<double>());
    }
    std::printf("; wrote %s/density.zoo%s in %.1f s\n", run.out_dir.c_str(), images.c_str(),
                seconds_since(t0));
  });
}

}  // namespace nfk::cli
