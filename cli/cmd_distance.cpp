#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "figures.h"
#include "nfk/data.h"
#include "nfk/distance.h"
#include "nfk/output_files.h"

namespace nfk::cli {
namespace {

struct Flags {
  std::string projector, a, b, model, data, labels, heatmap, out;
  int64_t batch_size = 256;
  bool pairwise = false, json = false, quiet = false;
};

void set_distance(const Flags& f, Projector& proj, ScoreModel& model, ProgressLine& progress) {
  auto a = load_dataset(f.a), b = load_dataset(f.b);
  if (f.pairwise) {
    auto d =
        pairwise_fisher_distances(proj, model, a.inputs, b.inputs, f.batch_size, progress.fn());
    progress.finish();
    write_npy(f.out, d);
    if (!f.quiet) {
      std::printf("Fisher distances %s x %s -> %s [%lld, %lld]; mean %.6g, min %.6g\n", f.a.c_str(),
                  f.b.c_str(), f.out.c_str(), static_cast<long long>(d.size(0)),
                  static_cast<long long>(d.size(1)), d.mean().item<double>(),
                  d.min().item<double>());
    }
    return;
  }
  auto d = fisher_set_distance(proj, model, a.inputs, b.inputs, f.batch_size, progress.fn());
  progress.finish();
  if (f.json) {
    nlohmann::json out = {{"fisher", d.fisher},
                          {"embedding", d.embedding},
                          {"n_a", a.inputs.size(0)},
                          {"n_b", b.inputs.size(0)}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("Fisher distance %s <-> %s: %.6g (rank-%lld NFK embedding: %.6g)\n", f.a.c_str(),
                f.b.c_str(), d.fisher, static_cast<long long>(proj.rank()), d.embedding);
  }
}

void class_distances(const Flags& f, Projector& proj, ScoreModel& model, ProgressLine& progress) {
  auto ds = load_dataset(f.data);
  auto labels = f.labels.empty() ? ds.labels : load_labels(f.labels);
  TORCH_CHECK(labels.defined(), "nfk: ", f.data, " has no labels: give --labels");
  // A label with no example would leave NaN rows in the matrix: refused before the work.
  if (labels.numel() > 0 && labels.min().item<int64_t>() >= 0) {
    auto counts = torch::bincount(labels.to(torch::kLong).cpu());
    auto absent = (counts == 0).nonzero().flatten();
    TORCH_CHECK(absent.numel() == 0, "nfk: ", f.labels.empty() ? f.data : f.labels, ": label ",
                absent[0].item<int64_t>(), " has no example (labels run 0..", counts.size(0) - 1,
                "); class distances need an example of every label");
  }
  auto d = class_distance_matrix(proj, model, ds.inputs, labels, f.batch_size, progress.fn());
  progress.finish();
  {
    OutputGroup outputs;  // both or neither
    if (!f.out.empty()) write_npy(f.out, d);
    if (!f.heatmap.empty()) plot_class_distances(f.heatmap, d);
    outputs.commit();
  }
  if (f.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (int64_t i = 0; i < d.size(0); ++i) {
      std::vector<double> row(d[i].data_ptr<double>(), d[i].data_ptr<double>() + d.size(1));
      rows.push_back(row);
    }
    std::printf("%s\n", nlohmann::json({{"class_distances", rows}}).dump().c_str());
    return;
  }
  std::printf("Fisher distances between class means of %s (row/column = class):\n", f.data.c_str());
  for (int64_t i = 0; i < d.size(0); ++i) {
    std::printf("%3lld", static_cast<long long>(i));
    for (int64_t j = 0; j < d.size(1); ++j) std::printf(" %8.4g", d[i][j].item<double>());
    std::printf("\n");
  }
}

}  // namespace

void add_distance_command(CLI::App& app) {
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "distance",
      "Fisher distances (SPEC 1): between two sets ||mean_A V - mean_B V|| (AFV, --a/--b), "
      "between examples ||V_a - V_b|| (--pairwise), or between the classes of one labelled set "
      "(--data, with a heat-map)");
  cmd->add_option("--projector", f->projector, "Projector file from `nfk fit` (its z, I, model)")
      ->required();
  cmd->add_option("--a", f->a, "First set (same forms as `nfk fit --data`)");
  cmd->add_option("--b", f->b, "Second set");
  cmd->add_flag("--pairwise", f->pairwise,
                "With --a/--b: every example-to-example distance [N_A, N_B] to --out");
  cmd->add_option("--data", f->data, "A labelled set: distances between its class means");
  cmd->add_option("--labels", f->labels, "Labels of --data if it carries none (.npy/IDX/set)");
  cmd->add_option("--heatmap", f->heatmap,
                  "With --data: the class distance matrix as a heat map (.png, .svg or .pdf, "
                  "matplotlib)");
  cmd->add_option("--out", f->out, "Distance matrix .npy (--pairwise: required; --data: optional)");
  cmd->add_option("--model", f->model, "Model file if it moved since the fit (hash checked)");
  cmd->add_option("--batch-size", f->batch_size, "Examples per batch")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_flag("--json", f->json, "Print one JSON object");
  cmd->add_flag("--quiet", f->quiet, "No progress line");
  cmd->callback([f] {
    const bool sets = !f->a.empty() || !f->b.empty();
    TORCH_CHECK(sets != !f->data.empty(), "nfk: give either --a and --b, or --data");
    TORCH_CHECK(!sets || (!f->a.empty() && !f->b.empty()), "nfk: give both --a and --b");
    TORCH_CHECK(!f->pairwise || !f->out.empty(), "nfk: --pairwise needs --out D.npy");
    auto proj = load_projector(f->projector);
    check_outputs({f->out, f->heatmap}, {f->projector, f->a, f->b, f->data, f->labels, f->model,
                                         proj.model.model_path, proj.model.generator_path});
    check_figure("--heatmap", f->heatmap);
    auto model = load_projector_model(proj, f->model);
    ProgressLine progress("distance", f->quiet || f->json);
    if (sets) {
      set_distance(*f, proj, model, progress);
    } else {
      class_distances(*f, proj, model, progress);
    }
  });
}

}  // namespace nfk::cli
