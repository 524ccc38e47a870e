// Generative zoo models as nfk models: archives round-trip bit-exactly, and the model protocol
// (scores, sampling, per-example gradients vs finite differences, V products vs explicit rows).
#include <string>

#include "generative_support.h"
#include "nfk/fisher.h"

namespace nfk {
namespace {

using test::same_parameters;
using test::tiny_made;
using test::tiny_vae;

TEST(GenerativeZoo, ArchivesRoundTripBitExactly) {
  const auto dir = test::temp_dir("gen_archive");
  auto vae = tiny_vae("gaussian");
  auto made = tiny_made(1, 4, {8, 8});
  save_zoo_module(dir + "/vae.zoo", vae);
  save_zoo_module(dir + "/made.zoo", made);
  auto vae2 = load_zoo_module(dir + "/vae.zoo");
  auto made2 = load_zoo_module(dir + "/made.zoo");
  EXPECT_EQ(vae2.arch, "vae");
  EXPECT_EQ(vae2.options, vae.options);
  EXPECT_EQ(made2.options, made.options);
  EXPECT_TRUE(same_parameters(vae, vae2));
  EXPECT_TRUE(same_parameters(made, made2));
  torch::NoGradGuard no_grad;
  auto x = torch::rand({3, 1, 8, 8});
  test::seed(9);
  auto a = vae.call("elbo", x);
  test::seed(9);
  EXPECT_TRUE(torch::equal(a, vae2.call("elbo", x)));
  auto y = torch::rand({3, 1, 4, 4});
  EXPECT_TRUE(torch::equal(made.call("log_prob", y), made2.call("log_prob", y)));
}

// Saves a zoo module and loads it as an nfk ScoreModel in float64.
ScoreModel as_score_model(ModelKind kind, const ZooModule& zoo, const std::string& dir) {
  ModelOptions o;
  o.dtype = torch::kFloat64;
  o.model_path = dir + "/" + zoo.arch + ".zoo";
  o.seed = 7;
  save_zoo_module(o.model_path, zoo);
  return load_score_model(kind, o, test::test_inputs(2));
}

class GenerativeKind : public ::testing::TestWithParam<ModelKind> {
 protected:
  ScoreModel model() {
    const auto dir = test::temp_dir("gen_protocol");
    if (GetParam() == ModelKind::kVae) {
      return as_score_model(GetParam(), tiny_vae("bernoulli", test::kSide, 2, 2), dir);
    }
    return as_score_model(GetParam(), tiny_made(1, test::kSide, {6}, "gaussian", 0.01), dir);
  }
};

TEST_P(GenerativeKind, ProtocolScoresAndSamples) {
  auto m = model();
  auto x = test::test_inputs(5);
  torch::NoGradGuard no_grad;
  auto s = m.score(x, 0);
  ASSERT_EQ(s.sizes(), torch::IntArrayRef({5}));
  EXPECT_EQ(s.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::isfinite(s).all().item<bool>());
  EXPECT_TRUE(torch::equal(s, m.score(x, 0)));
  ASSERT_TRUE(m.can_sample());
  auto samples = m.sample(4, 1);
  ASSERT_EQ(samples.sizes(), torch::IntArrayRef({4, 1, test::kSide, test::kSide}));
  EXPECT_TRUE(torch::equal(samples, m.sample(4, 1)));
  EXPECT_EQ(resolve_estimator(m, Estimator::kAuto), Estimator::kTrue);
}

TEST_P(GenerativeKind, PerExampleGradientsMatchFiniteDifferences) {
  auto m = model();
  const int64_t n = 4;
  auto x = test::test_inputs(n);
  auto j = per_example_gradients(m, x, /*first_index=*/0);
  ASSERT_EQ(j.size(1), m.num_parameters());
  auto fd = test::central_differences(m.parameters(), [&] { return m.score(x, 0); });
  test::expect_close(j, fd, 1e-6, to_string(GetParam()));
}

TEST_P(GenerativeKind, OperatorProductsMatchExplicitFisherVectors) {
  auto m = model();
  const int64_t n = 7, batch = 3;
  auto x = test::test_inputs(n);
  FisherOptions fo;
  fo.estimator = Estimator::kEmpirical;
  auto stats = compute_fisher_stats(m, x, fo);
  auto v = (test::explicit_jacobian(m, x, batch) - stats.mean_score) * stats.fisher_diag.rsqrt();
  FisherVectorOperator op(m, x, stats, batch);
  test::seed(3);
  auto q = torch::randn({op.cols(), 3}, torch::kFloat64);
  auto mm = torch::randn({n, 3}, torch::kFloat64);
  test::expect_close(op.apply(q), v.mm(q), 1e-10, "JVP " + to_string(GetParam()));
  test::expect_close(op.apply_t(mm), v.t().mm(mm), 1e-10, "VJP " + to_string(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Kinds, GenerativeKind,
                         ::testing::Values(ModelKind::kVae, ModelKind::kDensity),
                         [](const auto& info) { return to_string(info.param); });

}  // namespace
}  // namespace nfk
