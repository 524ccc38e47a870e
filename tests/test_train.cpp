// Training runs on tiny synthetic sets: losses fall, checkpoints round-trip bit-exactly, and a
// resumed run repeats the uninterrupted run's curve and weights exactly.
#include <filesystem>
#include <fstream>

#include "nfk/gan_eval.h"
#include "nfk/train.h"
#include "support.h"

namespace nfk {
namespace {

// Two classes of 12×12 images: a bright left half or a bright right half, plus noise.
Dataset two_blobs(int64_t n, uint64_t seed) {
  test::seed(seed);
  auto labels = torch::randint(0, 2, {n}, torch::kLong);
  auto x = torch::rand({n, 1, 12, 12}) * 0.2;
  auto left = x.slice(3, 0, 6), right = x.slice(3, 6, 12);
  auto mask = labels.view({-1, 1, 1, 1}).to(torch::kFloat32);
  left.add_((1 - mask) * 0.7);
  right.add_(mask * 0.7);
  return {x, labels};
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool same_weights(const std::string& a, const std::string& b) {
  auto ma = load_zoo_module(a), mb = load_zoo_module(b);
  auto pa = ma.module->parameters(), pb = mb.module->parameters();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i) {
    if (!torch::equal(pa[i], pb[i])) return false;
  }
  return true;
}

TrainRun tiny_run(const std::string& dir, int64_t epochs) {
  TrainRun run;
  run.out_dir = dir;
  run.epochs = epochs;
  run.batch_size = 32;
  run.seed = 5;
  return run;
}

TEST(TrainClassifier, LossFallsAndResumeRepeatsTheCurve) {
  auto data = two_blobs(256, 1);
  ClassifierTrainOptions o;
  o.learning_rate = 3e-3;
  auto dir = test::temp_dir("train_cls");
  auto full = train_classifier(data, data, tiny_run(dir + "/full", 3), o);
  const auto& epochs = full["epochs"];
  EXPECT_LT(epochs[2]["loss"].get<double>(), 0.5 * epochs[0]["loss"].get<double>());
  EXPECT_GT(full["test_accuracy"].get<double>(), 0.95);

  train_classifier(data, data, tiny_run(dir + "/split", 1), o);
  auto resumed = train_classifier(data, data, tiny_run(dir + "/split", 3), o);
  EXPECT_EQ(resumed["epochs"].dump(), full["epochs"].dump());
  EXPECT_TRUE(same_weights(dir + "/full/classifier.zoo", dir + "/split/classifier.zoo"));
}

// Evaluations inside epochs: one every `eval_every` steps, counted across epochs; one that falls
// on an epoch's last step sees the same weights as the epoch-end accuracy; a resumed run repeats
// them (all but the clock).
TEST(TrainClassifier, EvaluationsEveryNStepsAlignWithTheEpochEnds) {
  auto data = two_blobs(96, 2), test_set = two_blobs(64, 3);  // 3 steps of 32 per epoch
  ClassifierTrainOptions o;
  o.learning_rate = 3e-3;
  o.eval_every = 2;
  auto dir = test::temp_dir("train_evals");
  auto full = train_classifier(data, test_set, tiny_run(dir + "/full", 4), o);
  const auto& evals = full["evaluations"];
  ASSERT_EQ(evals.size(), 6u);  // steps 2, 4, ..., 12 of 12
  for (size_t i = 0; i < evals.size(); ++i) {
    EXPECT_EQ(evals[i]["step"].get<int64_t>(), 2 * static_cast<int64_t>(i + 1));
    EXPECT_DOUBLE_EQ(evals[i]["epoch"].get<double>(), 2.0 * static_cast<double>(i + 1) / 3.0);
    if (i > 0) EXPECT_GE(evals[i]["train_seconds"], evals[i - 1]["train_seconds"]);
  }
  // Step 6 ends epoch 2 and step 12 epoch 4: the same weights as those epochs' accuracies.
  EXPECT_EQ(evals[2]["test_accuracy"], full["epochs"][1]["test_accuracy"]);
  EXPECT_EQ(evals[5]["test_accuracy"], full["epochs"][3]["test_accuracy"]);

  train_classifier(data, test_set, tiny_run(dir + "/split", 2), o);
  auto resumed = train_classifier(data, test_set, tiny_run(dir + "/split", 4), o);
  ASSERT_EQ(resumed["evaluations"].size(), evals.size());
  for (size_t i = 0; i < evals.size(); ++i) {
    EXPECT_EQ(resumed["evaluations"][i]["step"], evals[i]["step"]);
    EXPECT_EQ(resumed["evaluations"][i]["test_accuracy"], evals[i]["test_accuracy"]);
  }
  o.eval_every = 0;
  EXPECT_FALSE(
      train_classifier(data, test_set, tiny_run(dir + "/none", 1), o).contains("evaluations"));
  o.eval_every = 2;
  EXPECT_THROW(train_classifier(data, Dataset{}, tiny_run(dir + "/nolabels", 1), o), c10::Error);
}

// The Fisher-similarity monitor of eval/, wired into the loop as the CLI does it.
TrainHooks fisher_monitor(const torch::Tensor& held_out, uint64_t seed) {
  GanTrainingMonitorOptions monitor;
  monitor.samples = 40;
  monitor.seed = seed;
  TrainHooks hooks;
  hooks.epoch_end.push_back(
      {"fisher_similarity", [=](Trainer& t, int64_t epochs_done, nlohmann::json& entry) {
         auto fs = gan_training_fisher_similarity(t.module("discriminator"), t.module("generator"),
                                                  held_out, epochs_done, monitor);
         entry["fisher_similarity"] = fs.similarity;
         entry["fisher_distance"] = fs.distance;
       }});
  return hooks;
}

TEST(TrainGan, LossesAreFiniteMonitoringRunsAndResumeRepeatsTheCurve) {
  auto data = two_blobs(128, 2);
  GanTrainOptions o;
  o.latent_dim = 8;
  o.width = 4;
  auto dir = test::temp_dir("train_gan");
  const auto hooks = fisher_monitor(data.inputs, /*seed=*/5);
  auto full = train_gan(data, tiny_run(dir + "/full", 2), o, {}, hooks);
  ASSERT_EQ(full["epochs"].size(), 2u);
  for (const auto& e : full["epochs"]) {
    EXPECT_TRUE(std::isfinite(e["loss_d"].get<double>()));
    EXPECT_TRUE(std::isfinite(e["loss_g"].get<double>()));
    const double fs = e["fisher_similarity"].get<double>();
    EXPECT_TRUE(fs >= 0 && fs <= 1) << fs;
  }
  train_gan(data, tiny_run(dir + "/split", 1), o, {}, hooks);
  auto resumed = train_gan(data, tiny_run(dir + "/split", 2), o, {}, hooks);
  EXPECT_EQ(resumed["epochs"].dump(), full["epochs"].dump());
  EXPECT_TRUE(same_weights(dir + "/full/discriminator.zoo", dir + "/split/discriminator.zoo"));
  EXPECT_TRUE(same_weights(dir + "/full/generator.zoo", dir + "/split/generator.zoo"));

  // The MCMC-inspired generator update with real-example mixing also trains.
  o.mcmc_step = 0.01;
  o.real_mix = 0.2;
  auto mcmc = train_gan(data, tiny_run(dir + "/mcmc", 1), o);
  EXPECT_TRUE(std::isfinite(mcmc["epochs"][0]["loss_g"].get<double>()));
}

TEST(TrainGan, DiscriminatorLearnsToSeparateRealFromGenerated) {
  auto data = two_blobs(256, 3);
  GanTrainOptions o;
  o.latent_dim = 8;
  o.width = 8;
  o.lr_g = 0;  // a frozen generator: D alone must learn to tell its samples from the data
  o.lr_d = 2e-3;
  auto log = train_gan(data, tiny_run(test::temp_dir("train_gan_d"), 5), o);
  const auto& last = log["epochs"].back();
  EXPECT_GT(last["d_real"].get<double>(), last["d_fake"].get<double>() + 1.0);
  EXPECT_LT(last["loss_d"].get<double>(), log["epochs"][0]["loss_d"].get<double>());
}

TEST(Checkpoint, ZooArchivesRoundTripBitExactly) {
  auto dir = test::temp_dir("zoo_rt");
  test::seed(4);
  auto zoo = make_zoo_module("dcgan-g", {{"latent_dim", 5}, {"width", 4}, {"image_size", 8}});
  save_zoo_module(dir + "/a.zoo", zoo);
  auto back = load_zoo_module(dir + "/a.zoo");
  save_zoo_module(dir + "/b.zoo", back);
  EXPECT_EQ(back.options, zoo.options);
  EXPECT_TRUE(same_weights(dir + "/a.zoo", dir + "/b.zoo"));
  auto h = torch::randn({3, 5});
  zoo.module->eval();
  back.module->eval();
  EXPECT_TRUE(torch::equal(zoo.forward(h), back.forward(h)));
}

}  // namespace
}  // namespace nfk
