// The classifier Fisher's rows: logit cotangents per estimator and the batch walk over them.
#include "fisher/fisher_rows.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>

namespace nfk {

const Names<FisherEstimator>& fisher_estimator_names() {
  static const Names<FisherEstimator> names("Fisher estimator",
                                            {{FisherEstimator::kTrue, "true"},
                                             {FisherEstimator::kMonteCarlo, "mc"},
                                             {FisherEstimator::kEmpirical, "empirical"},
                                             {FisherEstimator::kBatched, "batched"}});
  return names;
}

bool needs_labels(FisherEstimator estimator) {
  return estimator == FisherEstimator::kEmpirical || estimator == FisherEstimator::kBatched;
}

const Names<FisherForm>& fisher_form_names() {
  static const Names<FisherForm> names(
      "Fisher form",
      {{FisherForm::kDiag, "diag"}, {FisherForm::kKfac, "kfac"}, {FisherForm::kEkfac, "ekfac"}});
  return names;
}

namespace detail {
namespace {

// SplitMix64 of (seed, index): independent label streams per batch, the same on every rank.
uint64_t batch_seed(uint64_t seed, int64_t first_index) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (static_cast<uint64_t>(first_index) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

torch::Tensor logits_of(ScoreModel& model, const torch::Tensor& x) {
  return model.network().call("forward", x);
}

// Rows of one example at a time (one forward per example, R backward passes on its graph).
void loop_row_blocks(ScoreModel& model, const torch::Tensor& x, const torch::Tensor& c_rbc,
                     int64_t start, const RowBlockFn& visit) {
  auto params = model.parameters();
  const int64_t p = model.num_parameters(), r_count = c_rbc.size(0);
  auto row = torch::empty({1, p}, params.front().options());
  torch::AutoGradMode grad_on(true);
  for (int64_t i = 0; i < x.size(0); ++i) {
    auto out = logits_of(model, x.slice(0, i, i + 1));
    for (int64_t r = 0; r < r_count; ++r) {
      auto g = torch::autograd::grad({out}, params, {c_rbc[r].slice(0, i, i + 1)},
                                     /*retain_graph=*/r + 1 < r_count, /*create_graph=*/false,
                                     /*allow_unused=*/true);
      row[0].copy_(flatten_like(g, params));
      visit(start + i, start + i + 1, r, row);
    }
  }
}

}  // namespace

torch::Tensor logit_cotangents(const torch::Tensor& logits_bc, const torch::Tensor& labels_b,
                               const ClassifierFisherOptions& options, uint64_t seed,
                               int64_t first_index) {
  const int64_t batch = logits_bc.size(0), classes = logits_bc.size(1);
  auto p = torch::softmax(logits_bc, /*dim=*/1);
  auto eye = torch::eye(classes, p.options());
  switch (options.estimator) {
    case FisherEstimator::kTrue:  // c[r, i] = √p_ir (e_r − p_i)
      return p.t().sqrt().unsqueeze(2) * (eye.unsqueeze(1) - p.unsqueeze(0));
    case FisherEstimator::kMonteCarlo: {
      // Drawn on the CPU in float64: the same labels on every device and dtype.
      auto gen = at::make_generator<at::CPUGeneratorImpl>(batch_seed(seed, first_index));
      auto p64 = torch::softmax(logits_bc.to(torch::kCPU, torch::kFloat64), /*dim=*/1);
      TORCH_CHECK(torch::isfinite(p64).all().item<bool>(),
                  "nfk: the classifier's logits are NaN or Inf on examples from ", first_index,
                  " (a diverged model?): no labels can be drawn from them");
      auto y_bs = torch::multinomial(p64, options.mc_samples, /*replacement=*/true, gen)
                      .to(logits_bc.device());
      auto onehot = torch::one_hot(y_bs.t(), classes).to(p.options());  // [S, B, C]
      return (onehot - p.unsqueeze(0)) / std::sqrt(static_cast<double>(options.mc_samples));
    }
    case FisherEstimator::kEmpirical:
    case FisherEstimator::kBatched: {
      auto onehot =
          torch::one_hot(labels_b.to(logits_bc.device(), torch::kLong), classes).to(p.options());
      auto c = (onehot - p).unsqueeze(0);
      return options.estimator == FisherEstimator::kBatched ? c / static_cast<double>(batch) : c;
    }
  }
  TORCH_INTERNAL_ASSERT(false, "unknown estimator");
}

int64_t cotangents_per_example(const ClassifierFisherOptions& options, int64_t classes) {
  switch (options.estimator) {
    case FisherEstimator::kTrue:
      return classes;
    case FisherEstimator::kMonteCarlo:
      return options.mc_samples;
    default:
      return 1;
  }
}

int64_t check_classifier_data(ScoreModel& model, const ClassifierData& data,
                              const ClassifierFisherOptions& options) {
  TORCH_CHECK(model.kind() == ModelKind::kClassifier,
              "nfk: the Fisher of p(y|x) needs a classifier (forward(x) -> logits [B, C]); this "
              "model is kind `",
              to_string(model.kind()), "`");
  const auto& x = data.inputs;
  TORCH_CHECK(x.defined() && x.dim() >= 1 && x.size(0) > 0,
              "nfk: the classifier's Fisher needs at least one input example");
  TORCH_CHECK(options.mc_samples >= 1 && options.mc_samples <= 1000000,
              "nfk: --mc-samples must be in [1, 1000000], got ", options.mc_samples);
  torch::NoGradGuard no_grad;
  auto logits = logits_of(model, model.prepare(x.slice(0, 0, 1)));
  TORCH_CHECK(logits.dim() == 2 && logits.size(0) == 1 && logits.size(1) >= 2,
              "nfk: the classifier must give logits [B, C] with C >= 2, got ", logits.sizes());
  const int64_t classes = logits.size(1);
  if (!needs_labels(options.estimator)) return classes;
  const auto& y = data.labels;
  TORCH_CHECK(y.defined(), "nfk: the ", to_string(options.estimator),
              " Fisher needs labels (--labels, or a named set such as mnist:train)");
  TORCH_CHECK(y.dim() == 1 && y.size(0) == x.size(0),
              "nfk: labels must be [N] with N = ", x.size(0), " (one per input), got ", y.sizes());
  TORCH_CHECK(!y.is_floating_point() && !y.is_complex(),
              "nfk: labels must be integers (class indices), got ", y.scalar_type());
  if (y.numel() > 0) {
    const int64_t lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < classes, "nfk: labels must be class indices in [0, ", classes,
                ") for a classifier with ", classes, " logits, found values in [", lo, ", ", hi,
                "]");
  }
  return classes;
}

std::pair<int64_t, int64_t> rank_range(int64_t n, const RunOptions& run) {
  if (!run.group || !run.group->distributed()) return {0, n};
  auto s = dist::shard_range(n, run.batch_size, run.group->rank(), run.group->world_size());
  return {s.begin, s.end};
}

double row_normaliser(int64_t n, const ClassifierFisherOptions& options, int64_t batch_size) {
  if (options.estimator != FisherEstimator::kBatched) return static_cast<double>(n);
  return static_cast<double>((n + batch_size - 1) / batch_size);
}

GradientPathChoice choose_classifier_path(ScoreModel& model, const ClassifierData& data,
                                          const ClassifierFisherOptions& options) {
  if (options.gradient_path != GradientPath::kAuto) return {options.gradient_path, ""};
  if (options.estimator == FisherEstimator::kBatched) return {GradientPath::kLoop, ""};
  const int64_t probe = std::min<int64_t>(8, data.inputs.size(0));
  return choose_gradient_path(model, data.inputs.slice(0, 0, probe));
}

void for_each_row_block(ScoreModel& model, const ClassifierData& data,
                        const ClassifierFisherOptions& options, const RunOptions& run,
                        GradientPath path, const char* stage, const RowBlockFn& visit) {
  TORCH_CHECK(run.batch_size >= 1, "nfk: batch size must be positive, got ", run.batch_size);
  const int64_t n = data.inputs.size(0);
  const auto [begin, end] = rank_range(n, run);
  auto params = model.parameters();
  const int64_t p = model.num_parameters();
  torch::Tensor rows_bp;
  for (int64_t start = begin; start < end; start += run.batch_size) {
    const int64_t stop = std::min(end, start + run.batch_size);
    auto x = model.prepare(data.inputs.slice(0, start, stop));
    auto y = data.labels.defined() ? data.labels.slice(0, start, stop) : torch::Tensor();
    if (options.estimator == FisherEstimator::kBatched) {  // one row: the mean loss's gradient
      torch::AutoGradMode grad_on(true);
      auto logits = logits_of(model, x);
      auto c = logit_cotangents(logits.detach(), y, options, run.seed, start);
      auto g = torch::autograd::grad({logits}, params, {c[0]}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      visit(start, stop, 0, flatten_like(g, params).unsqueeze(0));
    } else if (path == GradientPath::kLayerTape) {
      TapedBatch taped(params, model.network(), [&] { return logits_of(model, x); });
      auto c = logit_cotangents(taped.output().detach(), y, options, run.seed, start);
      if (!taped.uncovered().empty()) {
        TORCH_WARN("nfk: the layer tape does not cover this batch (", taped.uncovered(),
                   "); its Fisher rows take one backward pass per example");
        loop_row_blocks(model, x, c, start, visit);
      } else {
        if (!rows_bp.defined() || rows_bp.size(0) != stop - start)
          rows_bp = torch::empty({stop - start, p}, params.front().options());
        for (int64_t r = 0; r < c.size(0); ++r) {
          taped.rows(c[r], rows_bp, /*retain_graph=*/r + 1 < c.size(0));
          visit(start, stop, r, rows_bp);
        }
      }
    } else {
      torch::Tensor logits;
      {
        torch::NoGradGuard no_grad;
        logits = logits_of(model, x);
      }
      loop_row_blocks(model, x, logit_cotangents(logits, y, options, run.seed, start), start,
                      visit);
    }
    if (run.progress) run.progress(stage, stop - begin, end - begin);
  }
}

}  // namespace detail
}  // namespace nfk
