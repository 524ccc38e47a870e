#include "nfk/distance.h"

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

}  // namespace

SetDistance fisher_set_distance(const Projector& p, ScoreModel& model, const torch::Tensor& a,
                                const torch::Tensor& b, int64_t batch_size,
                                const ProgressFn& progress) {
  TORCH_CHECK(model.num_parameters() == p.n_params(), "nfk::fisher_set_distance: the model has ",
              model.num_parameters(), " parameters but the projector was fitted with ",
              p.n_params());
  auto diff = mean_fisher_vector(p, model, a, batch_size, progress) -
              mean_fisher_vector(p, model, b, batch_size, progress);  // [P, 1]
  SetDistance d;
  d.fisher = diff.norm().item<double>();
  d.embedding = p.basis.t().mm(diff.to(p.basis.dtype())).norm().item<double>();
  return d;
}

}  // namespace nfk
