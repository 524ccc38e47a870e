// Fisher-based evaluations against explicit Fisher vectors (per-example loop): class and pairwise
// distances, full Fisher vectors; the baselines (PCA) against a direct eigendecomposition; GAN
// inversion and monitoring end to end on a small GAN.
#include <cmath>
#include <filesystem>

#include "nfk/distance.h"
#include "nfk/embed.h"
#include "nfk/features.h"
#include "nfk/gan_eval.h"
#include "nfk/zoo.h"
#include "support.h"
#include "zoo_cases.h"

namespace nfk {
namespace {

struct Fitted {
  test::Case c;
  ScoreModel model;
  Projector p;
};

Fitted fitted_gan(const std::string& dir) {
  auto c = test::small_gan(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  FitOptions o;
  o.svd.rank = 4;
  o.method = FitMethod::kExact;
  auto p = fit(model, c.x.slice(0, 0, 40), o).projector;
  return {c, std::move(model), p};
}

// V_x by the explicit per-example loop of support.h, under the projector's z and I.
torch::Tensor explicit_v(Fitted& f, const torch::Tensor& x) {
  return (test::explicit_jacobian(f.model, x, 1) - f.p.fisher.mean_score) *
         f.p.fisher.fisher_diag.rsqrt();
}

TEST(EvalDistance, ClassMatrixMatchesExplicitClassMeans) {
  auto f = fitted_gan(test::temp_dir("classdist"));
  auto x = f.c.x.slice(0, 40, 90);
  auto y = torch::arange(50, torch::kLong).remainder(4);
  y[7] = 5;  // class 4 absent: NaN row and column
  auto d = class_distance_matrix(f.p, f.model, x, y, /*batch_size=*/9);
  ASSERT_EQ(d.sizes(), (std::vector<int64_t>{6, 6}));
  auto v = explicit_v(f, x);
  for (int64_t a = 0; a < 6; ++a) {
    for (int64_t b = 0; b < 6; ++b) {
      if (a == 4 || b == 4) {
        EXPECT_TRUE(std::isnan(d[a][b].item<double>()));
        continue;
      }
      auto diff = v.index({y == a}).mean(0) - v.index({y == b}).mean(0);
      const double ref = diff.norm().item<double>();
      EXPECT_NEAR(d[a][b].item<double>(), ref, 1e-10 * (ref + 1)) << a << "," << b;
    }
  }
}

TEST(EvalDistance, PairwiseMatchesExplicitFisherVectors) {
  auto f = fitted_gan(test::temp_dir("pairdist"));
  auto a = f.c.x.slice(0, 40, 47), b = f.c.x.slice(0, 50, 61);
  auto d = pairwise_fisher_distances(f.p, f.model, a, b, /*batch_size=*/4);
  auto va = explicit_v(f, a), vb = explicit_v(f, b);
  ASSERT_EQ(d.sizes(), (std::vector<int64_t>{7, 11}));
  for (int64_t i = 0; i < 7; ++i) {
    for (int64_t j = 0; j < 11; ++j) {
      const double ref = (va[i] - vb[j]).norm().item<double>();
      EXPECT_NEAR(d[i][j].item<double>(), ref, 1e-10 * ref);
    }
  }
  // d(x, x) = 0 exactly enough: no |a|² + |b|² − 2ab cancellation.
  EXPECT_LE(pairwise_fisher_distances(f.p, f.model, a, a).diagonal().abs().max().item<double>(),
            1e-12);
}

TEST(EvalFeatures, FullFisherVectorsAndTheirBudget) {
  auto f = fitted_gan(test::temp_dir("fullfv"));
  auto x = f.c.x.slice(0, 60, 70);
  auto v = full_fisher_vectors(f.p, f.model, x, /*batch_size=*/3, /*memory_budget=*/1 << 30);
  test::expect_close(v, explicit_v(f, x), 1e-10, "V");
  EXPECT_THROW(full_fisher_vectors(f.p, f.model, x, 3, /*memory_budget=*/1000), c10::Error);
}

TEST(EvalFeatures, PcaMatchesCovarianceEigendecomposition) {
  test::seed(7);
  auto x = torch::randn({200, 6}, torch::kFloat64).mm(torch::randn({6, 6}, torch::kFloat64));
  auto pca = fit_pca(x.view({200, 1, 2, 3}), 3);
  auto xc = x - x.mean(0);
  auto [evals, evecs] = torch::linalg::eigh(xc.t().mm(xc) / 200, "L");  // ascending
  auto ref_var = evals.flip(0).slice(0, 0, 3);
  test::expect_close(pca.explained_variance, ref_var, 1e-10, "variances");
  // Same subspace: |cosines| of matching components are 1.
  auto cos = (pca.components * evecs.flip(1).slice(1, 0, 3)).sum(0).abs();
  EXPECT_LE((cos - 1).abs().max().item<double>(), 1e-9);
  auto codes = pca.project(x.view({200, 1, 2, 3}));
  test::expect_close(codes, xc.mm(pca.components).to(torch::kFloat32), 1e-6, "codes");
  // Full rank reconstructs exactly.
  auto full = fit_pca(x, 6);
  test::expect_close(full.reconstruct(x), x.to(torch::kFloat32), 1e-5, "reconstruction");
  EXPECT_THROW(fit_pca(x, 7), c10::Error);
}

TEST(EvalFeatures, ActivationsOfTheZooDiscriminator) {
  auto dir = test::temp_dir("acts");
  auto c = test::small_gan(dir);
  auto net = load_network(c.options.model_path);
  auto x = c.x.slice(0, 0, 10).to(torch::kFloat32);
  auto a = network_activations(*net, x, "features", /*batch_size=*/4);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{10, 2 * 4 * 3 * 3}));  // 2·width·(12/4)²
  auto whole = network_activations(*net, x, "features", /*batch_size=*/10);
  EXPECT_TRUE(torch::allclose(a, whole));
  EXPECT_THROW(network_activations(*net, x, "no_such_method", 4), c10::Error);
}

TEST(GanEval, InversionRecoversLatentsOfGeneratedImages) {
  auto f = fitted_gan(test::temp_dir("invert"));
  auto generator = load_network(f.c.options.generator_path);
  GanInversionOptions o;
  o.samples = 300;
  o.l2 = 1e-8;
  auto inv = fit_gan_inversion(f.p, f.model, *generator, o);
  EXPECT_EQ(inv.weight.sizes(), (std::vector<int64_t>{4, 6}));
  EXPECT_GT(inv.fit_r2, 0.0);
  EXPECT_LE(inv.fit_r2, 1.0);
  // The ridge map is the least-squares fit: residuals are orthogonal to the centred embeddings.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto h = at::normal(0.0, 1.0, {o.samples, 6}, gen).to(torch::kFloat32);
  auto e = transform(f.p, f.model, generate(*generator, h));
  auto resid = h.to(torch::kFloat64) - inv.latents(e).to(torch::kFloat64);
  auto ortho = (e.to(torch::kFloat64) - inv.mean_e).t().mm(resid).abs().max().item<double>();
  EXPECT_LE(ortho, 1e-3 * e.abs().max().item<double>() * o.samples);
  o.components = 2;
  EXPECT_EQ(fit_gan_inversion(f.p, f.model, *generator, o).weight.size(0), 2);
  o.components = 5;
  EXPECT_THROW(fit_gan_inversion(f.p, f.model, *generator, o), c10::Error);
}

TEST(GanEval, FisherSimilarityMatchesTheExplicitJacobian) {
  auto dir = test::temp_dir("similarity");
  auto c = test::small_gan(dir);
  auto model = load_score_model(c.kind, c.options, c.x);
  const int64_t n_gen = 50;
  const uint64_t seed = 7;
  auto stats = generated_fisher_stats(model, n_gen, seed, /*floor=*/1e-3, /*batch_size=*/16);
  // z, I: moments of the explicit per-example gradients of the same generated samples.
  auto jg = test::explicit_jacobian(model, model.sample(n_gen, seed), 16);
  auto z = jg.mean(0);
  auto fisher = (jg - z).square().mean(0);
  fisher = fisher.clamp_min(1e-3 * fisher.mean().item<double>());
  test::expect_close(stats.mean_score, z, 1e-10, "z");
  test::expect_close(stats.fisher_diag, fisher, 1e-10, "I");
  // Similarity exp(−c · mean(((ū − z) / √I)²)) and distance ‖(ū − z) / √I‖ of a real set.
  auto real = c.x.slice(0, 0, 40);
  auto u = test::explicit_jacobian(model, real, 16).mean(0);
  auto v = (u - z) / fisher.sqrt();
  auto fs = fisher_similarity(model, stats, real, /*c=*/2.0, /*batch_size=*/16);
  EXPECT_NEAR(fs.distance, v.norm().item<double>(), 1e-10 * fs.distance);
  EXPECT_NEAR(fs.similarity, std::exp(-2.0 * v.square().mean().item<double>()), 1e-12);
  // The one-call form draws the same reference.
  auto once = fisher_similarity(model, real, n_gen, seed, 2.0, 1e-3, 16);
  EXPECT_EQ(once.distance, fs.distance);
  // The generator's own samples are indistinguishable from its reference: similarity 1.
  auto self = fisher_similarity(model, stats, model.sample(n_gen, seed), 2.0, 16);
  EXPECT_NEAR(self.distance, 0.0, 1e-8);
  EXPECT_NEAR(self.similarity, 1.0, 1e-12);
  EXPECT_THROW(generated_fisher_stats(model, 1, seed), c10::Error);
}

// A snapshot's point from its definition (AFV): z and I (floored at 1e-3 · mean I) from the
// explicit per-example gradients of the generator's samples, ū of each real set, then
// similarity exp(−c · mean((ū − z)² / I)) and distance ‖(ū − z) / √I‖. The model is loaded as
// the monitor loads it (float32, so that the same h are drawn); the moments are taken in float64.
GanMonitorPoint explicit_monitor_point(const std::string& snapshot, const torch::Tensor& train,
                                       const torch::Tensor& test, const GanMonitorOptions& o) {
  ModelOptions mo;
  mo.model_path = snapshot + "/discriminator.zoo";
  mo.generator_path = snapshot + "/generator.zoo";
  mo.latent_dim = 6;
  auto model = load_score_model(ModelKind::kGan, mo);
  auto jg = test::explicit_jacobian(model, model.sample(o.samples, o.seed), 1).to(torch::kFloat64);
  auto z = jg.mean(0);
  auto fisher = (jg - z).square().mean(0);
  fisher = fisher.clamp_min(1e-3 * fisher.mean().item<double>());
  auto v_of = [&](const torch::Tensor& real) {
    return (test::explicit_jacobian(model, real, 1).to(torch::kFloat64).mean(0) - z) /
           fisher.sqrt();
  };
  auto v_train = v_of(train), v_test = v_of(test);
  GanMonitorPoint p;
  p.train_similarity = std::exp(-o.scale * v_train.square().mean().item<double>());
  p.test_similarity = std::exp(-o.scale * v_test.square().mean().item<double>());
  p.train_distance = v_train.norm().item<double>();
  p.test_distance = v_test.norm().item<double>();
  return p;
}

TEST(GanEval, MonitorReadsSnapshotsInEpochOrder) {
  auto dir = test::temp_dir("monitor");
  auto c = test::small_gan(dir);
  // Epoch 4: the test GAN; epoch 2: another discriminator (init seed 5), the same generator.
  for (int64_t epoch : {4, 2}) {
    char name[32];
    std::snprintf(name, sizeof(name), "/snap/epoch_%04lld", static_cast<long long>(epoch));
    std::filesystem::create_directories(dir + name);
    if (epoch == 4) {
      std::filesystem::copy_file(c.options.model_path, dir + name + "/discriminator.zoo",
                                 std::filesystem::copy_options::overwrite_existing);
    } else {
      test::save_zoo(dir + name, "discriminator", "dcgan-d", {{"image_size", 12}, {"width", 4}}, 5);
    }
    std::filesystem::copy_file(c.options.generator_path, dir + name + "/generator.zoo",
                               std::filesystem::copy_options::overwrite_existing);
  }
  GanMonitorOptions o;
  o.samples = 30;
  o.seed = 3;
  // Not the default c = 1 (a dropped c fails), and small enough that the similarities stay in
  // (0, 1) where their exponents can be compared: mean((ū − z)² / I) is ~1e3 here.
  o.scale = 1e-3;
  auto x = c.x.to(torch::kFloat32);
  auto train = x.slice(0, 0, 30), test = x.slice(0, 30, 60);
  auto pts = monitor_gan_snapshots(dir + "/snap", train, test, o);
  ASSERT_EQ(pts.size(), 2u);
  EXPECT_EQ(pts[0].epoch, 2);
  EXPECT_EQ(pts[1].epoch, 4);
  for (size_t i = 0; i < pts.size(); ++i) {
    const auto want = explicit_monitor_point(
        dir + (i == 0 ? "/snap/epoch_0002" : "/snap/epoch_0004"), train, test, o);
    const auto& got = pts[i];
    std::printf("[ measured ] epoch %lld: similarity train %.6g test %.6g, distance %.6g %.6g\n",
                static_cast<long long>(got.epoch), got.train_similarity, got.test_similarity,
                got.train_distance, got.test_distance);
    // Values strictly inside (0, 1), so that the exponent is compared (float32 gradients).
    for (double s : {want.train_similarity, want.test_similarity}) {
      EXPECT_GT(s, 1e-6);
      EXPECT_LT(s, 1 - 1e-3);
    }
    EXPECT_NEAR(std::log(got.train_similarity), std::log(want.train_similarity),
                1e-4 * std::abs(std::log(want.train_similarity)));
    EXPECT_NEAR(std::log(got.test_similarity), std::log(want.test_similarity),
                1e-4 * std::abs(std::log(want.test_similarity)));
    EXPECT_NEAR(got.train_distance, want.train_distance, 1e-4 * want.train_distance);
    EXPECT_NEAR(got.test_distance, want.test_distance, 1e-4 * want.test_distance);
  }
  // The two discriminators see the sets differently: the points are not one repeated value.
  EXPECT_GT(std::abs(pts[0].test_distance - pts[1].test_distance), 1e-3 * pts[1].test_distance);
  EXPECT_THROW(monitor_gan_snapshots(dir + "/missing", x, x, o), c10::Error);
}

}  // namespace
}  // namespace nfk
