#include <algorithm>

#include "nfk/fisher.h"

namespace nfk {
namespace {

// Reference samples of the VAE get their own noise stream, apart from the data's indices.
constexpr int64_t kReferenceIndexOffset = int64_t{1} << 40;

}  // namespace

Estimator parse_estimator(const std::string& name) {
  if (name == "auto") return Estimator::kAuto;
  if (name == "true") return Estimator::kTrue;
  if (name == "empirical") return Estimator::kEmpirical;
  TORCH_CHECK(false, "nfk: unknown estimator `", name, "` (expected auto, true or empirical)");
}

std::string to_string(Estimator e) {
  switch (e) {
    case Estimator::kAuto:
      return "auto";
    case Estimator::kTrue:
      return "true";
    case Estimator::kEmpirical:
      return "empirical";
    case Estimator::kNone:
      return "none";
  }
  TORCH_INTERNAL_ASSERT(false, "unhandled Estimator");
}

torch::Tensor reference_inputs(ScoreModel& model, const torch::Tensor& data,
                               const FisherOptions& options, Estimator* resolved,
                               std::string* reference) {
  const int64_t n_data = data.size(0);
  const int64_t n = options.reference_samples > 0 ? options.reference_samples : n_data;
  Estimator e = options.estimator;
  if (e == Estimator::kAuto) {
    const bool model_reference = model.kind() == ModelKind::kGan ||
                                 ((model.kind() == ModelKind::kVae ||
                                   model.kind() == ModelKind::kDensity) && model.can_sample());
    e = model_reference ? Estimator::kTrue : Estimator::kEmpirical;
  }
  *resolved = e;
  if (e == Estimator::kTrue) {
    TORCH_CHECK(model.can_sample(), "nfk: --estimator true needs samples from the model's own ",
                "distribution, and this ", to_string(model.kind()), " model cannot sample",
                model.kind() == ModelKind::kClassifier
                    ? " (the paper uses the data instead: --estimator empirical)"
                    : "");
    *reference = model.kind() == ModelKind::kGan ? "generator samples" : "model samples";
    return model.sample(n, options.seed).cpu();
  }
  *reference = "data";
  if (n >= n_data) return data;
  auto gen = at::detail::createCPUGenerator(options.seed);
  auto idx = at::randperm(n_data, gen, torch::kLong).slice(0, 0, n);
  idx = std::get<0>(idx.sort());
  return data.index_select(0, idx);
}

FisherStats compute_fisher_stats(ScoreModel& model, const torch::Tensor& data,
                                 const FisherOptions& options, const ProgressFn& progress) {
  TORCH_CHECK(options.batch_size > 0, "nfk: batch size must be positive");
  TORCH_CHECK(options.floor > 0, "nfk: the Fisher floor must be positive, got ", options.floor);
  const int64_t p = model.num_parameters();
  auto opts = torch::TensorOptions().dtype(model.options().dtype).device(model.options().device);
  FisherStats stats;
  if (model.kind() == ModelKind::kNtk) {
    stats.mean_score = torch::zeros({p}, opts);
    stats.fisher_diag = torch::ones({p}, opts);
    stats.estimator = Estimator::kNone;
    stats.reference = "none";
    return stats;
  }
  auto ref = reference_inputs(model, data, options, &stats.estimator, &stats.reference);
  const int64_t n = ref.size(0);
  TORCH_CHECK(n >= 2, "nfk: the Fisher statistics need at least 2 reference examples, got ", n);

  // Accumulate in float64 whatever the model dtype, around a shift (the first batch's mean) so
  // that E[d²] − E[d]² does not cancel when |z| dwarfs the spread.
  torch::Tensor shift;
  auto sum = torch::zeros({p}, opts.dtype(torch::kFloat64));
  auto sum_sq = torch::zeros({p}, opts.dtype(torch::kFloat64));
  for (int64_t start = 0; start < n; start += options.batch_size) {
    const int64_t end = std::min(n, start + options.batch_size);
    auto j_bp = per_example_gradients(model, ref.slice(0, start, end),
                                      kReferenceIndexOffset + start)
                    .to(torch::kFloat64);
    if (!shift.defined()) shift = j_bp.mean(0);
    auto d_bp = j_bp - shift;
    sum += d_bp.sum(0);
    sum_sq += d_bp.square().sum(0);
    if (progress) progress("gradients", end, n);
  }
  auto mean_d = sum / n;
  auto z = shift + mean_d;
  auto fisher = (sum_sq / n - mean_d.square()).clamp_min(0);
  const double mean_fisher = fisher.mean().item<double>();
  TORCH_CHECK(mean_fisher > 0, "nfk: the Fisher information is zero for every parameter: the ",
              "score does not depend on the parameters over the reference (", stats.reference, ")");
  stats.floor_value = options.floor * mean_fisher;
  stats.n_floored = (fisher < stats.floor_value).sum().item<int64_t>();
  stats.mean_score = z.to(opts.dtype());
  stats.fisher_diag = fisher.clamp_min(stats.floor_value).to(opts.dtype());
  stats.n_reference = n;
  return stats;
}

}  // namespace nfk
