#pragma once
/// Continual-learning protocols (SPEC §1b "Uses", issue "The Fisher at work"): the standard
/// benchmarks built from MNIST / Fashion-MNIST, one network trained on their tasks in order with
/// a penalty of include/nfk/ewc.h, and the accuracy matrix after every task.
///
///   permuted-*  domain-incremental: task t is the whole set under a fixed pixel permutation
///               (every task permuted, seeded by the benchmark seed), one 10-way head;
///   split-*     five two-class tasks {0,1}, {2,3}, …: "task" scenario (task-incremental: the
///               task's two logits, multi-head by masking, at training and test time) or "class"
///               scenario (class-incremental: one 10-way head, no task identity at test time).
/// Each task's training set loses its last `validation_fraction` to a validation split, on which
/// a λ grid is chosen (never on the test set).

#include <cstdint>
#include <string>
#include <vector>

#include "nfk/data.h"
#include "nfk/ewc.h"
#include "nfk/progress.h"

namespace nfk {

/// One task: its data splits and, for task-incremental tasks, its classes (else empty).
struct ContinualTask {
  std::string name;
  Dataset train, validation, test;
  std::vector<int64_t> classes;
};

struct ContinualBenchmarkOptions {
  std::string benchmark = "permuted-mnist";  // permuted-|split- × mnist|fashion
  int64_t tasks = 0;                         // 0: 10 (permuted) or 5 (split)
  std::string scenario = "task";             // split only: "task" or "class"
  int64_t train_examples = 0;                // per task, before the validation split (0: all)
  int64_t test_examples = 0;                 // per task (0: all)
  double validation_fraction = 0.1;
  uint64_t seed = 0;  // permutations
};

/// The tasks of a benchmark, in training order. Throws on unknown names or counts.
std::vector<ContinualTask> make_continual_benchmark(const ContinualBenchmarkOptions& options);

/// How the network is trained on each task.
struct ContinualTrainOptions {
  std::vector<int64_t> hidden = {400, 400};  // MLP widths (the zoo's mlp)
  std::string activation = "tanh";           // of its hidden layers: "tanh" | "relu"
  int64_t epochs = 1;                        // per task
  int64_t batch_size = 128;
  double learning_rate = 1e-3;  // Adam, its state kept across tasks
  uint64_t seed = 0;            // initialisation and shuffles
};

/// Accuracy after each task: acc[t][j] = accuracy on task j's split after training task t.
struct ContinualResult {
  std::vector<std::vector<double>> test_accuracy, validation_accuracy;
  double average_test_accuracy = 0;        // mean of the last row
  double average_validation_accuracy = 0;  // mean of the last row
  std::vector<double> task_seconds;        // training + consolidation per task
};

/// Trains one network on `tasks` in order with `penalty`'s method (consolidating after each
/// task) and evaluates every task after each. Progress: ("task t/T", examples, total).
ContinualResult run_continual(const std::vector<ContinualTask>& tasks,
                              const ContinualTrainOptions& train, const EwcOptions& penalty,
                              const ProgressFn& progress = {});

}  // namespace nfk
