#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "fisher_factors_output.h"
#include "nfk/classifier_fisher.h"
#include "nfk/data.h"
#include "nfk/fisher.h"
#include "nfk/output_files.h"

namespace nfk::cli {
namespace {

struct FisherFlags {
  ModelFlags model;
  std::string data, out, mean_out, labels, estimator, form = "diag";
  int64_t reference_samples = 0, batch_size = 256, mc_samples = 1, top_k = 20, power_iters = 6;
  std::string tol = "auto";
  double fisher_floor = 1e-8, sloppy = 1e-3;
  bool conditional = false, stats = false, json = false, quiet = false;
  DistFlags dist;
};

// `nfk fisher` without --conditional: the NFK score's diagonal Fisher I and mean score z.
void run_score_fisher(const FisherFlags& f, dist::Group& group) {
  const std::string estimator = f.estimator.empty() ? "auto" : f.estimator;
  TORCH_CHECK(estimator == "auto" || estimator == "true" || estimator == "empirical",
              "nfk: --estimator ", estimator,
              " is an estimator of the classifier's Fisher of p(y|x): add --conditional (the NFK "
              "score's Fisher takes auto, true or empirical)");
  auto ds = load_dataset(f.data);
  auto model = load_score_model(parse_model_kind(f.model.kind), f.model.to_options(), ds.inputs);
  FisherOptions o;
  o.estimator = parse_estimator(estimator);
  o.reference_samples = f.reference_samples;
  o.floor = f.fisher_floor;
  // Every rank streams its shard of the reference; rank 0 writes.
  ProgressLine progress("fisher", f.quiet || !group.is_root());
  auto stats = compute_fisher_stats(model, ds.inputs, o,
                                    {f.batch_size, f.model.seed, &group, progress.fn()});
  progress.finish();
  if (!group.is_root()) return;
  {
    OutputGroup outputs;  // both or neither
    write_npy(f.out, stats.fisher_diag);
    if (!f.mean_out.empty()) write_npy(f.mean_out, stats.mean_score);
    outputs.commit();
  }
  if (f.quiet) return;
  std::printf("nfk fisher: %lld parameters, reference %s (%s, %lld samples)\n",
              static_cast<long long>(stats.fisher_diag.numel()), stats.reference.c_str(),
              to_string(stats.estimator).c_str(), static_cast<long long>(stats.n_reference));
  std::printf("  I: mean %.4g, min %.4g, max %.4g; %lld zero-variance entries floored at %.3g\n",
              stats.fisher_diag.mean().item<double>(), stats.fisher_diag.min().item<double>(),
              stats.fisher_diag.max().item<double>(), static_cast<long long>(stats.n_floored),
              stats.floor_value);
}

nlohmann::json capacity_json(const FisherCapacity& c) {
  auto top = c.top_eigenvalues.contiguous();
  return {{"trace", c.trace},
          {"top_eigenvalues",
           std::vector<double>(top.data_ptr<double>(), top.data_ptr<double>() + top.numel())},
          {"effective_rank_entropy", c.effective_rank_entropy},
          {"effective_rank_ratio", c.effective_rank_ratio},
          {"top_k_share", c.top_k_share},
          {"sloppy_threshold", c.sloppy_threshold},
          {"sloppy_fraction", c.sloppy_fraction},
          {"svd_iterations", c.iterations},
          {"svd_estimated_error",
           c.estimated_error >= 0 ? nlohmann::json(c.estimated_error) : nullptr}};
}

// --form kfac|ekfac: the factors as one .npz, and a summary.
void print_factors(const FisherFlags& f, const KfacFactors& factors) {
  write_kfac_factors(f.out, factors);
  int64_t covered = 0;
  for (const auto& layer : factors.layers) covered += layer.out() * layer.in();
  if (f.json) {
    nlohmann::json j = {
        {"estimator", to_string(factors.estimator)}, {"form", f.form},
        {"n_examples", factors.n_examples},          {"n_params", factors.num_params},
        {"layers", factors.layers.size()},           {"covered_params", covered},
        {"left_out", factors.left_out.size()}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  if (f.quiet) return;
  std::printf(
      "nfk fisher: %s factors of the %s Fisher of p(y|x): %zu layers cover %lld of %lld "
      "parameters; %zu parameter tensors left out -> %s\n",
      f.form.c_str(), to_string(factors.estimator).c_str(), factors.layers.size(),
      static_cast<long long>(covered), static_cast<long long>(factors.num_params),
      factors.left_out.size(), f.out.c_str());
  for (const auto& left : factors.left_out)
    std::printf("  left out: parameter %lld: %s\n", static_cast<long long>(left.index),
                left.reason.c_str());
}

// `nfk fisher --conditional`: the classifier's Fisher of p(y|x) (SPEC §1b).
void run_conditional_fisher(const FisherFlags& f, dist::Group& group) {
  TORCH_CHECK(f.model.kind == "classifier",
              "nfk: --conditional is the Fisher of p(y|x) of a classifier; use --kind classifier");
  TORCH_CHECK(f.mean_out.empty() && f.reference_samples == 0,
              "nfk: --mean-out and --reference-samples belong to the NFK score's Fisher (without "
              "--conditional)");
  ClassifierFisherOptions o;
  o.estimator = parse_fisher_estimator(f.estimator.empty() ? "true" : f.estimator);
  o.mc_samples = f.mc_samples;
  const FisherForm form = parse_fisher_form(f.form);
  auto ds = load_dataset(f.data);
  ClassifierData data{ds.inputs, {}};
  if (!f.labels.empty()) {
    data.labels = load_labels(f.labels);
  } else if (needs_labels(o.estimator)) {
    TORCH_CHECK(ds.labels.defined(), "nfk: --estimator ", to_string(o.estimator),
                " needs labels: give --labels L (.npy or IDX) or a named set such as mnist:train");
    data.labels = ds.labels;
  }
  auto model = load_score_model(ModelKind::kClassifier, f.model.to_options(), ds.inputs);
  ProgressLine progress("fisher", f.quiet || !group.is_root());
  RunOptions run{f.batch_size, f.model.seed, &group, progress.fn()};
  if (form != FisherForm::kDiag) {
    TORCH_CHECK(!f.stats, "nfk: --stats works on the diagonal and the rows (--form diag)");
    auto factors = form == FisherForm::kKfac ? kfac_factors(model, data, o, run)
                                             : ekfac_factors(model, data, o, run);
    progress.finish();
    if (group.is_root()) print_factors(f, factors);
    return;
  }
  auto diag = classifier_fisher_diag(model, data, o, run);
  FisherCapacity capacity;
  if (f.stats) {
    CapacityOptions c;
    c.top_k = f.top_k;
    c.sloppy_relative = f.sloppy;
    c.power_iters = f.power_iters;
    c.tol = parse_svd_tol(f.tol);
    RunOptions single = run;
    single.group = nullptr;  // the spectrum runs on every rank alike (rows are not sharded)
    capacity = fisher_capacity(model, data, o, single, diag.diag, c, diag.path.path);
  }
  progress.finish();
  if (!group.is_root()) return;
  write_npy(f.out, diag.diag);
  const bool batched = o.estimator == FisherEstimator::kBatched;
  const std::string path_name = batched ? "per-batch" : to_string(diag.path.path);
  const std::string path =
      batched ? "one backward per batch"
              : path_name + (diag.path.reason.empty() ? "" : " (" + diag.path.reason + ")");
  if (f.json) {
    nlohmann::json j = {{"estimator", to_string(o.estimator)},
                        {"form", f.form},
                        {"n_examples", diag.n_examples},
                        {"n_params", diag.diag.numel()},
                        {"n_rows", diag.n_rows},
                        {"gradient_path", path_name},
                        {"trace", diag.diag.sum().item<double>()}};
    if (o.estimator == FisherEstimator::kMonteCarlo) j["mc_samples"] = o.mc_samples;
    if (f.stats) j["stats"] = capacity_json(capacity);
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  if (f.quiet) return;
  std::printf("nfk fisher: %s Fisher of p(y|x), %lld parameters, %lld examples, %lld rows; %s\n",
              to_string(o.estimator).c_str(), static_cast<long long>(diag.diag.numel()),
              static_cast<long long>(diag.n_examples), static_cast<long long>(diag.n_rows),
              path.c_str());
  if (batched)
    std::printf("  note: batched is the squared mean gradient of each batch, not a Fisher\n");
  std::printf("  trace %.6g; diagonal mean %.4g, max %.4g\n", diag.diag.sum().item<double>(),
              diag.diag.mean().item<double>(), diag.diag.max().item<double>());
  if (!f.stats) return;
  std::printf("  top %lld eigenvalues:", static_cast<long long>(capacity.top_eigenvalues.numel()));
  for (int64_t i = 0; i < capacity.top_eigenvalues.numel(); ++i)
    std::printf(" %.4g", capacity.top_eigenvalues[i].item<double>());
  std::printf(
      "\n  effective rank (top k): entropy %.3f, (sum l)^2/sum l^2 %.3f; top-k share of "
      "trace %.3f\n",
      capacity.effective_rank_entropy, capacity.effective_rank_ratio, capacity.top_k_share);
  std::printf("  sloppy: %.2f%% of parameters below %.3g (%.3g x mean diagonal)\n",
              100 * capacity.sloppy_fraction, capacity.sloppy_threshold, f.sloppy);
  if (capacity.estimated_error >= 0) {
    std::printf(
        "  eigenvalue SVD: %lld iterations, estimated max relative error of the top-k "
        "sqrt(eigenvalues) %.1e\n",
        static_cast<long long>(capacity.iterations), capacity.estimated_error);
  }
}

}  // namespace

void add_fisher_command(CLI::App& app) {
  auto f = std::make_shared<FisherFlags>();
  auto* cmd = app.add_subcommand(
      "fisher",
      "Diagonal Fisher information: of the NFK score, I = E_ref[(grad s - z)^2] (default), or "
      "with --conditional of a classifier's p(y|x) (true, mc, empirical; batched to show the "
      "common error)");
  f->model.add_to(cmd);
  cmd->add_option("--data", f->data, "Data (the reference for --estimator empirical)")->required();
  cmd->add_option("--estimator", f->estimator,
                  "NFK score: auto | true (model samples) | empirical (the data), default auto. "
                  "With --conditional: true (exact expectation over y ~ p(y|x)) | mc (--mc-samples "
                  "labels drawn per example) | empirical (the data's labels) | batched (squared "
                  "mean gradient per batch: not a Fisher), default true")
      ->check(CLI::IsMember({"auto", "true", "empirical", "mc", "batched"}));
  cmd->add_flag("--conditional", f->conditional,
                "The classifier's Fisher of p(y|x) (SPEC 1b) instead of the NFK score's");
  cmd->add_option("--labels", f->labels,
                  "--conditional: labels [N] (.npy or IDX) for empirical/batched; default: the "
                  "named set's own labels");
  cmd->add_option("--mc-samples", f->mc_samples, "--conditional mc: labels drawn per example")
      ->check(count_in(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--form", f->form,
                  "--conditional: diag (an .npy [P] in parameter order), kfac (per Linear/Conv2d "
                  "layer A and G, one .npz) or ekfac (K-FAC's eigenbases and re-fitted scalings)")
      ->check(CLI::IsMember(nfk::fisher_form_names().all()))
      ->capture_default_str();
  cmd->add_flag("--stats", f->stats,
                "--conditional: also trace, top eigenvalues, effective ranks, sloppy share");
  cmd->add_option("--top-k", f->top_k, "--stats: eigenvalues computed")
      ->check(count_in(1, 4096))
      ->capture_default_str();
  cmd->add_option("--power-iters", f->power_iters, "--stats: the eigenvalue SVD's most iterations")
      ->check(count_in(0, 1000))
      ->capture_default_str();
  cmd->add_option("--tol", f->tol,
                  "--stats: stop the eigenvalue SVD once its estimated max relative error of the "
                  "top-k sqrt(eigenvalues) is at most this; auto: 2e-4 in float32, 1e-8 in "
                  "float64; 0: every iteration")
      ->check(svd_tol_in())
      ->capture_default_str();
  cmd->add_option("--sloppy", f->sloppy, "--stats: 'sloppy' below this x mean diagonal")
      ->check(finite_in(0, 1))
      ->capture_default_str();
  cmd->add_flag("--json", f->json, "--conditional: print the summary as one JSON object");
  cmd->add_option("--reference-samples", f->reference_samples,
                  "NFK score: reference examples (0: as many as the data)")
      ->check(count_in(0, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--fisher-floor", f->fisher_floor, "NFK score: floor of I relative to its mean")
      ->check(finite_in(0, 1))
      ->capture_default_str();
  cmd->add_option("--batch-size", f->batch_size, "Examples per batch (batched: its B)")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--out", f->out, "Fisher diagonal [P] as .npy (kfac/ekfac: an .npz of factors)")
      ->required();
  cmd->add_option("--mean-out", f->mean_out, "NFK score: also write the mean score z [P] as .npy");
  cmd->add_flag("--quiet", f->quiet, "No progress line or summary");
  f->dist.add_to(cmd);
  cmd->callback([f, cmd] {
    run_distributed(f->dist, [&](dist::Group& group) {
      TORCH_CHECK(f->stats || cmd->count("--top-k") + cmd->count("--power-iters") +
                                      cmd->count("--tol") + cmd->count("--sloppy") ==
                                  0,
                  "nfk: --top-k, --power-iters, --tol and --sloppy set up --stats: add it");
      check_outputs({f->out, f->mean_out},
                    {f->data, f->labels, f->model.model, f->model.generator});
      if (f->conditional) {
        run_conditional_fisher(*f, group);
      } else {
        TORCH_CHECK(f->labels.empty() && f->form == "diag" && !f->stats && !f->json,
                    "nfk: --labels, --form, --stats and --json need --conditional (the "
                    "classifier's Fisher of p(y|x))");
        run_score_fisher(*f, group);
      }
    });
  });
}

}  // namespace nfk::cli
