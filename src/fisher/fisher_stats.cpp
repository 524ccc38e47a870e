#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>

#include "fisher/fisher_accumulator.h"
#include "nfk/fisher.h"

namespace nfk {
namespace {

// Reference samples of the VAE get their own noise stream, apart from the data's indices.
constexpr int64_t kReferenceIndexOffset = int64_t{1} << 40;

}  // namespace

const Names<Estimator>& estimator_names() {
  static const Names<Estimator> names("estimator", {{Estimator::kAuto, "auto"},
                                                    {Estimator::kTrue, "true"},
                                                    {Estimator::kEmpirical, "empirical"},
                                                    {Estimator::kNone, "none"}});
  return names;
}

Estimator parse_estimator(const std::string& name) {
  const Estimator e = estimator_names().parse(name);
  TORCH_CHECK(e != Estimator::kNone, "nfk: the estimator `none` belongs to kind ntk and is not ",
              "chosen (expected auto, true or empirical)");
  return e;
}

Estimator resolve_estimator(ScoreModel& model, Estimator requested) {
  if (model.kind() == ModelKind::kNtk) return Estimator::kNone;
  if (requested != Estimator::kAuto) return requested;
  const bool model_reference =
      model.kind() == ModelKind::kGan ||
      ((model.kind() == ModelKind::kVae || model.kind() == ModelKind::kDensity) &&
       model.can_sample());
  return model_reference ? Estimator::kTrue : Estimator::kEmpirical;
}

torch::Tensor reference_inputs(ScoreModel& model, const torch::Tensor& data,
                               const FisherOptions& options, uint64_t seed, Estimator* resolved,
                               std::string* reference) {
  const int64_t n_data = data.size(0);
  const int64_t n = options.reference_samples > 0 ? options.reference_samples : n_data;
  const Estimator e = resolve_estimator(model, options.estimator);
  *resolved = e;
  if (e == Estimator::kTrue) {
    TORCH_CHECK(model.can_sample(), "nfk: --estimator true needs samples from the model's own ",
                "distribution, and this ", to_string(model.kind()), " model cannot sample",
                model.kind() == ModelKind::kClassifier
                    ? " (the paper uses the data instead: --estimator empirical)"
                    : "");
    *reference = model.kind() == ModelKind::kGan ? "generator samples" : "model samples";
    return model.sample(n, seed).cpu();
  }
  *reference = "data";
  if (n >= n_data) return data;
  auto gen = at::detail::createCPUGenerator(seed);
  auto idx = at::randperm(n_data, gen, torch::kLong).slice(0, 0, n);
  idx = std::get<0>(idx.sort());
  return data.index_select(0, idx);
}

FisherStats compute_fisher_stats(ScoreModel& model, const torch::Tensor& data,
                                 const FisherOptions& options, const RunOptions& run) {
  TORCH_CHECK(run.batch_size > 0, "nfk: batch size must be positive, got ", run.batch_size);
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
  auto ref = reference_inputs(model, data, options, run.seed, &stats.estimator, &stats.reference);
  const int64_t n = ref.size(0);
  // Every rank holds the same reference (same seed); each one streams its shard of it.
  dist::Shard shard{0, n};
  if (run.group != nullptr && run.group->distributed()) {
    shard = dist::shard_range(n, run.batch_size, run.group->rank(), run.group->world_size());
  }

  FisherAccumulator acc;
  // One J_b buffer for every batch: a fresh [B, P] block per batch costs more in page faults
  // than the fast per-example path takes to fill it.
  auto j_bp = torch::empty(
      {std::min(std::max<int64_t>(shard.size(), 1), run.batch_size), model.num_parameters()},
      model.parameters().front().options());
  GradientBlocks gradients(model, options.gradient_path);
  for (int64_t start = shard.begin; start < shard.end; start += run.batch_size) {
    const int64_t end = std::min(shard.end, start + run.batch_size);
    acc.add(gradients(ref.slice(0, start, end), kReferenceIndexOffset + start,
                      j_bp.narrow(0, 0, end - start)));
    if (run.progress) run.progress("gradients", end - shard.begin, shard.size());
  }
  if (run.group != nullptr) acc.reduce(*run.group, p, model.options().device);
  auto finished = acc.finish(options.floor, model.options().dtype, stats.reference);
  finished.estimator = stats.estimator;
  return finished;
}

void FisherAccumulator::add(const torch::Tensor& j_bp) {
  // A few rows at a time: float64 temporaries of a whole [B, P] block cost more in page faults
  // than the per-example gradients take to compute.
  constexpr int64_t kRows = 16;
  for (int64_t start = 0; start < j_bp.size(0); start += kRows) {
    auto j = j_bp.slice(0, start, std::min(j_bp.size(0), start + kRows)).to(torch::kFloat64);
    if (!shift_.defined()) {
      shift_ = j.mean(0);
      sum_ = torch::zeros_like(shift_);
      sum_sq_ = torch::zeros_like(shift_);
    }
    auto d = j - shift_;
    sum_ += d.sum(0);
    sum_sq_ += d.square_().sum(0);
    count_ += j.size(0);
  }
}

void FisherAccumulator::reduce(dist::Group& group, int64_t p, torch::Device device) {
  if (!group.distributed()) return;
  auto f64 = torch::dtype(torch::kFloat64).device(device);
  if (!shift_.defined()) {
    shift_ = torch::zeros({p}, f64);
    sum_ = torch::zeros({p}, f64);
    sum_sq_ = torch::zeros({p}, f64);
  }
  TORCH_CHECK(shift_.numel() == p, "nfk: Fisher statistics of ", shift_.numel(),
              " parameters, expected ", p);
  // Re-centre every rank's sums on the global mean c before adding them up:
  // Σ(d − δ)² = Σd² − 2δΣd + nδ² with δ = c − shift, d = j − shift.
  auto count = group.allreduce_sum(torch::tensor({static_cast<double>(count_)}, f64));
  auto total = group.allreduce_sum(sum_ + shift_ * static_cast<double>(count_));
  const int64_t global_count = static_cast<int64_t>(count.item<double>());
  auto centre = global_count > 0 ? total / static_cast<double>(global_count) : total;
  auto delta = centre - shift_;
  auto local_sum_sq = sum_sq_ - 2 * delta * sum_ + static_cast<double>(count_) * delta.square();
  auto local_sum = sum_ - static_cast<double>(count_) * delta;
  auto both = group.allreduce_sum(torch::stack({local_sum, local_sum_sq}));
  shift_ = centre;
  sum_ = both[0].clone();
  sum_sq_ = both[1].clone();
  count_ = global_count;
}

FisherStats FisherAccumulator::finish(double floor, torch::Dtype dtype,
                                      const std::string& reference) const {
  TORCH_CHECK(count_ >= 2, "nfk: the Fisher statistics need at least 2 reference examples, got ",
              count_);
  TORCH_CHECK(floor > 0, "nfk: the Fisher floor must be positive, got ", floor);
  TORCH_CHECK(torch::isfinite(sum_sq_).all().item<bool>(), "nfk: score gradients are NaN or Inf ",
              "on the reference (", reference, "): the model's score is not finite there");
  auto mean_d = sum_ / count_;
  auto fisher = (sum_sq_ / count_ - mean_d.square()).clamp_min(0);
  const double mean_fisher = fisher.mean().item<double>();
  TORCH_CHECK(mean_fisher > 0, "nfk: the Fisher information is zero for every parameter: the ",
              "score does not depend on the parameters over the reference (", reference, ")");
  FisherStats stats;
  stats.reference = reference;
  stats.n_reference = count_;
  stats.floor_value = floor * mean_fisher;
  stats.n_floored = (fisher < stats.floor_value).sum().item<int64_t>();
  stats.mean_score = (shift_ + mean_d).to(dtype);
  stats.fisher_diag = fisher.clamp_min(stats.floor_value).to(dtype);
  return stats;
}

FisherStats generated_fisher_stats(ScoreModel& gan, int64_t n_generated, uint64_t seed,
                                   double floor, int64_t batch_size) {
  TORCH_CHECK(gan.kind() == ModelKind::kGan, "nfk: Fisher similarity needs a gan model");
  TORCH_CHECK(n_generated >= 2, "nfk: Fisher similarity needs at least 2 generated samples, got ",
              n_generated);
  FisherOptions fo;
  fo.estimator = Estimator::kTrue;
  fo.reference_samples = n_generated;
  fo.floor = floor;
  return compute_fisher_stats(gan, torch::empty({0}), fo, RunOptions{batch_size, seed});
}

FisherSimilarity fisher_similarity(ScoreModel& gan, const torch::Tensor& real, int64_t n_generated,
                                   uint64_t seed, double c, double floor, int64_t batch_size) {
  return fisher_similarity(gan, generated_fisher_stats(gan, n_generated, seed, floor, batch_size),
                           real, c, batch_size);
}

FisherSimilarity fisher_similarity(ScoreModel& gan, const FisherStats& stats,
                                   const torch::Tensor& real, double c, int64_t batch_size) {
  TORCH_CHECK(gan.kind() == ModelKind::kGan, "nfk: Fisher similarity needs a gan model");
  TORCH_CHECK(real.size(0) > 0, "nfk: Fisher similarity needs at least one real example");
  // ū_real: the mean score is one VJP with m = 1/n.
  const int64_t n = real.size(0);
  auto sum = torch::zeros_like(stats.mean_score, torch::kFloat64);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    auto s = gan.score(gan.prepare(real.slice(0, start, end)), start).sum();
    auto params = gan.parameters();
    sum += flatten_like(torch::autograd::grad({s}, params, {}, false, false, true), params)
               .to(torch::kFloat64);
  }
  auto mean_v = (sum / n - stats.mean_score.to(torch::kFloat64)) *
                stats.fisher_diag.to(torch::kFloat64).rsqrt();
  FisherSimilarity out;
  out.similarity = std::exp(-c * mean_v.square().mean().item<double>());
  out.distance = mean_v.norm().item<double>();
  return out;
}

}  // namespace nfk
