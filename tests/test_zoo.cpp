// Zoo options ↔ JSON: what an archive records under "nfk_zoo_options" for each architecture.
// The strings are the archive format (archives written by earlier builds must keep loading with
// the same options), so they are spelled out here rather than derived from the code under test.
#include <map>
#include <string>

#include "nfk/model.h"
#include "nfk/zoo.h"
#include "support.h"

namespace nfk {
namespace {

// Every field written back, defaults made explicit, keys sorted (nlohmann's std::map objects).
TEST(ZooOptions, DefaultsAreWrittenInFull) {
  const std::map<std::string, std::string> expected = {
      {"lenet5", R"({"image_size":28,"in_channels":1,"num_classes":10})"},
      {"mlp", R"({"activation":"tanh","hidden":[128,64],"in_features":784,"out_features":10})"},
      {"dcgan-d", R"({"channels":1,"image_size":28,"width":32})"},
      {"dcgan-g", R"({"batch_norm":true,"channels":1,"image_size":28,"latent_dim":32,"width":32})"},
      {"vae", R"({"channels":1,"image_size":28,"latent_dim":16,"learn_sigma":true,)"
              R"("likelihood":"bernoulli","sigma":0.1,"width":32})"},
      {"made", R"({"channels":1,"hidden":[512],"image_size":28,"likelihood":"gaussian",)"
               R"("logit_alpha":1e-06})"},
      {"wrn", R"({"depth":16,"dropout":0.0,"image_size":32,"in_channels":3,"num_classes":10,)"
              R"("widen_factor":1})"},
  };
  ASSERT_EQ(expected.size(), zoo_registry().size());
  for (const auto& [arch, dump] : expected) {
    test::seed(0);
    EXPECT_EQ(make_zoo_module(arch).options.dump(), dump) << arch;
  }
}

// Given fields override the defaults with their own JSON types; unknown keys are dropped.
TEST(ZooOptions, GivenFieldsOverrideDefaults) {
  const nlohmann::json vae_in = {
      {"latent_dim", 3}, {"width", 4},           {"image_size", 8}, {"likelihood", "gaussian"},
      {"sigma", 0.25},   {"learn_sigma", false}, {"not_a_field", 1}};
  EXPECT_EQ(make_zoo_module("vae", vae_in).options.dump(),
            R"({"channels":1,"image_size":8,"latent_dim":3,"learn_sigma":false,)"
            R"("likelihood":"gaussian","sigma":0.25,"width":4})");
  EXPECT_EQ(make_zoo_module("mlp", {{"in_features", 6}, {"hidden", {5, 4, 3}}}).options.dump(),
            R"({"activation":"tanh","hidden":[5,4,3],"in_features":6,"out_features":10})");
  EXPECT_EQ(make_zoo_module("wrn", {{"depth", 10}, {"dropout", 0.5}}).options.dump(),
            R"({"depth":10,"dropout":0.5,"image_size":32,"in_channels":3,"num_classes":10,)"
            R"("widen_factor":1})");
}

// A wrongly typed field names itself (nlohmann's type_error), as before.
TEST(ZooOptions, WrongTypeThrows) {
  EXPECT_ANY_THROW(make_zoo_module("lenet5", {{"num_classes", "ten"}}));
}

// The MLP's hidden activation: tanh (archives written before the option load as tanh) or relu,
// checked against the layers applied by hand; anything else is refused.
TEST(Zoo, MlpActivation) {
  auto x = torch::randn({5, 6}, torch::kFloat64);
  for (const std::string act : {"tanh", "relu"}) {
    test::seed(0);
    auto m = make_zoo_module("mlp", {{"in_features", 6}, {"hidden", {4, 3}}, {"activation", act}});
    m.module->to(torch::kFloat64);
    auto p = m.module->named_parameters();
    auto f = [&](const torch::Tensor& h) {
      return act == "relu" ? torch::relu(h) : torch::tanh(h);
    };
    auto h = f(torch::nn::functional::linear(x, p["layers.0.weight"], p["layers.0.bias"]));
    h = f(torch::nn::functional::linear(h, p["layers.1.weight"], p["layers.1.bias"]));
    auto want = torch::nn::functional::linear(h, p["layers.2.weight"], p["layers.2.bias"]);
    EXPECT_TRUE(torch::allclose(m.methods.at("forward")(x), want, 0, 1e-14)) << act;
  }
  EXPECT_EQ(make_zoo_module("mlp", {{"hidden", {4}}}).options.at("activation"), "tanh");
  EXPECT_THROW(make_zoo_module("mlp", {{"activation", "gelu"}}), c10::Error);
}

TEST(Zoo, AWrappedModuleGetsItsModeBackWhenTheWrapperGoes) {
  // Natural gradient and EWC wrap the model in training to take its Fisher: eval mode inside
  // (batch-norm on running statistics), the trainer's mode after.
  auto m = make_zoo_module("wrn", {{"depth", 10}, {"in_channels", 1}, {"image_size", 8}});
  for (bool training : {true, false}) {
    m.module->train(training);
    {
      auto net = wrap_zoo_module(m);
      net->to(torch::kCPU, torch::kFloat32);
      EXPECT_FALSE(m.module->is_training());
    }
    EXPECT_EQ(m.module->is_training(), training);
  }
}

}  // namespace
}  // namespace nfk
