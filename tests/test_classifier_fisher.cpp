// The classifier's Fisher of p(y|x) (SPEC §1b) against independent float64 truth: every class
// enumerated with autograd one example at a time, explicit per-example and per-batch loops, and
// dense F built from them.
#include <cmath>

#include "nfk/classifier_fisher.h"
#include "support.h"
#include "zoo_cases.h"

namespace nfk {
namespace {

// g_y(x_i) = ∇θ log p(y|x_i) for every example and class, by autograd on one example at a time:
// [N, C, P] (independent of fisher/: no tape, no cotangents), and p [N, C].
struct Enumerated {
  torch::Tensor g_ncp, p_nc;
};

Enumerated enumerate_classes(ScoreModel& model, const torch::Tensor& x) {
  auto params = model.parameters();
  std::vector<torch::Tensor> per_example;
  std::vector<torch::Tensor> probs;
  for (int64_t i = 0; i < x.size(0); ++i) {
    auto logp = torch::log_softmax(model.network().call("forward", x.slice(0, i, i + 1)), 1)[0];
    std::vector<torch::Tensor> rows;
    for (int64_t y = 0; y < logp.size(0); ++y) {
      auto g = torch::autograd::grad({logp[y]}, params, {}, /*retain_graph=*/true);
      rows.push_back(flatten_like(g, params));
    }
    per_example.push_back(torch::stack(rows));
    probs.push_back(logp.exp().detach());
  }
  return {torch::stack(per_example), torch::stack(probs)};
}

torch::Tensor dense_true(const Enumerated& e) {  // (1/N) Σ_i Σ_y p g gᵀ
  auto w = e.g_ncp * e.p_nc.sqrt().unsqueeze(2);
  auto rows = w.reshape({-1, w.size(2)});
  return rows.t().mm(rows) / static_cast<double>(e.g_ncp.size(0));
}

torch::Tensor label_rows(const Enumerated& e, const torch::Tensor& y) {  // g_{y_i}(x_i) [N, P]
  return e.g_ncp.index({torch::arange(y.size(0)), y});
}

torch::Tensor dense_empirical(const Enumerated& e, const torch::Tensor& y) {
  auto rows = label_rows(e, y);
  return rows.t().mm(rows) / static_cast<double>(y.size(0));
}

// (1/n_B) Σ_b ḡ_b ḡ_bᵀ with ḡ_b the gradient of batch b's mean cross-entropy (an explicit
// backward per batch: the definition, not the cotangent form).
torch::Tensor dense_batched(ScoreModel& model, const torch::Tensor& x, const torch::Tensor& y,
                            int64_t batch) {
  auto params = model.parameters();
  torch::Tensor sum;
  int64_t batches = 0;
  for (int64_t s = 0; s < x.size(0); s += batch, ++batches) {
    const int64_t e = std::min(x.size(0), s + batch);
    auto loss = torch::nn::functional::cross_entropy(
        model.network().call("forward", x.slice(0, s, e)), y.slice(0, s, e));
    auto g = flatten_like(torch::autograd::grad({loss}, params), params).unsqueeze(1);
    sum = sum.defined() ? sum + g.mm(g.t()) : g.mm(g.t());
  }
  return sum / static_cast<double>(batches);
}

struct Net {
  std::string name;
  ScoreModel model;
  torch::Tensor x, y;
};

// A TorchScript MLP (matmuls: the per-example loop) and a zoo LeNet-5 (the layer tape).
Net mlp_net() {
  auto model = test::make_test_model(ModelKind::kClassifier, test::temp_dir("cf_mlp"));
  auto x = test::test_inputs(7);
  test::seed(5);
  return {"mlp", std::move(model), x, torch::randint(0, 3, {7}, torch::kLong)};
}

Net lenet_net() {
  auto c = test::small_cnn_classifier(test::temp_dir("cf_lenet"));
  auto model = load_score_model(c.kind, c.options, c.x.slice(0, 0, 2));
  test::seed(6);
  return {"lenet", std::move(model), c.x.slice(0, 0, 6), torch::randint(0, 4, {6}, torch::kLong)};
}

std::vector<Net> both_nets() {
  std::vector<Net> nets;
  nets.push_back(mlp_net());
  nets.push_back(lenet_net());
  return nets;
}

ClassifierFisherOptions with(FisherEstimator e, int64_t mc_samples = 1) {
  ClassifierFisherOptions o;
  o.estimator = e;
  o.mc_samples = mc_samples;
  return o;
}

RunOptions batches_of(int64_t b, uint64_t seed = 0) {
  RunOptions r;
  r.batch_size = b;
  r.seed = seed;
  return r;
}

TEST(ClassifierFisher, TrueAndEmpiricalDiagonalsMatchEnumeration) {
  for (auto& net : both_nets()) {
    auto e = enumerate_classes(net.model, net.x);
    auto f_true =
        classifier_fisher_diag(net.model, {net.x, {}}, with(FisherEstimator::kTrue), batches_of(4));
    const auto expected_path = net.name == "lenet" ? GradientPath::kLayerTape : GradientPath::kLoop;
    EXPECT_EQ(f_true.path.path, expected_path) << net.name << ": " << f_true.path.reason;
    auto truth = (e.g_ncp.square() * e.p_nc.unsqueeze(2)).sum(1).mean(0);
    test::expect_close(f_true.diag, truth, 1e-10, net.name + " true");
    EXPECT_EQ(f_true.n_rows, net.x.size(0) * e.p_nc.size(1));

    auto f_emp = classifier_fisher_diag(net.model, {net.x, net.y},
                                        with(FisherEstimator::kEmpirical), batches_of(4));
    test::expect_close(f_emp.diag, label_rows(e, net.y).square().mean(0), 1e-10,
                       net.name + " empirical");
    // The two are different matrices on an untrained net (Kunstner et al.).
    EXPECT_GT(test::rel_err(f_emp.diag, f_true.diag), 0.05) << net.name;
  }
}

TEST(ClassifierFisher, BatchedIsTheSquaredMeanGradientForEachBatchSize) {
  auto net = mlp_net();
  for (int64_t b : {2, 3}) {
    auto f = classifier_fisher_diag(net.model, {net.x, net.y}, with(FisherEstimator::kBatched),
                                    batches_of(b));
    auto truth = dense_batched(net.model, net.x, net.y, b);
    test::expect_close(f.diag, truth.diagonal(), 1e-10, "B=" + std::to_string(b));
    EXPECT_EQ(f.n_rows, (net.x.size(0) + b - 1) / b);
  }
  // Not a Fisher estimate: far below the empirical Fisher it is often mistaken for.
  auto emp = classifier_fisher_diag(net.model, {net.x, net.y}, with(FisherEstimator::kEmpirical));
  auto b3 = classifier_fisher_diag(net.model, {net.x, net.y}, with(FisherEstimator::kBatched),
                                   batches_of(3));
  EXPECT_LT(b3.diag.sum().item<double>(), 0.8 * emp.diag.sum().item<double>());
}

// Monte Carlo: the trace estimate's error, standardised by its exact standard deviation
// (Var_y[‖g_y‖²] per example from the enumeration, / (N² S)), over 16 seeds. Σz² is then
// ≈ χ²₁₆ (N·S terms per estimate, close to normal): the bounds [2.5, 45] hold with probability
// ≈ 1 − 2.5e-4 per S, and S = 4 vs S = 64 checks the 1/√S rate (a wrong scale or a missing
// 1/S would put Σz² far outside them).
TEST(ClassifierFisher, MonteCarloConvergesToTrueAtTheOneOverRootSRate) {
  auto net = mlp_net();
  auto e = enumerate_classes(net.model, net.x);
  auto sq = e.g_ncp.square().sum(2);                             // ‖g_y‖² [N, C]
  auto mean_i = (sq * e.p_nc).sum(1);                            // E_y per example
  auto var_i = (sq.square() * e.p_nc).sum(1) - mean_i.square();  // Var_y per example
  const double n = static_cast<double>(net.x.size(0));
  const double trace = mean_i.sum().item<double>() / n;
  for (int64_t s : {4, 64}) {
    const double sd = std::sqrt(var_i.sum().item<double>() / (n * n * s));
    double chi2 = 0;
    for (uint64_t seed = 0; seed < 16; ++seed) {
      auto f = classifier_fisher_diag(net.model, {net.x, {}}, with(FisherEstimator::kMonteCarlo, s),
                                      batches_of(3, seed));
      const double z = (f.diag.sum().item<double>() - trace) / sd;
      chi2 += z * z;
    }
    EXPECT_GT(chi2, 2.5) << "S=" << s;
    EXPECT_LT(chi2, 45.0) << "S=" << s;
  }
  // Seeded: the same seed gives the same labels, another seed others.
  auto a = classifier_fisher_diag(net.model, {net.x, {}}, with(FisherEstimator::kMonteCarlo, 2),
                                  batches_of(3, 1));
  auto b = classifier_fisher_diag(net.model, {net.x, {}}, with(FisherEstimator::kMonteCarlo, 2),
                                  batches_of(3, 1));
  auto c = classifier_fisher_diag(net.model, {net.x, {}}, with(FisherEstimator::kMonteCarlo, 2),
                                  batches_of(3, 2));
  EXPECT_TRUE(torch::equal(a.diag, b.diag));
  EXPECT_FALSE(torch::equal(a.diag, c.diag));
}

TEST(ClassifierFisher, FisherVectorProductsMatchDenseF) {
  auto net = mlp_net();
  auto e = enumerate_classes(net.model, net.x);
  test::seed(3);
  auto v = torch::randn({net.model.num_parameters(), 3}, torch::kFloat64);
  FisherVectorProduct f_true(net.model, {net.x, {}}, with(FisherEstimator::kTrue), batches_of(3));
  test::expect_close(f_true.apply(v), dense_true(e).mm(v), 1e-10, "true");
  FisherVectorProduct f_emp(net.model, {net.x, net.y}, with(FisherEstimator::kEmpirical),
                            batches_of(3));
  test::expect_close(f_emp.apply(v), dense_empirical(e, net.y).mm(v), 1e-10, "empirical");
  FisherVectorProduct f_b(net.model, {net.x, net.y}, with(FisherEstimator::kBatched),
                          batches_of(3));
  test::expect_close(f_b.apply(v), dense_batched(net.model, net.x, net.y, 3).mm(v), 1e-10,
                     "batched");
  // mc draws the labels the diagonal draws: eⱼᵀ F eⱼ from F v equals diag(F)ⱼ.
  auto o = with(FisherEstimator::kMonteCarlo, 3);
  FisherVectorProduct f_mc(net.model, {net.x, {}}, o, batches_of(3, 9));
  auto eye = torch::eye(net.model.num_parameters(), torch::kFloat64).slice(1, 0, 12);
  auto diag_mc = classifier_fisher_diag(net.model, {net.x, {}}, o, batches_of(3, 9)).diag;
  test::expect_close(f_mc.apply(eye).diagonal(), diag_mc.slice(0, 0, 12), 1e-12, "mc");
}

TEST(ClassifierFisher, FisherVectorProductsOnTheTapedNetMatchItsRows) {
  auto net = lenet_net();
  test::seed(4);
  auto v = torch::randn({net.model.num_parameters(), 2}, torch::kFloat64);
  for (auto est : {FisherEstimator::kTrue, FisherEstimator::kEmpirical}) {
    FisherVectorProduct fvp(net.model, {net.x, net.y}, with(est), batches_of(4));
    ClassifierFisherRows w(net.model, {net.x, net.y}, with(est), batches_of(4));
    test::expect_close(fvp.apply(v), w.apply_t(w.apply(v)), 1e-10, to_string(est));
  }
}

TEST(ClassifierFisher, RowsOperatorIsASquareRootOfDenseF) {
  for (auto& net : both_nets()) {
    if (net.name == "lenet") net.x = net.x.slice(0, 0, 3);  // keep dense F small
    auto e = enumerate_classes(net.model, net.x);
    ClassifierFisherRows w(net.model, {net.x, {}}, with(FisherEstimator::kTrue), batches_of(2));
    EXPECT_EQ(w.rows(), net.x.size(0) * e.p_nc.size(1));
    auto dense_w = w.dense();
    // F = WᵀW, compared through a few random directions (P is large for LeNet).
    test::seed(2);
    auto q = torch::randn({w.cols(), 4}, torch::kFloat64);
    auto truth = dense_true(e);
    test::expect_close(dense_w.t().mm(dense_w.mm(q)), truth.mm(q), 1e-10, net.name);
  }
}

TEST(ClassifierFisher, CapacityStatisticsMatchDenseEigh) {
  auto net = mlp_net();
  auto e = enumerate_classes(net.model, net.x);
  auto truth = dense_true(e);
  auto eig = std::get<0>(torch::linalg::eigh(truth, "L")).flip(0);  // descending
  auto o = with(FisherEstimator::kTrue);
  auto diag = classifier_fisher_diag(net.model, {net.x, {}}, o, batches_of(4)).diag;
  CapacityOptions c;
  c.top_k = 4;
  c.power_iters = 8;
  auto cap = fisher_capacity(net.model, {net.x, {}}, o, batches_of(4), diag, c);
  // The diagonal's gradient path given (no second probe) or forced: the same spectrum.
  for (auto path : {GradientPath::kLayerTape, GradientPath::kLoop}) {
    auto given = fisher_capacity(net.model, {net.x, {}}, o, batches_of(4), diag, c, path);
    test::expect_close(given.top_eigenvalues, cap.top_eigenvalues, 1e-10, "path given");
  }
  EXPECT_NE(test::error_of([&] {
              fisher_capacity(net.model, {net.x, {}}, o, batches_of(4), diag.slice(0, 1), c);
            }).find("does not match"),
            std::string::npos);
  EXPECT_NEAR(cap.trace, truth.trace().item<double>(), 1e-12 * cap.trace);
  test::expect_close(cap.top_eigenvalues, eig.slice(0, 0, 4), 1e-8, "top eigenvalues");
  auto top = eig.slice(0, 0, 4);
  const double sum = top.sum().item<double>();
  EXPECT_NEAR(cap.effective_rank_ratio, sum * sum / top.square().sum().item<double>(), 1e-6);
  auto share = top / sum;
  EXPECT_NEAR(cap.effective_rank_entropy, std::exp(-(share * share.log()).sum().item<double>()),
              1e-6);
  EXPECT_NEAR(cap.top_k_share, sum / truth.trace().item<double>(), 1e-8);
  const double threshold = 1e-3 * diag.mean().item<double>();
  EXPECT_DOUBLE_EQ(cap.sloppy_fraction,
                   (diag < threshold).to(torch::kFloat64).mean().item<double>());
}

TEST(ClassifierFisher, BadInputGetsOneClearLine) {
  auto net = mlp_net();
  auto emp = with(FisherEstimator::kEmpirical);
  EXPECT_NE(test::error_of([&] {
              classifier_fisher_diag(net.model, {net.x, {}}, emp);
            }).find("needs labels"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              classifier_fisher_diag(net.model, {net.x, net.y + 3}, emp);
            }).find("class indices in [0, 3)"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              classifier_fisher_diag(net.model, {net.x, net.y.to(torch::kFloat32)}, emp);
            }).find("integers"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              classifier_fisher_diag(net.model, {net.x, net.y.slice(0, 0, 3)}, emp);
            }).find("one per input"),
            std::string::npos);
  auto gan = test::make_test_model(ModelKind::kGan, test::temp_dir("cf_gan"));
  EXPECT_NE(test::error_of([&] {
              classifier_fisher_diag(gan, {net.x, {}}, with(FisherEstimator::kTrue));
            }).find("needs a classifier"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              classifier_fisher_diag(net.model, {net.x, {}}, with(FisherEstimator::kMonteCarlo, 0));
            }).find("mc-samples"),
            std::string::npos);
}

}  // namespace
}  // namespace nfk
