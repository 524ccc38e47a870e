#include <cstdio>

#include "commands.h"
#include "common.h"
#include "nfk/data.h"
#include "nfk/fisher.h"
#include "nfk/output_files.h"

namespace nfk::cli {

void add_fisher_command(CLI::App& app) {
  struct Flags {
    ModelFlags model;
    std::string data, out, mean_out, estimator = "auto";
    int64_t reference_samples = 0, batch_size = 256;
    double fisher_floor = 1e-8;
    bool quiet = false;
    DistFlags dist;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("fisher",
                                 "Diagonal Fisher information I = E_ref[(grad s - z)^2] "
                                 "of a model");
  f->model.add_to(cmd);
  cmd->add_option("--data", f->data, "Data (the reference for --estimator empirical)")->required();
  cmd->add_option("--estimator", f->estimator, "true (model samples), empirical (the data) or auto")
      ->check(CLI::IsMember({"auto", "true", "empirical"}))
      ->capture_default_str();
  cmd->add_option("--reference-samples", f->reference_samples,
                  "Reference examples (0: as many as the data)")
      ->check(count_in(0, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--fisher-floor", f->fisher_floor, "Floor of I relative to its mean")
      ->check(finite_in(0, 1))
      ->capture_default_str();
  cmd->add_option("--batch-size", f->batch_size, "Examples per batch")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--out", f->out, "Fisher diagonal I [P] as .npy")->required();
  cmd->add_option("--mean-out", f->mean_out, "Also write the mean score z [P] as .npy");
  cmd->add_flag("--quiet", f->quiet, "No progress line or summary");
  f->dist.add_to(cmd);
  cmd->callback([f] {
    run_distributed(f->dist, [&](dist::Group& group) {
      check_outputs({f->out, f->mean_out}, {f->data, f->model.model, f->model.generator});
      auto ds = load_dataset(f->data);
      auto model =
          load_score_model(parse_model_kind(f->model.kind), f->model.to_options(), ds.inputs);
      FisherOptions o;
      o.estimator = parse_estimator(f->estimator);
      o.reference_samples = f->reference_samples;
      o.floor = f->fisher_floor;
      // Every rank streams its shard of the reference; rank 0 writes.
      ProgressLine progress("fisher", f->quiet || !group.is_root());
      auto stats = compute_fisher_stats(model, ds.inputs, o,
                                        {f->batch_size, f->model.seed, &group, progress.fn()});
      progress.finish();
      if (!group.is_root()) return;
      {
        OutputGroup outputs;  // both or neither
        write_npy(f->out, stats.fisher_diag);
        if (!f->mean_out.empty()) write_npy(f->mean_out, stats.mean_score);
        outputs.commit();
      }
      if (f->quiet) return;
      std::printf("nfk fisher: %lld parameters, reference %s (%s, %lld samples)\n",
                  static_cast<long long>(stats.fisher_diag.numel()), stats.reference.c_str(),
                  to_string(stats.estimator).c_str(), static_cast<long long>(stats.n_reference));
      std::printf(
          "  I: mean %.4g, min %.4g, max %.4g; %lld zero-variance entries floored at %.3g\n",
          stats.fisher_diag.mean().item<double>(), stats.fisher_diag.min().item<double>(),
          stats.fisher_diag.max().item<double>(), static_cast<long long>(stats.n_floored),
          stats.floor_value);
    });
  });
}

}  // namespace nfk::cli
