#include <cstdio>

#include "figures.h"
#include "nfk/zoo_generative.h"
#include "train_common.h"

namespace nfk::cli {

namespace {

// 64 samples, and 32 images (held-out if given) in rows of 8 above their reconstructions.
void write_pictures(VaeImpl& vae, const torch::Tensor& src, const TrainRun& run) {
  torch::manual_seed(run.seed);
  plot_images(run.out_dir + "/samples.png", vae.sample(64), 8);
  auto originals = src.slice(0, 0, std::min<int64_t>(32, src.size(0)));
  auto recon = vae.reconstruct(originals);
  std::vector<torch::Tensor> rows;
  for (int64_t r = 0; r < originals.size(0); r += 8) {
    const int64_t e = std::min<int64_t>(originals.size(0), r + 8);
    rows.push_back(originals.slice(0, r, e));
    rows.push_back(recon.slice(0, r, e));
  }
  plot_images(run.out_dir + "/reconstructions.png", torch::cat(rows), 8);
}

}  // namespace

void add_train_vae(CLI::App* train) {
  struct Flags {
    TrainFlags run;
    VaeTrainOptions options;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = train->add_subcommand(
      "vae",
      "Train a convolutional VAE by maximising the ELBO (Adam); writes DIR/vae.zoo, "
      "DIR/samples.png and DIR/reconstructions.png");
  f->run.add_to(cmd, /*default_epochs=*/5, /*default_batch=*/64);
  cmd->add_option("--latent-dim", f->options.latent_dim, "Dimension of the latent Gaussian")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--width", f->options.width, "Filters of the first conv (the second has 2x)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--likelihood", f->options.likelihood,
                  "p(x|z): bernoulli (logits) or gaussian (learned scalar variance)")
      ->check(CLI::IsMember({"bernoulli", "gaussian"}))
      ->capture_default_str();
  cmd->add_option("--lr", f->options.learning_rate, "Adam learning rate")->capture_default_str();
  cmd->add_option("--iwae-examples", f->options.iwae_examples,
                  "Test examples for the final IWAE log-likelihood estimate (0: skip)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--iwae-samples", f->options.iwae_samples, "Importance samples K per example")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([f] {
    const auto t0 = std::chrono::steady_clock::now();
    auto [run, train_set, test] = f->run.prepare();
    ProgressLine progress("train", f->run.quiet);
    auto log = train_vae(train_set, test, run, f->options, progress.fn());
    progress.finish();

    // Pictures: 64 samples, and 32 held-out (else training) images above their reconstructions.
    ZooModule zoo = load_zoo_module(run.out_dir + "/vae.zoo");
    VaeImpl& vae = as_vae(zoo);
    vae.eval();
    const bool pictures =
        (vae.options.channels() == 1 || vae.options.channels() == 3) && pictures_possible();
    if (pictures)
      write_pictures(
          vae, test.inputs.defined() && test.inputs.size(0) > 0 ? test.inputs : train_set.inputs,
          run);

    if (f->run.quiet) return;
    std::printf("nfk train vae: latent %lld, %s, %lld epochs",
                static_cast<long long>(f->options.latent_dim), f->options.likelihood.c_str(),
                static_cast<long long>(run.epochs));
    if (!log["epochs"].empty()) {
      std::printf(", final loss %.2f nats", log["epochs"].back()["loss"].get<double>());
    }
    if (log.contains("test_elbo"))
      std::printf(", test ELBO %.2f nats", log["test_elbo"].get<double>());
    if (log.contains("test_iwae")) {
      std::printf(", test log-likelihood (IWAE, K=%lld, %lld examples) %.2f nats",
                  static_cast<long long>(log["test_iwae_samples"].get<int64_t>()),
                  static_cast<long long>(log["test_iwae_examples"].get<int64_t>()),
                  log["test_iwae"].get<double>());
    }
    std::printf("; wrote %s/vae.zoo%s in %.1f s\n", run.out_dir.c_str(),
                pictures ? ", samples.png, reconstructions.png" : "", seconds_since(t0));
  });
}

}  // namespace nfk::cli
