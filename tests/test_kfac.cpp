// K-FAC and EK-FAC factors of the classifier's Fisher against independent float64 computations:
// explicit loops for A and G, the dense true Fisher (every class by autograd) where K-FAC is
// exact, and EK-FAC's scalings as the diagonal of the exact block in K-FAC's eigenbasis.
#include "kfac_support.h"

namespace nfk {
namespace {

using test::block_of;

ClassifierFisherOptions estimator(FisherEstimator e, int64_t mc_samples = 1) {
  ClassifierFisherOptions o;
  o.estimator = e;
  o.mc_samples = mc_samples;
  return o;
}

RunOptions batches_of(int64_t batch, uint64_t seed = 3) {
  RunOptions run;
  run.batch_size = batch;
  run.seed = seed;
  return run;
}

torch::Tensor inputs(int64_t n, int64_t side = 6) {
  test::seed(1);
  return torch::rand({n, 2, side, side}, torch::kFloat64);
}

TEST(KfacFactors, MatchExplicitLoopsForEveryEstimator) {
  auto net = test::kfac_net();
  auto model = test::kfac_model(net);
  const int64_t n = 7, batch = 3;  // uneven batches
  auto x = inputs(n);
  auto y = torch::tensor({0, 2, 1, 1, 0, 2, 2}, torch::kLong);
  for (auto e :
       {FisherEstimator::kTrue, FisherEstimator::kMonteCarlo, FisherEstimator::kEmpirical}) {
    const auto options = estimator(e, /*mc_samples=*/3);
    auto k = kfac_factors(model, {x, y}, options, batches_of(batch));
    auto ref = test::explicit_kfac(*net, x, y, options, batch, /*seed_value=*/3);
    ASSERT_EQ(k.layers.size(), 3u);
    EXPECT_EQ(k.n_examples, n);
    EXPECT_EQ(k.estimator, e);
    for (size_t i = 0; i < 3; ++i) {
      const std::string what = to_string(e) + " " + k.layers[i].name;
      test::expect_close(k.layers[i].a, ref.a[i], 1e-12, what + " A");
      test::expect_close(k.layers[i].g, ref.g[i], 1e-12, what + " G");
    }
  }
}

TEST(KfacFactors, NamesLayersAndMapsThetaToWeightWithBiasColumn) {
  auto net = test::kfac_net();
  auto model = test::kfac_model(net);
  auto k = kfac_factors(model, {inputs(2), {}}, estimator(FisherEstimator::kTrue));
  ASSERT_EQ(k.layers.size(), 3u);
  EXPECT_EQ(k.layers[0].name, "layer00.conv2d");
  EXPECT_EQ(k.layers[1].name, "layer01.linear");
  EXPECT_EQ(k.layers[2].name, "layer02.linear");
  EXPECT_EQ(k.layers[0].positions, 9);
  EXPECT_EQ(k.layers[0].weight_shape, (std::vector<int64_t>{3, 2, 3, 3}));
  EXPECT_EQ(k.layers[1].bias_index, -1);
  EXPECT_EQ(k.num_params, model.num_parameters());
  auto theta = test::theta_of(model);
  // Row-major vec of M = [W (flattened per output) | b], read through theta_index.
  auto conv_m = torch::cat({net->conv->weight.reshape({3, -1}), net->conv->bias.unsqueeze(1)}, 1);
  auto out_m = torch::cat({net->out->weight, net->out->bias.unsqueeze(1)}, 1);
  EXPECT_TRUE(theta.index_select(0, k.layers[0].theta_index).equal(conv_m.detach().reshape(-1)));
  EXPECT_TRUE(theta.index_select(0, k.layers[1].theta_index).equal(net->fc->weight.reshape(-1)));
  EXPECT_TRUE(theta.index_select(0, k.layers[2].theta_index).equal(out_m.detach().reshape(-1)));
  EXPECT_EQ(k.layers[2].in(), 6);
  EXPECT_EQ(k.layers[2].out(), 3);
  // The layer norm's γ and β are left out, by index and shape.
  ASSERT_EQ(k.left_out.size(), 2u);
  auto params = model.parameters();
  for (const auto& lo : k.left_out) {
    EXPECT_EQ(lo.shape, (std::vector<int64_t>{5}));
    EXPECT_NE(lo.reason.find("LayerNorm"), std::string::npos) << lo.reason;
    EXPECT_TRUE(params[lo.index].is_same(net->ln->weight) ||
                params[lo.index].is_same(net->ln->bias));
  }
}

// With one example the layer input ā does not depend on y, so a Linear layer's block of the true
// Fisher is Σ_y p_y (δ_y δ_yᵀ) ⊗ (ā āᵀ) = A ⊗ G exactly. A conv layer's block is
// Σ_{t,t'} (δ_t δ_t'ᵀ) ⊗ (ā_t ā_t'ᵀ): K-FAC keeps only t = t' and factors the sum over t, so
// it is exact only where the layer has one output position — the case tested for the conv.
TEST(KfacFactors, OneExampleGivesTheExactTrueFisherBlock) {
  test::seed(0);
  auto net = std::make_shared<test::KfacNet>(torch::nn::Conv2dOptions(2, 3, 4), /*side=*/4);
  auto model = test::kfac_model(net);
  auto x = inputs(1, /*side=*/4);
  auto k = kfac_factors(model, {x, {}}, estimator(FisherEstimator::kTrue));
  auto f = test::dense_true_fisher(model, x);
  ASSERT_EQ(k.layers.size(), 3u);
  EXPECT_EQ(k.layers[0].positions, 1);
  for (size_t i = 0; i < 3; ++i) {
    auto exact = block_of(f, k.layers[i].theta_index);
    EXPECT_GT(exact.abs().max().item<double>(), 1e-3) << k.layers[i].name;
    test::expect_close(k.dense_block(i), exact, 1e-10, k.layers[i].name);
  }
  // The default net's conv (9 positions) is not exact with one example.
  auto net9 = test::kfac_net();
  auto model9 = test::kfac_model(net9);
  auto x9 = inputs(1);
  auto k9 = kfac_factors(model9, {x9, {}}, estimator(FisherEstimator::kTrue));
  auto exact9 = block_of(test::dense_true_fisher(model9, x9), k9.layers[0].theta_index);
  EXPECT_GT(test::rel_err(k9.dense_block(0), exact9), 1e-3);
  test::expect_close(k9.dense_block(2),
                     block_of(test::dense_true_fisher(model9, x9), k9.layers[2].theta_index), 1e-10,
                     "linear of the 9-position net");
}

// EK-FAC's S is the diagonal of the exact block in K-FAC's eigenbasis, the Frobenius-best
// diagonal there, so its error never exceeds K-FAC's (whose diagonal is Λ_G ⊗ Λ_A).
TEST(KfacFactors, EkfacScalingsAreTheExactBlocksDiagonalInTheEigenbasis) {
  auto net = test::kfac_net();
  auto model = test::kfac_model(net);
  auto x = inputs(6);
  const auto options = estimator(FisherEstimator::kTrue);
  auto k = kfac_factors(model, {x, {}}, options, batches_of(4));
  auto ek = ekfac_factors(model, {x, {}}, options, batches_of(4));
  EXPECT_EQ(ek.form, FisherForm::kEkfac);
  auto f = test::dense_true_fisher(model, x);
  for (size_t i = 0; i < 3; ++i) {
    const auto& l = ek.layers[i];
    test::expect_close(l.a, k.layers[i].a, 1e-14, l.name + " A");
    auto exact = block_of(f, l.theta_index);
    auto q = torch::kron(l.qg, l.qa);
    auto diag = q.t().mm(exact).mm(q).diagonal().reshape({l.out(), l.in()});
    test::expect_close(l.scalings, diag, 1e-10, l.name + " S");
    const double err_ek = (ek.dense_block(i) - exact).norm().item<double>();
    const double err_k = (k.dense_block(i) - exact).norm().item<double>();
    EXPECT_LE(err_ek, err_k) << l.name;
    EXPECT_LT(err_ek, 0.999 * err_k) << l.name << ": several examples, EK-FAC strictly better";
  }
}

TEST(KfacFactors, EkfacScalingsMatchKfacEigenvaluesForOneLinearExample) {
  // One example, Linear layer: the block is exactly kron(G, A), so S = λ_G λ_Aᵀ.
  auto net = test::kfac_net();
  auto model = test::kfac_model(net);
  auto ek = ekfac_factors(model, {inputs(1), {}}, estimator(FisherEstimator::kTrue));
  const auto& l = ek.layers[2];
  test::expect_close(l.scalings, torch::outer(l.eig_g, l.eig_a), 1e-10, "S vs λ_G λ_A");
}

TEST(KfacFactors, BatchSizeDoesNotChangeTheFactors) {
  auto net = test::kfac_net();
  auto model = test::kfac_model(net);
  auto x = inputs(5);
  auto y = torch::tensor({1, 0, 2, 2, 1}, torch::kLong);
  const auto options = estimator(FisherEstimator::kEmpirical);
  auto one = ekfac_factors(model, {x, y}, options, batches_of(1));
  auto all = ekfac_factors(model, {x, y}, options, batches_of(5));
  for (size_t i = 0; i < 3; ++i) {
    test::expect_close(one.layers[i].a, all.layers[i].a, 1e-13, "A");
    test::expect_close(one.layers[i].g, all.layers[i].g, 1e-13, "G");
    test::expect_close(one.layers[i].scalings, all.layers[i].scalings, 1e-12, "S");
  }
}

// A Linear applied at every position of a sequence [B, T, in]: positions are extra samples, as
// for a convolution (A averaged over them, G summed).
struct SequenceNet : torch::nn::Module {
  SequenceNet() {
    seq = register_module("seq", torch::nn::Linear(4, 2));
    out = register_module("out", torch::nn::Linear(6, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return taped(*out, torch::tanh(taped(*seq, x)).flatten(1));
  }
  torch::nn::Linear seq{nullptr}, out{nullptr};
};

TEST(KfacFactors, SequenceLinearTakesPositionsAsSamples) {
  test::seed(0);
  auto net = std::make_shared<SequenceNet>();
  ZooModule zoo;
  zoo.arch = "test";
  zoo.module = net;
  zoo.methods["forward"] = [net](const torch::Tensor& x) { return net->forward(x); };
  ModelOptions o;
  o.dtype = torch::kFloat64;
  ScoreModel model(ModelKind::kClassifier, wrap_zoo_module(zoo), nullptr, o);
  test::seed(1);
  const int64_t n = 4;
  auto x = torch::randn({n, 3, 4}, torch::kFloat64);
  auto k = ekfac_factors(model, {x, {}}, estimator(FisherEstimator::kTrue), batches_of(3));
  ASSERT_EQ(k.layers.size(), 2u);
  EXPECT_EQ(k.layers[0].positions, 3);
  auto a = torch::zeros({5, 5}, torch::kFloat64), g = torch::zeros({2, 2}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    auto z = net->seq->forward(x.slice(0, i, i + 1));  // [1, 3, 2]
    auto logits = net->out->forward(torch::tanh(z).flatten(1));
    auto p = torch::softmax(logits, 1)[0].detach();
    auto ab = test::with_ones(x[i]);  // [3, 5]
    a += ab.t().mm(ab) / (3.0 * n);
    for (int64_t r = 0; r < 3; ++r) {
      auto c = (std::sqrt(p[r].item<double>()) * (torch::one_hot(torch::tensor({r}), 3).to(p) - p));
      auto d = torch::autograd::grad({logits}, {z}, {c}, /*retain_graph=*/true)[0][0];  // [3, 2]
      g += d.t().mm(d) / n;
    }
  }
  test::expect_close(k.layers[0].a, a, 1e-12, "A");
  test::expect_close(k.layers[0].g, g, 1e-12, "G");
  auto exact = block_of(test::dense_true_fisher(model, x), k.layers[0].theta_index);
  auto q = torch::kron(k.layers[0].qg, k.layers[0].qa);
  test::expect_close(k.layers[0].scalings, q.t().mm(exact).mm(q).diagonal().reshape({2, 5}), 1e-10,
                     "S");
}

// A grouped conv has one block per group: exact with one example and one position, and EK-FAC's
// scalings are each group block's diagonal in its eigenbasis with several positions.
TEST(KfacFactors, GroupedConvGivesOneBlockPerGroup) {
  test::seed(0);
  auto one = std::make_shared<test::KfacNet>(torch::nn::Conv2dOptions(2, 4, 4).groups(2), 4);
  auto model = test::kfac_model(one);
  auto x = inputs(1, /*side=*/4);
  auto k = kfac_factors(model, {x, {}}, estimator(FisherEstimator::kTrue));
  ASSERT_EQ(k.layers.size(), 4u);
  EXPECT_EQ(k.layers[0].name, "layer00.conv2d.group0");
  EXPECT_EQ(k.layers[1].name, "layer00.conv2d.group1");
  EXPECT_EQ(k.layers[2].name, "layer01.linear");
  EXPECT_EQ(k.layers[1].in(), 1 * 16 + 1);
  EXPECT_EQ(k.layers[1].out(), 2);
  auto both = torch::cat({k.layers[0].theta_index, k.layers[1].theta_index});
  EXPECT_TRUE(std::get<0>(both.sort()).equal(torch::arange(4 * 16 + 4)));  // weight, bias
  auto f = test::dense_true_fisher(model, x);
  for (size_t i = 0; i < 4; ++i) {
    test::expect_close(k.dense_block(i), block_of(f, k.layers[i].theta_index), 1e-10,
                       k.layers[i].name);
  }
  test::seed(0);
  auto many = std::make_shared<test::KfacNet>(
      torch::nn::Conv2dOptions(2, 4, 3).groups(2).stride(2).padding(1), 6);
  auto model_many = test::kfac_model(many);
  auto x6 = inputs(5);
  auto ek = ekfac_factors(model_many, {x6, {}}, estimator(FisherEstimator::kTrue), batches_of(2));
  auto f6 = test::dense_true_fisher(model_many, x6);
  for (size_t i = 0; i < 2; ++i) {
    const auto& l = ek.layers[i];
    EXPECT_EQ(l.positions, 9);
    auto q = torch::kron(l.qg, l.qa);
    auto diag = q.t().mm(block_of(f6, l.theta_index)).mm(q).diagonal();
    test::expect_close(l.scalings, diag.reshape({l.out(), l.in()}), 1e-10, l.name + " S");
  }
}

}  // namespace
}  // namespace nfk
