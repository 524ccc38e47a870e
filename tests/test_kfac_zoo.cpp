// K-FAC on a zoo classifier (LeNet-5 on 12×12 images): every parameter covered, the Linear
// blocks' diagonals equal to the classifier Fisher's own diagonal with one example, and a
// float32 model's factors close to float64's.
#include "kfac_support.h"
#include "nfk/classifier_fisher.h"
#include "zoo_cases.h"

namespace nfk {
namespace {

TEST(KfacZoo, LeNetLinearBlocksMatchTheFisherDiagonalWithOneExample) {
  auto c = test::small_cnn_classifier(test::temp_dir("kfac_lenet"));
  auto model = load_score_model(c.kind, c.options, c.x);
  auto x = c.x.slice(0, 0, 1);
  ClassifierFisherOptions options;  // true
  auto k = kfac_factors(model, {x, {}}, options);
  ASSERT_EQ(k.layers.size(), 5u);
  EXPECT_TRUE(k.left_out.empty());
  EXPECT_EQ(k.layers[1].name, "layer01.conv2d");
  EXPECT_EQ(k.layers[4].name, "layer04.linear");
  int64_t covered = 0;
  for (const auto& l : k.layers) covered += l.theta_index.numel();
  EXPECT_EQ(covered, model.num_parameters());
  auto diag = classifier_fisher_diag(model, {x, {}}, options).diag;
  for (size_t i = 2; i < 5; ++i) {  // the Linear layers: exact blocks with one example
    const auto& l = k.layers[i];
    auto kfac_diag = torch::outer(l.g.diagonal(), l.a.diagonal()).reshape(-1);
    test::expect_close(kfac_diag, diag.index_select(0, l.theta_index), 1e-10, l.name);
  }
  // EK-FAC's diagonal in the eigenbasis sums to the block's trace, for every layer.
  auto ek = ekfac_factors(model, {c.x.slice(0, 0, 8), {}}, options);
  auto diag8 = classifier_fisher_diag(model, {c.x.slice(0, 0, 8), {}}, options).diag;
  for (const auto& l : ek.layers) {
    const double trace = diag8.index_select(0, l.theta_index).sum().item<double>();
    EXPECT_NEAR(l.scalings.sum().item<double>(), trace, 1e-10 * trace) << l.name;
  }
}

TEST(KfacZoo, Float32ModelGivesFactorsCloseToFloat64) {
  auto c = test::small_cnn_classifier(test::temp_dir("kfac_lenet32"));
  auto model64 = load_score_model(c.kind, c.options, c.x);
  c.options.dtype = torch::kFloat32;
  auto model32 = load_score_model(c.kind, c.options, c.x);
  auto x = c.x.slice(0, 0, 16);
  ClassifierFisherOptions options;
  RunOptions run;
  run.batch_size = 8;
  auto k64 = ekfac_factors(model64, {x, {}}, options, run);
  auto k32 = ekfac_factors(model32, {x, {}}, options, run);
  ASSERT_EQ(k32.layers.size(), k64.layers.size());
  for (size_t i = 0; i < k64.layers.size(); ++i) {
    EXPECT_EQ(k32.layers[i].a.scalar_type(), torch::kFloat64);
    test::expect_close(k32.layers[i].a, k64.layers[i].a, 1e-5, k64.layers[i].name + " A");
    test::expect_close(k32.layers[i].g, k64.layers[i].g, 1e-4, k64.layers[i].name + " G");
  }
  auto v = torch::randn({k64.num_params}, torch::kFloat32);
  auto step = k32.inverse_mv(v, 1e-2);
  EXPECT_EQ(step.scalar_type(), torch::kFloat32);
  test::expect_close(step, k64.inverse_mv(v.to(torch::kFloat64), 1e-2), 1e-3, "inverse_mv");
}

}  // namespace
}  // namespace nfk
