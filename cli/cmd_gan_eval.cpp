// nfk monitor | invert: the GAN applications (AFV Fig. 3 monitoring, NFK App. C inversion).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "figures.h"
#include "nfk/output_files.h"
#include "nfk/data.h"
#include "nfk/features.h"
#include "nfk/gan_eval.h"

namespace nfk::cli {
namespace {

void add_monitor(CLI::App& app) {
  struct Flags {
    std::string snapshots, train, test, plot, device = "cpu";
    GanMonitorOptions monitor;
    bool json = false, quiet = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "monitor",
      "GAN training monitoring: Fisher similarity of real train and test images to "
      "each snapshot's generator (AFV); overfitting shows as a gap");
  cmd->add_option("--snapshots", f->snapshots,
                  "Folder of epoch_NNNN snapshots (`nfk train gan --snapshot-every E`, "
                  "OUT/snapshots)")
      ->required();
  cmd->add_option("--train", f->train, "Real images the GAN was trained on")->required();
  cmd->add_option("--test", f->test, "Held-out real images")->required();
  cmd->add_option("--samples", f->monitor.samples, "Generated samples per snapshot")
      ->capture_default_str();
  cmd->add_option("--scale", f->monitor.scale, "c in exp(-c * mean((u_real - z)^2 / I))")
      ->capture_default_str();
  cmd->add_option("--seed", f->monitor.seed, "Seed of the generated samples (same every epoch)")
      ->capture_default_str();
  cmd->add_option("--batch-size", f->monitor.batch_size, "Examples per batch")
      ->capture_default_str();
  cmd->add_option("--device", f->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--plot", f->plot,
                  "Also draw the train and test Fisher similarity by epoch (.png, .svg or .pdf; "
                  "matplotlib)");
  cmd->add_flag("--json", f->json, "Print one JSON object {points: [...]}");
  cmd->add_flag("--quiet", f->quiet, "No progress line");
  cmd->callback([f] {
    check_outputs({f->plot}, {f->train, f->test});
    check_figure("--plot", f->plot);
    f->monitor.device = parse_device(f->device);
    auto train = load_dataset(f->train).inputs, test = load_dataset(f->test).inputs;
    ProgressLine progress("monitor", f->quiet || f->json);
    auto points = monitor_gan_snapshots(f->snapshots, train, test, f->monitor, progress.fn());
    progress.finish();
    if (!f->plot.empty()) {
      nlohmann::json history = nlohmann::json::array();
      for (const auto& p : points) {
        history.push_back({{"epoch", p.epoch},
                           {"train_similarity", p.train_similarity},
                           {"test_similarity", p.test_similarity}});
      }
      plot_monitor(f->plot, history, "GAN monitoring: Fisher similarity");
    }
    if (f->json) {
      nlohmann::json out = {{"points", nlohmann::json::array()}};
      for (const auto& p : points) {
        out["points"].push_back({{"epoch", p.epoch},
                                 {"train_similarity", p.train_similarity},
                                 {"test_similarity", p.test_similarity},
                                 {"train_distance", p.train_distance},
                                 {"test_distance", p.test_distance}});
      }
      std::printf("%s\n", out.dump().c_str());
      return;
    }
    std::printf("epoch  train-sim  test-sim  train-dist  test-dist\n");
    for (const auto& p : points) {
      std::printf("%5lld  %9.4f  %8.4f  %10.4g  %9.4g\n", static_cast<long long>(p.epoch),
                  p.train_similarity, p.test_similarity, p.train_distance, p.test_distance);
    }
  });
}

void add_invert(CLI::App& app) {
  struct Flags {
    std::string projector, data, pca_data, grid;
    GanInversionOptions inversion;
    int64_t pca_rank = -1, count = 12;
    bool json = false, quiet = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "invert",
      "GAN inversion (NFK App. C): a linear map from NFK embeddings of generated "
      "images back to their latent codes reconstructs real images as G(h(e(x))); "
      "compared with PCA of the same dimension");
  cmd->add_option("--projector", f->projector, "Projector fitted on the GAN (kind gan)")
      ->required();
  cmd->add_option("--data", f->data, "Real images to reconstruct")->required();
  cmd->add_option("--pca-data", f->pca_data,
                  "Images the PCA baseline is fitted on (e.g. the train set)")
      ->required();
  cmd->add_option("--components", f->inversion.components,
                  "Leading NFK components used (default: all of the projector's rank)");
  cmd->add_option("--pca-rank", f->pca_rank, "PCA components (default: as many as NFK's)");
  cmd->add_option("--samples", f->inversion.samples, "Generated (h, x) pairs for the linear map")
      ->capture_default_str();
  cmd->add_option("--l2", f->inversion.l2, "Ridge penalty (relative to the mean eigenvalue)")
      ->capture_default_str();
  cmd->add_option("--seed", f->inversion.seed, "Seed of the generated pairs")
      ->capture_default_str();
  cmd->add_option("--batch-size", f->inversion.batch_size, "Examples per batch")
      ->capture_default_str();
  cmd->add_option("--grid", f->grid,
                  "A figure (.png, .svg or .pdf; matplotlib): rows of real images, NFK-inversion "
                  "reconstructions, PCA reconstructions");
  cmd->add_option("--count", f->count, "Images per row of --grid")->capture_default_str();
  cmd->add_flag("--json", f->json, "Print one JSON object");
  cmd->add_flag("--quiet", f->quiet, "No progress line");
  cmd->callback([f] {
    auto proj = load_projector(f->projector);
    check_outputs({f->grid}, {f->projector, f->data, f->pca_data, proj.model.model_path,
                              proj.model.generator_path});
    check_figure("--grid", f->grid);
    auto gan = load_projector_model(proj);
    TORCH_CHECK(!proj.model.generator_path.empty(), "nfk: the projector names no generator");
    auto generator = load_network(proj.model.generator_path);
    auto real = load_dataset(f->data).inputs;
    ProgressLine progress("invert", f->quiet || f->json);
    auto inv = fit_gan_inversion(proj, gan, *generator, f->inversion, progress.fn());
    auto e = transform(proj, gan, real, {f->inversion.batch_size, f->inversion.seed, nullptr,
                                         progress.fn()});
    progress.finish();
    auto nfk_rec = generate(*generator, inv.latents(e), f->inversion.batch_size);
    auto pca = fit_pca(load_dataset(f->pca_data).inputs,
                       f->pca_rank > 0 ? f->pca_rank : inv.weight.size(0));
    auto pca_rec = pca.reconstruct(real).clamp(0, 1);
    TORCH_CHECK(nfk_rec.sizes() == real.sizes(), "nfk: the generator makes ", nfk_rec.sizes(),
                " but the data are ", real.sizes());
    const double nfk_mse = (nfk_rec - real).square().mean().item<double>();
    const double pca_mse = (pca_rec - real).square().mean().item<double>();
    if (!f->grid.empty()) {
      const int64_t n = std::min(f->count, real.size(0));
      plot_images(f->grid,
                  torch::cat({real.slice(0, 0, n), nfk_rec.slice(0, 0, n), pca_rec.slice(0, 0, n)}),
                  n);
    }
    if (f->json) {
      nlohmann::json out = {{"nfk_mse", nfk_mse},
                            {"pca_mse", pca_mse},
                            {"latent_fit_r2", inv.fit_r2},
                            {"components", inv.weight.size(0)},
                            {"pca_rank", pca.components.size(1)},
                            {"n", real.size(0)}};
      std::printf("%s\n", out.dump().c_str());
    } else {
      std::printf(
          "GAN inversion from %lld-d NFK embeddings: latent R^2 %.3f on generated "
          "pairs; reconstruction MSE on %lld real images: NFK %.5f, PCA-%lld %.5f\n",
          static_cast<long long>(inv.weight.size(0)), inv.fit_r2,
          static_cast<long long>(real.size(0)), nfk_mse,
          static_cast<long long>(pca.components.size(1)), pca_mse);
    }
  });
}

}  // namespace

void add_gan_eval_commands(CLI::App& app) {
  add_monitor(app);
  add_invert(app);
}

}  // namespace nfk::cli
