// The classifier's Fisher of p(y|x): its diagonal, the rows operator W (F = WᵀW) and the
// capacity statistics (SPEC §1b). The rows come from fisher/fisher_rows.h.
#include "nfk/classifier_fisher.h"

#include <cmath>

#include "fisher/fisher_rows.h"

namespace nfk {
namespace {

torch::Tensor reduced(const torch::Tensor& local, const RunOptions& run) {
  return run.group && run.group->distributed() ? run.group->allreduce_sum(local) : local;
}

}  // namespace

ClassifierFisherDiag classifier_fisher_diag(ScoreModel& model, const ClassifierData& data,
                                            const ClassifierFisherOptions& options,
                                            const RunOptions& run) {
  const int64_t classes = detail::check_classifier_data(model, data, options);
  ClassifierFisherDiag out;
  out.estimator = options.estimator;
  out.n_examples = data.inputs.size(0);
  out.path = detail::choose_classifier_path(model, data, options);
  // Squares summed per block in the model's dtype, the blocks summed in float64.
  auto sum_p = torch::zeros({model.num_parameters()}, torch::kFloat64);
  detail::for_each_row_block(model, data, options, run, out.path.path, "fisher rows",
                             [&](int64_t, int64_t, int64_t, const torch::Tensor& rows_bp) {
                               sum_p +=
                                   rows_bp.square().sum(/*dim=*/0).to(torch::kCPU, torch::kFloat64);
                             });
  sum_p = reduced(sum_p, run);
  const double norm = detail::row_normaliser(out.n_examples, options, run.batch_size);
  out.n_rows = options.estimator == FisherEstimator::kBatched
                   ? static_cast<int64_t>(norm)
                   : out.n_examples * detail::cotangents_per_example(options, classes);
  auto params = model.parameters();
  out.diag = (sum_p / norm).to(params.front().options());
  TORCH_CHECK(torch::isfinite(out.diag).all().item<bool>(),
              "nfk: the classifier's Fisher diagonal has NaN or Inf entries (non-finite logits "
              "or gradients on this data)");
  return out;
}

ClassifierFisherRows::ClassifierFisherRows(ScoreModel& model, ClassifierData data,
                                           ClassifierFisherOptions options, RunOptions run,
                                           GradientPath path)
    : model_(model), data_(std::move(data)), options_(options), run_(std::move(run)) {
  const int64_t classes = detail::check_classifier_data(model_, data_, options_);
  rows_per_batch_unit_ = detail::cotangents_per_example(options_, classes);
  path_ = path != GradientPath::kAuto
              ? path
              : detail::choose_classifier_path(model_, data_, options_).path;
  TORCH_CHECK(!run_.group || !run_.group->distributed(),
              "nfk: ClassifierFisherRows runs in one process (its rows are not sharded)");
}

int64_t ClassifierFisherRows::rows() const {
  const int64_t n = data_.inputs.size(0);
  if (options_.estimator == FisherEstimator::kBatched)
    return static_cast<int64_t>(detail::row_normaliser(n, options_, run_.batch_size));
  return n * rows_per_batch_unit_;
}

int64_t ClassifierFisherRows::cols() const {
  return model_.num_parameters();
}

torch::TensorOptions ClassifierFisherRows::options() const {
  return model_.parameters().front().options();
}

// Row index of (example block, r): example-major, i·R + r; batched: the batch's number.
torch::Tensor ClassifierFisherRows::apply(const torch::Tensor& q_pu) {
  TORCH_CHECK(q_pu.dim() == 2 && q_pu.size(0) == cols(), "nfk: apply expects Q [", cols(),
              ", u], got ", q_pu.sizes());
  const double scale =
      1.0 / std::sqrt(detail::row_normaliser(data_.inputs.size(0), options_, run_.batch_size));
  auto q = q_pu.to(options());
  auto out = torch::empty({rows(), q.size(1)}, options());
  const bool batched = options_.estimator == FisherEstimator::kBatched;
  auto out3 = batched ? out.unsqueeze(1) : out.view({-1, rows_per_batch_unit_, q.size(1)});
  detail::for_each_row_block(
      model_, data_, options_, run_, path_, "W Q",
      [&](int64_t start, int64_t stop, int64_t r, const torch::Tensor& rows_bp) {
        auto block = rows_bp.mm(q) * scale;
        if (batched) {
          out.select(0, start / run_.batch_size).copy_(block[0]);
        } else {
          out3.slice(0, start, stop).select(1, r).copy_(block);
        }
      });
  return out;
}

torch::Tensor ClassifierFisherRows::apply_t(const torch::Tensor& m_nu) {
  TORCH_CHECK(m_nu.dim() == 2 && m_nu.size(0) == rows(), "nfk: apply_t expects M [", rows(),
              ", u], got ", m_nu.sizes());
  const double scale =
      1.0 / std::sqrt(detail::row_normaliser(data_.inputs.size(0), options_, run_.batch_size));
  auto m = m_nu.to(options());
  auto acc = torch::zeros({cols(), m.size(1)}, options());
  const bool batched = options_.estimator == FisherEstimator::kBatched;
  auto m3 = batched ? m.unsqueeze(1) : m.view({-1, rows_per_batch_unit_, m.size(1)});
  detail::for_each_row_block(
      model_, data_, options_, run_, path_, "Wt M",
      [&](int64_t start, int64_t stop, int64_t r, const torch::Tensor& rows_bp) {
        auto m_b = batched ? m.slice(0, start / run_.batch_size, start / run_.batch_size + 1)
                           : m3.slice(0, start, stop).select(1, r);
        acc.addmm_(rows_bp.t(), m_b, /*beta=*/1, /*alpha=*/scale);
      });
  return acc;
}

FisherCapacity fisher_capacity(ScoreModel& model, const ClassifierData& data,
                               const ClassifierFisherOptions& options, const RunOptions& run,
                               const torch::Tensor& diag, const CapacityOptions& capacity,
                               GradientPath path) {
  TORCH_CHECK(capacity.top_k >= 1, "nfk: --top-k must be positive, got ", capacity.top_k);
  TORCH_CHECK(capacity.sloppy_relative > 0, "nfk: the sloppy threshold must be positive");
  FisherCapacity out;
  auto d = diag.to(torch::kCPU, torch::kFloat64);
  out.trace = d.sum().item<double>();
  out.sloppy_threshold = capacity.sloppy_relative * d.mean().item<double>();
  out.sloppy_fraction = (d < out.sloppy_threshold).to(torch::kFloat64).mean().item<double>();
  TORCH_CHECK(diag.dim() == 1 && diag.size(0) == model.num_parameters(),
              "nfk: the Fisher diagonal ", diag.sizes(), " does not match the model's ",
              model.num_parameters(), " parameters");
  ClassifierFisherRows w(model, data, options, run, path);
  const int64_t k = std::min({capacity.top_k, w.rows(), w.cols()});
  SvdOptions svd;
  svd.rank = k;
  svd.oversample = capacity.oversample;
  svd.power_iters = capacity.power_iters;
  svd.tol = capacity.tol;
  svd.seed = run.seed;
  auto result = randomized_svd(w, svd, run.progress);
  out.iterations = result.iterations;
  out.estimated_error = result.estimated_error;
  auto lambda = result.singular_values.to(torch::kCPU, torch::kFloat64).square();
  out.top_eigenvalues = lambda;
  const double total = lambda.sum().item<double>();
  if (total > 0) {
    auto share = lambda / total;
    auto entropy = -(share * torch::log(share.clamp_min(1e-300))).sum().item<double>();
    out.effective_rank_entropy = std::exp(entropy);
    out.effective_rank_ratio = total * total / lambda.square().sum().item<double>();
  }
  out.top_k_share = out.trace > 0 ? total / out.trace : 0;
  return out;
}

}  // namespace nfk
