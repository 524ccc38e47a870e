#include "nfk/probe.h"

#include <algorithm>
#include <limits>

#include "nfk/data.h"

namespace nfk {
namespace {

void check_features(const torch::Tensor& f, const torch::Tensor& y, const char* what) {
  TORCH_CHECK(f.defined() && f.dim() == 2, "nfk: ", what, " features must be [N, D], got ",
              f.defined() ? f.sizes() : c10::IntArrayRef{});
  TORCH_CHECK(f.is_floating_point(), "nfk: ", what, " features must be floating point");
  TORCH_CHECK(y.defined() && y.dim() == 1 && y.size(0) == f.size(0), "nfk: ", what,
              " labels must be [N] with N = ", f.size(0), " (the number of feature rows)");
  TORCH_CHECK(!y.is_floating_point(), "nfk: ", what, " labels must be integers");
  check_finite(f, std::string(what) + " features");
  TORCH_CHECK(y.numel() == 0 || y.min().item<int64_t>() >= 0, "nfk: ", what,
              " labels must be non-negative");
}

// The convex objective's optimum for one l2 on already standardized features.
struct Solution {
  torch::Tensor weight, bias;
  double loss = 0, grad_norm = 0;
  int64_t iterations = 0;
};

// `start` (if given) warm-starts L-BFGS from another solution of the same problem's shape.
Solution solve(const torch::Tensor& x_nd, const torch::Tensor& y_n, int64_t classes, double l2,
               const ProbeOptions& o, const Solution* start = nullptr) {
  auto opts = x_nd.options().requires_grad(true);
  auto w = start ? start->weight.clone().requires_grad_(true)
                 : torch::zeros({x_nd.size(1), classes}, opts);
  auto b = start ? start->bias.clone().requires_grad_(true) : torch::zeros({classes}, opts);
  torch::optim::LBFGS lbfgs(
      {w, b}, torch::optim::LBFGSOptions(1.0)
                  .max_iter(o.max_iter)
                  .max_eval(o.max_iter * 5 / 4)
                  .tolerance_grad(o.tolerance)
                  .tolerance_change(0)  // stop on the gradient (or max_iter), not on a stalled loss
                  .history_size(20)
                  .line_search_fn("strong_wolfe"));
  auto objective = [&] {
    return torch::nn::functional::cross_entropy(torch::addmm(b, x_nd, w), y_n) +
           0.5 * l2 * w.square().sum();
  };
  int64_t evaluations = 0;
  lbfgs.step([&] {
    lbfgs.zero_grad();
    auto loss = objective();
    loss.backward();
    ++evaluations;
    return loss;
  });
  Solution s;
  lbfgs.zero_grad();
  auto loss = objective();
  loss.backward();
  s.loss = loss.item<double>();
  s.grad_norm = std::max(w.grad().abs().max().item<double>(), b.grad().abs().max().item<double>());
  s.iterations = evaluations;
  s.weight = w.detach();
  s.bias = b.detach();
  return s;
}

// k-fold cross-validated accuracy of every l2 in `grid`, taken from the largest penalty down:
// each fold's solution warm-starts the next (smaller) penalty on that fold, which is where
// L-BFGS is slowest from zero.
std::vector<double> cross_validated_accuracies(const torch::Tensor& x_nd, const torch::Tensor& y_n,
                                               int64_t classes, const std::vector<double>& grid,
                                               const ProbeOptions& o) {
  const int64_t n = x_nd.size(0), folds = std::min<int64_t>(o.folds, n);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto fold_of = at::randperm(n, gen, torch::kLong).remainder(folds);
  std::vector<size_t> order(grid.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return grid[a] > grid[b]; });
  std::vector<double> correct(grid.size(), 0.0);
  for (int64_t f = 0; f < folds; ++f) {
    auto held = (fold_of == f).nonzero().squeeze(1), kept = (fold_of != f).nonzero().squeeze(1);
    auto x_kept = x_nd.index_select(0, kept), y_kept = y_n.index_select(0, kept);
    auto x_held = x_nd.index_select(0, held), y_held = y_n.index_select(0, held);
    Solution previous;
    for (size_t k = 0; k < order.size(); ++k) {
      auto s = solve(x_kept, y_kept, classes, grid[order[k]], o, k > 0 ? &previous : nullptr);
      auto pred = torch::addmm(s.bias, x_held, s.weight).argmax(1);
      correct[order[k]] += pred.eq(y_held).sum().item<double>();
      previous = std::move(s);
    }
  }
  for (double& c : correct) c /= n;
  return correct;
}

}  // namespace

std::vector<double> default_l2_grid() {
  return {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
}

torch::Tensor LinearProbe::logits(const torch::Tensor& features) const {
  TORCH_CHECK(features.dim() == 2 && features.size(1) == weight.size(0),
              "nfk: probe features must be [M, ", weight.size(0), "], got ", features.sizes());
  auto x = (features.to(weight.dtype()) - mean) / scale;
  return torch::addmm(bias, x, weight);
}

torch::Tensor LinearProbe::predict(const torch::Tensor& features) const {
  return logits(features).argmax(/*dim=*/1);
}

LinearProbe fit_linear_probe(const torch::Tensor& features, const torch::Tensor& labels,
                             const ProbeOptions& o) {
  check_features(features, labels, "train");
  TORCH_CHECK(o.l2 >= 0, "nfk: probe l2 must be >= 0, got ", o.l2);
  TORCH_CHECK(o.max_iter > 0, "nfk: probe max_iter must be positive");
  torch::NoGradGuard no_grad_outside;  // the solver turns autograd on where it needs it
  auto y = labels.to(torch::kLong).cpu();
  const int64_t classes = y.max().item<int64_t>() + 1;
  TORCH_CHECK(classes >= 2, "nfk: the probe needs at least 2 classes");
  auto x = features.to(o.dtype).cpu();
  LinearProbe p;
  if (o.standardize) {
    p.mean = x.mean(/*dim=*/0);
    p.scale = x.std(/*dim=*/0, /*unbiased=*/false);
    p.scale = torch::where(p.scale > 0, p.scale, torch::ones_like(p.scale));  // constant → 0
  } else {
    p.mean = torch::zeros({x.size(1)}, x.options());
    p.scale = torch::ones({x.size(1)}, x.options());
  }
  x = (x - p.mean) / p.scale;
  torch::AutoGradMode grad_on(true);
  p.l2 = o.l2;
  if (!o.l2_grid.empty()) {
    auto x_cv = x, y_cv = y;
    if (o.cv_max_examples > 0 && x.size(0) > o.cv_max_examples) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 1);
      auto keep = at::randperm(x.size(0), gen, torch::kLong).slice(0, 0, o.cv_max_examples);
      x_cv = x.index_select(0, keep);
      y_cv = y.index_select(0, keep);
    }
    for (double l2 : o.l2_grid) {
      TORCH_CHECK(l2 >= 0, "nfk: probe l2 grid values must be >= 0, got ", l2);
    }
    const auto acc = cross_validated_accuracies(x_cv, y_cv, classes, o.l2_grid, o);
    double best = -1;
    for (size_t i = 0; i < acc.size(); ++i) {
      // Ties go to the larger penalty (the simpler model).
      if (acc[i] > best || (acc[i] == best && o.l2_grid[i] > p.l2)) {
        best = acc[i];
        p.l2 = o.l2_grid[i];
      }
    }
  }
  auto s = solve(x, y, classes, p.l2, o);
  p.weight = s.weight;
  p.bias = s.bias;
  p.loss = s.loss;
  p.grad_norm = s.grad_norm;
  p.iterations = s.iterations;
  return p;
}

double accuracy(const torch::Tensor& predicted, const torch::Tensor& labels) {
  TORCH_CHECK(predicted.numel() == labels.numel() && labels.numel() > 0,
              "nfk: accuracy needs as many predictions as labels (", predicted.numel(), " vs ",
              labels.numel(), ")");
  return predicted.reshape(-1)
      .to(torch::kLong)
      .eq(labels.reshape(-1).to(torch::kLong))
      .to(torch::kDouble)
      .mean()
      .item<double>();
}

}  // namespace nfk
