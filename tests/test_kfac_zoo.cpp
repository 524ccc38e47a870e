// K-FAC on a zoo classifier (LeNet-5 on 12×12 images): every parameter covered, the Linear
// blocks' diagonals equal to the classifier Fisher's own diagonal with one example, and a
// float32 model's factors close to float64's; a TorchScript file's factors equal the native
// module's; on CUDA (skipped without a device) the factors and products match the CPU.
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

// The same network as a TorchScript file: its graph's conv2d / linear / layer_norm calls are taped
// with their geometry, so its factors equal the native module's.
TEST(KfacTorchScript, ScriptedNetGivesTheNativeFactors) {
  auto net = test::kfac_net();
  auto native = test::kfac_model(net);
  torch::jit::Module m("KfacScripted");
  const std::vector<std::pair<std::string, torch::Tensor>> weights = {
      {"conv_w", net->conv->weight}, {"conv_b", net->conv->bias}, {"fc_w", net->fc->weight},
      {"ln_w", net->ln->weight},     {"ln_b", net->ln->bias},     {"out_w", net->out->weight},
      {"out_b", net->out->bias}};
  for (const auto& [name, w] : weights)
    m.register_parameter(name, w.detach().clone().requires_grad_(true), false);
  m.define(R"(
def forward(self, x):
    h = torch.tanh(torch.conv2d(x, self.conv_w, self.conv_b, [2, 2], [2, 2], [2, 2], 1))
    h = torch.tanh(torch.linear(h.flatten(1), self.fc_w))
    h = torch.layer_norm(h, [5], self.ln_w, self.ln_b, 1e-5)
    return torch.linear(h, self.out_w, self.out_b)
)");
  ModelOptions o;
  o.dtype = torch::kFloat64;
  o.model_path = test::temp_dir("kfac_script") + "/net.pt";
  m.save(o.model_path);
  test::seed(1);
  auto x = torch::rand({5, 2, 6, 6}, torch::kFloat64);
  auto scripted = load_score_model(ModelKind::kClassifier, o, x);
  ClassifierFisherOptions options;
  RunOptions run;
  run.batch_size = 2;
  auto ks = ekfac_factors(scripted, {x, {}}, options, run);
  auto kn = ekfac_factors(native, {x, {}}, options, run);
  ASSERT_EQ(ks.layers.size(), 3u);
  ASSERT_EQ(ks.left_out.size(), 2u);
  EXPECT_EQ(ks.left_out[0].index, kn.left_out[0].index);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(ks.layers[i].name, kn.layers[i].name);
    EXPECT_TRUE(ks.layers[i].theta_index.equal(kn.layers[i].theta_index));
    test::expect_close(ks.layers[i].a, kn.layers[i].a, 1e-12, kn.layers[i].name + " A");
    test::expect_close(ks.layers[i].g, kn.layers[i].g, 1e-12, kn.layers[i].name + " G");
    test::expect_close(ks.layers[i].scalings, kn.layers[i].scalings, 1e-12, "S");
  }
}

TEST(KfacCuda, FactorsAndProductsMatchTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto c = test::small_cnn_classifier(test::temp_dir("kfac_cuda"));
  auto cpu = load_score_model(c.kind, c.options, c.x);
  auto on_gpu = c.options;
  on_gpu.device = torch::Device(torch::kCUDA, 0);
  auto gpu = load_score_model(c.kind, on_gpu, c.x);
  auto x = c.x.slice(0, 0, 24);
  ClassifierFisherOptions options;
  RunOptions run;
  run.batch_size = 10;
  auto k_cpu = ekfac_factors(cpu, {x, {}}, options, run);
  auto k_gpu = ekfac_factors(gpu, {x, {}}, options, run);
  ASSERT_EQ(k_gpu.layers.size(), k_cpu.layers.size());
  for (size_t i = 0; i < k_cpu.layers.size(); ++i) {
    EXPECT_TRUE(k_gpu.layers[i].a.is_cuda());
    test::expect_close(k_gpu.layers[i].a.cpu(), k_cpu.layers[i].a, 1e-10, "A");
    test::expect_close(k_gpu.layers[i].g.cpu(), k_cpu.layers[i].g, 1e-10, "G");
    test::expect_close(k_gpu.layers[i].scalings.cpu(), k_cpu.layers[i].scalings, 1e-10, "S");
  }
  auto v = torch::randn({k_cpu.num_params}, torch::kFloat64);
  auto step = k_gpu.inverse_mv(v, 1e-3);  // a CPU vector in, a CPU vector out
  EXPECT_FALSE(step.is_cuda());
  test::expect_close(step, k_cpu.inverse_mv(v, 1e-3), 1e-8, "inverse_mv");
}

}  // namespace
}  // namespace nfk
