// nfk probe | knn | semisup: what a representation is worth, on any features (or raw data).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "figures.h"
#include "nfk/data.h"
#include "nfk/knn.h"
#include "nfk/output_files.h"
#include "nfk/probe.h"
#include "nfk/semi_supervised.h"

namespace nfk::cli {
namespace {

const char* kFeaturesHelp =
    " (.npy [N, D] from `nfk transform` / `nfk features`, or any data source: then its pixels)";

// Features [N, D] from an .npy file or a data source, with labels from `labels_source`.
struct LabelledFeatures {
  torch::Tensor features, labels;
};

LabelledFeatures load_labelled(const std::string& features, const std::string& labels) {
  LabelledFeatures lf;
  auto x = load_dataset(features).inputs;
  lf.features = x.reshape({x.size(0), -1});
  lf.labels = load_labels(labels);
  TORCH_CHECK(lf.labels.size(0) == lf.features.size(0), "nfk: ", features, " has ",
              lf.features.size(0), " rows but ", labels, " has ", lf.labels.size(0), " labels");
  return lf;
}

struct SplitFlags {
  std::string train, train_labels, test, test_labels;
  void add_to(CLI::App* cmd) {
    cmd->add_option("--train", train, std::string("Train features") + kFeaturesHelp)->required();
    cmd->add_option("--train-labels", train_labels,
                    "Train labels: integer .npy/IDX [N], or a named set (its labels)")
        ->required();
    cmd->add_option("--test", test, "Test features (same forms as --train)")->required();
    cmd->add_option("--test-labels", test_labels, "Test labels (same forms as --train-labels)")
        ->required();
  }
};

// "auto" → cross-validated over the default grid; else a number ≥ 0.
void set_l2(const std::string& text, ProbeOptions* o) {
  if (text == "auto") {
    o->l2_grid = default_l2_grid();
    return;
  }
  std::size_t used = 0;
  double v = -1;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
  }
  TORCH_CHECK(used == text.size() && v >= 0, "nfk: --l2 must be 'auto' or a number >= 0, got '",
              text, "'");
  o->l2 = v;
}

void add_probe_flags(CLI::App* cmd, std::string* l2, ProbeOptions* o) {
  cmd->add_option("--l2", *l2,
                  "L2 penalty on the weights (objective: mean cross-entropy + l2/2 |W|^2), or "
                  "'auto': 3-fold cross-validation over 1e-6..1 on the train set")
      ->capture_default_str();
  cmd->add_option("--max-iter", o->max_iter, "L-BFGS iterations at most")->capture_default_str();
  cmd->add_option("--tolerance", o->tolerance, "Stop when the gradient's max-norm is below")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the cross-validation folds")->capture_default_str();
}

void add_probe(CLI::App& app) {
  struct Flags {
    SplitFlags split;
    ProbeOptions probe;
    std::string l2 = "auto";
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "probe",
      "Linear probe: multinomial logistic regression (L2, L-BFGS to convergence) on "
      "standardized features; prints train and test accuracy");
  f->split.add_to(cmd);
  add_probe_flags(cmd, &f->l2, &f->probe);
  cmd->add_flag("--json", f->json, "Print one JSON object");
  cmd->callback([f] {
    const auto t0 = std::chrono::steady_clock::now();
    set_l2(f->l2, &f->probe);
    auto train = load_labelled(f->split.train, f->split.train_labels);
    auto test = load_labelled(f->split.test, f->split.test_labels);
    auto p = fit_linear_probe(train.features, train.labels, f->probe);
    const double train_acc = accuracy(p.predict(train.features), train.labels);
    const double test_acc = accuracy(p.predict(test.features), test.labels);
    if (f->json) {
      nlohmann::json out = {{"train_accuracy", train_acc},
                            {"test_accuracy", test_acc},
                            {"l2", p.l2},
                            {"loss", p.loss},
                            {"grad_norm", p.grad_norm},
                            {"iterations", p.iterations},
                            {"n_train", train.features.size(0)},
                            {"n_test", test.features.size(0)},
                            {"dim", train.features.size(1)},
                            {"seconds", seconds_since(t0)}};
      std::printf("%s\n", out.dump().c_str());
    } else {
      std::printf(
          "linear probe on %lld-d features: train %.2f%%, test %.2f%% (l2 %g, %lld "
          "evaluations, |grad| %.1e, %.1f s)\n",
          static_cast<long long>(train.features.size(1)), 100 * train_acc, 100 * test_acc, p.l2,
          static_cast<long long>(p.iterations), p.grad_norm, seconds_since(t0));
    }
  });
}

// The first `rows` queries, each followed by its k nearest train images, nearest first:
// [rows·(1 + k), C, H, W], drawn 1 + k per row.
torch::Tensor neighbour_rows(const torch::Tensor& query_images, const torch::Tensor& train_images,
                             const torch::Tensor& neighbors, int64_t rows) {
  TORCH_CHECK(query_images.dim() == 4 && train_images.dim() == 4 &&
                  query_images.sizes().slice(1) == train_images.sizes().slice(1),
              "nfk: --grid needs --train-images and --test-images of images of one shape "
              "[N, C, H, W], got ", train_images.sizes(), " and ", query_images.sizes());
  rows = std::min(rows, query_images.size(0));
  TORCH_CHECK(rows > 0, "nfk: --grid needs at least one query row");
  std::vector<torch::Tensor> tiles;
  for (int64_t i = 0; i < rows; ++i) {
    tiles.push_back(query_images.slice(0, i, i + 1).to(torch::kFloat32));
    tiles.push_back(
        train_images.index_select(0, neighbors[i].to(torch::kLong)).to(torch::kFloat32));
  }
  return torch::cat(tiles);
}

void add_knn(CLI::App& app) {
  struct Flags {
    SplitFlags split;
    KnnOptions knn;
    std::string metric = "cosine", grid, train_images, test_images;
    int64_t queries = 10;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd =
      app.add_subcommand("knn",
                         "k-nearest-neighbour classification (majority vote of the k nearest train "
                         "examples); optionally an image grid of each query's neighbours");
  f->split.add_to(cmd);
  cmd->add_option("--k", f->knn.k, "Neighbours that vote")->capture_default_str();
  cmd->add_option("--metric", f->metric, "cosine or euclidean")
      ->check(CLI::IsMember(nfk::knn_metric_names().all()))
      ->capture_default_str();
  cmd->add_option("--grid", f->grid,
                  "A figure (.png, .svg or .pdf; matplotlib): one row per query (first --queries test examples): the query, then its "
                  "k nearest train images, nearest first");
  cmd->add_option("--train-images", f->train_images, "Images of the train rows (for --grid)");
  cmd->add_option("--test-images", f->test_images, "Images of the test rows (for --grid)");
  cmd->add_option("--queries", f->queries, "Rows of --grid")->capture_default_str();
  cmd->add_flag("--json", f->json, "Print one JSON object");
  cmd->callback([f] {
    f->knn.metric = parse_knn_metric(f->metric);
    TORCH_CHECK(f->grid.empty() || (!f->train_images.empty() && !f->test_images.empty()),
                "nfk: --grid needs --train-images and --test-images");
    check_outputs({f->grid}, {f->split.train, f->split.test, f->split.train_labels,
                              f->split.test_labels, f->train_images, f->test_images});
    check_figure("--grid", f->grid);
    auto train = load_labelled(f->split.train, f->split.train_labels);
    auto test = load_labelled(f->split.test, f->split.test_labels);
    auto r = knn_classify(train.features, train.labels, test.features, f->knn);
    const double acc = accuracy(r.predicted, test.labels);
    if (!f->grid.empty()) {
      auto train_img = load_dataset(f->train_images).inputs;
      auto test_img = load_dataset(f->test_images).inputs;
      TORCH_CHECK(
          train_img.size(0) == train.features.size(0) && test_img.size(0) == test.features.size(0),
          "nfk: --train-images/--test-images must have as many rows as the features");
      plot_images(f->grid, neighbour_rows(test_img, train_img, r.neighbors, f->queries),
                  1 + r.neighbors.size(1));
    }
    if (f->json) {
      nlohmann::json out = {{"test_accuracy", acc},
                            {"k", f->knn.k},
                            {"metric", f->metric},
                            {"n_train", train.features.size(0)},
                            {"n_test", test.features.size(0)}};
      std::printf("%s\n", out.dump().c_str());
    } else {
      std::printf("%lld-NN (%s) on %lld-d features: test %.2f%%\n",
                  static_cast<long long>(f->knn.k), f->metric.c_str(),
                  static_cast<long long>(train.features.size(1)), 100 * acc);
    }
  });
}

void add_semisup(CLI::App& app) {
  struct Flags {
    SplitFlags split;
    SemiSupervisedOptions semi;
    std::string l2 = "auto";
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "semisup",
      "Semi-supervised protocol: a linear probe on n labels per class (drawn with "
      "several seeds) on features learned without labels; mean +- std test accuracy");
  f->split.add_to(cmd);
  cmd->add_option("--labels-per-class", f->semi.labels_per_class,
                  "Labelled examples per class (several values: one row each)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--seeds", f->semi.seeds, "Draws of the labelled examples per row")
      ->capture_default_str();
  add_probe_flags(cmd, &f->l2, &f->semi.probe);
  cmd->add_flag("--json", f->json, "Print one JSON object {rows: [...]}");
  cmd->callback([f] {
    set_l2(f->l2, &f->semi.probe);
    f->semi.seed = f->semi.probe.seed;
    auto train = load_labelled(f->split.train, f->split.train_labels);
    auto test = load_labelled(f->split.test, f->split.test_labels);
    auto rows = semi_supervised(train.features, train.labels, test.features, test.labels, f->semi);
    if (f->json) {
      nlohmann::json out = {{"rows", nlohmann::json::array()}};
      for (const auto& r : rows) {
        out["rows"].push_back({{"labels_per_class", r.labels_per_class},
                               {"mean", r.mean},
                               {"std", r.std},
                               {"accuracies", r.accuracies}});
      }
      std::printf("%s\n", out.dump().c_str());
    } else {
      for (const auto& r : rows) {
        std::printf("%4lld labels/class: test %.2f%% +- %.2f (%zu seeds)\n",
                    static_cast<long long>(r.labels_per_class), 100 * r.mean, 100 * r.std,
                    r.accuracies.size());
      }
    }
  });
}

}  // namespace

void add_probe_commands(CLI::App& app) {
  add_probe(app);
  add_knn(app);
  add_semisup(app);
}

}  // namespace nfk::cli
