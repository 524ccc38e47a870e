// The CUDA path against the CPU path, in float64 (so that the two must agree to rounding), and
// the TF32 switch. Every CUDA test skips cleanly on a machine without a device (CI); the TF32
// switch is a global flag and is checked everywhere.
#include "nfk/embed.h"
#include "nfk/fisher.h"
#include "linalg/cholesky_qr2.h"
#include "nfk/linalg.h"
#include "support.h"
#include "zoo_cases.h"

namespace nfk {
namespace {

bool has_cuda() {
  return torch::cuda::is_available();
}

TEST(Tf32, SwitchSetsBothCublasAndCudnn) {
  set_tf32(true);
  EXPECT_TRUE(at::globalContext().allowTF32CuBLAS());
  EXPECT_TRUE(at::globalContext().allowTF32CuDNN());
  EXPECT_TRUE(tf32_allowed());
  set_tf32(false);
  EXPECT_FALSE(at::globalContext().allowTF32CuBLAS());
  EXPECT_FALSE(at::globalContext().allowTF32CuDNN());  // LibTorch's own default is on
  EXPECT_FALSE(tf32_allowed());
}

TEST(Cuda, PerExampleGradientsMatchTheCpu) {
  if (!has_cuda()) GTEST_SKIP() << "no CUDA device";
  for (const char* which : {"cnn", "gan"}) {
    auto dir = test::temp_dir(std::string("cuda_grad_") + which);
    test::Case c =
        std::string(which) == "cnn" ? test::small_cnn_classifier(dir) : test::small_gan(dir);
    auto cpu = load_score_model(c.kind, c.options, c.x);
    auto on_gpu = c.options;
    on_gpu.device = torch::Device(torch::kCUDA, 0);
    auto gpu = load_score_model(c.kind, on_gpu, c.x);
    auto x = c.x.slice(0, 0, 24);
    auto j_cpu = per_example_gradients(cpu, x);
    auto j_gpu = per_example_gradients(gpu, x);
    EXPECT_TRUE(j_gpu.is_cuda());
    EXPECT_EQ(choose_gradient_path(gpu, x).path, GradientPath::kLayerTape) << which;
    test::expect_close(j_gpu.cpu(), j_cpu, 1e-10, std::string(which) + " J on cuda");
  }
}

TEST(Cuda, FitAndTransformMatchTheCpuForEveryMethod) {
  if (!has_cuda()) GTEST_SKIP() << "no CUDA device";
  set_tf32(false);
  auto dir = test::temp_dir("cuda_fit");
  test::Case c = test::small_cnn_classifier(dir);
  auto cpu = load_score_model(c.kind, c.options, c.x);
  auto on_gpu = c.options;
  on_gpu.device = torch::Device(torch::kCUDA, 0);
  auto gpu = load_score_model(c.kind, on_gpu, c.x);

  FitOptions o;
  o.svd.rank = 8;
  o.run.batch_size = 40;
  // Per-example twice: V resident (budget 1 GiB), then recomputed per pass (budget 0).
  for (auto [m, budget] : {std::pair{FitMethod::kExact, int64_t{1} << 30},
                           std::pair{FitMethod::kPerExample, int64_t{1} << 30},
                           std::pair{FitMethod::kPerExample, int64_t{0}},
                           std::pair{FitMethod::kMatrixFree, int64_t{1} << 30},
                           std::pair{FitMethod::kSketch, int64_t{1} << 30}}) {
    o.method = m;
    o.memory_budget = budget;
    auto ref = fit(cpu, c.x, o).projector;
    auto got = fit(gpu, c.x, o).projector;
    const std::string what = "cuda " + to_string(m) + (budget == 0 ? " (streaming)" : "");
    // A LibTorch that runs on CUDA has c10_cuda, so the build reads the caching allocator's
    // peak: -1 (counter absent) or 0 on a CUDA fit is a failure. The peak is at least what the
    // fit kept on the device: the basis P [P, k], and all of V [N, P] where it was resident.
    const int64_t value_bytes = 8;  // float64
    int64_t resident = got.basis.numel() * value_bytes;
    if (m == FitMethod::kExact || (m == FitMethod::kPerExample && budget > 0)) {
      resident = std::max(resident, c.x.size(0) * got.basis.size(0) * value_bytes);
    }
    EXPECT_GE(got.profile.peak_device_bytes, resident) << what;
    EXPECT_LT(got.profile.peak_device_bytes, int64_t{1} << 32) << what;  // no garbage either
    EXPECT_EQ(ref.profile.peak_device_bytes, -1) << what;  // the CPU has no such counter
    test::expect_close(got.singular_values.cpu(), ref.singular_values, 1e-8, what + " sigma");
    test::expect_close(got.basis.cpu(), ref.basis, 1e-6, what + " basis");
    test::expect_close(transform(got, gpu, c.x, {33}).cpu(), transform(ref, cpu, c.x, {33}), 1e-8,
                       what + " transform");
  }
}

TEST(Cuda, CholeskyQr2MatchesTheCpu) {
  if (!has_cuda()) GTEST_SKIP() << "no CUDA device";
  test::seed(3);
  auto a =
      torch::randn({3000, 40}, torch::kFloat64) * torch::logspace(0, -2, 40, 10.0, torch::kFloat64);
  auto q_cpu = cholesky_qr2(a);
  auto q_gpu = cholesky_qr2(a.cuda());
  ASSERT_TRUE(q_cpu.defined() && q_gpu.defined());
  test::expect_close(q_gpu.cpu(), q_cpu, 1e-12, "CholeskyQR2 on cuda");
  // What the SVDs call on CUDA: CholeskyQR2, the same basis.
  test::expect_close(orthonormal_basis(a.cuda()).cpu(), q_cpu, 1e-12, "orthonormal_basis");
}

TEST(Cuda, Float32WithTf32StaysCloseToFloat64) {
  if (!has_cuda()) GTEST_SKIP() << "no CUDA device";
  auto dir = test::temp_dir("cuda_tf32");
  test::Case c = test::small_cnn_classifier(dir);
  FitOptions o;
  o.svd.rank = 8;
  o.method = FitMethod::kPerExample;
  auto cpu = load_score_model(c.kind, c.options, c.x);
  auto ref = fit(cpu, c.x, o).projector;
  auto f32 = c.options;
  f32.dtype = torch::kFloat32;
  f32.device = torch::Device(torch::kCUDA, 0);
  for (bool tf32 : {false, true}) {
    set_tf32(tf32);
    auto model = load_score_model(c.kind, f32, c.x);
    auto got = fit(model, c.x.to(torch::kFloat32), o).projector;
    const double err =
        test::max_entry_rel_err(got.singular_values.cpu().to(torch::kFloat64), ref.singular_values);
    std::printf("[ measured ] cuda float32%s: top-8 sigma rel err %.2e\n", tf32 ? " + TF32" : "",
                err);
    EXPECT_LE(err, tf32 ? 2e-2 : 1e-4);
  }
  set_tf32(false);
}

}  // namespace
}  // namespace nfk
