#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "detail/checksum.h"
#include "embed/fit_checkpoint.h"
#include "embed/fit_profile.h"
#include "nfk/data.h"
#include "nfk/embed.h"
#include "nfk/sharded_operator.h"

namespace nfk {

FitMethod parse_fit_method(const std::string& name) {
  if (name == "auto") return FitMethod::kAuto;
  if (name == "exact") return FitMethod::kExact;
  if (name == "per-example") return FitMethod::kPerExample;
  if (name == "matrix-free") return FitMethod::kMatrixFree;
  if (name == "sketch") return FitMethod::kSketch;
  TORCH_CHECK(false, "nfk: unknown method `", name,
              "` (expected auto, exact, per-example, matrix-free or sketch)");
}

std::string to_string(FitMethod m) {
  switch (m) {
    case FitMethod::kAuto:
      return "auto";
    case FitMethod::kExact:
      return "exact";
    case FitMethod::kPerExample:
      return "per-example";
    case FitMethod::kMatrixFree:
      return "matrix-free";
    case FitMethod::kSketch:
      return "sketch";
  }
  TORCH_INTERNAL_ASSERT(false, "unhandled FitMethod");
}

torch::Tensor Projector::explained_variance_ratio() const {
  auto s2 = singular_values.to(torch::kFloat64).square();
  return total_variance > 0 ? s2 / total_variance : torch::zeros_like(s2);
}

int64_t Projector::components_for(double fraction) const {
  auto eig = all_eigenvalues.defined() ? all_eigenvalues
                                       : singular_values.to(torch::kFloat64).square().cpu();
  if (total_variance <= 0) return -1;
  auto cum = (eig.cumsum(0) / total_variance).contiguous();
  const double* c = cum.data_ptr<double>();
  for (int64_t i = 0; i < cum.numel(); ++i) {
    if (c[i] >= fraction - 1e-12) return i + 1;
  }
  return -1;
}

nlohmann::json Projector::spectrum_json() const {
  auto to_vec = [](const torch::Tensor& t) {
    auto c = t.to(torch::kFloat64).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  return {{"singular_values", to_vec(singular_values)},
          {"eigenvalues", to_vec(singular_values.to(torch::kFloat64).square())},
          {"explained_variance_ratio", to_vec(explained_variance_ratio())},
          {"total_variance", total_variance},
          {"total_variance_exact", total_variance_exact},
          {"components_for",
           {{"0.5", components_for(0.5)},
            {"0.9", components_for(0.9)},
            {"0.99", components_for(0.99)},
            {"0.995", components_for(0.995)}}},
          {"rank", rank()},
          {"method", to_string(method)},
          {"dtype", dtype_name(model.dtype)},
          {"kind", to_string(kind)},
          {"estimator", to_string(fisher.estimator)},
          {"n_examples", n_examples},
          {"n_params", n_params()}};
}

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

// What a checkpoint must match to be resumed: the model's and the data's bytes and every
// option that changes the numbers.
nlohmann::json fit_fingerprint(ScoreModel& model, const torch::Tensor& inputs, const FitOptions& o,
                               const std::string& data_source, int world_size) {
  auto x = inputs.to(torch::kCPU).contiguous();
  const auto& m = model.options();
  std::error_code ec;
  const bool model_file =
      !m.model_path.empty() && std::filesystem::is_regular_file(m.model_path, ec);
  return {
      {"kind", to_string(model.kind())},
      {"model_hash", model_file ? file_hash(m.model_path) : ""},
      {"n_params", model.num_parameters()},
      {"dtype", dtype_name(m.dtype)},
      {"seed", m.seed},
      {"data_source", data_source},
      {"data_shape", x.sizes().vec()},
      {"data_crc32",
       detail::crc32_of(static_cast<const char*>(x.data_ptr()), x.numel() * x.element_size())},
      {"method", to_string(o.method)},
      {"svd", {o.svd.rank, o.svd.oversample, o.svd.power_iters, o.svd.seed}},
      {"fisher",
       {to_string(o.fisher.estimator), o.fisher.reference_samples, o.fisher.floor, o.fisher.seed}},
      {"batch_size", o.batch_size},
      {"memory_budget", o.memory_budget},
      {"processes", world_size}};
}

}  // namespace

Projector fit(ScoreModel& model, const torch::Tensor& inputs, const FitOptions& o,
              const std::string& data_source, const ProgressFn& progress,
              torch::Tensor* train_embedding) {
  const int64_t n = inputs.size(0);
  const int64_t p = model.num_parameters();
  TORCH_CHECK(n >= 2, "nfk::fit: need at least 2 examples, got ", n);
  TORCH_CHECK(o.svd.rank > 0 && o.svd.rank <= std::min(n, p), "nfk::fit: rank must be in [1, ",
              std::min(n, p), "] (min of examples and parameters), got ", o.svd.rank);
  check_finite(inputs, data_source.empty() ? "inputs" : data_source);
  const torch::Device device = model.options().device;
  detail::reset_peak_device_memory(device);
  detail::Stopwatch whole(device), stage(device);
  Projector proj;

  // Data parallel: this rank's rows of V, the others' through a ShardedOperator.
  dist::Group* group = o.group != nullptr && o.group->distributed() ? o.group : nullptr;
  FisherOptions fisher_options = o.fisher;
  fisher_options.group = group;
  dist::Shard shard{0, n};
  std::vector<int64_t> shard_rows{n};
  if (group != nullptr) {
    shard = dist::shard_range(n, o.batch_size, group->rank(), group->world_size());
    shard_rows = dist::shard_sizes(n, o.batch_size, group->world_size());
  }
  // The budget is per process: a rank keeps only its rows of V (the largest shard decides, so
  // that every rank makes the same choice). The exact method gathers all of V on every rank.
  const int64_t value_bytes = static_cast<int64_t>(c10::elementSize(model.options().dtype));
  const int64_t v_bytes = n * p * value_bytes;
  const int64_t shard_bytes =
      *std::max_element(shard_rows.begin(), shard_rows.end()) * p * value_bytes;
  detail::FitCheckpoint checkpoint(
      o.checkpoint_dir, o.resume,
      o.checkpoint_dir.empty() ? nlohmann::json()
                               : fit_fingerprint(model, inputs, o, data_source,
                                                 group != nullptr ? group->world_size() : 1),
      /*writer=*/group == nullptr || group->is_root());
  // A resumed fit runs the method the interrupted one had resolved.
  FitMethod method = checkpoint.method() != FitMethod::kAuto ? checkpoint.method() : o.method;
  const bool v_fits = (method == FitMethod::kExact ? v_bytes : shard_bytes) <= o.memory_budget;
  if (method == FitMethod::kAuto && v_fits) method = FitMethod::kPerExample;
  if (method == FitMethod::kExact) {
    TORCH_CHECK(v_fits, "nfk::fit: --method exact keeps V in memory: ", n, " x ", p,
                " values = ", v_bytes >> 20, " MiB exceed the memory budget of ",
                o.memory_budget >> 20, " MiB (raise --memory-budget or use another method)");
  }
  std::ostringstream note;  // the choice first, then the sizes it rests on
  // By the method resolved at the call; `gemm_rows` > 0: `local` is V's resident rows.
  auto svd_of = [&](LinearOperator& local, int64_t gemm_rows) {
    auto solve = [&](LinearOperator& op) {
      detail::TimedOperator timed(op, proj.profile, device, gemm_rows);
      const double products_before = proj.profile.products_s;
      detail::Stopwatch watch(device);
      checkpoint.save_method(method);
      auto r = method == FitMethod::kSketch
                   ? sketch_svd(timed, o.svd, progress)
                   : randomized_svd(timed, o.svd, progress, checkpoint.svd_state(),
                                    checkpoint.svd_saver());
      proj.profile.factorizations_s += watch.lap() - (proj.profile.products_s - products_before);
      return r;
    };
    if (group == nullptr) return solve(local);
    ShardedOperator sharded(local, *group, shard_rows);
    return solve(sharded);
  };

  SvdResult r;
  if (method == FitMethod::kExact || (method == FitMethod::kPerExample && v_fits)) {
    // With a group: this rank's rows only.
    auto v_np = materialize_fisher_vectors(model, inputs, fisher_options, o.batch_size,
                                           &proj.fisher, progress);
    proj.profile.gradients_s = stage.lap();
    if (method == FitMethod::kExact) {
      note << "exact (Gram eigendecomposition)";
      if (group != nullptr) v_np = group->allgather_rows(v_np, shard_rows);
      r = exact_svd(v_np, o.svd.rank);
      proj.profile.factorizations_s = stage.lap();
    } else {
      note << "per-example, V resident" << (o.method == FitMethod::kAuto ? " (fits)" : "");
      DenseOperator resident(v_np);
      r = svd_of(resident, v_np.size(0));
      // V is in hand: the total variance is exact, not estimated.
      r.total_variance = squared_norm(v_np);
      if (group != nullptr) {
        r.total_variance =
            group->allreduce_sum(torch::tensor({r.total_variance}, torch::kFloat64)).item<double>();
      }
      r.total_variance_exact = true;
    }
  } else {
    // The statistics pass also settles whether the layer tape covers the model (a resumed fit
    // has its statistics and its method from the checkpoint).
    if (checkpoint.stats()) {
      proj.fisher = *checkpoint.stats();
      proj.fisher.mean_score = proj.fisher.mean_score.to(device);
      proj.fisher.fisher_diag = proj.fisher.fisher_diag.to(device);
      const auto& f = proj.fisher;
      TORCH_CHECK(f.mean_score.numel() == p && f.fisher_diag.numel() == p &&
                      torch::isfinite(f.mean_score).all().item<bool>() &&
                      torch::isfinite(f.fisher_diag).all().item<bool>() &&
                      (f.fisher_diag > 0).all().item<bool>(),
                  "nfk: the checkpoint's Fisher statistics are corrupt (", o.checkpoint_dir,
                  "): run without --resume to start afresh");
    } else {
      proj.fisher = compute_fisher_stats(model, inputs, fisher_options, progress);
      checkpoint.save_stats(proj.fisher);
    }
    proj.profile.statistics_s = stage.lap();
    auto local = inputs.slice(/*dim=*/0, shard.begin, shard.end);
    const bool tape = model.gradient_path() == GradientPath::kLayerTape;
    if (method == FitMethod::kAuto) method = tape ? FitMethod::kPerExample : FitMethod::kMatrixFree;
    if (method == FitMethod::kPerExample || method == FitMethod::kSketch) {
      note << (method == FitMethod::kSketch ? "single-pass sketch on per-example blocks ("
                                            : "per-example, V recomputed per pass (")
           << (tape ? "layer tape" : "per-example loop: " + model.gradient_path_note()) << ")";
      PerExampleOperator op(model, local, proj.fisher, o.batch_size, progress, shard.begin);
      r = svd_of(op, /*gemm_rows=*/0);
    } else {
      note << "matrix-free (JVP/VJP)"
           << (o.method == FitMethod::kAuto
                   ? "; the layer tape does not cover the model: " + model.gradient_path_note()
                   : "");
      FisherVectorOperator op(model, local, proj.fisher, o.batch_size, progress, shard.begin);
      r = svd_of(op, /*gemm_rows=*/0);
      check_centring_rounding(r, proj.fisher, n, model.options().dtype);
    }
  }
  note << "; V is " << n << " x " << p << " = " << (v_bytes >> 20) << " MiB";
  if (group != nullptr) note << " (" << (shard_bytes >> 20) << " MiB per rank)";
  note << ", memory budget " << (o.memory_budget >> 20) << " MiB";
  proj.method_note = note.str();

  proj.kind = model.kind();
  proj.model = model.options();
  proj.model.model_path = std::filesystem::absolute(proj.model.model_path).string();
  proj.model_hash = file_hash(proj.model.model_path);
  if (!proj.model.generator_path.empty()) {
    proj.model.generator_path = std::filesystem::absolute(proj.model.generator_path).string();
    proj.generator_hash = file_hash(proj.model.generator_path);
  }
  proj.method = method;
  proj.svd = o.svd;
  proj.basis = r.right;
  proj.singular_values = r.singular_values;
  proj.total_variance = r.total_variance;
  proj.total_variance_exact = r.total_variance_exact;
  proj.all_eigenvalues = r.all_eigenvalues;
  proj.n_examples = n;
  proj.input_shape = inputs.sizes().slice(1).vec();
  proj.data_source = data_source;
  proj.batch_size = o.batch_size;
  if (train_embedding) *train_embedding = r.left * r.singular_values.unsqueeze(0);
  proj.profile.total_s = whole.lap();
  proj.profile.peak_device_bytes = detail::peak_device_memory(device);
  return proj;
}

torch::Tensor transform(const Projector& projector, ScoreModel& model, const torch::Tensor& inputs,
                        int64_t batch_size, const ProgressFn& progress, dist::Group* group) {
  check_projector_model(projector, model, inputs);
  check_finite(inputs, "inputs");
  if (group == nullptr || !group->distributed()) {
    // Per-example gradient blocks and one GEMM each: k forward-mode passes cost far more.
    return PerExampleOperator(model, inputs, projector.fisher, batch_size, progress)
        .apply(projector.basis);
  }
  const int64_t n = inputs.size(0);
  const auto shard = dist::shard_range(n, batch_size, group->rank(), group->world_size());
  auto local = PerExampleOperator(model, inputs.slice(/*dim=*/0, shard.begin, shard.end),
                                  projector.fisher, batch_size, progress,
                                  /*first_index=*/shard.begin)
                   .apply(projector.basis);
  return group->allgather_rows(local, dist::shard_sizes(n, batch_size, group->world_size()));
}

void check_projector_model(const Projector& projector, ScoreModel& model,
                           const torch::Tensor& inputs) {
  TORCH_CHECK(model.num_parameters() == projector.n_params(), "nfk: the model has ",
              model.num_parameters(), " parameters but the projector was fitted with ",
              projector.n_params());
  if (!inputs.defined() || projector.input_shape.empty() || inputs.dim() == 0 ||
      inputs.size(0) == 0) {
    return;  // no examples: nothing to embed, whatever the shape
  }
  const auto example = inputs.sizes().slice(1).vec();
  TORCH_CHECK(inputs.dim() >= 1 && example == projector.input_shape, "nfk: data of shape ",
              inputs.sizes(), " does not fit the projector: it was fitted on examples of shape ",
              c10::IntArrayRef(projector.input_shape), " (",
              projector.data_source.empty() ? "data" : projector.data_source,
              "), so the model expects [N, ", c10::Join(", ", projector.input_shape), "]");
}

ScoreModel load_projector_model(const Projector& projector, const std::string& override_path) {
  ModelOptions options = projector.model;
  if (!override_path.empty()) options.model_path = override_path;
  TORCH_CHECK(file_hash(options.model_path) == projector.model_hash, "nfk: model ",
              options.model_path, " differs from the one the projector was fitted with (hash ",
              projector.model_hash, ")");
  if (!options.generator_path.empty()) {
    TORCH_CHECK(file_hash(options.generator_path) == projector.generator_hash, "nfk: generator ",
                options.generator_path, " differs from the one the projector was fitted with");
  }
  return load_score_model(projector.kind, options);
}

}  // namespace nfk
