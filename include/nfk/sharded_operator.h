#pragma once
/// A LinearOperator whose rows are split over the ranks of a process group (data parallel,
/// SPEC §2 "Distributed"). Each rank holds the operator of its own rows; products are reduced
/// exactly once per call, and every rank gets the full result, so any algorithm that consumes
/// `LinearOperator` (randomized_svd, ...) runs unchanged and identically on every rank.

#include <vector>

#include "nfk/dist.h"
#include "nfk/linalg.h"

namespace nfk {

class ShardedOperator : public LinearOperator {
 public:
  /// `local`: V's rows [shard.begin, shard.end) of this rank; `rows_per_rank`: every rank's row
  /// count (rank order, contiguous). `local` and `group` must outlive this operator.
  ShardedOperator(LinearOperator& local, dist::Group& group, std::vector<int64_t> rows_per_rank);
  int64_t rows() const override { return rows_; }
  int64_t cols() const override { return local_.cols(); }
  /// V Q [N, u]: local rows, all-gathered.
  torch::Tensor apply(const torch::Tensor& q_pu) override;
  /// Vᵀ M [P, u]: this rank's rows of M, all-reduced.
  torch::Tensor apply_t(const torch::Tensor& m_nu) override;
  /// (V Q, Vᵀ M) from one local pass: rows all-gathered, Vᵀ M all-reduced.
  std::pair<torch::Tensor, torch::Tensor> apply_pair(const torch::Tensor& q_pu,
                                                     const torch::Tensor& m_nl) override;
  /// VᵀV Q [P, u]: this rank's Σ_b V_bᵀ(V_b Q), all-reduced (one pass where `local` fuses).
  torch::Tensor apply_gram(const torch::Tensor& q_pu) override;
  bool fuses_gram() const override { return local_.fuses_gram(); }
  /// V [N, P]: local rows, all-gathered (on every rank).
  torch::Tensor dense() override;
  /// Σ over ranks of the local ‖V_r‖_F² (every rank's local operator must know it, or none).
  double squared_frobenius() override;
  torch::TensorOptions options() const override { return local_.options(); }

 private:
  LinearOperator& local_;
  dist::Group& group_;
  std::vector<int64_t> rows_per_rank_;
  int64_t rows_ = 0, begin_ = 0;
};

}  // namespace nfk
