#include <cstdio>

#include "commands.h"
#include "common.h"
#include "nfk/data.h"
#include "nfk/distance.h"

namespace nfk::cli {

void add_distance_command(CLI::App& app) {
  struct Flags {
    std::string projector, a, b, model;
    int64_t batch_size = 256;
    bool json = false, quiet = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "distance", "Fisher distance between two sets: ||mean_A V - mean_B V|| (AFV), and the same "
                  "in the projector's rank-k NFK embedding");
  cmd->add_option("--projector", f->projector, "Projector file from `nfk fit` (its z, I, model)")
      ->required();
  cmd->add_option("--a", f->a, "First set (same forms as `nfk fit --data`)")->required();
  cmd->add_option("--b", f->b, "Second set")->required();
  cmd->add_option("--model", f->model, "Model file if it moved since the fit (hash checked)");
  cmd->add_option("--batch-size", f->batch_size, "Examples per batch")->capture_default_str();
  cmd->add_flag("--json", f->json, "Print one JSON object {fisher, embedding, n_a, n_b}");
  cmd->add_flag("--quiet", f->quiet, "No progress line");
  cmd->callback([f] {
    auto proj = load_projector(f->projector);
    auto a = load_dataset(f->a), b = load_dataset(f->b);
    auto model = load_projector_model(proj, f->model);
    ProgressLine progress("distance", f->quiet || f->json);
    auto d = fisher_set_distance(proj, model, a.inputs, b.inputs, f->batch_size, progress.fn());
    progress.finish();
    if (f->json) {
      std::printf("{\"fisher\": %.17g, \"embedding\": %.17g, \"n_a\": %lld, \"n_b\": %lld}\n",
                  d.fisher, d.embedding, static_cast<long long>(a.inputs.size(0)),
                  static_cast<long long>(b.inputs.size(0)));
    } else {
      std::printf("Fisher distance %s <-> %s: %.6g (rank-%lld NFK embedding: %.6g)\n",
                  f->a.c_str(), f->b.c_str(), d.fisher, static_cast<long long>(proj.rank()),
                  d.embedding);
    }
  });
}

}  // namespace nfk::cli
