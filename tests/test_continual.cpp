// Continual-learning benchmarks and the protocol runner (include/nfk/continual.h): what each
// task holds, the validation split, and the accuracy matrix of a seeded run.
#include "nfk/continual.h"
#include "support.h"

namespace nfk {
namespace {

ContinualBenchmarkOptions small(const std::string& name, const std::string& scenario = "task") {
  ContinualBenchmarkOptions o;
  o.benchmark = name;
  o.scenario = scenario;
  o.train_examples = 300;
  o.test_examples = 100;
  o.tasks = 3;
  return o;
}

TEST(Continual, PermutedTasksPermuteTheSameImagesWithFixedPermutations) {
  auto tasks = make_continual_benchmark(small("permuted-mnist"));
  ASSERT_EQ(tasks.size(), 3u);
  for (const auto& t : tasks) {
    EXPECT_EQ(t.train.inputs.size(0), 270);  // 300 minus the last 10% for validation
    EXPECT_EQ(t.validation.inputs.size(0), 30);
    EXPECT_EQ(t.test.inputs.size(0), 100);
    EXPECT_TRUE(t.classes.empty());
    // The same images: each example's sorted pixels and the labels agree with task 0's.
    EXPECT_TRUE(torch::equal(std::get<0>(t.train.inputs.flatten(1).sort(1)),
                             std::get<0>(tasks[0].train.inputs.flatten(1).sort(1))));
    EXPECT_TRUE(torch::equal(t.test.labels, tasks[0].test.labels));
  }
  EXPECT_FALSE(torch::equal(tasks[0].train.inputs, tasks[1].train.inputs));
  auto again = make_continual_benchmark(small("permuted-mnist"));
  EXPECT_TRUE(torch::equal(again[2].test.inputs, tasks[2].test.inputs));  // seeded
}

TEST(Continual, SplitTasksHoldTheirTwoClasses) {
  for (const std::string scenario : {"task", "class"}) {
    auto tasks = make_continual_benchmark(small("split-fashion", scenario));
    for (size_t t = 0; t < tasks.size(); ++t) {
      const int64_t a = 2 * static_cast<int64_t>(t);
      for (const auto* d : {&tasks[t].train, &tasks[t].validation, &tasks[t].test}) {
        EXPECT_TRUE(((d->labels == a) | (d->labels == a + 1)).all().item<bool>());
        EXPECT_TRUE((d->labels == a).any().item<bool>());
      }
      if (scenario == "task") {
        EXPECT_EQ(tasks[t].classes, (std::vector<int64_t>{a, a + 1}));
      } else {
        EXPECT_TRUE(tasks[t].classes.empty());
      }
    }
  }
  auto bad = small("split-mnist");
  bad.tasks = 6;
  EXPECT_NE(test::error_of([&] { make_continual_benchmark(bad); }).find("at most 5"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              make_continual_benchmark(small("rotated-mnist"));
            }).find("unknown continual benchmark"),
            std::string::npos);
}

TEST(Continual, RunGivesASeededAccuracyMatrix) {
  auto tasks = make_continual_benchmark(small("split-mnist"));
  ContinualTrainOptions train;
  train.hidden = {32};
  train.batch_size = 32;
  train.epochs = 3;
  EwcOptions ewc;
  ewc.lambda = 100;
  ewc.fisher_examples = 100;
  auto a = run_continual(tasks, train, ewc);
  ASSERT_EQ(a.test_accuracy.size(), 3u);
  for (const auto& row : a.test_accuracy) ASSERT_EQ(row.size(), 3u);
  // Task-incremental MNIST pairs are easy: the task just trained is learnt.
  for (size_t t = 0; t < 3; ++t) EXPECT_GT(a.test_accuracy[t][t], 0.85) << t;
  double last = 0;
  for (double x : a.test_accuracy.back()) last += x / 3;
  EXPECT_DOUBLE_EQ(a.average_test_accuracy, last);
  auto b = run_continual(tasks, train, ewc);
  EXPECT_EQ(a.test_accuracy, b.test_accuracy);  // same seed, same numbers
}

}  // namespace
}  // namespace nfk
