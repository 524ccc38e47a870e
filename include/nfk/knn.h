#pragma once
/// k-nearest-neighbour classification on any features [N, D], with the neighbours and their
/// distances (cosine or Euclidean).

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "nfk/names.h"

namespace nfk {

enum class KnnMetric { kCosine, kEuclidean };
const Names<KnnMetric>& knn_metric_names();  // cosine, euclidean
inline KnnMetric parse_knn_metric(const std::string& name) {
  return knn_metric_names().parse(name);
}

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

}  // namespace nfk
