// Truncated SVDs against torch's dense SVD, on matrices with a known, decaying spectrum.
#include <cmath>
#include <tuple>

#include "linalg/cholesky_qr2.h"
#include "nfk/linalg.h"
#include "support.h"

namespace nfk {
namespace {

// A [n, p] with singular values 0.8^i (i = 0..min-1) and random singular vectors.
torch::Tensor decaying_matrix(int64_t n, int64_t p, uint64_t seed) {
  test::seed(seed);
  const int64_t r = std::min(n, p);
  auto u = std::get<0>(torch::linalg::qr(torch::randn({n, r}, torch::kFloat64), "reduced"));
  auto v = std::get<0>(torch::linalg::qr(torch::randn({p, r}, torch::kFloat64), "reduced"));
  auto s = torch::pow(0.8, torch::arange(r, torch::kFloat64));
  return u.mm(torch::diag(s)).mm(v.t());
}

// A resident V that hides ‖V‖_F² and offers no transpose, as a streaming operator does: the
// SVDs estimate the norm and iterate in V's column space.
struct UnknownNormOperator : DenseOperator {
  using DenseOperator::DenseOperator;
  double squared_frobenius() override { return -1; }
  std::unique_ptr<LinearOperator> transposed() override { return nullptr; }
};

// The total-variance estimates of the randomized SVDs are Hutchinson's: (1/u) Σ_j ‖Vᵀω_j‖² for
// u Gaussian probes ω_j ∈ R^N. Each term has mean tr(VVᵀ) = ‖V‖_F² = Σσ² and variance
// 2‖VVᵀ‖_F² = 2Σσ⁴, so the estimate's standard deviation is √(2Σσ⁴ / u), from the dense spectrum.
double hutchinson_sd(const torch::Tensor& v, int64_t probes) {
  const auto s = at::linalg_svdvals(v.to(torch::kFloat64));
  return std::sqrt(2.0 * s.pow(4).sum().item<double>() / static_cast<double>(probes));
}

// ‖V‖_F² in float64, summed entry by entry: the truth the estimates are held to.
double dense_total_variance(const torch::Tensor& v) {
  return v.to(torch::kFloat64).square().sum().item<double>();
}

void expect_same_subspace(const torch::Tensor& a, const torch::Tensor& b, double min_cos) {
  auto cos = principal_cosines(a, b);
  EXPECT_GE(cos.min().item<double>(), min_cos);
}

TEST(ExactSvd, MatchesDenseSvdInBothGramOrientations) {
  for (auto [n, p] : {std::pair<int64_t, int64_t>{30, 80}, {80, 30}}) {
    auto v = decaying_matrix(n, p, 1);
    auto r = exact_svd(v, 8);
    auto s_ref = at::linalg_svdvals(v).slice(0, 0, 8);
    test::expect_close(r.singular_values, s_ref, 1e-12, "sigma");
    test::expect_close(r.left.t().mm(r.left), torch::eye(8, torch::kFloat64), 1e-10, "Phi");
    test::expect_close(r.right.t().mm(r.right), torch::eye(8, torch::kFloat64), 1e-10, "P");
    // V P = Φ diag(σ): the embedding identity of SPEC §1.
    test::expect_close(v.mm(r.right), r.left * r.singular_values, 1e-10, "VP");
    EXPECT_NEAR(r.total_variance, v.square().sum().item<double>(), 1e-10);
    EXPECT_TRUE(r.total_variance_exact);
  }
}

TEST(RandomizedSvd, AgreesWithExactOnDecayingSpectrum) {
  auto v = decaying_matrix(120, 300, 2);
  UnknownNormOperator op(v);
  SvdOptions o;
  o.rank = 16;
  auto r = randomized_svd(op, o);
  auto e = exact_svd(v, 16);
  test::expect_close(r.singular_values, e.singular_values, 1e-10, "sigma");
  expect_same_subspace(r.right, e.right, 1 - 1e-10);
  expect_same_subspace(r.left, e.left, 1 - 1e-10);
  // Same sign convention, so the factors agree entry by entry.
  test::expect_close(r.right, e.right, 1e-6, "P with signs fixed");
  test::expect_close(v.mm(r.right), r.left * r.singular_values, 1e-10, "VP");
  // The Hutchinson total-variance estimate is within 4 standard deviations of ‖V‖_F² (u = 26
  // probes; 0.8^i decays fast, so a single estimate is only good to ~13%: the tight check is
  // TotalVarianceEstimate below).
  EXPECT_NEAR(e.total_variance, dense_total_variance(v), 1e-12 * dense_total_variance(v));
  EXPECT_NEAR(r.total_variance, dense_total_variance(v), 4 * hutchinson_sd(v, 26));
  EXPECT_FALSE(r.total_variance_exact);
}

TEST(RandomizedSvd, IsReproducibleForASeedAndCountsItsPasses) {
  auto v = decaying_matrix(50, 70, 3);
  struct Counting : UnknownNormOperator {
    using UnknownNormOperator::UnknownNormOperator;
    int applies = 0, applies_t = 0;
    torch::Tensor apply(const torch::Tensor& q) override {
      ++applies;
      return DenseOperator::apply(q);
    }
    torch::Tensor apply_t(const torch::Tensor& m) override {
      ++applies_t;
      return DenseOperator::apply_t(m);
    }
  } op(v);
  SvdOptions o;  // paper Alg. 4 as it was: subspace iteration, two passes, all L iterations
  o.rank = 5;
  o.power_iters = 4;
  o.seed = 9;
  o.solver = SvdSolver::kSubspace;
  o.gram = GramProducts::kTwoPass;
  o.tol = 0;
  auto a = randomized_svd(op, o);
  EXPECT_EQ(op.applies, o.power_iters + 1);    // paper Alg. 4: L + 1 JVP passes
  EXPECT_EQ(op.applies_t, o.power_iters + 1);  // and L + 1 VJP passes
  EXPECT_EQ(a.passes, 2 * o.power_iters + 2);
  auto b = randomized_svd(op, o);
  EXPECT_TRUE(torch::equal(a.right, b.right));
  EXPECT_TRUE(torch::equal(a.singular_values, b.singular_values));
}

TEST(SketchSvd, ReadsVOnceAndRecoversALowRankMatrix) {
  // Rank 10 plus 1e-9 noise: a sketch with s = 16 > 10 captures V up to the noise.
  test::seed(4);
  auto low = torch::randn({90, 10}, torch::kFloat64).mm(torch::randn({10, 140}, torch::kFloat64));
  auto v = low + 1e-9 * torch::randn({90, 140}, torch::kFloat64);
  struct Counting : UnknownNormOperator {
    using UnknownNormOperator::UnknownNormOperator;
    int pairs = 0, applies = 0;
    std::pair<torch::Tensor, torch::Tensor> apply_pair(const torch::Tensor& q,
                                                       const torch::Tensor& m) override {
      ++pairs;
      return {DenseOperator::apply(q), DenseOperator::apply_t(m)};
    }
    torch::Tensor apply(const torch::Tensor& q) override {
      ++applies;
      return DenseOperator::apply(q);
    }
  } op(v);
  SvdOptions o;
  o.rank = 6;
  o.oversample = 10;
  auto r = sketch_svd(op, o);
  EXPECT_EQ(op.pairs, 1);  // one pass over V
  EXPECT_EQ(op.applies, 0);
  auto e = exact_svd(v, 6);
  test::expect_close(r.singular_values, e.singular_values, 1e-7, "sigma");
  test::expect_close(r.right, e.right, 1e-6, "P with signs fixed");
  test::expect_close(v.mm(r.right), r.left * r.singular_values, 1e-7, "VP");
  // Hutchinson with the co-range sketch's l = 2s + 1 = 33 probes: within 4 standard deviations.
  EXPECT_NEAR(r.total_variance, dense_total_variance(v), 4 * hutchinson_sd(v, 33));
  EXPECT_FALSE(r.total_variance_exact);
  auto again = sketch_svd(op, o);
  EXPECT_TRUE(torch::equal(r.right, again.right));
}

// The estimate is unbiased with the stated variance, checked tightly: a flat-ish spectrum (so
// that Σσ⁴ ≪ (Σσ²)²), u = 64 probes and 40 seeds. The mean of the 40 estimates must be within
// 4 standard errors of ‖V‖_F² (≈ 0.8% here: a wrong scale such as 1/(u−1), 1/(u+k) or a missing
// square fails), and their spread must match √(2Σσ⁴/u) (catches correlated or non-Gaussian
// probes, which change the variance but not the mean).
TEST(TotalVarianceEstimate, IsUnbiasedWithHutchinsonsVarianceForBothSvds) {
  test::seed(6);
  const int64_t n = 150, p = 220, r = 150;
  auto left = std::get<0>(torch::linalg::qr(torch::randn({n, r}, torch::kFloat64), "reduced"));
  auto right = std::get<0>(torch::linalg::qr(torch::randn({p, r}, torch::kFloat64), "reduced"));
  auto s = torch::linspace(0.5, 1.5, r, torch::kFloat64);
  auto v = (left * s).mm(right.t());
  const double truth = dense_total_variance(v);
  EXPECT_NEAR(truth, s.square().sum().item<double>(), 1e-10 * truth);  // Σσ² = ‖V‖_F²
  // A resident V knows its norm: both SVDs report it exactly instead of estimating.
  DenseOperator resident(v);
  SvdOptions exact_o;
  exact_o.rank = 2;
  for (const auto& r : {randomized_svd(resident, exact_o), sketch_svd(resident, exact_o)}) {
    EXPECT_TRUE(r.total_variance_exact);
    EXPECT_NEAR(r.total_variance, truth, 1e-12 * truth);
  }
  UnknownNormOperator op(v);
  const int seeds = 40;
  for (bool sketch : {false, true}) {
    SvdOptions o;
    o.rank = 2;
    o.power_iters = 0;
    // Probes: u = rank + oversample for the randomized SVD, l = 2s + 1 for the sketch.
    o.oversample = sketch ? 30 : 62;
    const int64_t probes = sketch ? 2 * (o.rank + o.oversample) + 1 : o.rank + o.oversample;
    ASSERT_EQ(probes, sketch ? 65 : 64);
    std::vector<double> est;
    for (int k = 0; k < seeds; ++k) {
      o.seed = 100 + k;
      est.push_back(sketch ? sketch_svd(op, o).total_variance
                           : randomized_svd(op, o).total_variance);
    }
    auto t = torch::tensor(est, torch::kFloat64);
    const double sd = hutchinson_sd(v, probes);
    const double mean = t.mean().item<double>(), spread = t.std().item<double>();
    const std::string what = sketch ? "sketch_svd" : "randomized_svd";
    std::printf("[ measured ] %s: mean estimate / truth %.5f (4 s.e. %.5f), sd %.4f vs %.4f\n",
                what.c_str(), mean / truth, 4 * sd / std::sqrt(seeds) / truth, spread, sd);
    EXPECT_NEAR(mean, truth, 4 * sd / std::sqrt(seeds)) << what;
    // The sample sd of 40 draws is within ±45% of the true one at > 4 standard errors.
    EXPECT_GT(spread, 0.55 * sd) << what;
    EXPECT_LT(spread, 1.45 * sd) << what;
  }
}

TEST(SketchSvd, IsExactWhenTheSketchSpansAllRows) {
  // s = N: Q spans R^N and ΨᵀQ is invertible, so X = QᵀV and the SVD is exact.
  auto v = decaying_matrix(30, 80, 5);
  DenseOperator op(v);
  SvdOptions o;
  o.rank = 8;
  o.oversample = 100;
  auto r = sketch_svd(op, o);
  auto e = exact_svd(v, 8);
  test::expect_close(r.singular_values, e.singular_values, 1e-10, "sigma");
  test::expect_close(r.right, e.right, 1e-8, "P");
}

TEST(SketchSvd, ErrorOnAFlatSpectrumIsBoundedByTheTail) {
  // Singular values 0.8^i: no power iterations, so the top values are only approximate; the
  // error must still be far below the first discarded singular value's scale.
  auto v = decaying_matrix(120, 300, 2);
  UnknownNormOperator op(v);
  SvdOptions o;
  o.rank = 8;
  o.oversample = 24;
  auto r = sketch_svd(op, o);
  auto e = exact_svd(v, 8);
  const double err = (r.singular_values - e.singular_values).abs().max().item<double>();
  const double tail = std::pow(0.8, 8);  // σ_{k+1}
  std::printf("[ measured ] sketch on 0.8^i spectrum: max |dsigma| %.2e, sigma_(k+1) %.2e\n", err,
              tail);
  EXPECT_LT(err, 1e-2 * tail);
  EXPECT_GT(principal_cosines(r.right.slice(1, 0, 4), e.right.slice(1, 0, 4)).min().item<double>(),
            0.99);
}

TEST(RandomizedSvd, RejectsBadRank) {
  DenseOperator op(torch::randn({5, 7}, torch::kFloat64));
  SvdOptions o;
  o.rank = 6;
  EXPECT_THROW(randomized_svd(op, o), c10::Error);
  o.rank = 0;
  EXPECT_THROW(randomized_svd(op, o), c10::Error);
  EXPECT_THROW(exact_svd(torch::randn({5, 7}, torch::kFloat64), 9), c10::Error);
  o.rank = 6;
  EXPECT_THROW(sketch_svd(op, o), c10::Error);
}

TEST(LinearOperator, DefaultDenseBuildsVFromProducts) {
  auto v = torch::randn({70, 9}, torch::kFloat64);
  struct ProductsOnly : LinearOperator {
    torch::Tensor v;
    int64_t rows() const override { return v.size(0); }
    int64_t cols() const override { return v.size(1); }
    torch::Tensor apply(const torch::Tensor& q) override { return v.mm(q); }
    torch::Tensor apply_t(const torch::Tensor& m) override { return v.t().mm(m); }
    torch::TensorOptions options() const override { return v.options(); }
  } op;
  op.v = v;
  test::expect_close(op.dense(), v, 1e-14);
  // The default pair of products is the two products.
  auto q = torch::randn({9, 3}, torch::kFloat64);
  auto m = torch::randn({70, 4}, torch::kFloat64);
  auto [vq, vtm] = op.apply_pair(q, m);
  test::expect_close(vq, v.mm(q), 1e-14);
  test::expect_close(vtm, v.t().mm(m), 1e-14);
}

// Tall A [m, u] with singular values spread from 1 down to 1/cond.
torch::Tensor tall_matrix(int64_t m, int64_t u, double cond, torch::Dtype dtype) {
  test::seed(9);
  auto left = std::get<0>(torch::linalg::qr(torch::randn({m, u}, torch::kFloat64), "reduced"));
  auto right = std::get<0>(torch::linalg::qr(torch::randn({u, u}, torch::kFloat64), "reduced"));
  auto s = torch::logspace(0, -std::log10(cond), u, 10.0, torch::kFloat64);
  return (left * s).mm(right.t()).to(dtype);
}

TEST(CholeskyQr2, OrthonormalBasisOfTheSameSpanAsHouseholder) {
  for (auto [dtype, cond, tol] :
       {std::tuple{torch::kFloat64, 1e3, 1e-13}, std::tuple{torch::kFloat32, 1e2, 2e-6}}) {
    auto a = tall_matrix(4000, 42, cond, dtype);
    auto q = cholesky_qr2(a);
    ASSERT_TRUE(q.defined());
    EXPECT_EQ(q.sizes(), a.sizes());
    auto q64 = q.to(torch::kFloat64), a64 = a.to(torch::kFloat64);
    // Orthonormal to rounding, and A = Q (QᵀA): the same column space as A.
    test::expect_close(q64.t().mm(q64), torch::eye(42, torch::kFloat64), tol, "QtQ");
    test::expect_close(q64.mm(q64.t().mm(a64)), a64, tol * cond, "Q Qt A");
    auto householder = std::get<0>(torch::linalg::qr(a64, "reduced"));
    EXPECT_GE(principal_cosines(q64, householder).min().item<double>(), 1 - tol);
  }
}

TEST(CholeskyQr2, DeclinesRankDeficientAndIllConditionedInputs) {
  auto a = tall_matrix(500, 10, 10, torch::kFloat64);
  auto deficient = torch::cat({a, a.slice(1, 0, 2)}, 1);  // two repeated columns
  EXPECT_FALSE(cholesky_qr2(deficient).defined());
  EXPECT_FALSE(cholesky_qr2(tall_matrix(500, 10, 1e9, torch::kFloat64)).defined());
  EXPECT_FALSE(cholesky_qr2(tall_matrix(500, 10, 1e6, torch::kFloat32)).defined());
  // The basis the SVDs use still spans them (Householder QR on the CPU and on a decline).
  auto q = orthonormal_basis(deficient);
  EXPECT_EQ(q.sizes(), deficient.sizes());
  test::expect_close(q.mm(q.t().mm(deficient)), deficient, 1e-12, "Q Qt A");
}

}  // namespace
}  // namespace nfk
