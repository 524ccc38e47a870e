// Fewer passes over V (issue 17): the one-pass VᵀV product, block Krylov, the convergence stop
// and the float32 rule, against the dense float64 truth of matrices with a chosen spectrum.
#include <cmath>
#include <memory>
#include <vector>

#include "nfk/embed.h"
#include "nfk/fisher.h"
#include "nfk/linalg.h"
#include "nfk/zoo.h"
#include "support.h"

namespace nfk {
namespace {

// U diag(σ) Wᵀ [n, p] in float64 with random orthonormal U [n, r], W [p, r], r = σ's length.
torch::Tensor with_spectrum(int64_t n, int64_t p, const torch::Tensor& sigma, uint64_t seed) {
  test::seed(seed);
  const int64_t r = sigma.size(0);
  auto u = std::get<0>(torch::linalg::qr(torch::randn({n, r}, torch::kFloat64), "reduced"));
  auto w = std::get<0>(torch::linalg::qr(torch::randn({p, r}, torch::kFloat64), "reduced"));
  return u.mm(torch::diag(sigma.to(torch::kFloat64))).mm(w.t());
}

double max_rel_error(const torch::Tensor& sigma, const torch::Tensor& truth) {
  auto t = truth.to(torch::kFloat64);
  return ((sigma.to(torch::kFloat64) - t).abs() / t).max().item<double>();
}

// A resident V that counts every product by kind; `transpose` lets the SVDs iterate on Vᵀ,
// whose products are counted in `t_counts` (the transpose itself ends with the SVD's call).
struct CountingOperator : DenseOperator {
  CountingOperator(torch::Tensor v, bool transpose = false)
      : DenseOperator(v), v_(v), transpose_(transpose) {}
  torch::Tensor v_;
  bool transpose_;
  std::shared_ptr<CountingOperator> t_counts;  // stands for the transposes made
  int applies = 0, applies_t = 0, grams = 0;
  std::unique_ptr<LinearOperator> transposed() override;
  int products() const { return applies + applies_t + grams; }
  torch::Tensor apply(const torch::Tensor& q) override {
    ++applies;
    return DenseOperator::apply(q);
  }
  torch::Tensor apply_t(const torch::Tensor& m) override {
    ++applies_t;
    return DenseOperator::apply_t(m);
  }
  torch::Tensor apply_gram(const torch::Tensor& q) override {
    ++grams;
    return DenseOperator::apply_gram(q);
  }
};

// Forwards to a CountingOperator of Vᵀ that outlives it.
struct ForwardingOperator : LinearOperator {
  explicit ForwardingOperator(std::shared_ptr<CountingOperator> inner) : inner_(inner) {}
  int64_t rows() const override { return inner_->rows(); }
  int64_t cols() const override { return inner_->cols(); }
  torch::Tensor apply(const torch::Tensor& q) override { return inner_->apply(q); }
  torch::Tensor apply_t(const torch::Tensor& m) override { return inner_->apply_t(m); }
  torch::Tensor apply_gram(const torch::Tensor& q) override { return inner_->apply_gram(q); }
  bool fuses_gram() const override { return true; }
  double squared_frobenius() override { return inner_->squared_frobenius(); }
  torch::TensorOptions options() const override { return inner_->options(); }
  std::shared_ptr<CountingOperator> inner_;
};

std::unique_ptr<LinearOperator> CountingOperator::transposed() {
  if (!transpose_) return nullptr;
  t_counts = std::make_shared<CountingOperator>(v_.t());
  return std::make_unique<ForwardingOperator>(t_counts);
}

SvdOptions options(SvdSolver solver, GramProducts gram, int64_t rank, int64_t iters, double tol) {
  SvdOptions o;
  o.rank = rank;
  o.oversample = 6;
  o.power_iters = iters;
  o.tol = tol;
  o.solver = solver;
  o.gram = gram;
  o.seed = 3;
  return o;
}

TEST(DenseOperator, ApplyGramIsVtVQ) {
  test::seed(1);
  auto v = torch::randn({300, 50}, torch::kFloat64);
  auto q = torch::randn({50, 7}, torch::kFloat64);
  DenseOperator op(v);
  EXPECT_TRUE(op.fuses_gram());
  test::expect_close(op.apply_gram(q), v.t().mm(v.mm(q)), 1e-12, "VtVQ");
}

// The streamed per-example operator's VᵀV Q: the explicit Fisher vectors' Vᵀ(V Q), from one
// pass (one progress report, so one gradient block, per batch).
TEST(PerExampleOperator, ApplyGramIsVtVQInOnePass) {
  test::seed(0);
  auto zoo = make_zoo_module("lenet5", {{"image_size", 12}});
  ModelOptions mo;
  mo.dtype = torch::kFloat64;
  ScoreModel model(ModelKind::kClassifier, wrap_zoo_module(zoo), nullptr, mo);
  test::seed(1);
  auto x = torch::rand({9, 1, 12, 12}, torch::kFloat64);
  auto stats = compute_fisher_stats(model, x, FisherOptions{});
  auto v = (test::explicit_jacobian(model, x, 4) - stats.mean_score) * stats.inv_sqrt();
  int reports = 0;
  PerExampleOperator op(model, x, stats, /*batch_size=*/4,
                        [&](const std::string& stage, int64_t, int64_t) {
                          EXPECT_EQ(stage, "VtVQ");
                          ++reports;
                        });
  EXPECT_TRUE(op.fuses_gram());
  auto q = torch::randn({op.cols(), 5}, torch::kFloat64);
  test::expect_close(op.apply_gram(q), v.t().mm(v.mm(q)), 1e-10, "VtVQ");
  EXPECT_EQ(reports, 3);  // ceil(9 / 4) batches
}

// Well-separated spectrum 0.8^i: the one-pass subspace iteration and block Krylov (fused and
// two-pass) agree with the exact SVD to 1e-10, with the passes each form promises.
TEST(FewerPasses, FusedSubspaceAndBlockKrylovMatchExactInFloat64) {
  const int64_t n = 200, p = 400, k = 12, iters = 8;
  auto v = with_spectrum(n, p, torch::pow(0.8, torch::arange(n, torch::kFloat64)), 5);
  auto e = exact_svd(v, k);
  struct Case {
    SvdSolver solver;
    GramProducts gram;
    int64_t passes;
  };
  for (const Case c : {Case{SvdSolver::kSubspace, GramProducts::kFused, iters + 2},
                       Case{SvdSolver::kSubspace, GramProducts::kTwoPass, 2 * iters + 2},
                       Case{SvdSolver::kBlockKrylov, GramProducts::kFused, iters + 2},
                       Case{SvdSolver::kBlockKrylov, GramProducts::kTwoPass, 2 * iters + 2}}) {
    SCOPED_TRACE(to_string(c.solver) + (c.gram == GramProducts::kFused ? " fused" : " two-pass"));
    CountingOperator op(v);
    auto r = randomized_svd(op, options(c.solver, c.gram, k, iters, /*tol=*/0));
    EXPECT_LE(max_rel_error(r.singular_values, e.singular_values), 1e-10);
    EXPECT_GE(principal_cosines(r.right, e.right).min().item<double>(), 1 - 1e-10);
    test::expect_close(v.mm(r.right), r.left * r.singular_values, 1e-10, "VP = Phi sigma");
    EXPECT_EQ(r.passes, c.passes);
    EXPECT_EQ(r.iterations, iters);
    EXPECT_EQ(op.applies + op.applies_t + op.grams, c.passes);  // every product one pass
    EXPECT_EQ(op.grams, c.gram == GramProducts::kFused ? iters : 0);
    EXPECT_EQ(r.fused, c.gram == GramProducts::kFused);
  }
}

// A slowly decaying spectrum σ_i = 1/√(1 + i) (subspace iteration converges at (σ_u/σ_i)² per
// iteration): the stop reaches each tolerance, before the cap, and a tighter one takes longer.
TEST(FewerPasses, ConvergenceStopReachesItsToleranceOnAKnownSpectrum) {
  const int64_t n = 200, p = 500, k = 8;
  auto sigma = 1.0 / torch::sqrt(1.0 + torch::arange(n, torch::kFloat64));
  auto v = with_spectrum(n, p, sigma, 7);
  auto truth = sigma.slice(0, 0, k);
  for (auto solver : {SvdSolver::kSubspace, SvdSolver::kBlockKrylov}) {
    int64_t previous_iterations = 0;
    for (double tol : {1e-3, 1e-6}) {
      SCOPED_TRACE(to_string(solver) + " tol " + std::to_string(tol));
      DenseOperator op(v);
      auto r = randomized_svd(op, options(solver, GramProducts::kAuto, k, /*iters=*/60, tol));
      EXPECT_LE(max_rel_error(r.singular_values, truth), tol);
      EXPECT_GE(r.estimated_error, 0);
      EXPECT_LE(r.estimated_error, tol);
      EXPECT_LT(r.iterations, 60);  // stopped by the tolerance, not the cap
      EXPECT_GT(r.iterations, previous_iterations);
      previous_iterations = r.iterations;
    }
  }
  // The estimate is honest when the cap stops the run first: above the true error.
  DenseOperator op(v);
  auto capped = randomized_svd(op, options(SvdSolver::kSubspace, GramProducts::kAuto, k, 4, 1e-9));
  EXPECT_EQ(capped.iterations, 4);
  EXPECT_GE(capped.estimated_error, max_rel_error(capped.singular_values, truth));
}

// A wide V (N < P) resident: the SVDs iterate on Vᵀ, in the N-long space, with the same passes,
// and return V's factors with the same sign convention as the run in V's column space.
TEST(FewerPasses, WideVIteratesOnItsTransposeWithTheSameResult) {
  const int64_t n = 90, p = 400, k = 10, iters = 6;
  auto v = with_spectrum(n, p, torch::pow(0.8, torch::arange(n, torch::kFloat64)), 11);
  auto e = exact_svd(v, k);
  for (auto solver : {SvdSolver::kSubspace, SvdSolver::kBlockKrylov}) {
    for (auto gram : {GramProducts::kFused, GramProducts::kTwoPass}) {
      SCOPED_TRACE(to_string(solver) + (gram == GramProducts::kFused ? " fused" : " two-pass"));
      CountingOperator wide(v, /*transpose=*/true), plain(v);
      auto r = randomized_svd(wide, options(solver, gram, k, iters, /*tol=*/0));
      auto q = randomized_svd(plain, options(solver, gram, k, iters, /*tol=*/0));
      ASSERT_NE(wide.t_counts, nullptr);
      EXPECT_EQ(wide.products(), 0);                   // every product went to Vᵀ
      EXPECT_EQ(wide.t_counts->products(), r.passes);  // one pass each
      EXPECT_EQ(r.passes, q.passes);                   // as many as in V's column space
      EXPECT_EQ(plain.products(), q.passes);
      EXPECT_LE(max_rel_error(r.singular_values, e.singular_values), 1e-10);
      ASSERT_EQ(r.right.sizes(), (std::vector<int64_t>{p, k}));
      ASSERT_EQ(r.left.sizes(), (std::vector<int64_t>{n, k}));
      test::expect_close(r.right, e.right, 1e-8, "P, signs fixed as the exact SVD's");
      test::expect_close(r.left, e.left, 1e-8, "Phi");
      test::expect_close(r.right, q.right, 1e-8, "P as in V's column space");
      test::expect_close(v.mm(r.right), r.left * r.singular_values, 1e-9, "VP = Phi sigma");
      EXPECT_TRUE(r.total_variance_exact);
    }
  }
  // A checkpointed run keeps V's column space (its states are P-long bases).
  CountingOperator wide(v, /*transpose=*/true);
  auto o = options(SvdSolver::kSubspace, GramProducts::kTwoPass, k, iters, 0);
  int states = 0;
  auto r = randomized_svd(wide, o, {}, nullptr, [&](const SvdState& s) {
    EXPECT_EQ(s.q_pu.size(0), p);
    ++states;
  });
  EXPECT_EQ(wide.t_counts, nullptr);
  EXPECT_EQ(states, iters + 1);
  EXPECT_LE(max_rel_error(r.singular_values, e.singular_values), 1e-10);
}

// A wide V without a fused transpose (streamed) iterates on Vᵀ only when asked
// (transpose_wide): block Krylov then makes two passes per iteration through V's own products.
TEST(FewerPasses, TransposeWideIteratesOnVtThroughTwoPassProducts) {
  const int64_t n = 90, p = 400, k = 10, iters = 4;  // 5 blocks of 16 < N: the space not full
  auto v = with_spectrum(n, p, torch::pow(0.8, torch::arange(n, torch::kFloat64)), 13);
  auto e = exact_svd(v, k);
  auto o = options(SvdSolver::kBlockKrylov, GramProducts::kAuto, k, iters, /*tol=*/0);
  CountingOperator plain(v);
  auto columns = randomized_svd(plain, o);
  EXPECT_EQ(plain.grams, iters);  // V's column space, fused
  o.transpose_wide = true;
  CountingOperator wide(v);
  auto r = randomized_svd(wide, o);
  EXPECT_EQ(wide.grams, 0);
  EXPECT_EQ(wide.applies + wide.applies_t, r.passes);
  EXPECT_EQ(r.passes, 2 * iters + 2);  // two-pass block Krylov
  EXPECT_FALSE(r.fused);
  EXPECT_LE(max_rel_error(r.singular_values, e.singular_values), 1e-10);
  test::expect_close(r.right, e.right, 1e-8, "P, signs fixed as the exact SVD's");
  test::expect_close(r.left, e.left, 1e-8, "Phi");
  EXPECT_LE(max_rel_error(columns.singular_values, e.singular_values), 1e-10);
  // A tall V (N > P) is already in its smaller space: the flag changes nothing.
  auto tall = v.t().contiguous();
  CountingOperator a(tall), b(tall);
  auto o3 = options(SvdSolver::kBlockKrylov, GramProducts::kAuto, k, 3, /*tol=*/0);
  auto without = randomized_svd(a, o3);
  o3.transpose_wide = true;
  auto with = randomized_svd(b, o3);
  EXPECT_TRUE(torch::equal(without.singular_values, with.singular_values));
  EXPECT_EQ(b.grams, 3);
}

// The float32 rule: one-pass VᵀV products are trusted down to σ_k/σ_1 = √eps (3.45e-4 in
// float32); below it kAuto falls back to two passes, and its σ are then as good as the two-pass
// run's.
TEST(FewerPasses, Float32RuleFallsBackToTwoPassesBelowSqrtEps) {
  EXPECT_NEAR(fused_gram_min_ratio(torch::kFloat32), 3.4527e-4, 1e-7);
  EXPECT_NEAR(fused_gram_min_ratio(torch::kFloat64), 1.4901e-8, 1e-12);
  const int64_t n = 300, p = 600, k = 10;
  for (double ratio : {1e-2, 1e-5}) {
    // σ_1 = 1, then σ_2.. = ratio · 0.9^i: σ_k/σ_1 ≈ ratio.
    auto sigma = torch::cat({torch::ones({1}, torch::kFloat64),
                             ratio * torch::pow(0.9, torch::arange(n - 1, torch::kFloat64))});
    auto v = with_spectrum(n, p, sigma, 11).to(torch::kFloat32);
    auto truth = exact_svd(v.to(torch::kFloat64), k).singular_values;
    const bool above = ratio > fused_gram_min_ratio(torch::kFloat32);
    for (auto solver : {SvdSolver::kSubspace, SvdSolver::kBlockKrylov}) {
      SCOPED_TRACE(to_string(solver) + " ratio " + std::to_string(ratio));
      DenseOperator op(v);
      auto r = randomized_svd(op, options(solver, GramProducts::kAuto, k, 6, /*tol=*/0));
      auto two = randomized_svd(op, options(solver, GramProducts::kTwoPass, k, 6, /*tol=*/0));
      EXPECT_EQ(r.fused, above);
      const double err = max_rel_error(r.singular_values, truth);
      const double err_two = max_rel_error(two.singular_values, truth);
      EXPECT_LE(err, std::max(2 * err_two, 1e-5)) << "two-pass " << err_two;
      if (!above) EXPECT_GT(r.passes, two.passes - 1);  // the fallback costs passes, not accuracy
    }
  }
}

// The exact method forms its Gram in float64: a float32 V keeps σ_k/σ_1 = 1e-4 (a float32 Gram
// would lose it entirely: (1e-4)² is below float32's eps).
TEST(FewerPasses, ExactSvdOfFloat32KeepsSmallSingularValues) {
  const int64_t n = 120, p = 300, k = 6;
  auto sigma = torch::cat({torch::ones({1}, torch::kFloat64),
                           1e-4 * torch::pow(0.8, torch::arange(n - 1, torch::kFloat64))});
  auto v = with_spectrum(n, p, sigma, 13).to(torch::kFloat32);
  auto truth = at::linalg_svdvals(v.to(torch::kFloat64)).slice(0, 0, k);
  auto r = exact_svd(v, k);
  EXPECT_EQ(r.singular_values.scalar_type(), torch::kFloat32);
  EXPECT_LE(max_rel_error(r.singular_values, truth), 1e-3);
  EXPECT_EQ(r.passes, 1);
}

// kAuto's cost model: the Gram eigendecomposition for a few hundred LeNet-5 examples, the
// randomized SVD beyond about (L + 1)·u.
TEST(FewerPasses, ExactIsCheaperOnlyForSmallN) {
  SvdOptions o;  // k = 32, u = 42, L = 10
  o.solver = SvdSolver::kSubspace;
  EXPECT_TRUE(exact_is_cheaper(300, 61706, o));
  EXPECT_FALSE(exact_is_cheaper(600, 61706, o));
  EXPECT_FALSE(exact_is_cheaper(4096, 61706, o));
  EXPECT_TRUE(exact_is_cheaper(4096, 40, o));  // P small: the P x P Gram
}

}  // namespace
}  // namespace nfk
