#pragma once
/// What a representation is worth: linear probing, k-nearest-neighbour classification and the
/// semi-supervised protocol of the NFK paper (few labels per class), on any features [N, D]
/// (NFK embeddings, pixels, PCA, activations, full Fisher vectors).

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nfk {

/// Multinomial logistic regression on standardized features, minimising
///   mean_i CE(W x_i + b, y_i) + (l2 / 2) ‖W‖²      (b unpenalised)
/// with L-BFGS (strong Wolfe line search) to a gradient-norm tolerance: a convex problem solved
/// to its optimum, not a few epochs of SGD.
struct ProbeOptions {
  double l2 = 1e-4;             // fixed penalty (used when l2_grid is empty)
  std::vector<double> l2_grid;  // non-empty: pick l2 by k-fold cross-validation on the train set
  int64_t folds = 3;            // cross-validation folds
  int64_t cv_max_examples = 10000;  // cross-validate on a seeded subset of at most this many
  int64_t max_iter = 1000;          // L-BFGS iterations
  double tolerance = 1e-6;          // stop when the gradient's max-norm falls below
  bool standardize = true;          // z-score each feature with the train mean/std (std 0 → 1)
  torch::Dtype dtype = torch::kFloat64;
  uint64_t seed = 0;  // fold assignment
};

/// The default l2 grid for cross-validation: 1e-6, 1e-5, ..., 1.
std::vector<double> default_l2_grid();

struct LinearProbe {
  torch::Tensor mean, scale;  // [D] standardization (x − mean) / scale
  torch::Tensor weight;       // [D, C]
  torch::Tensor bias;         // [C]
  double l2 = 0;              // the penalty used (chosen by cross-validation if a grid was given)
  double loss = 0;            // final objective
  double grad_norm = 0;       // final gradient max-norm
  int64_t iterations = 0;
  /// logits [M, C] of features [M, D].
  torch::Tensor logits(const torch::Tensor& features) const;
  /// predicted labels [M] int64.
  torch::Tensor predict(const torch::Tensor& features) const;
};

/// Fits the probe on `features` [N, D] (floating) and `labels` [N] (int64 in [0, C)); C is
/// max(label) + 1. Throws on shape mismatch, non-finite features or fewer than 2 classes.
/// Example: `auto p = nfk::fit_linear_probe(e_train, y_train, {});  p.predict(e_test);`
LinearProbe fit_linear_probe(const torch::Tensor& features, const torch::Tensor& labels,
                             const ProbeOptions& options);

/// Fraction of `predicted` equal to `labels` (both [N] int64).
double accuracy(const torch::Tensor& predicted, const torch::Tensor& labels);

enum class KnnMetric { kCosine, kEuclidean };
KnnMetric parse_knn_metric(const std::string& name);  // "cosine" | "euclidean"

struct KnnOptions {
  int64_t k = 10;
  KnnMetric metric = KnnMetric::kCosine;
  int64_t batch_size = 1024;  // queries per block of the distance matrix
};

struct KnnResult {
  torch::Tensor predicted;  // [M] int64: majority vote; ties go to the class met first
  torch::Tensor neighbors;  // [M, k] int64 indices into the train set, nearest first
  torch::Tensor distances;  // [M, k] cosine distance (1 − cos) or Euclidean distance
};

/// k-nearest-neighbour classification of `queries` [M, D] against `train` [N, D] / `labels` [N].
KnnResult knn_classify(const torch::Tensor& train, const torch::Tensor& labels,
                       const torch::Tensor& queries, const KnnOptions& options);

/// Semi-supervised protocol (NFK paper §4): the representation is learned without labels; a
/// linear probe then sees n labelled examples per class, drawn with `seeds` different seeds.
struct SemiSupervisedOptions {
  std::vector<int64_t> labels_per_class = {10, 50, 100};
  int64_t seeds = 5;
  uint64_t seed = 0;
  ProbeOptions probe;  // with l2_grid set, l2 is cross-validated on the few labels themselves
};

struct SemiSupervisedRow {
  int64_t labels_per_class = 0;
  std::vector<double> accuracies;  // one per seed
  double mean = 0, std = 0;        // std: sample standard deviation over seeds
};

std::vector<SemiSupervisedRow> semi_supervised(const torch::Tensor& train_features,
                                               const torch::Tensor& train_labels,
                                               const torch::Tensor& test_features,
                                               const torch::Tensor& test_labels,
                                               const SemiSupervisedOptions& options);

/// n examples of each class drawn without replacement (seeded) → indices [n·C] int64.
torch::Tensor sample_per_class(const torch::Tensor& labels, int64_t n, uint64_t seed);

}  // namespace nfk
