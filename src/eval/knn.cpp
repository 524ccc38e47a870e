#include "nfk/knn.h"

#include <string>

#include "nfk/data.h"

namespace nfk {

const Names<KnnMetric>& knn_metric_names() {
  static const Names<KnnMetric> names(
      "kNN metric", {{KnnMetric::kCosine, "cosine"}, {KnnMetric::kEuclidean, "euclidean"}});
  return names;
}

KnnResult knn_classify(const torch::Tensor& train, const torch::Tensor& labels,
                       const torch::Tensor& queries, const KnnOptions& o) {
  TORCH_CHECK(train.dim() == 2 && queries.dim() == 2 && train.size(1) == queries.size(1),
              "nfk: kNN needs train [N, D] and queries [M, D], got ", train.sizes(), " and ",
              queries.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == train.size(0),
              "nfk: kNN labels must be [N] with N = ", train.size(0));
  TORCH_CHECK(o.k >= 1 && o.k <= train.size(0), "nfk: kNN k must be in [1, ", train.size(0),
              "], got ", o.k);
  TORCH_CHECK(o.batch_size > 0, "nfk: kNN batch size must be positive");
  check_finite(train, "kNN train features");
  check_finite(queries, "kNN query features");
  torch::NoGradGuard no_grad;
  const auto dtype = torch::kFloat64;
  auto x = train.to(dtype).cpu(), y = labels.to(torch::kLong).cpu();
  const int64_t classes = y.max().item<int64_t>() + 1, m = queries.size(0);
  const bool cosine = o.metric == KnnMetric::kCosine;
  // Zero rows have no direction: their cosine distance to everything is 1.
  auto unit = [](const torch::Tensor& t) { return t / t.norm(2, 1, true).clamp_min(1e-300); };
  if (cosine) x = unit(x);
  auto x_sq = x.square().sum(1);  // [N]
  KnnResult r;
  r.predicted = torch::empty({m}, torch::kLong);
  r.neighbors = torch::empty({m, o.k}, torch::kLong);
  r.distances = torch::empty({m, o.k}, dtype);
  for (int64_t start = 0; start < m; start += o.batch_size) {
    const int64_t end = std::min(m, start + o.batch_size);
    auto q = queries.slice(0, start, end).to(dtype).cpu();
    if (cosine) q = unit(q);
    auto dots = q.mm(x.t());  // [B, N]
    torch::Tensor dist =
        cosine ? 1 - dots : (q.square().sum(1, true) + x_sq.unsqueeze(0) - 2 * dots).clamp_min(0);
    auto [d_bk, i_bk] = dist.topk(o.k, /*dim=*/1, /*largest=*/false, /*sorted=*/true);
    if (!cosine) d_bk = d_bk.sqrt();
    // Majority vote; a tie goes to the tied class whose first neighbour is nearest.
    auto votes = y.index({i_bk});  // [B, k]
    auto counts = torch::zeros({end - start, classes}, torch::kLong)
                      .scatter_add_(1, votes, torch::ones_like(votes));
    // Each class's nearest rank (k: none), written from the farthest neighbour to the nearest
    // so that the nearest stays (scatter_reduce's "amin" would do it too, with a beta warning).
    auto first = torch::full({end - start, classes}, o.k, torch::kLong);
    for (int64_t j = o.k - 1; j >= 0; --j) first.scatter_(1, votes.slice(1, j, j + 1), j);
    r.predicted.slice(0, start, end).copy_((counts * (o.k + 1) - first).argmax(1));
    r.neighbors.slice(0, start, end).copy_(i_bk);
    r.distances.slice(0, start, end).copy_(d_bk);
  }
  return r;
}

}  // namespace nfk
