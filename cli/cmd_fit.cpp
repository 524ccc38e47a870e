#include <cmath>
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "nfk/data.h"
#include "nfk/embed.h"
#include "nfk/output_files.h"

namespace nfk::cli {
namespace {

struct FitFlags {
  ModelFlags model;
  DistFlags dist;
  std::string data, out, embedding_out, estimator = "auto", method = "auto", checkpoint;
  int64_t rank = 32, oversample = 10, power_iters = 10, batch_size = 256;
  int64_t reference_samples = 0, memory_budget_mib = 4096;
  double fisher_floor = 1e-8;
  std::string tol = "auto";
  std::string solver = "auto";
  bool quiet = false, json = false, resume = false, embed_model = false;
};

// "fit 2.90 s: per-example gradients 0.39 s, products 2.13 s (22, GEMM 54.8 GFLOP/s),
// factorizations 0.32 s" (stages that took no time are left out).
void print_profile(const FitProfile& p) {
  std::printf("  fit %.2f s:", p.total_s);
  const char* sep = " ";
  auto part = [&](const char* name, double s) {
    if (s <= 0) return;
    std::printf("%s%s %.2f s", sep, name, s);
    sep = ", ";
  };
  part("Fisher statistics", p.statistics_s);
  part("per-example gradients", p.gradients_s);
  part("products", p.products_s);
  if (p.products > 0) {
    std::printf(" (%lld", static_cast<long long>(p.products));
    if (p.product_flops > 0 && p.products_s > 0) {
      std::printf(", GEMM %.1f GFLOP/s", p.product_flops / p.products_s * 1e-9);
    }
    std::printf(")");
  }
  part("factorizations", p.factorizations_s);
  if (p.passes > 0) {
    std::printf("; %lld passes over V, %lld iterations%s", static_cast<long long>(p.passes),
                static_cast<long long>(p.iterations), p.fused ? " (VtV in one pass)" : "");
    if (p.estimated_error >= 0) {
      std::printf(", estimated error of the top-k sigma %.1e", p.estimated_error);
    }
  }
  if (p.peak_device_bytes >= 0) {
    std::printf("; device memory peak %.0f MiB",
                static_cast<double>(p.peak_device_bytes) / (1 << 20));
  }
  std::printf("\n");
}

void run_fit(const FitFlags& f, dist::Group& group) {
  const auto t0 = std::chrono::steady_clock::now();
  check_outputs({f.out, f.embedding_out}, {f.data, f.model.model, f.model.generator});
  auto ds = load_dataset(f.data);
  auto options = f.model.to_options();
  auto model = load_score_model(parse_model_kind(f.model.kind), options, ds.inputs);
  FitOptions o;
  o.method = parse_fit_method(f.method);
  o.svd = {f.rank, f.oversample, f.power_iters};
  o.svd.tol = parse_svd_tol(f.tol);
  o.svd.solver = nfk::parse_svd_solver(f.solver);
  o.fisher.estimator = parse_estimator(f.estimator);
  o.fisher.reference_samples = f.reference_samples;
  o.fisher.floor = f.fisher_floor;
  o.memory_budget = f.memory_budget_mib << 20;
  o.run = {f.batch_size, f.model.seed, &group};
  o.checkpoint_dir = f.checkpoint;
  o.resume = f.resume;

  // Rank 0 alone reports and writes. The plan comes first: what will happen, and why.
  const bool quiet = f.quiet || !group.is_root();
  const auto plan = plan_fit(model, ds.inputs, o);
  if (!quiet && !f.json) std::fprintf(stderr, "nfk fit %s\n", plan.describe().c_str());
  ProgressLine progress("fit", quiet);
  o.run.progress = progress.fn();
  auto result = fit(model, ds.inputs, o, f.data, &plan);
  progress.finish();
  if (!group.is_root()) return;
  Projector& proj = result.projector;
  record_model_files(proj, /*embed=*/f.embed_model);
  {
    OutputGroup outputs;  // both or neither
    save_projector(f.out, proj);
    if (!f.embedding_out.empty()) write_npy(f.embedding_out, result.train_embedding);
    outputs.commit();
  }
  if (f.json) {
    nlohmann::json j = {{"spectrum", proj.spectrum_json()}, {"method_note", proj.method_note},
                        {"plan", plan.to_json()},           {"device", options.device.str()},
                        {"processes", group.world_size()},  {"profile", proj.profile.to_json()},
                        {"command_s", seconds_since(t0)}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }

  if (quiet) return;
  auto ratio = proj.explained_variance_ratio();
  std::printf("nfk fit: %s model, %lld examples, %lld parameters, rank %lld, method %s, %s\n",
              to_string(proj.kind).c_str(), static_cast<long long>(proj.n_examples),
              static_cast<long long>(proj.n_params()), static_cast<long long>(proj.rank()),
              to_string(proj.method).c_str(), dtype_name(proj.model.dtype).c_str());
  std::printf("  Fisher reference: %s (%s estimator, %lld samples), %lld entries floored at %.3g\n",
              proj.fisher.reference.c_str(), to_string(proj.fisher.estimator).c_str(),
              static_cast<long long>(proj.fisher.n_reference),
              static_cast<long long>(proj.fisher.n_floored), proj.fisher.floor_value);
  std::printf("  top-%lld components explain %.2f%% of the NFK variance%s\n",
              static_cast<long long>(proj.rank()), 100 * ratio.sum().item<double>(),
              proj.total_variance_exact ? "" : " (total estimated from the probes)");
  for (double target : {0.5, 0.9, 0.99}) {
    const int64_t c = proj.components_for(target);
    if (c > 0)
      std::printf("  %.0f%% of the variance in the top %lld\n", 100 * target,
                  static_cast<long long>(c));
  }
  if (group.distributed()) std::printf("  %d processes (c10d/Gloo)\n", group.world_size());
  print_profile(proj.profile);
  std::printf("  wrote %s in %.1f s\n", f.out.c_str(), seconds_since(t0));
}

}  // namespace

void add_fit_command(CLI::App& app) {
  auto f = std::make_shared<FitFlags>();
  auto* cmd = app.add_subcommand("fit",
                                 "Fit a rank-k NFK projector (truncated SVD of the Fisher "
                                 "vectors V) on a data set");
  f->model.add_to(cmd);
  cmd->add_option("--data", f->data,
                  "Data: mnist:train|test, fashion-mnist:train|test, X.npy or IDX file; "
                  "append [:n] to keep the first n examples")
      ->required();
  cmd->add_option("--rank", f->rank, "k: number of NFK components")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--estimator", f->estimator,
                  "Reference for the mean score z and Fisher diagonal I: true (model samples), "
                  "empirical (the data), auto (true where the model can sample)")
      ->check(CLI::IsMember({"auto", "true", "empirical"}))
      ->capture_default_str();
  cmd->add_option("--reference-samples", f->reference_samples,
                  "Reference examples for z and I (0: as many as the data)")
      ->check(count_in(0, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--fisher-floor", f->fisher_floor,
                  "Floor of I relative to its mean (zero-variance parameters are raised to it)")
      ->check(finite_in(0, 1))
      ->capture_default_str();
  cmd->add_option("--oversample", f->oversample, "Extra random probes beyond k")
      ->check(count_in(0, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--power-iters", f->power_iters,
                  "The most power / block Krylov iterations of the randomized SVD (it stops "
                  "earlier once --tol is reached; sketch makes none)")
      ->check(count_in(0, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--tol", f->tol,
                  "Stop the randomized SVD once the estimated relative error of the top-k "
                  "singular values (from successive iterates) is at most this; auto: 2e-4 in "
                  "float32, 1e-8 in float64; 0: always make --power-iters iterations")
      ->check(svd_tol_in())
      ->capture_default_str();
  cmd->add_option("--solver", f->solver,
                  "The randomized SVD's iteration: subspace (power iterations, keeps the last "
                  "block), block-krylov (keeps every block and takes the SVD of their span: the "
                  "same accuracy in fewer passes on slowly decaying spectra, more memory), auto "
                  "(block Krylov where its basis fits 1 GiB or a quarter of --memory-budget)")
      ->check(CLI::IsMember(nfk::svd_solver_names().all()))
      ->capture_default_str();
  cmd->add_option(
         "--method", f->method,
         "auto | exact (Gram eigendecomposition) | per-example (GEMMs on per-example gradients: "
         "V resident, or recomputed per pass beyond --memory-budget) | "
         "matrix-free (streaming JVP/VJP) | sketch (single-pass sketch on per-example "
         "gradients: V read once after the Fisher statistics, no power iterations, less "
         "accurate on flat spectra)")
      ->check(CLI::IsMember(nfk::fit_method_names().all()))
      ->capture_default_str();
  cmd->add_option(
         "--memory-budget", f->memory_budget_mib,
         "MiB that a resident V may take (beyond it per-example recomputes V's blocks per pass; "
         "auto also weighs matrix-free)")
      ->check(count_in(1, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--batch-size", f->batch_size, "Examples per batch")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--out", f->out, "Projector file to write (P.nfk)")->required();
  cmd->add_option("--embedding-out", f->embedding_out,
                  "Also write the training embedding e(X) = Phi diag(sigma) as .npy");
  cmd->add_option("--checkpoint", f->checkpoint,
                  "Folder for the fit's resumable state: the Fisher statistics and the SVD's "
                  "basis after every pass (written atomically)");
  cmd->add_flag("--resume", f->resume,
                "Continue an interrupted fit from --checkpoint (same command otherwise): the "
                "projector is the uninterrupted one's, bit for bit");
  cmd->add_flag("--embed-model", f->embed_model,
                "Store the model file (and the generator's) inside the projector, so that the "
                "projector alone is enough to embed new data later");
  cmd->add_flag("--quiet", f->quiet, "No plan, progress line or summary");
  cmd->add_flag("--json", f->json,
                "Print the summary as one JSON line instead: the spectrum, the method's reason, "
                "and where the time went (per stage, the device synchronised at each boundary; "
                "peak CUDA memory)");
  f->dist.add_to(cmd);
  cmd->callback([f] { run_distributed(f->dist, [&](dist::Group& g) { run_fit(*f, g); }); });
}

}  // namespace nfk::cli
