#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>

#include "nfk/fisher.h"
#include "models/zoo_options.h"
#include "nfk/gan_eval.h"
#include "nfk/zoo.h"

namespace nfk {

FisherSimilarity gan_training_fisher_similarity(const ZooModule& discriminator,
                                                const ZooModule& generator,
                                                const torch::Tensor& held_out, int64_t epochs_done,
                                                const GanTrainingMonitorOptions& o) {
  TORCH_CHECK(held_out.defined() && held_out.size(0) > 0,
              "nfk: GAN monitoring needs held-out data");
  TORCH_CHECK(epochs_done > 0, "nfk: GAN monitoring runs after an epoch, got ", epochs_done);
  ModelOptions mo;
  mo.model_path = "discriminator (training)";
  mo.latent_dim = zoo_option<int64_t>(generator.options, "latent_dim", 0);
  mo.device = discriminator.module->parameters().front().device();
  ScoreModel model(ModelKind::kGan, wrap_zoo_module(discriminator), wrap_zoo_module(generator), mo);
  const int64_t m = std::min(o.samples, held_out.size(0));
  return fisher_similarity(model, held_out.slice(0, 0, m), m,
                           o.seed + 7919 * static_cast<uint64_t>(epochs_done - 1), o.scale);
}

std::vector<GanMonitorPoint> monitor_gan_snapshots(const std::string& dir,
                                                   const torch::Tensor& train,
                                                   const torch::Tensor& test,
                                                   const GanMonitorOptions& o,
                                                   const ProgressFn& progress) {
  namespace fs = std::filesystem;
  TORCH_CHECK(fs::is_directory(dir), "nfk: ", dir,
              ": no such snapshot folder (train with "
              "`nfk train gan --snapshot-every E`)");
  const std::regex name("epoch_([0-9]+)");
  std::vector<std::pair<int64_t, std::string>> snapshots;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string base = entry.path().filename().string();
    if (entry.is_directory() && std::regex_match(base, m, name)) {
      snapshots.push_back({std::stoll(m[1].str()), entry.path().string()});
    }
  }
  TORCH_CHECK(!snapshots.empty(), "nfk: ", dir, ": no epoch_NNNN snapshots");
  std::sort(snapshots.begin(), snapshots.end());
  std::vector<GanMonitorPoint> points;
  for (size_t i = 0; i < snapshots.size(); ++i) {
    const auto& [epoch, path] = snapshots[i];
    ModelOptions mo;
    mo.model_path = path + "/discriminator.zoo";
    mo.generator_path = path + "/generator.zoo";
    mo.latent_dim =
        zoo_option<int64_t>(load_zoo_module(mo.generator_path).options, "latent_dim", 0);
    mo.device = o.device;
    auto model = load_score_model(ModelKind::kGan, mo);
    GanMonitorPoint p;
    p.epoch = epoch;
    const auto generated =
        generated_fisher_stats(model, o.samples, o.seed, /*floor=*/1e-3, o.batch_size);
    auto tr = fisher_similarity(model, generated, train, o.scale, o.batch_size);
    auto te = fisher_similarity(model, generated, test, o.scale, o.batch_size);
    p.train_similarity = tr.similarity;
    p.train_distance = tr.distance;
    p.test_similarity = te.similarity;
    p.test_distance = te.distance;
    points.push_back(p);
    if (progress) progress("snapshots", static_cast<int64_t>(i + 1), snapshots.size());
  }
  return points;
}

}  // namespace nfk
