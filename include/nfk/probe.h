#pragma once
/// What a representation is worth, by linear probing: multinomial logistic regression on any
/// features [N, D] (NFK embeddings, pixels, PCA, activations, full Fisher vectors).
/// kNN classification: knn.h; the semi-supervised protocol: semi_supervised.h.

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

}  // namespace nfk
