// Users' real networks on the layer tape: torchvision's ResNet-18, ShuffleNetV2 ×0.5 and
// MobileNetV3-small, scripted and traced by tests/cli/torchvision_models.py (Debian's
// python3-torchvision), in eval mode and float64. Their in-place ops (ReLU(inplace=True),
// `out += identity`, Hardswish/Dropout in place) must not keep them off the one-backward path,
// and its per-example gradients must equal the explicit per-example loop.
#include <cstdlib>
#include <filesystem>

#include "nfk/fisher.h"
#include "support.h"

namespace nfk {
namespace {

namespace fs = std::filesystem;

// Writes the TorchScript files once per version of the script (ctest runs each test in its own
// process): into a folder named by the script's hash, built under a temporary name and renamed.
class TorchvisionTape : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    // ctest sets NFK_TEST_SOURCE_DIR; run by hand from build/, __FILE__ (../tests/...) serves.
    const char* source_dir = std::getenv("NFK_TEST_SOURCE_DIR");
    const auto script = (source_dir ? fs::path(source_dir) : fs::path(__FILE__).parent_path()) /
                        "cli" / "torchvision_models.py";
    const auto root = fs::path(::testing::TempDir());
    dir_ = (root / ("nfk_torchvision_" + file_hash(script.string()))).string();
    if (fs::exists(fs::path(dir_) / "index.json")) {
      exit_code_ = 0;
      return;
    }
    const std::string tmp = test::temp_dir("torchvision_build");
    const std::string cmd =
        "/usr/bin/python3 " + script.string() + " " + tmp + " > " + tmp + "/log.txt 2>&1";
    const int status = std::system(cmd.c_str());
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::error_code ignored;
    if (exit_code_ == 0) fs::rename(tmp, dir_, ignored);  // a concurrent run may have won
    if (exit_code_ != 0 || ignored) dir_ = tmp;
  }

  static std::string dir_;
  static int exit_code_;
};

std::string TorchvisionTape::dir_;
int TorchvisionTape::exit_code_ = -1;

TEST_P(TorchvisionTape, OneBackwardPathMatchesThePerExampleLoop) {
  if (exit_code_ == 77) GTEST_SKIP() << "python3-torchvision is not installed";
  ASSERT_EQ(exit_code_, 0) << "tests/cli/torchvision_models.py failed; see " << dir_ << "/log.txt";
  const std::string name = GetParam();
  ModelOptions o;
  o.dtype = torch::kFloat64;
  o.model_path = dir_ + "/" + name + ".pt";
  ASSERT_TRUE(fs::exists(o.model_path)) << o.model_path << " was not written (index.json)";
  test::seed(1);
  auto x = torch::rand({3, 3, 32, 32}, torch::kFloat64);
  auto model = load_score_model(ModelKind::kClassifier, o, x);

  // Uneven batches (2 + 1); the first one also runs the tape's own check against the loop.
  GradientBlocks gradients(model, GradientPath::kAuto);
  auto j = torch::cat({gradients(x.slice(0, 0, 2), 0, {}), gradients(x.slice(0, 2, 3), 2, {})});
  EXPECT_EQ(to_string(gradients.choice().path), to_string(GradientPath::kLayerTape))
      << name << " fell back: " << gradients.choice().reason;
  EXPECT_EQ(model.network().tape_note(), "") << name;
  test::expect_close(j, test::explicit_jacobian(model, x, /*batch_size=*/2), 1e-10, name);
}

INSTANTIATE_TEST_SUITE_P(Torchvision, TorchvisionTape,
                         ::testing::Values("resnet18_script", "resnet18_trace",
                                           "shufflenet_v2_x0_5_script", "shufflenet_v2_x0_5_trace",
                                           "mobilenet_v3_small_script", "mobilenet_v3_small_trace"),
                         [](const auto& info) { return info.param; });

// A TorchScript model whose in-place op cannot be removed (it writes through a view, so the
// functional form would change the meaning) falls back with the op and the reason in the
// returned note, not only in a log line.
TEST(TorchvisionTapeFallback, UnremovableInPlaceOpIsNamedInTheReason) {
  test::seed(0);
  torch::jit::Module net("Net");
  auto o = torch::dtype(torch::kFloat64);
  net.register_parameter("w", (torch::randn({3, 16}, o) * 0.3).requires_grad_(true), false);
  net.register_parameter("b", torch::zeros({3}, o).requires_grad_(true), false);
  net.define(
      "def forward(self, x):\n"
      "        y = torch.linear(x.flatten(1), self.w, self.b)\n"
      "        v = y.view([-1])\n"
      "        v.mul_(2.0)\n"  // writes the linear's output through a view
      "        return torch.tanh(y)\n");
  ModelOptions mo;
  mo.dtype = torch::kFloat64;
  mo.model_path = test::temp_dir("tape_inplace") + "/inplace.pt";
  net.save(mo.model_path);
  auto x = test::test_inputs(4);
  auto model = load_score_model(ModelKind::kClassifier, mo, x);
  const auto choice = choose_gradient_path(model, x);
  auto j = per_example_gradients(model, x, 0, {}, choice.path);
  EXPECT_EQ(choice.path, GradientPath::kLoop);
  const std::string& why = choice.reason;
  EXPECT_NE(why.find("aten::linear (w): its output is changed in place"), std::string::npos) << why;
  test::expect_close(j, test::explicit_jacobian(model, x, 4), 1e-10, "in-place fallback");
}

// Eval-mode Dropout(inplace=True) on a view (EfficientNet's classifier after flatten): mutation
// removal must keep it, so the rewrite drops it as the identity it is; the tape is taken.
TEST(TorchvisionTapeFallback, EvalDropoutInPlaceOnAViewKeepsTheTape) {
  test::seed(0);
  torch::jit::Module net("Net");
  auto o = torch::dtype(torch::kFloat64);
  auto param = [&](const char* name, torch::Tensor t) {
    net.register_parameter(name, t.requires_grad_(true), false);
  };
  param("w1", torch::randn({8, 16}, o) * 0.3);
  param("b1", torch::randn({8}, o) * 0.1);
  param("w2", torch::randn({3, 8}, o) * 0.3);
  param("b2", torch::randn({3}, o) * 0.1);
  net.define(
      "def forward(self, x):\n"
      "        h = torch.tanh(torch.linear(x.flatten(1), self.w1, self.b1))\n"
      "        v = torch.dropout_(h.view([-1, 8]), 0.5, False)\n"
      "        return torch.linear(v, self.w2, self.b2)\n");
  ModelOptions mo;
  mo.dtype = torch::kFloat64;
  mo.model_path = test::temp_dir("tape_dropout") + "/dropout.pt";
  net.save(mo.model_path);
  auto x = test::test_inputs(4);
  auto model = load_score_model(ModelKind::kClassifier, mo, x);
  const auto choice = choose_gradient_path(model, x);
  auto j = per_example_gradients(model, x, 0, {}, choice.path);
  EXPECT_EQ(to_string(choice.path), to_string(GradientPath::kLayerTape)) << choice.reason;
  test::expect_close(j, test::explicit_jacobian(model, x, 4), 1e-10, "eval dropout_ on a view");
}

}  // namespace
}  // namespace nfk
