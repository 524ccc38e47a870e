#include "nfk/sharded_operator.h"

#include <numeric>

namespace nfk {

ShardedOperator::ShardedOperator(LinearOperator& local, dist::Group& group,
                                 std::vector<int64_t> rows_per_rank)
    : local_(local), group_(group), rows_per_rank_(std::move(rows_per_rank)) {
  TORCH_CHECK(static_cast<int>(rows_per_rank_.size()) == group_.world_size(),
              "nfk: ShardedOperator needs one row count per rank, got ", rows_per_rank_.size(),
              " for ", group_.world_size(), " ranks");
  TORCH_CHECK(rows_per_rank_[group_.rank()] == local_.rows(), "nfk: rank ", group_.rank(),
              " holds ", local_.rows(), " rows, expected ", rows_per_rank_[group_.rank()]);
  rows_ = std::accumulate(rows_per_rank_.begin(), rows_per_rank_.end(), int64_t{0});
  begin_ =
      std::accumulate(rows_per_rank_.begin(), rows_per_rank_.begin() + group_.rank(), int64_t{0});
}

torch::Tensor ShardedOperator::apply(const torch::Tensor& q_pu) {
  return group_.allgather_rows(local_.apply(q_pu), rows_per_rank_);
}

torch::Tensor ShardedOperator::apply_t(const torch::Tensor& m_nu) {
  TORCH_CHECK(m_nu.dim() == 2 && m_nu.size(0) == rows_, "nfk: apply_t expects M [", rows_,
              ", u], got ", m_nu.sizes());
  auto local_m = m_nu.slice(/*dim=*/0, begin_, begin_ + local_.rows());
  return group_.allreduce_sum(local_.apply_t(local_m));
}

std::pair<torch::Tensor, torch::Tensor> ShardedOperator::apply_pair(const torch::Tensor& q_pu,
                                                                    const torch::Tensor& m_nl) {
  TORCH_CHECK(m_nl.dim() == 2 && m_nl.size(0) == rows_, "nfk: apply_pair expects M [", rows_,
              ", l], got ", m_nl.sizes());
  auto [vq, vtm] = local_.apply_pair(q_pu, m_nl.slice(/*dim=*/0, begin_, begin_ + local_.rows()));
  return {group_.allgather_rows(vq, rows_per_rank_), group_.allreduce_sum(vtm)};
}

torch::Tensor ShardedOperator::apply_gram(const torch::Tensor& q_pu) {
  return group_.allreduce_sum(local_.apply_gram(q_pu));
}

torch::Tensor ShardedOperator::dense() {
  return group_.allgather_rows(local_.dense(), rows_per_rank_);
}

double ShardedOperator::squared_frobenius() {
  const double local = local_.squared_frobenius();
  if (local < 0) return local;
  return group_.allreduce_sum(torch::tensor({local}, torch::kFloat64)).item<double>();
}

}  // namespace nfk
