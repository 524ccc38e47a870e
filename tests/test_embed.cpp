// End-to-end fits in float64: the matrix-free (paper Alg. 4) and per-example methods against
// the exact method (paper Alg. 1) on a small CNN classifier and a small GAN discriminator.
#include "nfk/distance.h"
#include "nfk/embed.h"
#include "nfk/zoo.h"
#include "support.h"
#include "zoo_cases.h"

namespace nfk {
namespace {

using test::Case;
using test::save_zoo;
using test::small_cnn_classifier;
using test::small_gan;

class FitAgreement : public ::testing::TestWithParam<std::string> {};

TEST_P(FitAgreement, FastMethodsMatchExactInFloat64) {
  auto dir = test::temp_dir("fit_" + GetParam());
  Case c = GetParam() == "cnn" ? small_cnn_classifier(dir) : small_gan(dir);
  auto model = load_score_model(c.kind, c.options, c.x);

  FitOptions o;
  o.svd.rank = 16;
  o.run.batch_size = 40;
  o.method = FitMethod::kExact;
  auto [exact, e_exact, exact_plan] = fit(model, c.x, o, "synthetic");

  for (FitMethod m : {FitMethod::kMatrixFree, FitMethod::kPerExample}) {
    o.method = m;
    auto [p, e_train, plan] = fit(model, c.x, o, "synthetic");
    const std::string what = c.name + " " + to_string(m);
    EXPECT_EQ(p.method, m);
    std::printf("[ measured ] %s: top-16 sigma rel err %.2e, min principal cosine %.12f\n",
                what.c_str(), test::max_entry_rel_err(p.singular_values, exact.singular_values),
                principal_cosines(p.basis, exact.basis).min().item<double>());
    EXPECT_LE(test::max_entry_rel_err(p.singular_values, exact.singular_values), 1e-6) << what;
    EXPECT_GE(principal_cosines(p.basis, exact.basis).min().item<double>(), 0.999) << what;
    // e(x) = Pᵀ V_x of the training points equals Φ diag(σ).
    auto e = transform(p, model, c.x, {/*batch_size=*/33});
    test::expect_close(e, e_train, 1e-6, what + " transform(train) = Phi sigma");
  }
  auto e = transform(exact, model, c.x, {/*batch_size=*/50});
  test::expect_close(e, e_exact, 1e-6, c.name + " exact transform");

  // The single-pass sketch is exact when its range sketch spans all N rows (s = N): this checks
  // its centring, scaling and factor bookkeeping end to end, not its approximation quality.
  o.method = FitMethod::kSketch;
  o.svd.oversample = c.x.size(0);
  auto [sk, e_sketch, sketch_plan] = fit(model, c.x, o, "synthetic");
  EXPECT_EQ(sk.method, FitMethod::kSketch);
  EXPECT_LE(test::max_entry_rel_err(sk.singular_values, exact.singular_values), 1e-8) << c.name;
  EXPECT_GE(principal_cosines(sk.basis, exact.basis).min().item<double>(), 1 - 1e-8) << c.name;
  test::expect_close(transform(sk, model, c.x, {/*batch_size=*/50}), e_sketch, 1e-6,
                     c.name + " sketch transform");
}

INSTANTIATE_TEST_SUITE_P(Models, FitAgreement, ::testing::Values("cnn", "gan"));

TEST(Projector, FileRoundTripsAndTransformsNewData) {
  auto dir = test::temp_dir("proj");
  Case c = small_gan(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  FitOptions o;
  o.svd.rank = 5;
  o.svd.power_iters = 3;
  o.method = FitMethod::kMatrixFree;
  auto p = fit(model, c.x.slice(0, 0, 30), o, "synthetic").projector;
  record_model_files(p);
  save_projector(dir + "/p.nfk", p);
  auto q = load_projector(dir + "/p.nfk");
  EXPECT_TRUE(torch::equal(p.basis, q.basis));
  EXPECT_TRUE(torch::equal(p.singular_values, q.singular_values));
  EXPECT_TRUE(torch::equal(p.fisher.mean_score, q.fisher.mean_score));
  EXPECT_TRUE(torch::equal(p.fisher.fisher_diag, q.fisher.fisher_diag));
  EXPECT_EQ(q.kind, ModelKind::kGan);
  EXPECT_EQ(q.method, FitMethod::kMatrixFree);
  EXPECT_EQ(q.fisher.reference, "generator samples");
  // How the SVD went is kept: its solver and tolerance, iterations, passes, estimated error.
  EXPECT_GT(p.profile.passes, 0);
  EXPECT_EQ(q.svd.solver, p.svd.solver);
  EXPECT_EQ(q.svd.tol, p.svd.tol);
  EXPECT_EQ(q.profile.iterations, p.profile.iterations);
  EXPECT_EQ(q.profile.passes, p.profile.passes);
  EXPECT_EQ(q.profile.estimated_error, p.profile.estimated_error);
  EXPECT_EQ(q.spectrum_json().dump(), p.spectrum_json().dump());
  EXPECT_EQ(q.spectrum_json()["svd"]["passes"], p.profile.passes);

  // New data through the reloaded model: e(x) = Pᵀ V_x with V_x built explicitly.
  auto reloaded = load_projector_model(q);
  auto x_new = c.x.slice(0, 30, 40);
  auto j = test::explicit_jacobian(reloaded, x_new, 1);
  auto v = (j - q.fisher.mean_score) * q.fisher.fisher_diag.rsqrt();
  test::expect_close(transform(q, reloaded, x_new), v.mm(q.basis), 1e-10, "e(new)");
}

// An exact rank-k projector of the first n rows of x.
Projector fit_exact(ScoreModel& model, const torch::Tensor& x, int64_t rank, int64_t n) {
  FitOptions o;
  o.svd.rank = rank;
  o.method = FitMethod::kExact;
  auto p = fit(model, x.slice(0, 0, n), o).projector;
  record_model_files(p);
  return p;
}

TEST(Projector, CorruptOrTruncatedFilesAreRejected) {
  auto dir = test::temp_dir("proj_bad");
  Case c = small_cnn_classifier(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  save_projector(dir + "/p.nfk", fit_exact(model, c.x, /*rank=*/3, /*n=*/12));
  std::ifstream in(dir + "/p.nfk", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto write = [&](const std::string& name, const std::string& b) {
    std::ofstream(dir + "/" + name, std::ios::binary) << b;
    return dir + "/" + name;
  };
  EXPECT_THROW(load_projector(write("trunc.nfk", bytes.substr(0, bytes.size() - 10))), c10::Error);
  EXPECT_THROW(load_projector(write("magic.nfk", "XX" + bytes.substr(2))), c10::Error);
  std::string bad_json = bytes;
  bad_json[20] = '#';
  EXPECT_THROW(load_projector(write("json.nfk", bad_json)), c10::Error);
  EXPECT_THROW(load_projector(dir + "/missing.nfk"), c10::Error);
}

TEST(Projector, EveryFlippedBitIsAnErrorNeverACrash) {
  // The header and every tensor carry a crc32: no single-bit flip anywhere reads back silently.
  auto dir = test::temp_dir("proj_flip");
  Case c = small_cnn_classifier(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  save_projector(dir + "/p.nfk", fit_exact(model, c.x, /*rank=*/2, /*n=*/6));
  std::ifstream in(dir + "/p.nfk", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string path = dir + "/flipped.nfk";
  // Every byte of the preamble and header, and 2,000 spread over the tensor data.
  uint64_t head_len = 0;
  for (int i = 0; i < 8; ++i)
    head_len |= uint64_t(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
  std::vector<size_t> positions;
  for (size_t i = 0; i < 20 + head_len; ++i) positions.push_back(i);
  const size_t data_bytes = bytes.size() - 20 - head_len;
  for (size_t k = 0; k < 2000; ++k)
    positions.push_back(20 + head_len + k * (data_bytes - 1) / 1999);
  int64_t accepted = 0;
  for (size_t i : positions) {
    std::string b = bytes;
    b[i] = static_cast<char>(b[i] ^ (1 << (i % 8)));
    std::ofstream(path, std::ios::binary | std::ios::trunc) << b;
    try {
      load_projector(path);
      ++accepted;
    } catch (const c10::Error&) {
    }
  }
  EXPECT_EQ(accepted, 0) << "of " << positions.size() << " flipped bits";
}

TEST(Projector, WhatCannotBeReadBackIsNotWritten) {
  // A float64 Fisher diagonal of 1e-50 underflows float32; 1e300 overflows it.
  auto dir = test::temp_dir("proj_store");
  Case c = small_cnn_classifier(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  auto p = fit_exact(model, c.x, /*rank=*/2, /*n=*/6);
  p.model.dtype = torch::kFloat32;
  auto good_fisher = p.fisher.fisher_diag;
  p.fisher.fisher_diag = torch::full_like(good_fisher, 1e-50, torch::kFloat64);
  EXPECT_THROW(save_projector(dir + "/under.nfk", p), c10::Error);
  p.fisher.fisher_diag = good_fisher;
  p.singular_values = p.singular_values.to(torch::kFloat64) * 1e300;
  EXPECT_THROW(save_projector(dir + "/over.nfk", p), c10::Error);
  EXPECT_FALSE(std::filesystem::exists(dir + "/under.nfk"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/over.nfk"));
}

TEST(Projector, ModelChangeIsDetected) {
  auto dir = test::temp_dir("proj_hash");
  Case c = small_cnn_classifier(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  auto p = fit_exact(model, c.x, /*rank=*/3, /*n=*/12);
  save_zoo(dir, "lenet", "lenet5", {{"image_size", 12}, {"num_classes", 4}}, 99);  // overwrite
  EXPECT_THROW(load_projector_model(p), c10::Error);
}

TEST(Distance, SetDistanceMatchesExplicitFisherVectors) {
  auto dir = test::temp_dir("dist");
  Case c = small_gan(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  FitOptions o;
  o.svd.rank = 4;
  o.method = FitMethod::kExact;
  auto p = fit(model, c.x.slice(0, 0, 40), o).projector;
  auto a = c.x.slice(0, 40, 60), b = c.x.slice(0, 60, 96);
  auto v = [&](const torch::Tensor& x) {
    return (test::explicit_jacobian(model, x, 1) - p.fisher.mean_score) *
           p.fisher.fisher_diag.rsqrt();
  };
  auto diff = v(a).mean(0) - v(b).mean(0);
  auto d = fisher_set_distance(p, model, a, b, /*batch_size=*/7);
  EXPECT_NEAR(d.fisher, diff.norm().item<double>(), 1e-10 * diff.norm().item<double>());
  const double emb = p.basis.t().mv(diff).norm().item<double>();
  EXPECT_NEAR(d.embedding, emb, 1e-10 * emb);
  EXPECT_NEAR(fisher_set_distance(p, model, a, a).fisher, 0.0, 1e-12);
}

TEST(Fit, MethodAutoRespectsTheMemoryBudget) {
  auto dir = test::temp_dir("auto");
  Case c = small_cnn_classifier(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  FitOptions o;
  o.svd.rank = 2;
  o.svd.power_iters = 1;
  auto x = c.x.slice(0, 0, 10);
  // Within the budget, 10 examples: the Gram eigendecomposition is cheaper (exact_is_cheaper).
  EXPECT_EQ(fit(model, x, o).projector.method, FitMethod::kExact);
  o.memory_budget = 1000;                  // bytes: V cannot be kept
  auto over = fit(model, x, o).projector;  // the layer tape covers the zoo LeNet: blocks recomputed
  EXPECT_EQ(over.method, FitMethod::kPerExample);
  EXPECT_NE(over.method_note.find("recomputed"), std::string::npos) << over.method_note;
  auto ts = test::make_test_model(ModelKind::kClassifier, dir);  // TorchScript: no tape
  EXPECT_EQ(fit(ts, test::test_inputs(10), o).projector.method, FitMethod::kMatrixFree);
  o.method = FitMethod::kExact;
  EXPECT_THROW(fit(model, x, o), c10::Error);
}

TEST(Fit, ProfileAccountsForTheStages) {
  auto dir = test::temp_dir("profile");
  Case c = small_cnn_classifier(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  FitOptions o;
  o.svd = {/*rank=*/3, /*oversample=*/2, /*power_iters=*/2};
  auto x = c.x.slice(0, 0, 20);
  const double n = 20, p = static_cast<double>(model.num_parameters()), u = 5;
  auto stages_add_up = [](const FitProfile& f) {
    for (double s : {f.statistics_s, f.gradients_s, f.products_s, f.factorizations_s}) {
      EXPECT_GE(s, 0.0);
    }
    EXPECT_LE(f.statistics_s + f.gradients_s + f.products_s + f.factorizations_s,
              f.total_s * (1 + 1e-9));
    EXPECT_EQ(f.peak_device_bytes, -1);  // CPU
  };
  // V resident: 2L + 2 GEMM products of 2·N·P·u flops each; the statistics come with V.
  auto resident = fit(model, x, o).projector.profile;
  stages_add_up(resident);
  EXPECT_EQ(resident.products, 2 * o.svd.power_iters + 2);
  EXPECT_DOUBLE_EQ(resident.product_flops, resident.products * 2 * n * p * u);
  EXPECT_GT(resident.gradients_s, 0.0);
  EXPECT_EQ(resident.statistics_s, 0.0);
  // Streaming: a statistics pass of its own, products that are not plain GEMMs.
  o.method = FitMethod::kMatrixFree;
  auto streaming = fit(model, x, o).projector.profile;
  stages_add_up(streaming);
  EXPECT_EQ(streaming.products, 2 * o.svd.power_iters + 2);
  EXPECT_EQ(streaming.product_flops, 0.0);
  EXPECT_GT(streaming.statistics_s, 0.0);
  EXPECT_EQ(streaming.gradients_s, 0.0);
  // The single-pass sketch: one paired pass (two products).
  o.method = FitMethod::kSketch;
  EXPECT_EQ(fit(model, x, o).projector.profile.products, 2);
  // Exact: no products, the Gram eigendecomposition is the factorization.
  o.method = FitMethod::kExact;
  auto exact = fit(model, x, o).projector.profile;
  stages_add_up(exact);
  EXPECT_EQ(exact.products, 0);
  EXPECT_GT(exact.factorizations_s, 0.0);
}

}  // namespace
}  // namespace nfk
