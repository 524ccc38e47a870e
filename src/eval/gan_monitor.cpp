#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>

#include "nfk/fisher.h"
#include "models/zoo_options.h"
#include "nfk/gan_eval.h"
#include "nfk/image.h"
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
    mo.model_path = path + "/discriminator.pt";
    mo.generator_path = path + "/generator.pt";
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

torch::Tensor gan_monitor_plot(const std::vector<GanMonitorPoint>& points,
                               const std::string& title) {
  TORCH_CHECK(!points.empty(), "nfk: nothing to plot");
  using Color = Canvas::Color;
  const Color black{0, 0, 0}, grid{221, 221, 221}, blue{76, 114, 176}, orange{221, 85, 0};
  const int64_t w = 640, h = 400, left = 60, right = 20, top = 40, bottom = 50;
  const int64_t pw = w - left - right, ph = h - top - bottom;
  const double x_lo = points.front().epoch,
               x_hi = std::max(points.back().epoch, points.front().epoch + 1L);
  auto px = [&](double e) { return std::lround(left + pw * (e - x_lo) / (x_hi - x_lo)); };
  auto py = [&](double s) {
    return std::lround(top + ph * (1 - (std::isfinite(s) ? std::clamp(s, 0.0, 1.0) : 0.0)));
  };
  Canvas cv(w, h);
  const int64_t th = Canvas::text_height();
  cv.text((w - Canvas::text_width(title, 2)) / 2, 20 - Canvas::text_height(2) / 2, title, black, 2);
  for (int q = 0; q <= 4; ++q) {
    const int64_t y = py(q / 4.0);
    cv.line(left, y, left + pw, y, grid);
    const std::string label = q == 0 ? "0" : q == 4 ? "1" : "0." + std::to_string(q * 25);
    cv.text(left - 7 - Canvas::text_width(label), y - th / 2, label, black);
  }
  const int64_t step = std::max<int64_t>(1, (points.size() + 9) / 10);
  for (size_t i = 0; i < points.size(); i += step) {
    const int64_t x = px(points[i].epoch);
    const std::string label = std::to_string(points[i].epoch);
    cv.line(x, top + ph + 1, x, top + ph + 4, black);
    cv.text(x - Canvas::text_width(label) / 2, top + ph + 7, label, black);
  }
  for (int series = 0; series < 2; ++series) {
    const Color c = series == 0 ? blue : orange;
    auto value = [&](const GanMonitorPoint& p) {
      return series == 0 ? p.train_similarity : p.test_similarity;
    };
    for (size_t i = 0; i < points.size(); ++i) {
      const int64_t x = px(points[i].epoch), y = py(value(points[i]));
      cv.fill_rect(x - 2, y - 2, 5, 5, c);
      if (i > 0) cv.line(px(points[i - 1].epoch), py(value(points[i - 1])), x, y, c, 2);
    }
  }
  cv.stroke_rect(left, top, pw + 1, ph + 1, black);
  cv.fill_rect(left + 10, top + 10, 12, 4, blue);
  cv.text(left + 28, top + 12 - th / 2, "train (real) vs generated", blue);
  cv.fill_rect(left + 10, top + 26, 12, 4, orange);
  cv.text(left + 28, top + 28 - th / 2, "test (real) vs generated", orange);
  const std::string xlabel = "epoch", ylabel = "Fisher similarity";
  cv.text(left + (pw - Canvas::text_width(xlabel)) / 2, h - 15 - th / 2, xlabel, black);
  cv.text(16 - th / 2, top + (ph - Canvas::text_width(ylabel)) / 2, ylabel, black, 1,
          Canvas::TextDirection::kUp);
  return cv.to_tensor();
}

}  // namespace nfk
