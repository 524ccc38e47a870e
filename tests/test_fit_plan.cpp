// plan_fit decides once (method, gradient path, shards, memory) and fit executes it; models held
// in memory fit; a projector that carries its model embeds new data alone; transform follows the
// fit's gradient path.
#include <filesystem>

#include "nfk/embed.h"
#include "nfk/zoo.h"
#include "support.h"
#include "zoo_cases.h"

namespace nfk {
namespace {

using test::Case;

// V [N, P] from the explicit per-example loop and the projector's z, I.
torch::Tensor explicit_v(ScoreModel& model, const Projector& p, const torch::Tensor& x) {
  return (test::explicit_jacobian(model, x, 1) - p.fisher.mean_score) *
         p.fisher.fisher_diag.rsqrt();
}

TEST(FitPlan, DecidesOnceWithReasonsAndLeavesTheModelAlone) {
  auto dir = test::temp_dir("plan");
  Case c = test::small_cnn_classifier(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  auto x = c.x.slice(0, 0, 10);
  FitOptions o;
  o.svd = {/*rank=*/2, /*oversample=*/2, /*power_iters=*/1};
  const int64_t p = model.num_parameters();

  auto resident = plan_fit(model, x, o);
  EXPECT_EQ(resident.method, FitMethod::kPerExample);
  EXPECT_TRUE(resident.v_resident);
  EXPECT_EQ(resident.v_operator.gradient_path, GradientPath::kLayerTape);
  EXPECT_TRUE(resident.gradient_path_reason.empty());
  EXPECT_EQ(resident.v_bytes, 10 * p * 8);  // float64
  EXPECT_EQ(resident.shard_rows, std::vector<int64_t>{10});
  EXPECT_NE(resident.describe().find("layer tape"), std::string::npos) << resident.describe();

  o.memory_budget = 1000;  // bytes: V cannot stay
  auto recomputed = plan_fit(model, x, o);
  EXPECT_EQ(recomputed.method, FitMethod::kPerExample);
  EXPECT_FALSE(recomputed.v_resident);
  EXPECT_NE(recomputed.summary().find("recomputed"), std::string::npos) << recomputed.summary();

  // A TorchScript model of raw matmuls is not covered by the tape: matrix-free, and why.
  auto ts = test::make_test_model(ModelKind::kClassifier, dir);
  auto ts_plan = plan_fit(ts, test::test_inputs(10), o);
  EXPECT_EQ(ts_plan.method, FitMethod::kMatrixFree);
  EXPECT_EQ(ts_plan.v_operator.gradient_path, GradientPath::kLoop);
  EXPECT_FALSE(ts_plan.gradient_path_reason.empty());
  EXPECT_NE(ts_plan.describe().find(ts_plan.gradient_path_reason), std::string::npos);
  // Planning is a probe, not a side effect: the same plan again, and the fit executes it.
  EXPECT_EQ(plan_fit(ts, test::test_inputs(10), o).to_json(), ts_plan.to_json());
  auto r = fit(ts, test::test_inputs(10), o);
  EXPECT_EQ(r.plan.to_json(), ts_plan.to_json());
  EXPECT_EQ(r.projector.method, FitMethod::kMatrixFree);
  EXPECT_EQ(r.projector.gradient_path, GradientPath::kLoop);

  o.method = FitMethod::kExact;
  EXPECT_THROW(plan_fit(model, x, o), c10::Error);  // V over the budget
  o.memory_budget = int64_t{1} << 30;
  o.svd.rank = 11;  // more than N = 10
  EXPECT_THROW(plan_fit(model, x, o), c10::Error);
}

TEST(FitPlan, ResidentFitsReportTheExactTotalVariance) {
  auto dir = test::temp_dir("plan_total");
  Case c = test::small_cnn_classifier(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  auto x = c.x.slice(0, 0, 12);
  FitOptions o;
  o.svd = {/*rank=*/3, /*oversample=*/2, /*power_iters=*/2};
  auto r = fit(model, x, o);
  ASSERT_TRUE(r.plan.v_resident);
  const double truth = explicit_v(model, r.projector, x).square().sum().item<double>();
  EXPECT_TRUE(r.projector.total_variance_exact);
  EXPECT_NEAR(r.projector.total_variance, truth, 1e-10 * truth);
}

// A wide V streamed whose Krylov basis would not fit in V's column space (P·c values, c =
// min(u·(L + 1), N) columns, beyond 1 GiB) but does in its row space (N·c): the plan runs block
// Krylov on Vᵀ; such a fit (two-pass products through V's own operator) has the exact fit's σ.
TEST(FitPlan, WideStreamedVRunsBlockKrylovOnItsTranspose) {
  auto dir = test::temp_dir("plan_wide");
  Case c = test::small_cnn_classifier(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  const int64_t p = model.num_parameters(), n = 10000;
  FitOptions o;
  o.svd = {/*rank=*/3, /*oversample=*/2, /*power_iters=*/2500};  // c = N = 10,000 columns
  o.memory_budget = 1000;                                        // bytes: V is streamed
  ASSERT_GT(p * n * 8, int64_t{1} << 30);
  ASSERT_LE(n * n * 8, int64_t{1} << 30);
  std::vector<int64_t> shape = c.x.sizes().vec();
  shape[0] = n;
  auto plan = plan_fit(model, c.x.slice(0, 0, 1).expand(shape), o);
  ASSERT_EQ(plan.method, FitMethod::kPerExample);
  ASSERT_FALSE(plan.v_resident);
  EXPECT_EQ(plan.svd.solver, SvdSolver::kBlockKrylov);
  EXPECT_TRUE(plan.svd.transpose_wide);
  EXPECT_NE(plan.describe().find("block-krylov on V^T"), std::string::npos) << plan.describe();
  EXPECT_NE(plan.to_json()["reasons"].dump().find("block Krylov on V^T"), std::string::npos);
  // 24 examples: the column space's basis fits, so the plan keeps it ...
  auto x = c.x.slice(0, 0, 24);
  o.svd.power_iters = 6;
  EXPECT_FALSE(plan_fit(model, x, o).svd.transpose_wide);
  // ... and a fit asked to iterate on Vᵀ anyway gets the exact σ.
  o.svd.solver = SvdSolver::kBlockKrylov;
  o.svd.transpose_wide = true;
  auto r = fit(model, x, o);
  EXPECT_FALSE(r.projector.profile.fused);  // V(VᵀX) streamed: two passes
  FitOptions e;
  e.svd.rank = 3;
  e.method = FitMethod::kExact;
  auto exact = fit(model, x, e);
  test::expect_close(r.projector.singular_values, exact.projector.singular_values, 1e-8, "sigma");
  EXPECT_GE(principal_cosines(r.projector.basis, exact.projector.basis).min().item<double>(),
            1 - 1e-8);
}

TEST(Fit, ModelHeldInMemoryFitsAndEmbedsWithoutAFile) {
  test::seed(0);
  auto zoo = make_zoo_module("lenet5", {{"image_size", 12}, {"num_classes", 3}});
  ModelOptions mo;
  mo.dtype = torch::kFloat64;
  ScoreModel model(ModelKind::kClassifier, wrap_zoo_module(zoo), nullptr, mo);
  test::seed(1);
  auto x = torch::rand({20, 1, 12, 12}, torch::kFloat64);
  FitOptions o;
  o.svd.rank = 4;
  o.method = FitMethod::kExact;
  auto r = fit(model, x, o);
  record_model_files(r.projector);  // no file: nothing to record
  EXPECT_TRUE(r.projector.model_hash.empty());
  test::expect_close(transform(r.projector, model, x), r.train_embedding, 1e-10, "e(train)");
  // Reloading needs a file: the error says so.
  const std::string why = test::error_of([&] { load_projector_model(r.projector); });
  EXPECT_NE(why.find("held in memory"), std::string::npos) << why;
}

TEST(Projector, CarriesItsModelWithEmbedModel) {
  auto dir = test::temp_dir("embed_model");
  Case c = test::small_gan(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  FitOptions o;
  o.svd.rank = 3;
  o.method = FitMethod::kExact;
  auto p = fit(model, c.x.slice(0, 0, 24), o).projector;
  record_model_files(p, /*embed=*/true);
  EXPECT_FALSE(p.model_bytes.empty());
  EXPECT_FALSE(p.generator_bytes.empty());
  save_projector(dir + "/p.nfk", p);
  // The model files go away: the projector alone embeds new data.
  std::filesystem::remove(c.options.model_path);
  std::filesystem::remove(c.options.generator_path);
  auto q = load_projector(dir + "/p.nfk");
  EXPECT_EQ(q.model_bytes, p.model_bytes);
  auto reloaded = load_projector_model(q);
  auto x_new = c.x.slice(0, 24, 30);
  test::expect_close(transform(q, reloaded, x_new), explicit_v(model, q, x_new).mm(q.basis), 1e-10,
                     "e(new) from the embedded model");
  // Without --embed-model the missing file is named.
  auto plain = p;
  plain.model_bytes.clear();
  plain.generator_bytes.clear();
  const std::string why = test::error_of([&] { load_projector_model(plain); });
  EXPECT_NE(why.find(c.options.model_path), std::string::npos) << why;
}

TEST(Transform, FollowsTheFitsGradientPath) {
  // Without the tape transform takes k forward-mode passes per batch (k < batch) instead of a
  // backward per example; both must give Pᵀ V_x.
  auto dir = test::temp_dir("transform_path");
  auto ts = test::make_test_model(ModelKind::kClassifier, dir);
  auto x = test::test_inputs(30);
  FitOptions o;
  o.svd.rank = 3;
  o.method = FitMethod::kExact;
  auto r = fit(ts, x.slice(0, 0, 20), o);
  ASSERT_EQ(r.projector.gradient_path, GradientPath::kLoop);
  auto x_new = x.slice(0, 20, 30);
  auto want = explicit_v(ts, r.projector, x_new).mm(r.projector.basis);
  test::expect_close(transform(r.projector, ts, x_new, {/*batch_size=*/8}), want, 1e-10, "jvp");
  test::expect_close(transform(r.projector, ts, x_new, {/*batch_size=*/2}), want, 1e-10, "loop");
}

}  // namespace
}  // namespace nfk
