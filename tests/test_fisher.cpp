// Score gradients, Fisher statistics and the V-operator against independent truth: central
// finite differences and explicit per-example loops, in float64.
#include "nfk/fisher.h"
#include "support.h"

namespace nfk {
namespace {

using test::explicit_jacobian;
using test::make_test_model;
using test::test_inputs;

const ModelKind kAllKinds[] = {ModelKind::kClassifier, ModelKind::kGan,   ModelKind::kVae,
                               ModelKind::kDensity,    ModelKind::kScore, ModelKind::kNtk};

class EveryKind : public ::testing::TestWithParam<ModelKind> {};

TEST_P(EveryKind, PerExampleGradientsMatchFiniteDifferences) {
  auto model = make_test_model(GetParam(), test::temp_dir("fd"));
  const int64_t n = 5;
  auto x = test_inputs(n);
  auto j = per_example_gradients(model, x, /*first_index=*/0);  // [n, P]
  ASSERT_EQ(j.size(1), model.num_parameters());

  // Central differences of the batch scores, one parameter coordinate at a time.
  auto fd = test::central_differences(model.parameters(), [&] { return model.score(x, 0); });
  test::expect_close(j, fd, 1e-7, to_string(GetParam()));
}

TEST_P(EveryKind, OperatorProductsMatchExplicitFisherVectors) {
  auto model = make_test_model(GetParam(), test::temp_dir("op"));
  const int64_t n = 11, batch = 4;  // uneven last batch
  auto x = test_inputs(n);
  auto stats = compute_fisher_stats(model, x, {}, {/*batch_size=*/3});
  auto v = (explicit_jacobian(model, x, batch) - stats.mean_score) * stats.fisher_diag.rsqrt();

  FisherVectorOperator op(model, x, stats, batch);
  test::seed(3);
  auto q = torch::randn({op.cols(), 6}, torch::kFloat64);
  auto m = torch::randn({n, 6}, torch::kFloat64);
  test::expect_close(op.apply(q), v.mm(q), 1e-10, "JVP " + to_string(GetParam()));
  test::expect_close(op.apply_t(m), v.t().mm(m), 1e-10, "VJP " + to_string(GetParam()));
  test::expect_close(op.dense(), v, 1e-12, "dense " + to_string(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Kinds, EveryKind, ::testing::ValuesIn(kAllKinds),
                         [](const auto& info) { return to_string(info.param); });

TEST(FisherStats, EmpiricalMatchesDirectMeanAndVariance) {
  auto model = make_test_model(ModelKind::kClassifier, test::temp_dir("emp"));
  auto x = test_inputs(20);
  auto stats = compute_fisher_stats(model, x, {}, {/*batch_size=*/7});
  auto j = explicit_jacobian(model, x, 1);
  EXPECT_EQ(stats.estimator, Estimator::kEmpirical);
  EXPECT_EQ(stats.reference, "data");
  test::expect_close(stats.mean_score, j.mean(0), 1e-12, "z");
  test::expect_close(stats.fisher_diag, (j - j.mean(0)).square().mean(0), 1e-12, "I");
}

TEST(FisherStats, GanTrueEstimatorUsesGeneratorSamples) {
  auto model = make_test_model(ModelKind::kGan, test::temp_dir("gan"));
  auto x = test_inputs(10);
  FisherOptions fo;
  fo.reference_samples = 15;
  const RunOptions seeded{/*batch_size=*/256, /*seed=*/42};
  auto stats = compute_fisher_stats(model, x, fo, seeded);
  EXPECT_EQ(stats.estimator, Estimator::kTrue);
  EXPECT_EQ(stats.reference, "generator samples");
  EXPECT_EQ(stats.n_reference, 15);
  auto g = explicit_jacobian(model, model.sample(15, 42), 1);
  test::expect_close(stats.mean_score, g.mean(0), 1e-12, "z from G(h)");
  // D's output bias has a constant gradient: zero variance, floored.
  auto direct = (g - g.mean(0)).square().mean(0).clamp_min(stats.floor_value);
  test::expect_close(stats.fisher_diag, direct, 1e-12, "I from G(h)");

  // The empirical estimator is offered too, and differs.
  fo.estimator = Estimator::kEmpirical;
  auto emp = compute_fisher_stats(model, x, fo, seeded);
  EXPECT_EQ(emp.reference, "data");
  EXPECT_GT(test::rel_err(emp.mean_score, stats.mean_score), 1e-3);
}

TEST(FisherStats, NtkIsUncentredAndUnscaled) {
  auto model = make_test_model(ModelKind::kNtk, test::temp_dir("ntk"));
  auto stats = compute_fisher_stats(model, test_inputs(4), {});
  EXPECT_EQ(stats.estimator, Estimator::kNone);
  EXPECT_EQ(stats.mean_score.abs().max().item<double>(), 0.0);
  EXPECT_EQ(stats.fisher_diag.min().item<double>(), 1.0);
}

TEST(FisherStats, ZeroVarianceEntriesAreFlooredAndReported) {
  // A parameter the score ignores has zero Fisher information: it must be floored, counted,
  // and contribute exactly zero to every Fisher vector. So must the output bias b2 of a scalar
  // score, whose gradient is the constant 1 (centred away entirely).
  test::seed(0);
  auto dir = test::temp_dir("floor");
  auto m = test::kind_module(ModelKind::kScore);
  m.register_parameter("unused", torch::randn({3}, torch::kFloat64).requires_grad_(true), false);
  ModelOptions o;
  o.dtype = torch::kFloat64;
  o.model_path = dir + "/unused.pt";
  m.save(o.model_path);
  auto model = load_score_model(ModelKind::kScore, o);
  auto x = test_inputs(8);
  auto stats = compute_fisher_stats(model, x, {});
  EXPECT_EQ(stats.n_floored, 4);  // b2 [1] + unused [3]
  EXPECT_GT(stats.floor_value, 0);
  FisherVectorOperator op(model, x, stats, 4);
  auto v = op.dense();
  EXPECT_EQ(v.slice(1, v.size(1) - 4).abs().max().item<double>(), 0.0);
  EXPECT_TRUE(torch::isfinite(v).all().item<bool>());
}

TEST(FisherStats, TrueEstimatorNeedsASampler) {
  auto model = make_test_model(ModelKind::kClassifier, test::temp_dir("nosampler"));
  FisherOptions fo;
  fo.estimator = Estimator::kTrue;
  try {
    compute_fisher_stats(model, test_inputs(4), fo);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot sample"), std::string::npos) << e.what();
  }
}

TEST(ScoreModel, VaeNoiseIsFixedPerBatchAndSeed) {
  auto model = make_test_model(ModelKind::kVae, test::temp_dir("vae"));
  auto x = test_inputs(6);
  torch::NoGradGuard no_grad;
  auto a = model.score(x, 0), b = model.score(x, 0), c = model.score(x, 6);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
}

}  // namespace
}  // namespace nfk
