// Density-model (MADE) training: maximum likelihood with Adam on the shared loop.
#include <cmath>
#include <filesystem>

#include "nfk/output_files.h"
#include "nfk/train.h"
#include "nfk/trainer.h"
#include "nfk/zoo_generative.h"

namespace nfk {
namespace {

constexpr uint64_t kTestNoiseStream = 2;  // epoch_generator stream of the (fixed) test noise

}  // namespace

torch::Tensor density_preprocess(const torch::Tensor& x, const DensityTrainOptions& o,
                                 at::Generator gen) {
  if (o.likelihood == "bernoulli") {
    return at::bernoulli(x.to(torch::kCPU, torch::kFloat32).clamp(0, 1), gen).to(x.options());
  }
  if (!o.dequantize) return x;
  auto u = at::rand(x.sizes(), gen, torch::dtype(torch::kFloat32)).to(x.options());
  return (x * 255 + u) / 256;
}

std::pair<double, double> density_test_metrics(const ZooModule& model, const torch::Tensor& x,
                                               bool dequantized, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  model.module->eval();
  const auto param = model.module->parameters().front();
  const int64_t n = x.size(0), d = x.numel() / std::max<int64_t>(1, n);
  double sum = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    sum += model.call("log_prob", x.slice(0, start, end).to(param.options())).sum().item<double>();
  }
  const double ll = sum / n;
  const double bpd = (-ll / d + (dequantized ? std::log(256.0) : 0.0)) / std::log(2.0);
  return {ll, bpd};
}

nlohmann::json train_density(const Dataset& train, const Dataset& test, const TrainRun& run,
                             const DensityTrainOptions& o, const ProgressFn& progress,
                             const TrainHooks& hooks) {
  TORCH_CHECK(o.arch == "made", "nfk: unknown density architecture `", o.arch,
              "` (available: made)");
  TORCH_CHECK(o.likelihood == "gaussian" || o.likelihood == "bernoulli",
              "nfk: density likelihood must be gaussian or bernoulli, got `", o.likelihood, "`");
  TORCH_CHECK(train.inputs.defined() && train.inputs.dim() >= 2 && train.inputs.size(0) > 0,
              "nfk: density training expects inputs [N, ...] with N > 0");
  TORCH_CHECK(run.epochs >= 0 && run.batch_size > 0,
              "nfk: epochs must be >= 0 (0: untrained) and batch size positive");
  const auto& xs = train.inputs;
  TORCH_CHECK(xs.min().item<double>() >= 0 && xs.max().item<double>() <= 1,
              "nfk: the density model expects inputs in [0, 1] (got values in [",
              xs.min().item<double>(), ", ", xs.max().item<double>(), "])");
  const bool has_test = test.inputs.defined() && test.inputs.size(0) > 0;
  if (has_test) {
    TORCH_CHECK(test.inputs.sizes().slice(1) == xs.sizes().slice(1), "nfk: test inputs ",
                test.inputs.sizes(), " do not match the training inputs ", xs.sizes());
  }
  // Images [N, C, S, S] keep their shape for sample(n); anything else is a flat vector.
  int64_t channels = xs[0].numel(), image_size = 1;
  if (xs.dim() == 4 && xs.size(2) == xs.size(3)) {
    channels = xs.size(1);
    image_size = xs.size(2);
  }
  const bool dequantized = o.likelihood == "gaussian" && o.dequantize;
  const bool report_bpd = dequantized || o.likelihood == "bernoulli";

  torch::AutoGradMode grad_on(true);  // even if the caller holds a NoGradGuard
  torch::manual_seed(run.seed);
  ZooModule net = make_zoo_module(o.arch, {{"channels", channels},
                                           {"image_size", image_size},
                                           {"hidden", o.hidden},
                                           {"likelihood", o.likelihood},
                                           {"logit_alpha", o.logit_alpha}});
  net.module->to(run.device);
  torch::optim::Adam opt(net.module->parameters(), torch::optim::AdamOptions(o.learning_rate));

  // Test data with fixed noise (the same for every epoch, so the curve compares models).
  torch::Tensor test_x;
  if (has_test)
    test_x = density_preprocess(test.inputs, o, epoch_generator(run.seed, kTestNoiseStream, 0));
  auto add_test_metrics = [&](nlohmann::json& into) {
    auto [ll, bpd] = density_test_metrics(net, test_x, dequantized);
    into["test_log_likelihood"] = ll;
    if (report_bpd) into["test_bits_per_dim"] = bpd;
  };

  TrainLoopOptions loop;
  loop.run = run;
  loop.batch_to_device = false;  // noise is added on the CPU, from the epoch's generator
  TrainHooks all = hooks;
  all.epoch_begin.insert(all.epoch_begin.begin(), [&](Trainer&, int64_t) { net.module->train(); });
  if (has_test) {
    all.epoch_end.insert(all.epoch_end.begin(),
                         {"test_metrics", [&](Trainer&, int64_t, nlohmann::json& entry) {
                            add_test_metrics(entry);
                          }});
  }
  Trainer trainer(loop, all);
  trainer.add_module("density", &net);
  trainer.add_optimizer("adam", &opt, &net);
  trainer.log() = {{"family", "density"},
                   {"arch", o.arch},
                   {"options", net.options},
                   {"dequantize", dequantized},
                   {"epochs", nlohmann::json::array()}};
  trainer.resume();
  auto step = [&](Trainer& t, const Batch& b) {
    auto x = density_preprocess(b.inputs, o, b.generator).to(run.device);
    auto loss = -net.call("log_prob", x).mean();
    t.optimize("adam", loss, b);
    return StepMetrics{{"loss", loss.item<double>()}};
  };
  nlohmann::json log = trainer.run(train, step, progress);
  net.module->eval();
  if (has_test) add_test_metrics(log);
  std::filesystem::create_directories(run.out_dir);
  save_zoo_module(run.out_dir + "/density.zoo", net);
  write_file_atomic(run.out_dir + "/train_log.json", log.dump(2) + "\n");
  return log;
}

}  // namespace nfk
