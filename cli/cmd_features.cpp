// nfk features: the baseline representations (pixels, PCA-k, activations, full Fisher vectors),
// written like `nfk transform` writes NFK embeddings, so every representation goes through the
// same `nfk probe | knn | semisup`.
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "nfk/output_files.h"
#include "nfk/data.h"
#include "nfk/features.h"

namespace nfk::cli {

void add_features_command(CLI::App& app) {
  struct Flags {
    std::string type, fit_data, model, method = "features", projector, device = "cpu";
    std::vector<std::string> data, out;
    int64_t rank = 128, batch_size = 256;
    double memory_budget_gib = 8;
    bool quiet = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd =
      app.add_subcommand("features",
                         "Baseline representations for comparison with NFK embeddings: raw pixels, "
                         "PCA-k, a network's layer activations, or full Fisher vectors");
  cmd->add_option("--type", f->type,
                  "pixels | pca (fitted on --fit-data) | activations (method --method of "
                  "--model) | fisher-vectors (V_x under --projector's z and I)")
      ->check(CLI::IsMember({"pixels", "pca", "activations", "fisher-vectors"}))
      ->required();
  cmd->add_option("--data", f->data, "Data to represent (repeatable; pairs with --out)")
      ->required();
  cmd->add_option("--out", f->out, "Features [N, D] .npy for each --data, in order")->required();
  cmd->add_option("--fit-data", f->fit_data, "pca: the data the components are fitted on");
  cmd->add_option("--rank", f->rank, "pca: components kept")->capture_default_str();
  cmd->add_option("--model", f->model, "activations: network file (zoo archive or TorchScript)");
  cmd->add_option("--method", f->method,
                  "activations: method to call (zoo lenet5/dcgan-d: 'features' = penultimate "
                  "layer)")
      ->capture_default_str();
  cmd->add_option("--projector", f->projector, "fisher-vectors: projector from `nfk fit`");
  cmd->add_option("--memory-budget", f->memory_budget_gib,
                  "fisher-vectors: refuse outputs larger than this many GiB")
      ->check(finite_in(0, 1 << 14))
      ->capture_default_str();
  cmd->add_option("--batch-size", f->batch_size, "Examples per batch")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--device", f->device, "activations: cpu or cuda")->capture_default_str();
  cmd->add_flag("--quiet", f->quiet, "No progress line or summary");
  cmd->callback([f] {
    TORCH_CHECK(f->data.size() == f->out.size(), "nfk: give one --out per --data (", f->data.size(),
                " --data, ", f->out.size(), " --out)");
    std::vector<std::string> inputs = f->data;
    inputs.insert(inputs.end(), {f->fit_data, f->model, f->projector});
    check_outputs(f->out, inputs);
    const auto t0 = std::chrono::steady_clock::now();
    // Each type's representation of one input set.
    std::function<torch::Tensor(const torch::Tensor&)> represent;
    if (f->type == "pixels") {
      represent = pixel_features;
    } else if (f->type == "pca") {
      TORCH_CHECK(!f->fit_data.empty(), "nfk: --type pca needs --fit-data");
      auto pca = std::make_shared<Pca>(fit_pca(load_dataset(f->fit_data).inputs, f->rank));
      represent = [pca](const torch::Tensor& x) { return pca->project(x); };
    } else if (f->type == "activations") {
      TORCH_CHECK(!f->model.empty(), "nfk: --type activations needs --model");
      std::shared_ptr<Network> net = load_network(f->model);
      const auto device = parse_device(f->device);
      represent = [f, net, device](const torch::Tensor& x) {
        return network_activations(*net, x, f->method, f->batch_size, device);
      };
    } else {
      TORCH_CHECK(!f->projector.empty(), "nfk: --type fisher-vectors needs --projector");
      auto proj = std::make_shared<Projector>(load_projector(f->projector));
      auto model = std::make_shared<ScoreModel>(load_projector_model(*proj));
      auto progress = std::make_shared<ProgressLine>("features", f->quiet);
      represent = [f, proj, model, progress](const torch::Tensor& x) {
        auto v = full_fisher_vectors(*proj, *model, x, f->batch_size,
                                     static_cast<int64_t>(f->memory_budget_gib * (1LL << 30)),
                                     progress->fn());
        progress->finish();
        return v;
      };
    }
    OutputGroup outputs;  // every --out or none
    for (size_t i = 0; i < f->data.size(); ++i) {
      auto features = represent(load_dataset(f->data[i]).inputs);
      write_npy(f->out[i], features);
      if (!f->quiet) {
        std::printf("nfk features: %s of %s -> %s [%lld, %lld] (%.1f s)\n", f->type.c_str(),
                    f->data[i].c_str(), f->out[i].c_str(), static_cast<long long>(features.size(0)),
                    static_cast<long long>(features.size(1)), seconds_since(t0));
      }
    }
    outputs.commit();
  });
}

}  // namespace nfk::cli
