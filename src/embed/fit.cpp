// nfk::fit, top-down: plan (plan_fit) → Fisher statistics → the operator over V → its truncated
// SVD → the projector. And transform, which embeds new data on the path the fit found.
#include <cmath>

#include "detail/checksum.h"
#include "embed/fit_checkpoint.h"
#include "embed/fit_profile.h"
#include "nfk/data.h"
#include "nfk/embed.h"
#include "nfk/sharded_operator.h"

namespace nfk {
namespace {

// Matrix-free products centre after contracting: V q = J (I^{-1/2} q) − zᵀ(I^{-1/2} q), two
// numbers of size about ‖z ⊙ I^{-1/2}‖ subtracted per example. Where I spans many decades (a
// floored or nearly constant gradient with z ≠ 0) that rounding, about
// eps·√N·‖z ⊙ I^{-1/2}‖, can swamp the spectrum itself: refuse rather than return noise (the
// leading σ must stand 100× above it; trailing σ at the noise level may be true zeros).
void check_centring_rounding(const SvdResult& r, const FisherStats& fisher, int64_t n,
                             torch::Dtype dtype) {
  const double eps = dtype == torch::kFloat64 ? 2.2e-16 : 1.2e-7;
  const double centring =
      (fisher.mean_score.to(torch::kFloat64) * fisher.inv_sqrt().to(torch::kFloat64))
          .norm()
          .item<double>();
  const double noise = eps * std::sqrt(static_cast<double>(n)) * centring;
  const double sigma_1 = r.singular_values[0].item<double>();
  TORCH_CHECK(sigma_1 > 100 * noise, "nfk::fit: matrix-free in ", dtype_name(dtype),
              " cannot resolve this spectrum: sigma_1 = ", sigma_1,
              " is within 100x of the rounding of its centring (about ", noise,
              ", the Fisher diagonal spans too many decades); use --method per-example (it ",
              "centres each gradient before any product) or --dtype float64");
}

// What a checkpoint must match to be resumed: the model's parameters and the data's bytes and
// every option that changes the numbers.
nlohmann::json fit_fingerprint(ScoreModel& model, const torch::Tensor& inputs, const FitOptions& o,
                               const std::string& data_source, int world_size) {
  auto x = inputs.to(torch::kCPU).contiguous();
  auto theta = flatten_like(model.parameters(), model.parameters()).to(torch::kCPU).contiguous();
  const auto& m = model.options();
  return {{"kind", to_string(model.kind())},
          {"model_crc32", detail::crc32_of(static_cast<const char*>(theta.data_ptr()),
                                           theta.numel() * theta.element_size())},
          {"n_params", model.num_parameters()},
          {"dtype", dtype_name(m.dtype)},
          {"seed", m.seed},
          {"data_source", data_source},
          {"data_shape", x.sizes().vec()},
          {"data_crc32",
           detail::crc32_of(static_cast<const char*>(x.data_ptr()), x.numel() * x.element_size())},
          {"method", to_string(o.method)},
          {"svd", {o.svd.rank, o.svd.oversample, o.svd.power_iters}},
          {"svd_solver", {to_string(o.svd.solver), o.svd.tol, static_cast<int>(o.svd.gram)}},
          {"fisher", {to_string(o.fisher.estimator), o.fisher.reference_samples, o.fisher.floor}},
          {"run_seed", o.run.seed},
          {"batch_size", o.run.batch_size},
          {"memory_budget", o.memory_budget},
          {"processes", world_size}};
}

// One fit's execution of its plan: the statistics, the operator, the SVD, timed by stage.
class FitRun {
 public:
  FitRun(ScoreModel& model, const torch::Tensor& inputs, const FitOptions& o,
         const std::string& data_source, const FitPlan& plan)
      : model_(model),
        inputs_(inputs),
        o_(o),
        progress_(o.run.progress),
        plan_(plan),
        group_(plan.world_size > 1 ? o.run.group : nullptr),
        device_(model.options().device),
        stage_(device_),
        checkpoint_(o.checkpoint_dir, o.resume,
                    o.checkpoint_dir.empty()
                        ? nlohmann::json()
                        : fit_fingerprint(model, inputs, o, data_source, plan.world_size),
                    /*writer=*/group_ == nullptr || group_->is_root()) {
    TORCH_CHECK(checkpoint_.method() == FitMethod::kAuto || checkpoint_.method() == plan.method,
                "nfk: the checkpoint in ", o.checkpoint_dir, " was made by method ",
                to_string(checkpoint_.method()), " but this fit plans ", to_string(plan.method),
                ": run without --resume to start afresh");
    fisher_options_ = o.fisher;
    fisher_options_.gradient_path = plan.v_operator.gradient_path;
    run_ = o.run;
    run_.group = group_;
    svd_options_ = plan.svd;  // solver and tol resolved, seeded by run.seed
  }

  // V's rows in memory: one pass gives J (and z, I), then GEMMs or the Gram eigendecomposition.
  SvdResult resident(Projector& proj) {
    auto v_np = materialize_fisher_vectors(model_, inputs_, fisher_options_, run_, &proj.fisher);
    proj.profile.gradients_s = stage_.lap();
    if (plan_.method == FitMethod::kExact) {
      if (group_ != nullptr) v_np = group_->allgather_rows(v_np, plan_.shard_rows);
      auto r = exact_svd(v_np, svd_options_.rank);
      proj.profile.factorizations_s = stage_.lap();
      record(proj.profile, r);
      return r;
    }
    DenseOperator local(v_np);
    return svd(local, proj, /*gemm_rows=*/v_np.size(0));
  }

  // V streamed: the Fisher statistics pass (or the checkpoint's), then an operator whose every
  // product recomputes this rank's rows.
  SvdResult streaming(Projector& proj) {
    proj.fisher = statistics();
    proj.profile.statistics_s = stage_.lap();
    auto local_inputs = inputs_.slice(/*dim=*/0, plan_.shard.begin, plan_.shard.end);
    auto op = make_v_operator(plan_.v_operator, model_, local_inputs, proj.fisher, progress_,
                              /*first_index=*/plan_.shard.begin);
    auto r = svd(*op, proj, /*gemm_rows=*/0);
    if (plan_.method == FitMethod::kMatrixFree) {
      check_centring_rounding(r, proj.fisher, plan_.n_examples, model_.options().dtype);
    }
    return r;
  }

 private:
  FisherStats statistics() {
    if (!checkpoint_.stats()) {
      auto stats = compute_fisher_stats(model_, inputs_, fisher_options_, run_);
      checkpoint_.save_stats(stats);
      return stats;
    }
    FisherStats f = *checkpoint_.stats();
    f.mean_score = f.mean_score.to(device_);
    f.fisher_diag = f.fisher_diag.to(device_);
    TORCH_CHECK(f.mean_score.numel() == plan_.n_params && f.fisher_diag.numel() == plan_.n_params &&
                    torch::isfinite(f.mean_score).all().item<bool>() &&
                    torch::isfinite(f.fisher_diag).all().item<bool>() &&
                    (f.fisher_diag > 0).all().item<bool>(),
                "nfk: the checkpoint's Fisher statistics are corrupt (", o_.checkpoint_dir,
                "): run without --resume to start afresh");
    return f;
  }

  static void record(FitProfile& profile, const SvdResult& r) {
    profile.passes = r.passes;
    profile.iterations = r.iterations;
    profile.estimated_error = r.estimated_error;
    profile.fused = r.fused;
  }

  // The randomized (or sketch) SVD of this rank's operator, sharded over the group.
  // `gemm_rows` > 0: `local` is V's resident rows (for the GEMM flop count).
  SvdResult svd(LinearOperator& local, Projector& proj, int64_t gemm_rows) {
    auto solve = [&](LinearOperator& op) {
      detail::TimedOperator timed(op, proj.profile, device_, gemm_rows);
      const double products_before = proj.profile.products_s;
      detail::Stopwatch watch(device_);
      checkpoint_.save_method(plan_.method);
      auto r = plan_.method == FitMethod::kSketch
                   ? sketch_svd(timed, svd_options_, progress_)
                   : randomized_svd(timed, svd_options_, progress_, checkpoint_.svd_state(),
                                    checkpoint_.svd_saver());
      proj.profile.factorizations_s += watch.lap() - (proj.profile.products_s - products_before);
      record(proj.profile, r);
      return r;
    };
    if (group_ == nullptr) return solve(local);
    ShardedOperator sharded(local, *group_, plan_.shard_rows);
    return solve(sharded);
  }

  ScoreModel& model_;
  const torch::Tensor& inputs_;
  const FitOptions& o_;
  const ProgressFn& progress_;
  const FitPlan& plan_;
  dist::Group* group_;
  torch::Device device_;
  detail::Stopwatch stage_;
  detail::FitCheckpoint checkpoint_;
  FisherOptions fisher_options_;
  RunOptions run_;          // the caller's, with the group only when distributed
  SvdOptions svd_options_;  // the caller's, seeded by run.seed
};

}  // namespace

FitResult fit(ScoreModel& model, const torch::Tensor& inputs, const FitOptions& o,
              const std::string& data_source, const FitPlan* plan) {
  check_finite(inputs, data_source.empty() ? "inputs" : data_source);
  FitResult result;
  result.plan = plan != nullptr ? *plan : plan_fit(model, inputs, o);
  const torch::Device device = model.options().device;
  detail::reset_peak_device_memory(device);
  detail::Stopwatch whole(device);

  Projector& proj = result.projector;
  FitRun run(model, inputs, o, data_source, result.plan);
  SvdResult r = result.plan.v_resident ? run.resident(proj) : run.streaming(proj);

  proj.kind = model.kind();
  proj.model = model.options();
  proj.method = result.plan.method;
  proj.method_note = result.plan.summary();
  proj.gradient_path = result.plan.v_operator.gradient_path;
  proj.svd = result.plan.svd;
  proj.basis = r.right;
  proj.singular_values = r.singular_values;
  proj.total_variance = r.total_variance;
  proj.total_variance_exact = r.total_variance_exact;
  proj.all_eigenvalues = r.all_eigenvalues;
  proj.n_examples = inputs.size(0);
  proj.input_shape = inputs.sizes().slice(1).vec();
  proj.data_source = data_source;
  proj.batch_size = o.run.batch_size;
  result.train_embedding = r.left * r.singular_values.unsqueeze(0);
  proj.profile.total_s = whole.lap();
  proj.profile.peak_device_bytes = detail::peak_device_memory(device);
  return result;
}

torch::Tensor transform(const Projector& projector, ScoreModel& model, const torch::Tensor& inputs,
                        const RunOptions& run) {
  const int64_t batch_size = run.batch_size;
  dist::Group* group = run.group;
  check_projector_model(projector, model, inputs);
  check_finite(inputs, "inputs");
  TORCH_CHECK(batch_size > 0, "nfk: batch size must be positive, got ", batch_size);
  // The fit's gradient path: per-example blocks and one GEMM each where the layer tape covers
  // the model; without it, k forward-mode passes per batch cost less than one backward per
  // example when k is below the batch size.
  VOperatorSpec spec{VProducts::kPerExampleBlocks, projector.gradient_path, batch_size};
  if (projector.gradient_path == GradientPath::kLoop && projector.rank() < batch_size) {
    spec.products = VProducts::kMatrixFree;
  }
  const int64_t n = inputs.size(0);
  const bool sharded = group != nullptr && group->distributed();
  const auto shard = sharded ? dist::shard_range(n, batch_size, group->rank(), group->world_size())
                             : dist::Shard{0, n};
  auto local = make_v_operator(spec, model, inputs.slice(/*dim=*/0, shard.begin, shard.end),
                               projector.fisher, run.progress, /*first_index=*/shard.begin)
                   ->apply(projector.basis);
  if (!sharded) return local;
  return group->allgather_rows(local, dist::shard_sizes(n, batch_size, group->world_size()));
}

}  // namespace nfk
