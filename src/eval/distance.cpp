#include "nfk/distance.h"

#include <limits>

#include "nfk/data.h"
#include "nfk/fisher.h"

namespace nfk {
namespace {

// mean_i V_{x_i} [P, 1] as one streaming VJP with m = 1/N.
torch::Tensor mean_fisher_vector(const Projector& p, ScoreModel& model, const torch::Tensor& x,
                                 int64_t batch_size, const ProgressFn& progress) {
  TORCH_CHECK(x.dim() >= 1 && x.size(0) > 0, "nfk::fisher_set_distance: empty set");
  check_finite(x, "set");
  FisherVectorOperator op(model, x, p.fisher, batch_size, progress);
  auto m = torch::full({x.size(0), 1}, 1.0 / x.size(0), op.options());
  return op.apply_t(m);
}

// Row-to-row Euclidean distances without the |a|² + |b|² − 2a·b shortcut, whose cancellation
// would cost digits for nearby rows.
torch::Tensor exact_cdist(const torch::Tensor& a, const torch::Tensor& b) {
  constexpr int64_t kDoNotUseMm = 2;
  return torch::cdist(a.unsqueeze(0), b.unsqueeze(0), /*p=*/2, kDoNotUseMm).squeeze(0);
}

}  // namespace

SetDistance fisher_set_distance(const Projector& p, ScoreModel& model, const torch::Tensor& a,
                                const torch::Tensor& b, int64_t batch_size,
                                const ProgressFn& progress) {
  check_projector_model(p, model, a);
  check_projector_model(p, model, b);
  auto diff = mean_fisher_vector(p, model, a, batch_size, progress) -
              mean_fisher_vector(p, model, b, batch_size, progress);  // [P, 1]
  SetDistance d;
  d.fisher = diff.norm().item<double>();
  d.embedding = p.basis.t().mm(diff.to(p.basis.dtype())).norm().item<double>();
  return d;
}

torch::Tensor class_distance_matrix(const Projector& p, ScoreModel& model,
                                    const torch::Tensor& inputs, const torch::Tensor& labels,
                                    int64_t batch_size, const ProgressFn& progress) {
  check_projector_model(p, model, inputs);
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == inputs.size(0) && inputs.size(0) > 0,
              "nfk: class distances need labels [N] for N = ", inputs.size(0), " inputs");
  check_finite(inputs, "inputs");
  auto y = labels.to(torch::kLong).cpu();
  const int64_t classes = y.max().item<int64_t>() + 1;
  FisherVectorOperator op(model, inputs, p.fisher, batch_size, progress);
  auto onehot = torch::nn::functional::one_hot(y, classes).to(torch::kFloat64);  // [N, C]
  auto counts = onehot.sum(0);                                                   // [C]
  auto m = (onehot / counts.clamp_min(1)).to(op.options().dtype()).to(op.options().device());
  auto means = op.apply_t(m).to(torch::kFloat64).cpu();  // [P, C] class-mean Fisher vectors
  auto d = exact_cdist(means.t(), means.t());
  auto absent = counts == 0;
  d.index_put_({absent}, std::numeric_limits<double>::quiet_NaN());
  d.index_put_({torch::indexing::Slice(), absent}, std::numeric_limits<double>::quiet_NaN());
  return d;
}

torch::Tensor pairwise_fisher_distances(const Projector& p, ScoreModel& model,
                                        const torch::Tensor& a, const torch::Tensor& b,
                                        int64_t batch_size, const ProgressFn& progress) {
  check_projector_model(p, model, a);
  check_projector_model(p, model, b);
  check_finite(a, "set A");
  check_finite(b, "set B");
  FisherVectorOperator op_a(model, a, p.fisher, batch_size, progress);
  auto va = op_a.dense().to(torch::kFloat64);
  FisherVectorOperator op_b(model, b, p.fisher, batch_size, progress);
  auto vb = op_b.dense().to(torch::kFloat64);
  return exact_cdist(va, vb).cpu();
}

}  // namespace nfk
