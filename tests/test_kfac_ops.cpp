// KfacFactors as an operator (mv, inverse_mv with both dampings) against dense float64 matrices,
// its refusals, and data-parallel factors against one process.
#include <unistd.h>

#include <thread>

#include "kfac_support.h"
#include "nfk/dist.h"

namespace nfk {
namespace {

struct Fixture {
  std::shared_ptr<test::KfacNet> net = test::kfac_net();
  ScoreModel model = test::kfac_model(net);
  torch::Tensor x = [] {
    test::seed(1);
    return torch::rand({5, 2, 6, 6}, torch::kFloat64);
  }();
  ClassifierFisherOptions options;  // true
  RunOptions run = [] {
    RunOptions r;
    r.batch_size = 2;
    return r;
  }();
};

torch::Tensor random_v(int64_t p, int64_t u) {
  test::seed(7);
  return torch::randn({p, u}, torch::kFloat64);
}

TEST(KfacOperator, MvMatchesTheDenseBlockDiagonalMatrix) {
  Fixture s;
  for (auto* make : {&kfac_factors, &ekfac_factors}) {
    auto k = make(s.model, {s.x, {}}, s.options, s.run);
    auto dense = test::dense_kfac(k);
    auto v = random_v(k.num_params, 3);
    test::expect_close(k.mv(v), dense.mm(v), 1e-12, "mv [P, u] " + to_string(k.form));
    auto v1 = v.select(1, 0);
    auto fv1 = k.mv(v1);
    EXPECT_EQ(fv1.dim(), 1);
    test::expect_close(fv1, dense.mv(v1), 1e-12, "mv [P]");
    // float32 in, float32 out.
    auto fv32 = k.mv(v1.to(torch::kFloat32));
    EXPECT_EQ(fv32.scalar_type(), torch::kFloat32);
  }
}

TEST(KfacOperator, IsALinearOperatorWhoseDenseMatrixIsTheApproximation) {
  Fixture s;
  auto k = ekfac_factors(s.model, {s.x, {}}, s.options, s.run);
  KfacOperator op(k);
  EXPECT_EQ(op.rows(), k.num_params);
  EXPECT_EQ(op.cols(), k.num_params);
  test::expect_close(op.dense(), test::dense_kfac(k), 1e-12, "dense");
}

TEST(KfacOperator, InverseMvSolvesTheDampedDenseSystem) {
  Fixture s;
  const double damping = 1e-2;
  for (auto* make : {&kfac_factors, &ekfac_factors}) {
    auto k = make(s.model, {s.x, {}}, s.options, s.run);
    auto dense = test::dense_kfac(k);
    auto v = random_v(k.num_params, 2);
    auto eye = torch::eye(k.num_params, torch::kFloat64);
    auto ref = torch::linalg::solve(dense + damping * eye, v, /*left=*/true);
    test::expect_close(k.inverse_mv(v, damping), ref, 1e-10, "inverse " + to_string(k.form));
    test::expect_close(k.mv(k.inverse_mv(v, damping)) + damping * k.inverse_mv(v, damping), v,
                       1e-10, "round trip");
  }
}

TEST(KfacOperator, FactoredTikhonovInverseMatchesItsDenseDefinition) {
  Fixture s;
  const double damping = 3e-2;
  auto k = kfac_factors(s.model, {s.x, {}}, s.options, s.run);
  auto v = random_v(k.num_params, 2);
  // Dense: per layer kron(G + √λ/π I, A + π√λ I) (row-major vec), λ I on the left-out entries.
  auto dense = damping * torch::eye(k.num_params, torch::kFloat64);
  for (const auto& l : k.layers) {
    const double pi =
        std::sqrt((l.a.trace().item<double>() / l.in()) / (l.g.trace().item<double>() / l.out()));
    const double root = std::sqrt(damping);
    auto block = torch::kron(l.g + root / pi * torch::eye(l.out(), torch::kFloat64),
                             l.a + pi * root * torch::eye(l.in(), torch::kFloat64));
    auto rows = torch::zeros({l.theta_index.numel(), k.num_params}, torch::kFloat64);
    rows.index_copy_(1, l.theta_index, block);
    dense.index_copy_(0, l.theta_index, rows);
  }
  auto ref = torch::linalg::solve(dense, v, /*left=*/true);
  test::expect_close(k.inverse_mv(v, damping, KfacDamping::kFactoredTikhonov), ref, 1e-10,
                     "factored Tikhonov");
  // Not the exact damped inverse: the heuristic adds cross terms.
  EXPECT_GT(test::rel_err(k.inverse_mv(v, damping, KfacDamping::kFactoredTikhonov),
                          k.inverse_mv(v, damping)),
            1e-3);
}

TEST(KfacOperator, LeftOutParametersHaveZeroCurvature) {
  Fixture s;
  auto k = kfac_factors(s.model, {s.x, {}}, s.options, s.run);
  auto v = random_v(k.num_params, 1).squeeze(1);
  auto fv = k.mv(v), inv = k.inverse_mv(v, 0.5);
  auto params = s.model.parameters();
  int64_t offset = 0;
  std::vector<int64_t> offsets;
  for (const auto& p : params) {
    offsets.push_back(offset);
    offset += p.numel();
  }
  ASSERT_EQ(k.left_out.size(), 2u);
  for (const auto& lo : k.left_out) {
    auto range = [&](const torch::Tensor& t) { return t.narrow(0, offsets[lo.index], 5); };
    EXPECT_EQ(range(fv).abs().max().item<double>(), 0.0);
    test::expect_close(range(inv), range(v) / 0.5, 1e-15, "v / damping");
  }
}

TEST(KfacErrors, RefusalsAreOneLineAndSayWhy) {
  Fixture s;
  auto y = torch::zeros({5}, torch::kLong);
  ClassifierFisherOptions batched;
  batched.estimator = FisherEstimator::kBatched;
  EXPECT_NE(test::error_of([&] {
              kfac_factors(s.model, {s.x, y}, batched, s.run);
            }).find("batched estimator is not defined"),
            std::string::npos);
  ClassifierFisherOptions loop;
  loop.gradient_path = GradientPath::kLoop;
  EXPECT_NE(test::error_of([&] {
              ekfac_factors(s.model, {s.x, {}}, loop, s.run);
            }).find("reads the layer tape"),
            std::string::npos);
  auto k = kfac_factors(s.model, {s.x, {}}, s.options, s.run);
  auto ek = ekfac_factors(s.model, {s.x, {}}, s.options, s.run);
  auto v = torch::ones({k.num_params}, torch::kFloat64);
  EXPECT_NE(test::error_of([&] { k.inverse_mv(v, 0.0); }).find("positive damping"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              ek.inverse_mv(v, 1.0, KfacDamping::kFactoredTikhonov);
            }).find("K-FAC heuristic"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { k.mv(torch::ones({3})); }).find("expects v [P] or [P, u]"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { k.dense_block(3); }).find("has 3 layers"), std::string::npos);
}

// A parameter outside every taped layer: K-FAC cannot read its layer, and says so.
struct Untaped : torch::nn::Module {
  Untaped() {
    fc = register_module("fc", torch::nn::Linear(2 * 6 * 6, 3));
    extra = register_parameter("extra", torch::randn({3}));
  }
  torch::Tensor forward(const torch::Tensor& x) { return taped(*fc, x.flatten(1)) * extra; }
  torch::nn::Linear fc{nullptr};
  torch::Tensor extra;
};

TEST(KfacErrors, TheTapeMustCoverTheModel) {
  Fixture s;
  auto untaped = std::make_shared<Untaped>();
  ZooModule zoo;
  zoo.arch = "test";
  zoo.module = untaped;
  zoo.methods["forward"] = [untaped](const torch::Tensor& x) { return untaped->forward(x); };
  ScoreModel model(ModelKind::kClassifier, wrap_zoo_module(zoo), nullptr, {});
  const auto why = test::error_of([&] { kfac_factors(model, {s.x, {}}, s.options, s.run); });
  EXPECT_NE(why.find("K-FAC needs the layer tape to cover the model"), std::string::npos) << why;
  EXPECT_NE(why.find("parameter tensor 0 of shape [3]"), std::string::npos) << why;
}

TEST(KfacDistributed, ReducedFactorsEqualOneProcess) {
  if (!dist::available()) GTEST_SKIP() << "built without c10d/Gloo";
  const int world = 2;
  Fixture reference;
  auto ref = ekfac_factors(reference.model, {reference.x, {}}, reference.options, reference.run);
  std::vector<Fixture> fixtures(world);
  std::vector<KfacFactors> results(world);
  std::vector<std::string> errors(world);
  const int port = 20000 + static_cast<int>((::getpid() + 7919) % 20000);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto g = dist::Group::create(r, world, "127.0.0.1", port, std::chrono::seconds(30));
        auto run = fixtures[r].run;
        run.group = g.get();
        results[r] =
            ekfac_factors(fixtures[r].model, {fixtures[r].x, {}}, fixtures[r].options, run);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    ASSERT_EQ(errors[r], "") << "rank " << r;
    ASSERT_EQ(results[r].layers.size(), ref.layers.size());
    for (size_t i = 0; i < ref.layers.size(); ++i) {
      test::expect_close(results[r].layers[i].a, ref.layers[i].a, 1e-13, "A");
      test::expect_close(results[r].layers[i].g, ref.layers[i].g, 1e-13, "G");
      test::expect_close(results[r].layers[i].scalings, ref.layers[i].scalings, 1e-12, "S");
    }
  }
}

}  // namespace
}  // namespace nfk
