// VAE training: −ELBO with Adam on the shared loop (seeded, checkpointed, resumable).
#include <filesystem>

#include "nfk/output_files.h"
#include "nfk/train.h"
#include "nfk/trainer.h"
#include "nfk/zoo_generative.h"

namespace nfk {
namespace {

// Noise streams of epoch_generator (stream 0 shuffles the training set).
constexpr uint64_t kTrainNoiseStream = 1, kTestNoiseStream = 2, kIwaeStream = 3;

// Mean ELBO over `x` with the global RNG seeded to `seed` (the same noise every call).
double mean_elbo(VaeImpl& vae, const torch::Tensor& x, uint64_t seed, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  vae.eval();
  torch::manual_seed(seed);
  const auto& w = vae.project->weight;
  const int64_t n = x.size(0);
  double sum = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    sum += vae.elbo(x.slice(0, start, end).to(w.options())).sum().item<double>();
  }
  return sum / n;
}

}  // namespace

nlohmann::json train_vae(const Dataset& train, const Dataset& test, const TrainRun& run,
                         const VaeTrainOptions& o, const ProgressFn& progress,
                         const TrainHooks& hooks) {
  TORCH_CHECK(train.inputs.defined() && train.inputs.dim() == 4 &&
                  train.inputs.size(2) == train.inputs.size(3) && train.inputs.size(2) % 4 == 0,
              "nfk: VAE training expects square images [N, C, S, S] with S divisible by 4, got ",
              train.inputs.defined() ? train.inputs.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(train.inputs.size(0) > 0, "nfk: VAE training needs at least one example");
  TORCH_CHECK(run.epochs >= 0 && run.batch_size > 0,
              "nfk: epochs must be >= 0 (0: untrained) and batch size positive");
  const bool has_test = test.inputs.defined() && test.inputs.size(0) > 0;
  if (has_test) {
    TORCH_CHECK(test.inputs.sizes().slice(1) == train.inputs.sizes().slice(1), "nfk: test images ",
                test.inputs.sizes(), " do not match the training images ", train.inputs.sizes());
  }
  torch::AutoGradMode grad_on(true);  // even if the caller holds a NoGradGuard
  torch::manual_seed(run.seed);
  ZooModule net = make_zoo_module("vae", {{"channels", train.inputs.size(1)},
                                          {"image_size", train.inputs.size(2)},
                                          {"latent_dim", o.latent_dim},
                                          {"width", o.width},
                                          {"likelihood", o.likelihood}});
  net.module->to(run.device);
  VaeImpl& vae = as_vae(net);
  torch::optim::Adam opt(net.module->parameters(), torch::optim::AdamOptions(o.learning_rate));

  const uint64_t test_seed = epoch_generator(run.seed, kTestNoiseStream, 0).current_seed();
  TrainLoopOptions loop;
  loop.run = run;
  TrainHooks all = hooks;
  all.epoch_begin.insert(all.epoch_begin.begin(), [&](Trainer&, int64_t epoch) {
    vae.train();
    // The reparameterisation noise uses the global RNG (randn_like inside elbo): seed it per epoch.
    torch::manual_seed(epoch_generator(run.seed, kTrainNoiseStream, epoch).current_seed());
  });
  if (has_test) {
    all.epoch_end.insert(all.epoch_end.begin(),
                         {"test_elbo", [&](Trainer&, int64_t, nlohmann::json& entry) {
                            entry["test_elbo"] = mean_elbo(vae, test.inputs, test_seed, 500);
                          }});
  }
  Trainer trainer(loop, all);
  trainer.add_module("vae", &net);
  trainer.add_optimizer("adam", &opt, &net);
  trainer.log() = {{"family", "vae"},
                   {"arch", "vae"},
                   {"options", net.options},
                   {"epochs", nlohmann::json::array()}};
  trainer.resume();
  auto step = [&](Trainer& t, const Batch& b) {
    auto loss = -vae.elbo(b.inputs).mean();
    t.optimize("adam", loss, b);
    return StepMetrics{{"loss", loss.item<double>()}};
  };
  nlohmann::json log = trainer.run(train, step, progress);
  vae.eval();
  if (has_test) {
    const auto& last = log["epochs"];
    log["test_elbo"] = !last.empty() && last.back().contains("test_elbo")
                           ? last.back()["test_elbo"].get<double>()
                           : mean_elbo(vae, test.inputs, test_seed, 500);
    const int64_t m = std::min(o.iwae_examples, test.inputs.size(0));
    if (m > 0 && o.iwae_samples > 0) {
      auto iwae = vae_importance_log_likelihood(net, test.inputs.slice(0, 0, m), o.iwae_samples,
                                                epoch_generator(run.seed, kIwaeStream, 0));
      log["test_iwae"] = iwae.mean().item<double>();
      log["test_iwae_examples"] = m;
      log["test_iwae_samples"] = o.iwae_samples;
    }
  }
  std::filesystem::create_directories(run.out_dir);
  save_zoo_module(run.out_dir + "/vae.zoo", net);
  write_file_atomic(run.out_dir + "/train_log.json", log.dump(2) + "\n");
  return log;
}

}  // namespace nfk
