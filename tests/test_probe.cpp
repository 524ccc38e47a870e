// Linear probe, kNN and the semi-supervised protocol against independent truth: Newton's method on
// the same convex problem, brute-force neighbour search, and known accuracies on separable data.
#include <algorithm>
#include <numeric>
#include <set>

#include "nfk/knn.h"
#include "nfk/probe.h"
#include "nfk/semi_supervised.h"
#include "support.h"

namespace nfk::test {
namespace {

// Gaussian blobs: class c centred at `spread` · e_c (D ≥ C), unit noise.
void blobs(int64_t per_class, int64_t classes, int64_t dim, double spread, torch::Tensor* x,
           torch::Tensor* y) {
  auto o = torch::dtype(torch::kFloat64);
  *y = torch::arange(classes, torch::kLong).repeat_interleave(per_class);
  auto centres = torch::zeros({classes, dim}, o);
  for (int64_t c = 0; c < classes; ++c) centres[c][c] = spread;
  *x = centres.index_select(0, *y) + torch::randn({classes * per_class, dim}, o);
}

TEST(Probe, SeparableBlobsAreClassifiedPerfectly) {
  seed(1);
  torch::Tensor x, y, xt, yt;
  blobs(100, 3, 5, 12.0, &x, &y);
  blobs(100, 3, 5, 12.0, &xt, &yt);
  auto p = fit_linear_probe(x, y, {});
  EXPECT_EQ(accuracy(p.predict(xt), yt), 1.0);
  EXPECT_LE(p.grad_norm, 1e-6);
}

// Newton's method with the exact Hessian (autograd double-backward) on the same objective; the
// bias is unpenalised, so the Hessian is singular along b + c·1 and both solvers are compared on
// W and on the centred bias, the identifiable parts.
TEST(Probe, MatchesNewtonSolutionOfTheSameConvexProblem) {
  seed(2);
  torch::Tensor x, y;
  blobs(40, 3, 4, 1.5, &x, &y);  // overlapping: the optimum is finite without the penalty too
  const double l2 = 0.05;
  ProbeOptions o;
  o.l2 = l2;
  o.standardize = false;
  o.tolerance = 1e-10;
  auto p = fit_linear_probe(x, y, o);
  EXPECT_LE(p.grad_norm, 1e-9) << p.iterations << " evaluations";

  const int64_t d = 4, c = 3;
  auto theta = torch::zeros({d * c + c}, torch::dtype(torch::kFloat64));
  auto objective = [&](const torch::Tensor& t) {
    auto w = t.slice(0, 0, d * c).view({d, c}), b = t.slice(0, d * c);
    return torch::nn::functional::cross_entropy(torch::addmm(b, x, w), y) +
           0.5 * l2 * w.square().sum();
  };
  for (int it = 0; it < 30; ++it) {
    auto t = theta.clone().requires_grad_(true);
    auto g = torch::autograd::grad({objective(t)}, {t}, {}, true, true)[0];
    auto h = torch::zeros({t.numel(), t.numel()}, t.options().requires_grad(false));
    for (int64_t i = 0; i < t.numel(); ++i) {
      h[i] = torch::autograd::grad({g[i]}, {t}, {}, true)[0].detach();
    }
    theta = theta - torch::linalg::pinv(h).mv(g.detach());
  }
  auto w_ref = theta.slice(0, 0, d * c).view({d, c}), b_ref = theta.slice(0, d * c);
  expect_close(p.weight, w_ref, 1e-7, "weights");
  expect_close(p.bias - p.bias.mean(), b_ref - b_ref.mean(), 1e-7, "centred bias");
  EXPECT_NEAR(p.loss, objective(theta).item<double>(), 1e-12);
}

TEST(Probe, StandardizationMakesPredictionsScaleInvariant) {
  seed(3);
  torch::Tensor x, y;
  blobs(50, 3, 4, 2.0, &x, &y);
  auto scale = torch::tensor({1.0, 1000.0, 1e-3, 7.0}, torch::kFloat64);
  auto p1 = fit_linear_probe(x, y, {}), p2 = fit_linear_probe(x * scale, y, {});
  EXPECT_LE(rel_err(p2.logits(x * scale), p1.logits(x)), 1e-6);
  // A constant feature (zero variance) is kept at 0 and changes nothing.
  auto with_const = torch::cat({x, torch::full({x.size(0), 1}, 5.0, x.options())}, 1);
  auto p3 = fit_linear_probe(with_const, y, {});
  EXPECT_LE(rel_err(p3.logits(with_const), p1.logits(x)), 1e-6);
}

// k-fold cross-validated accuracy of the probe for one penalty, computed here: the features
// standardized as fit_linear_probe does (train mean / population std), the probe's seeded fold
// assignment (fold_of = randperm(N, seed) mod folds), one cold-started fit per fold, and the
// held-out predictions counted.
double cv_accuracy(const torch::Tensor& x, const torch::Tensor& y, double l2,
                   const ProbeOptions& o) {
  auto scale = x.std(0, /*unbiased=*/false);
  auto xs = (x - x.mean(0)) / torch::where(scale > 0, scale, torch::ones_like(scale));
  const int64_t n = x.size(0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto fold_of = at::randperm(n, gen, torch::kLong).remainder(o.folds);
  ProbeOptions single = o;
  single.l2_grid.clear();
  single.l2 = l2;
  single.standardize = false;
  single.tolerance = 1e-9;
  int64_t correct = 0;
  for (int64_t f = 0; f < o.folds; ++f) {
    auto held = (fold_of == f).nonzero().squeeze(1), kept = (fold_of != f).nonzero().squeeze(1);
    auto p = fit_linear_probe(xs.index_select(0, kept), y.index_select(0, kept), single);
    correct +=
        p.predict(xs.index_select(0, held)).eq(y.index_select(0, held)).sum().item<int64_t>();
  }
  return static_cast<double>(correct) / n;
}

TEST(Probe, CrossValidationPicksThePenaltyWithTheBestHeldOutAccuracy) {
  // Few examples in many dimensions, most of them noise: weak penalties overfit, strong ones
  // leave the (unpenalised) bias to decide, so the held-out accuracy peaks inside the grid
  // (measured: 0.656, 0.678, 0.733, 0.633, 0.211 for l2 = 1e-3 ... 10).
  seed(4);
  torch::Tensor x, y;
  blobs(30, 3, 20, 2.0, &x, &y);
  ProbeOptions o;
  o.l2_grid = {1e-3, 1e-2, 1e-1, 1.0, 10.0};
  auto a = fit_linear_probe(x, y, o), b = fit_linear_probe(x, y, o);
  std::vector<double> acc;
  for (double l2 : o.l2_grid) acc.push_back(cv_accuracy(x, y, l2, o));
  for (size_t i = 0; i < acc.size(); ++i) {
    std::printf("[ measured ] l2 %g: cv accuracy %.4f\n", o.l2_grid[i], acc[i]);
  }
  // The best accuracy, ties to the larger penalty (the simpler model).
  size_t best = 0;
  for (size_t i = 1; i < acc.size(); ++i) {
    if (acc[i] > acc[best] || (acc[i] == acc[best] && o.l2_grid[i] > o.l2_grid[best])) best = i;
  }
  EXPECT_EQ(a.l2, o.l2_grid[best]);
  // Not vacuous: the accuracies differ, and the best is neither end of the grid.
  EXPECT_GT(*std::max_element(acc.begin(), acc.end()) - *std::min_element(acc.begin(), acc.end()),
            0.05);
  EXPECT_NE(best, 0u);
  EXPECT_NE(best, acc.size() - 1);
  // Deterministic; the final fit is the fixed-penalty fit at the chosen l2 on all the data.
  EXPECT_EQ(a.l2, b.l2);
  EXPECT_TRUE(torch::equal(a.weight, b.weight));
  ProbeOptions fixed;
  fixed.l2 = a.l2;
  EXPECT_TRUE(torch::equal(fit_linear_probe(x, y, fixed).weight, a.weight));
}

TEST(Probe, RejectsBadInput) {
  auto x = torch::randn({10, 3}, torch::kFloat64);
  // Both classes present by construction: random labels can come out all one class.
  auto y = torch::arange(10, torch::kLong).remainder(2);
  EXPECT_THROW(fit_linear_probe(x, y.slice(0, 0, 9), {}), c10::Error);
  EXPECT_THROW(fit_linear_probe(x.view({10, 3, 1}), y, {}), c10::Error);
  auto bad = x.clone();
  bad[3][1] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(fit_linear_probe(bad, y, {}), c10::Error);
  EXPECT_THROW(fit_linear_probe(x, torch::zeros({10}, torch::kLong), {}), c10::Error);
  auto p = fit_linear_probe(x, y, {});
  EXPECT_THROW(p.predict(torch::randn({4, 2}, torch::kFloat64)), c10::Error);
}

// Brute force: every distance by hand, a full sort, then the documented vote.
void brute_force_knn(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& q,
                     int64_t k, bool cosine, std::vector<int64_t>* pred,
                     std::vector<std::vector<int64_t>>* nbrs,
                     std::vector<std::vector<double>>* dists) {
  const int64_t n = x.size(0), classes = y.max().item<int64_t>() + 1;
  for (int64_t i = 0; i < q.size(0); ++i) {
    std::vector<std::pair<double, int64_t>> d;
    for (int64_t j = 0; j < n; ++j) {
      double v;
      if (cosine) {
        v = 1 - (q[i] * x[j]).sum().item<double>() /
                    (q[i].norm().item<double>() * x[j].norm().item<double>());
      } else {
        v = (q[i] - x[j]).norm().item<double>();
      }
      d.push_back({v, j});
    }
    std::sort(d.begin(), d.end());
    std::vector<int64_t> count(classes, 0), first(classes, k), idx;
    std::vector<double> dist;
    for (int64_t r = 0; r < k; ++r) {
      const int64_t c = y[d[r].second].item<int64_t>();
      ++count[c];
      first[c] = std::min(first[c], r);
      idx.push_back(d[r].second);
      dist.push_back(d[r].first);
    }
    int64_t best = 0;
    for (int64_t c = 1; c < classes; ++c) {
      if (count[c] > count[best] || (count[c] == count[best] && first[c] < first[best])) best = c;
    }
    pred->push_back(best);
    nbrs->push_back(idx);
    dists->push_back(dist);
  }
}

TEST(Knn, MatchesBruteForceForBothMetrics) {
  seed(5);
  // Off-centre data (mean 3): a cosine distance computed without normalising, or a Euclidean one
  // that drops the ‖q‖² term or the square root, still orders many neighbours alike but not the
  // values.
  auto x = torch::randn({60, 4}, torch::kFloat64) + 3.0;
  auto y = torch::randint(0, 4, {60}, torch::kLong);
  auto q = torch::randn({25, 4}, torch::kFloat64) + 3.0;
  for (bool cosine : {true, false}) {
    for (int64_t k : {1, 4, 7}) {
      KnnOptions o;
      o.k = k;
      o.metric = cosine ? KnnMetric::kCosine : KnnMetric::kEuclidean;
      o.batch_size = 10;  // several blocks
      auto r = knn_classify(x, y, q, o);
      std::vector<int64_t> pred;
      std::vector<std::vector<int64_t>> nbrs;
      std::vector<std::vector<double>> dists;
      brute_force_knn(x, y, q, k, cosine, &pred, &nbrs, &dists);
      ASSERT_EQ(r.distances.sizes(), torch::IntArrayRef({q.size(0), k}));
      ASSERT_EQ(r.distances.scalar_type(), torch::kFloat64);
      for (int64_t i = 0; i < q.size(0); ++i) {
        EXPECT_EQ(r.predicted[i].item<int64_t>(), pred[i]) << "query " << i << " k " << k;
        for (int64_t j = 0; j < k; ++j) {
          EXPECT_EQ(r.neighbors[i][j].item<int64_t>(), nbrs[i][j]);
          // The metric's own value (1 − cos, or ‖q − x‖), as the float64 brute force has it.
          EXPECT_NEAR(r.distances[i][j].item<double>(), dists[i][j], 1e-10 * (1 + dists[i][j]))
              << (cosine ? "cosine" : "euclidean") << " distance, query " << i << " rank " << j;
        }
      }
    }
  }
  EXPECT_THROW(knn_classify(x, y, q, KnnOptions{61}), c10::Error);
  EXPECT_THROW(knn_classify(x, y, torch::randn({3, 5}, torch::kFloat64), {}), c10::Error);
}

TEST(SemiSupervised, DrawsNPerClassAndIsReproducible) {
  seed(6);
  torch::Tensor x, y, xt, yt;
  blobs(40, 3, 6, 4.0, &x, &y);
  blobs(30, 3, 6, 4.0, &xt, &yt);
  auto idx = sample_per_class(y, 5, 11);
  ASSERT_EQ(idx.numel(), 15);
  std::set<int64_t> distinct;
  for (int64_t i = 0; i < idx.numel(); ++i) distinct.insert(idx[i].item<int64_t>());
  EXPECT_EQ(distinct.size(), 15u);
  EXPECT_TRUE(torch::equal(torch::bincount(y.index_select(0, idx)), torch::full({3}, 5)));
  EXPECT_THROW(sample_per_class(y, 41, 0), c10::Error);

  SemiSupervisedOptions o;
  o.labels_per_class = {2, 10};
  o.seeds = 3;
  o.probe.l2_grid = default_l2_grid();
  auto a = semi_supervised(x, y, xt, yt, o), b = semi_supervised(x, y, xt, yt, o);
  ASSERT_EQ(a.size(), 2u);
  for (size_t r = 0; r < a.size(); ++r) {
    EXPECT_EQ(a[r].accuracies, b[r].accuracies);
    ASSERT_EQ(a[r].accuracies.size(), 3u);
    const double mean = std::accumulate(a[r].accuracies.begin(), a[r].accuracies.end(), 0.0) / 3.0;
    EXPECT_NEAR(a[r].mean, mean, 1e-15);
  }
  EXPECT_GE(a[1].mean, 0.95);  // well-separated blobs: 10 labels per class suffice
}

}  // namespace
}  // namespace nfk::test
