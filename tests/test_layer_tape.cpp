// The per-example fast path (layer tape: one backward per batch) against the explicit
// per-example loop, in float64, for every supported layer type and the zoo; and the fallback
// to the loop, never a wrong answer, where the tape does not cover a model.
#include "models/tape_record.h"
#include "nfk/fisher.h"
#include "nfk/zoo.h"
#include "support.h"

namespace nfk {
namespace {

namespace nn = torch::nn;

// Every taped layer type in one classifier: x [B, 2, 6, 6] → logits [B, 3].
struct AllLayers : nn::Module {
  AllLayers() {
    conv = register_module("conv", nn::Conv2d(nn::Conv2dOptions(2, 4, 3).padding(1).groups(2)));
    gn = register_module("gn", nn::GroupNorm(nn::GroupNormOptions(2, 4)));
    deconv = register_module(
        "deconv",
        nn::ConvTranspose2d(
            nn::ConvTranspose2dOptions(4, 4, 3).stride(2).padding(1).output_padding(1).groups(2)));
    bn2 = register_module("bn2", nn::BatchNorm2d(4));
    dilated = register_module(
        "dilated",
        nn::Conv2d(nn::Conv2dOptions(4, 3, 3).stride(2).padding(2).dilation(2).bias(false)));
    fc = register_module("fc", nn::Linear(3 * 6 * 6, 8));
    bn1 = register_module("bn1", nn::BatchNorm1d(8));
    emb = register_module("emb", nn::Embedding(nn::EmbeddingOptions(5, 8).padding_idx(1)));
    ln_seq = register_module("ln_seq", nn::LayerNorm(nn::LayerNormOptions({8})));
    fc_seq = register_module("fc_seq", nn::Linear(8, 8));
    ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({8})));
    out = register_module("out", nn::Linear(8, 3));
    torch::NoGradGuard no_grad;
    for (auto& p : parameters()) p.normal_(0, 0.5);  // norms' γ, β away from 1, 0
    for (auto* bn : {&bn1->running_mean, &bn2->running_mean}) bn->normal_();
    for (auto* bn : {&bn1->running_var, &bn2->running_var}) bn->uniform_(0.5, 2);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::tanh(taped(*gn, taped(*conv, x)));
    h = torch::tanh(taped(*bn2, taped(*deconv, h)));  // [B, 4, 12, 12]
    h = torch::tanh(taped(*dilated, h));              // [B, 3, 6, 6]
    h = torch::tanh(taped(*bn1, taped(*fc, h.flatten(1))));
    auto idx = (x.flatten(1).narrow(1, 0, 3) * 5).floor().clamp(0, 4).to(torch::kLong);  // [B, 3]
    auto seq = taped(*fc_seq, torch::tanh(taped(*ln_seq, taped(*emb, idx))));  // [B, 3, 8]
    h = torch::tanh(taped(*ln, h + seq.sum(1)));
    return taped(*out, h);
  }

  nn::Conv2d conv{nullptr}, dilated{nullptr};
  nn::GroupNorm gn{nullptr};
  nn::ConvTranspose2d deconv{nullptr};
  nn::BatchNorm2d bn2{nullptr};
  nn::BatchNorm1d bn1{nullptr};
  nn::Linear fc{nullptr}, fc_seq{nullptr}, out{nullptr};
  nn::Embedding emb{nullptr};
  nn::LayerNorm ln_seq{nullptr}, ln{nullptr};
};

// A linear layer plus a parameter no taped layer owns (`extra`), or a taped weight that also
// reaches the score outside its layer (`reuse`).
struct Untaped : nn::Module {
  explicit Untaped(bool reuse_) : reuse(reuse_) {
    fc = register_module("fc", nn::Linear(2 * 6 * 6, 3));
    if (!reuse) extra = register_parameter("extra", torch::randn({3}));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = taped(*fc, x.flatten(1));
    return reuse ? y * fc->weight.sum() : y * extra;
  }
  bool reuse;
  nn::Linear fc{nullptr};
  torch::Tensor extra;
};

ZooModule as_zoo(std::shared_ptr<nn::Module> module,
                 std::function<torch::Tensor(const torch::Tensor&)> forward) {
  ZooModule zoo;
  zoo.arch = "test";
  zoo.module = std::move(module);
  zoo.methods["forward"] = std::move(forward);
  return zoo;
}

ScoreModel score_model(ModelKind kind, const ZooModule& zoo) {
  ModelOptions o;
  o.dtype = torch::kFloat64;
  o.seed = 5;
  return ScoreModel(kind, wrap_zoo_module(zoo), nullptr, o);
}

// J from per_example_gradients (in uneven batches) against the explicit loop.
// Returns the path the first batch chose, and why.
GradientPathChoice expect_matches_loop(ScoreModel& model, const torch::Tensor& x,
                                       GradientPath expected, const std::string& what) {
  const int64_t batch = 3;
  GradientBlocks gradients(model, GradientPath::kAuto);
  std::vector<torch::Tensor> blocks;
  for (int64_t start = 0; start < x.size(0); start += batch) {
    const int64_t end = std::min(x.size(0), start + batch);
    blocks.push_back(gradients(x.slice(0, start, end), start, {}));
  }
  auto j = torch::cat(blocks);
  EXPECT_EQ(to_string(gradients.choice().path), to_string(expected))
      << what << ": " << gradients.choice().reason;
  EXPECT_EQ(to_string(choose_gradient_path(model, x).path), to_string(expected)) << what;
  test::expect_close(j, test::explicit_jacobian(model, x, batch), 1e-10, what);
  return gradients.choice();
}

TEST(LayerTape, EveryLayerTypeMatchesThePerExampleLoop) {
  test::seed(0);
  auto net = std::make_shared<AllLayers>();
  auto model = score_model(ModelKind::kClassifier,
                           as_zoo(net, [net](const torch::Tensor& x) { return net->forward(x); }));
  test::seed(1);
  auto x = torch::rand({7, 2, 6, 6}, torch::kFloat64);
  expect_matches_loop(model, x, GradientPath::kLayerTape, "all layers");
}

TEST(LayerTape, RecordsNothingWithoutAnActiveTape) {
  test::seed(0);
  nn::Linear fc(4, 2);
  auto y = taped(*fc, torch::randn({3, 4}));
  LayerTape tape;
  taped(*fc, torch::randn({3, 4}));
  {
    torch::NoGradGuard no_grad;
    taped(*fc, torch::randn({3, 4}));  // no graph: nothing to differentiate
  }
  EXPECT_EQ(tape.records().size(), 1u);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 2}));
}

struct ZooCase {
  std::string arch;
  nlohmann::json options;
  ModelKind kind;
  std::vector<int64_t> input_shape;  // one example
  GradientPath expected;
};

class ZooTape : public ::testing::TestWithParam<ZooCase> {};

TEST_P(ZooTape, MatchesThePerExampleLoop) {
  const auto& c = GetParam();
  test::seed(0);
  auto zoo = make_zoo_module(c.arch, c.options);
  {
    torch::NoGradGuard no_grad;  // running statistics away from (0, 1) so eval BN matters
    for (auto& m : zoo.module->modules()) {
      if (auto* bn = m->as<nn::BatchNorm2d>()) {
        bn->running_mean.normal_(0, 0.3);
        bn->running_var.uniform_(0.5, 2);
        bn->weight.normal_(1, 0.3);
        bn->bias.normal_(0, 0.3);
      }
    }
  }
  auto model = score_model(c.kind, zoo);
  std::vector<int64_t> shape = {5};
  shape.insert(shape.end(), c.input_shape.begin(), c.input_shape.end());
  test::seed(1);
  auto x = torch::rand(shape, torch::kFloat64);
  auto choice = expect_matches_loop(model, x, c.expected, c.arch);
  if (c.expected == GradientPath::kLoop) EXPECT_FALSE(choice.reason.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Zoo, ZooTape,
    ::testing::Values(
        ZooCase{"lenet5",
                {{"image_size", 12}},
                ModelKind::kClassifier,
                {1, 12, 12},
                GradientPath::kLayerTape},
        ZooCase{"mlp",
                {{"in_features", 16}, {"hidden", {5, 4}}, {"out_features", 1}},
                ModelKind::kScore,
                {1, 4, 4},
                GradientPath::kLayerTape},
        ZooCase{"dcgan-d",
                {{"image_size", 8}, {"width", 3}},
                ModelKind::kGan,
                {1, 8, 8},
                GradientPath::kLayerTape},
        ZooCase{"wrn",
                {{"depth", 10}, {"widen_factor", 1}, {"image_size", 8}},
                ModelKind::kClassifier,
                {3, 8, 8},
                GradientPath::kLayerTape},
        ZooCase{"vae",
                {{"image_size", 8}, {"width", 2}, {"latent_dim", 3}},
                ModelKind::kVae,
                {1, 8, 8},
                GradientPath::kLayerTape},
        ZooCase{"made",
                {{"image_size", 3}, {"hidden", {7}}},
                ModelKind::kDensity,
                {1, 3, 3},
                GradientPath::kLayerTape},
        // log σ is a parameter outside any layer: the loop, with a notice.
        ZooCase{"vae",
                {{"image_size", 8}, {"width", 2}, {"latent_dim", 3}, {"likelihood", "gaussian"}},
                ModelKind::kVae,
                {1, 8, 8},
                GradientPath::kLoop}),
    [](const auto& info) {
      return info.param.arch == "vae" && info.param.expected == GradientPath::kLoop
                 ? std::string("vae_gaussian")
             : info.param.arch == "dcgan-d" ? std::string("dcgan_d")
                                            : info.param.arch;
    });

TEST(LayerTape, UncoveredParameterFallsBackToTheLoop) {
  test::seed(0);
  auto net = std::make_shared<Untaped>(/*reuse=*/false);
  auto model = score_model(ModelKind::kClassifier,
                           as_zoo(net, [net](const torch::Tensor& x) { return net->forward(x); }));
  test::seed(1);
  auto x = torch::rand({4, 2, 6, 6}, torch::kFloat64);
  auto choice = expect_matches_loop(model, x, GradientPath::kLoop, "extra parameter");
  EXPECT_NE(choice.reason.find("parameter tensor"), std::string::npos) << choice.reason;
}

TEST(LayerTape, WeightUsedOutsideItsLayerIsCaughtByTheFirstBatchCheck) {
  test::seed(0);
  auto net = std::make_shared<Untaped>(/*reuse=*/true);
  auto model = score_model(ModelKind::kClassifier,
                           as_zoo(net, [net](const torch::Tensor& x) { return net->forward(x); }));
  test::seed(1);
  auto x = torch::rand({4, 2, 6, 6}, torch::kFloat64);
  expect_matches_loop(model, x, GradientPath::kLoop, "reused weight");
}

TEST(LayerTape, TorchScriptWithoutRecognisedOpsUsesTheLoop) {
  // Raw matmuls (x @ W.t() + b) are not parametric ops the graph rewrite recognises.
  auto model = test::make_test_model(ModelKind::kClassifier, test::temp_dir("tape_ts"));
  auto x = test::test_inputs(4);
  expect_matches_loop(model, x, GradientPath::kLoop, "torchscript");
}

// A TorchScript CNN built from submodules the way scripted nn layers look after inlining:
// conv2d with its stride and groups read from int attributes, batch_norm whose `training`
// flag is an attribute (eval: running statistics), layer_norm, linear, and an embedding-free
// tail. Every parameter is covered by a recognised op, so the graph rewrite should give the
// per-example gradients from one backward.
torch::jit::Module scripted_cnn(bool reuse_weight) {
  auto o = torch::dtype(torch::kFloat64);
  auto param = [&](torch::jit::Module& m, const char* name, torch::Tensor t) {
    m.register_parameter(name, t.to(torch::kFloat64).requires_grad_(true), false);
  };
  torch::jit::Module conv("Conv");
  param(conv, "weight", torch::randn({4, 1, 3, 3}, o) * 0.3);  // 2 groups
  param(conv, "bias", torch::randn({4}, o) * 0.1);
  conv.register_attribute("stride", c10::IntType::get(), int64_t{1});
  conv.register_attribute("groups", c10::IntType::get(), int64_t{2});
  conv.define(
      "def forward(self, x):\n"
      "        return torch.conv2d(x, self.weight, self.bias, [self.stride, self.stride], [1, 1], "
      "[1, 1], self.groups)\n");
  torch::jit::Module bn("Bn");
  param(bn, "weight", 1 + 0.1 * torch::randn({4}, o));
  param(bn, "bias", 0.1 * torch::randn({4}, o));
  bn.register_buffer("running_mean", 0.1 * torch::randn({4}, o));
  bn.register_buffer("running_var", 1 + 0.1 * torch::rand({4}, o));
  bn.register_attribute("training", c10::BoolType::get(), true);  // eval() turns it off
  bn.define(
      "def forward(self, x):\n"
      "        return torch.batch_norm(x, self.weight, self.bias, self.running_mean, "
      "self.running_var, self.training, 0.1, 1e-5, False)\n");
  torch::jit::Module net("Net");
  net.register_module("conv", conv);
  net.register_module("bn", bn);
  param(net, "ln_weight", 1 + 0.1 * torch::randn({16}, o));
  param(net, "ln_bias", 0.1 * torch::randn({16}, o));
  param(net, "fc_weight", torch::randn({3, 16}, o) * 0.3);
  param(net, "fc_bias", torch::randn({3}, o) * 0.1);
  net.define(
      std::string(
          "def forward(self, x):\n"
          "        h = torch.relu(self.bn.forward(self.conv.forward(x)))\n"
          "        h = torch.adaptive_avg_pool2d(h, [2, 2]).flatten(1)\n"
          "        h = torch.layer_norm(h, [16], self.ln_weight, self.ln_bias, 1e-5, False)\n") +
      (reuse_weight ? "        h = h + 0.1 * (h @ self.ln_weight)[:, None]\n" : "") +
      "        return torch.linear(torch.tanh(h), self.fc_weight, self.fc_bias)\n");
  return net;
}

TEST(LayerTape, TorchScriptGraphOpsMatchThePerExampleLoop) {
  for (bool reuse : {false, true}) {
    test::seed(0);
    ModelOptions o;
    o.dtype = torch::kFloat64;
    o.model_path = test::temp_dir("tape_ts_cnn") + (reuse ? "/reuse.pt" : "/cnn.pt");
    scripted_cnn(reuse).save(o.model_path);
    test::seed(1);
    auto x = torch::rand({7, 2, 6, 6}, torch::kFloat64);
    auto model = load_score_model(ModelKind::kClassifier, o, x);
    // A parameter also used outside its op is caught by the first-batch check: loop.
    expect_matches_loop(model, x, reuse ? GradientPath::kLoop : GradientPath::kLayerTape,
                        reuse ? "torchscript, weight reused" : "torchscript cnn");
  }
}

TEST(LayerTape, Float32AgreesWithFloat64Loop) {
  test::seed(0);
  auto zoo = make_zoo_module("lenet5", {{"image_size", 12}});
  ModelOptions o;
  o.dtype = torch::kFloat32;
  ScoreModel model(ModelKind::kClassifier, wrap_zoo_module(zoo), nullptr, o);
  test::seed(1);
  auto x = torch::rand({6, 1, 12, 12});
  auto j32 = per_example_gradients(model, x, 0, {}, GradientPath::kLayerTape);
  EXPECT_EQ(choose_gradient_path(model, x).path, GradientPath::kLayerTape);
  auto loop32 = per_example_gradients(model, x, 0, {}, GradientPath::kLoop);
  test::expect_close(j32, loop32, 1e-5, "float32 tape vs loop");
}

TEST(PerExampleOperator, ProductsMatchExplicitFisherVectors) {
  for (bool native : {true, false}) {
    test::seed(0);
    auto zoo = make_zoo_module("lenet5", {{"image_size", 12}});
    auto model = native ? score_model(ModelKind::kClassifier, zoo)
                        : test::make_test_model(ModelKind::kClassifier, test::temp_dir("peo"));
    test::seed(1);
    auto x = native ? torch::rand({9, 1, 12, 12}, torch::kFloat64) : test::test_inputs(9);
    FisherOptions fo;
    auto stats = compute_fisher_stats(model, x, fo);
    auto v = (test::explicit_jacobian(model, x, 4) - stats.mean_score) * stats.inv_sqrt();
    PerExampleOperator op(model, x, stats, /*batch_size=*/4);
    auto q = torch::randn({op.cols(), 5}, torch::kFloat64);
    auto m = torch::randn({9, 5}, torch::kFloat64);
    const std::string what = native ? "zoo lenet5" : "torchscript";
    test::expect_close(op.apply(q), v.mm(q), 1e-10, "VQ " + what);
    test::expect_close(op.apply_t(m), v.t().mm(m), 1e-10, "VtM " + what);
    test::expect_close(op.dense(), v, 1e-10, "dense " + what);
    // The sketch's pair of products comes from one pass: one progress report per batch.
    int reports = 0;
    PerExampleOperator counted(model, x, stats, /*batch_size=*/4,
                               [&](const std::string& stage, int64_t, int64_t) {
                                 EXPECT_EQ(stage, "VQ+VtM");
                                 ++reports;
                               });
    auto l = torch::randn({9, 7}, torch::kFloat64);
    auto [vq, vtl] = counted.apply_pair(q, l);
    EXPECT_EQ(reports, 3) << what;  // ceil(9 / 4) batches
    test::expect_close(vq, v.mm(q), 1e-10, "pair VQ " + what);
    test::expect_close(vtl, v.t().mm(l), 1e-10, "pair VtM " + what);
  }
}

}  // namespace
}  // namespace nfk
