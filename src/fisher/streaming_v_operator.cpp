// What the streaming V operators share (StreamingVOperator), V materialised from per-example
// gradients, and make_v_operator.
#include <algorithm>

#include "fisher/fisher_accumulator.h"
#include "nfk/fisher.h"

namespace nfk {

StreamingVOperator::StreamingVOperator(ScoreModel& model, torch::Tensor inputs,
                                       const FisherStats& stats, int64_t batch_size,
                                       ProgressFn progress, int64_t first_index,
                                       GradientPath gradient_path)
    : model_(model),
      gradients_(model, gradient_path),
      inputs_(std::move(inputs)),
      z_(stats.mean_score.to(model.options().device, model.options().dtype)),
      inv_sqrt_(stats.inv_sqrt().to(model.options().device, model.options().dtype)),
      batch_size_(batch_size),
      progress_(std::move(progress)),
      first_index_(first_index) {
  TORCH_CHECK(batch_size_ > 0, "nfk: batch size must be positive, got ", batch_size_);
  TORCH_CHECK(z_.numel() == model_.num_parameters(), "nfk: Fisher statistics have ", z_.numel(),
              " entries but the model has ", model_.num_parameters(), " parameters");
  // On a GPU every pass reads all the data: up to 1 GiB of it crosses the bus once, here,
  // instead of once per pass (2L + 2 times).
  const int64_t data_bytes =
      inputs_.numel() * static_cast<int64_t>(c10::elementSize(model_.options().dtype));
  if (model_.options().device.is_cuda() && !inputs_.is_cuda() && data_bytes <= (int64_t{1} << 30)) {
    inputs_ = model_.prepare(inputs_);
  }
}

namespace {

// V rows from per-example gradients, written in place: v_np[start:end] = J_b.
// `first_index`: index of inputs[0] in its data set.
void fill_gradients(GradientBlocks& gradients, const torch::Tensor& inputs, int64_t batch_size,
                    torch::Tensor v_np, FisherAccumulator* acc, const ProgressFn& progress,
                    int64_t first_index = 0) {
  const int64_t n = inputs.size(0);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    auto rows = v_np.slice(0, start, end);
    gradients(inputs.slice(0, start, end), first_index + start, rows);
    if (acc) acc->add(rows);
    if (progress) progress("gradients", end, n);
  }
}

// J → V = (J − 1zᵀ) I^{-1/2} in place, a block of rows at a time (no N×P temporaries).
void centre_and_scale(torch::Tensor v_np, const torch::Tensor& z, const torch::Tensor& inv_sqrt) {
  const int64_t block = 1024;
  for (int64_t start = 0; start < v_np.size(0); start += block) {
    v_np.slice(0, start, std::min(v_np.size(0), start + block)).sub_(z).mul_(inv_sqrt);
  }
}

}  // namespace

torch::Tensor StreamingVOperator::dense() {
  auto v_np = torch::empty({rows(), cols()}, options());
  fill_gradients(gradients_, inputs_, batch_size_, v_np, nullptr, progress_, first_index_);
  centre_and_scale(v_np, z_, inv_sqrt_);
  return v_np;
}

torch::Tensor materialize_fisher_vectors(ScoreModel& model, const torch::Tensor& inputs,
                                         const FisherOptions& options, const RunOptions& run,
                                         FisherStats* stats) {
  TORCH_CHECK(run.batch_size > 0, "nfk: batch size must be positive, got ", run.batch_size);
  const int64_t n = inputs.size(0);
  // A rank materialises its own rows only; z and I are reduced over all ranks.
  dist::Group* group = run.group != nullptr && run.group->distributed() ? run.group : nullptr;
  dist::Shard shard{0, n};
  if (group != nullptr) {
    shard = dist::shard_range(n, run.batch_size, group->rank(), group->world_size());
  }
  auto local_inputs = inputs.slice(/*dim=*/0, shard.begin, shard.end);
  auto v_np = torch::empty({shard.size(), model.num_parameters()},
                           torch::dtype(model.options().dtype).device(model.options().device));
  // The reference is the data itself: J gives z and I in the same pass. (Not for noisy scores,
  // whose reference pass draws its own noise stream.)
  const bool one_pass = resolve_estimator(model, options.estimator) == Estimator::kEmpirical &&
                        (options.reference_samples <= 0 || options.reference_samples >= n) &&
                        !model.stochastic();
  GradientBlocks gradients(model, options.gradient_path);
  if (one_pass) {
    FisherAccumulator acc;
    fill_gradients(gradients, local_inputs, run.batch_size, v_np, &acc, run.progress, shard.begin);
    if (group != nullptr) acc.reduce(*group, model.num_parameters(), model.options().device);
    *stats = acc.finish(options.floor, model.options().dtype, "data");
    stats->estimator = Estimator::kEmpirical;
  } else {
    *stats = compute_fisher_stats(model, inputs, options, run);
    fill_gradients(gradients, local_inputs, run.batch_size, v_np, nullptr, run.progress,
                   shard.begin);
  }
  centre_and_scale(v_np, stats->mean_score, stats->inv_sqrt());
  // A score that is NaN or Inf on some examples (or overflows the dtype in V) names the first.
  auto bad_rows = torch::isfinite(v_np).all(/*dim=*/1).logical_not().nonzero();
  TORCH_CHECK(bad_rows.numel() == 0, "nfk: the Fisher vector of example ",
              shard.begin + (bad_rows.numel() ? bad_rows[0][0].item<int64_t>() : 0),
              " is NaN or Inf: the model's score or its gradient is not finite there (or ",
              "overflows ", dtype_name(model.options().dtype), ")");
  return v_np;
}

std::unique_ptr<StreamingVOperator> make_v_operator(const VOperatorSpec& spec, ScoreModel& model,
                                                    torch::Tensor inputs, const FisherStats& stats,
                                                    ProgressFn progress, int64_t first_index) {
  if (spec.products == VProducts::kMatrixFree) {
    return std::make_unique<FisherVectorOperator>(model, std::move(inputs), stats, spec.batch_size,
                                                  std::move(progress), first_index,
                                                  spec.gradient_path);
  }
  return std::make_unique<PerExampleOperator>(model, std::move(inputs), stats, spec.batch_size,
                                              std::move(progress), first_index, spec.gradient_path);
}

}  // namespace nfk
