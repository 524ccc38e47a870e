// plan_fit: every choice of a fit, made once before the heavy work (STYLE 11).
#include <algorithm>
#include <sstream>

#include "nfk/embed.h"

namespace nfk {
namespace {

std::string mib(int64_t bytes) {
  return std::to_string(bytes >> 20) + " MiB";
}

// The layer tape's verdict on the fit's first examples: every rank probes the same ones.
GradientPathChoice probe_gradients(ScoreModel& model, const torch::Tensor& inputs,
                                   int64_t batch_size) {
  constexpr int64_t kProbeRows = 8;  // enough to catch examples that interact
  const int64_t rows = std::min({inputs.size(0), batch_size, kProbeRows});
  return choose_gradient_path(model, inputs.slice(/*dim=*/0, 0, rows), /*first_index=*/0);
}

// The SVD's solver, products and tolerance: block Krylov where its basis (P·c values, c =
// min(u·(L + 1), N, P) columns) takes at most 1 GiB or a quarter of the memory budget, whichever
// is more, or else, for a wide V (N < P) in one process, where its basis in V's row space (N·c)
// does: then it iterates on Vᵀ, two passes per iteration when V is streamed, as slowly decaying
// spectra converge in far fewer Krylov iterations than subspace iterations. A checkpointed fit
// runs the resumable form (subspace, two passes, all L iterations: a resumed run is the
// uninterrupted one bit for bit).
SvdOptions plan_svd(const FitOptions& o, int64_t n, int64_t p, int64_t value_bytes, bool sharded,
                    std::vector<std::string>& reasons) {
  SvdOptions svd = o.svd;
  svd.seed = o.run.seed;
  const auto dtype = value_bytes == 8 ? torch::kFloat64 : torch::kFloat32;
  if (svd.tol < 0) svd.tol = default_svd_tol(dtype);
  const int64_t u = std::min(svd.rank + svd.oversample, std::min(n, p));
  // The Krylov space stops growing at min(N, P) columns.
  const int64_t cols = std::min(u * (svd.power_iters + 1), std::min(n, p));
  const int64_t krylov_bytes = p * cols * value_bytes;
  if (!o.checkpoint_dir.empty()) {
    svd.solver = SvdSolver::kSubspace;
    svd.gram = GramProducts::kTwoPass;
    svd.tol = 0;
    reasons.push_back("subspace iteration, two passes per iteration, all " +
                      std::to_string(svd.power_iters) +
                      " iterations: checkpointed, so that a resumed fit is the uninterrupted one");
  } else if (svd.solver == SvdSolver::kAuto) {
    const int64_t room = std::max(o.memory_budget / 4, int64_t{1} << 30);
    const int64_t rows_bytes = n * cols * value_bytes;
    const bool fits = krylov_bytes <= room;
    const bool fits_rows = !fits && n < p && !sharded && rows_bytes <= room;
    svd.solver = fits || fits_rows ? SvdSolver::kBlockKrylov : SvdSolver::kSubspace;
    svd.transpose_wide = fits_rows;
    const std::string basis = "its basis (" + mib(krylov_bytes) + " at " +
                              std::to_string(svd.power_iters) + " iterations) ";
    if (fits_rows) {
      reasons.push_back("block Krylov on V^T: " + basis +
                        "exceeds 1 GiB or a quarter of the memory budget, in V's row space (" +
                        mib(rows_bytes) + ") it fits");
    } else {
      reasons.push_back(std::string(fits ? "block Krylov" : "subspace iteration") + ": " + basis +
                        (fits ? "fits" : "exceeds") + " 1 GiB or a quarter of the memory budget");
    }
  }
  return svd;
}

}  // namespace

bool exact_is_cheaper(int64_t n, int64_t p, const SvdOptions& svd) {
  const double m = static_cast<double>(std::min(n, p));
  const double nd = static_cast<double>(n), pd = static_cast<double>(p);
  const double u = std::min(static_cast<double>(svd.rank + svd.oversample), m);
  const double l = static_cast<double>(svd.power_iters);
  const double exact = 2 * m * nd * pd + 9 * m * m * m;
  double randomized = (2 * l + 2) * nd * pd * u;
  if (svd.solver != SvdSolver::kSubspace) randomized += 2 * pd * u * u * l * l;
  return exact <= randomized;
}

FitPlan plan_fit(ScoreModel& model, const torch::Tensor& inputs, const FitOptions& o) {
  FitPlan plan;
  plan.n_examples = inputs.size(0);
  plan.n_params = model.num_parameters();
  const int64_t n = plan.n_examples, p = plan.n_params;
  TORCH_CHECK(n >= 2, "nfk::fit: need at least 2 examples, got ", n);
  TORCH_CHECK(o.svd.rank > 0 && o.svd.rank <= std::min(n, p), "nfk::fit: rank must be in [1, ",
              std::min(n, p), "] (min of examples and parameters), got ", o.svd.rank);
  TORCH_CHECK(o.run.batch_size > 0, "nfk::fit: batch size must be positive, got ",
              o.run.batch_size);

  // Data parallel: each rank holds whole batches of rows.
  dist::Group* group = o.run.group != nullptr && o.run.group->distributed() ? o.run.group : nullptr;
  plan.world_size = group != nullptr ? group->world_size() : 1;
  plan.shard = {0, n};
  plan.shard_rows = {n};
  if (group != nullptr) {
    plan.shard = dist::shard_range(n, o.run.batch_size, group->rank(), group->world_size());
    plan.shard_rows = dist::shard_sizes(n, o.run.batch_size, group->world_size());
  }

  // Memory: the budget is per process, and the largest shard decides so that every rank makes
  // the same choice. The exact method gathers all of V on every rank.
  const int64_t value_bytes = static_cast<int64_t>(c10::elementSize(model.options().dtype));
  plan.v_bytes = n * p * value_bytes;
  plan.v_bytes_per_rank =
      *std::max_element(plan.shard_rows.begin(), plan.shard_rows.end()) * p * value_bytes;
  plan.memory_budget = o.memory_budget;

  // Per-example gradients: the layer tape (one backward per batch) where it covers the model.
  const auto gradients = probe_gradients(model, inputs, o.run.batch_size);
  plan.v_operator.gradient_path = gradients.path;
  plan.v_operator.batch_size = o.run.batch_size;
  plan.gradient_path_reason = gradients.reason;
  const bool tape = gradients.path == GradientPath::kLayerTape;

  std::vector<std::string> svd_reasons;
  plan.svd = plan_svd(o, n, p, value_bytes, group != nullptr, svd_reasons);
  plan.method = o.method;
  const bool fits =
      (plan.method == FitMethod::kExact ? plan.v_bytes : plan.v_bytes_per_rank) <= o.memory_budget;
  const std::string v_size =
      "V is " + std::to_string(n) + " x " + std::to_string(p) + " " +
      dtype_name(model.options().dtype) + " = " + mib(plan.v_bytes) +
      (group != nullptr ? " (" + mib(plan.v_bytes_per_rank) + " per rank)" : "");
  const std::string budget = "the memory budget of " + mib(o.memory_budget);
  switch (plan.method) {
    case FitMethod::kExact:
      TORCH_CHECK(fits, "nfk::fit: --method exact keeps V in memory: ", n, " x ", p,
                  " values = ", mib(plan.v_bytes), " exceed ", budget,
                  " (raise --memory-budget or use another method)");
      plan.v_resident = true;
      plan.reasons.push_back("exact, as asked: V materialised, its Gram matrix eigendecomposed");
      break;
    case FitMethod::kAuto:
      if (plan.v_bytes <= o.memory_budget && plan.world_size == 1 &&
          exact_is_cheaper(n, p, plan.svd)) {
        plan.method = FitMethod::kExact;
        plan.v_resident = true;
        plan.reasons.push_back("exact (Gram eigendecomposition in float64): " + v_size +
                               ", within " + budget + ", and N = " + std::to_string(n) +
                               " is small enough that it costs fewer flops than the randomized "
                               "SVD at its cap of " +
                               std::to_string(plan.svd.power_iters) + " iterations");
      } else if (fits) {
        plan.method = FitMethod::kPerExample;
        plan.v_resident = true;
        plan.reasons.push_back("per-example with V resident: " + v_size + ", within " + budget);
      } else if (tape) {
        plan.method = FitMethod::kPerExample;
        plan.reasons.push_back("per-example with V's blocks recomputed on every pass: " + v_size +
                               " exceeds " + budget +
                               ", and the layer tape covers the model (a pass costs about one "
                               "batched backward)");
      } else {
        plan.method = FitMethod::kMatrixFree;
        plan.reasons.push_back("matrix-free (JVP/VJP): " + v_size + " exceeds " + budget +
                               ", and without the layer tape a per-example pass would take one "
                               "backward per example");
      }
      break;
    case FitMethod::kPerExample:
      plan.v_resident = fits;
      plan.reasons.push_back(fits ? "per-example with V resident, as asked: " + v_size
                                  : "per-example, as asked, V's blocks recomputed on every pass: " +
                                        v_size + " exceeds " + budget);
      break;
    case FitMethod::kMatrixFree:
      plan.reasons.push_back("matrix-free (JVP/VJP), as asked");
      break;
    case FitMethod::kSketch:
      plan.reasons.push_back(
          "single-pass sketch on per-example blocks, as asked: V read once after the Fisher "
          "statistics");
      break;
  }
  if (plan.method != FitMethod::kExact && plan.method != FitMethod::kSketch) {
    plan.reasons.insert(plan.reasons.end(), svd_reasons.begin(), svd_reasons.end());
  }
  plan.v_operator.products =
      plan.method == FitMethod::kMatrixFree ? VProducts::kMatrixFree : VProducts::kPerExampleBlocks;
  return plan;
}

std::string FitPlan::summary() const {
  std::ostringstream s;
  s << reasons.front();
  if (method != FitMethod::kMatrixFree && method != FitMethod::kExact) {
    s << "; gradients: "
      << (v_operator.gradient_path == GradientPath::kLayerTape
              ? "layer tape"
              : "per-example loop: " + gradient_path_reason);
  }
  return s.str();
}

std::string FitPlan::describe() const {
  std::ostringstream s;
  s << "plan: " << to_string(method) << " - " << reasons.front() << "\n";
  s << "  per-example gradients (Fisher statistics"
    << (method == FitMethod::kMatrixFree ? "" : ", V's rows") << "): "
    << (v_operator.gradient_path == GradientPath::kLayerTape
            ? "layer tape, one backward per batch"
            : "one backward per example (the layer tape does not cover the model: " +
                  gradient_path_reason + ")")
    << "\n";
  if (method != FitMethod::kExact && method != FitMethod::kSketch) {
    s << "  SVD: " << to_string(svd.solver)
      << (svd.transpose_wide ? " on V^T (N-long bases, two passes over V per iteration)" : "")
      << ", k = " << svd.rank << " + " << svd.oversample << " probes, VtV products "
      << (svd.gram == GramProducts::kTwoPass ? "in two passes"
                                             : "in one pass where V's operator fuses them")
      << ", ";
    if (svd.tol > 0) {
      s << "stop at an estimated " << svd.tol << " relative error of the top-k sigma, at most "
        << svd.power_iters << " iterations\n";
    } else {
      s << svd.power_iters << " iterations\n";
    }
  }
  s << "  " << n_examples << " examples x " << n_params << " parameters, batches of "
    << v_operator.batch_size;
  if (world_size > 1) {
    s << ", " << world_size << " processes holding";
    for (size_t r = 0; r < shard_rows.size(); ++r) s << (r ? " + " : " ") << shard_rows[r];
    s << " rows";
  }
  return s.str();
}

nlohmann::json FitPlan::to_json() const {
  return {{"method", to_string(method)},
          {"v_resident", v_resident},
          {"products", v_operator.products == VProducts::kMatrixFree ? "jvp/vjp" : "gemm"},
          {"gradient_path", to_string(v_operator.gradient_path)},
          {"gradient_path_reason", gradient_path_reason},
          {"batch_size", v_operator.batch_size},
          {"n_examples", n_examples},
          {"n_params", n_params},
          {"v_bytes", v_bytes},
          {"v_bytes_per_rank", v_bytes_per_rank},
          {"memory_budget", memory_budget},
          {"processes", world_size},
          {"shard_rows", shard_rows},
          {"reasons", reasons},
          {"svd",
           {{"solver", to_string(svd.solver)},
            {"gram", svd.gram == GramProducts::kTwoPass ? "two-pass" : "fused where possible"},
            {"rank", svd.rank},
            {"oversample", svd.oversample},
            {"power_iters", svd.power_iters},
            {"tol", svd.tol},
            {"transpose_wide", svd.transpose_wide}}}};
}

}  // namespace nfk
