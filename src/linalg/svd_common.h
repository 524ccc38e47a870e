#pragma once
// What the truncated SVDs of linalg/ share (internal): argument checks, the finiteness guard of
// every product, the sign convention, the total variance, and the convergence estimate.
#include <torch/torch.h>

#include "nfk/linalg.h"

namespace nfk::detail {

/// ATen settles its OpenMP thread count on the first parallel region; settling it before the
/// first product keeps every call's blocking, and so its last bits, the same.
void fix_thread_count();

/// rank in [1, min(n, p)], else "nfk::<who>: ...".
void check_rank(int64_t rank, int64_t n, int64_t p, const char* who);

/// `product` itself; throws (naming the model's score) when it holds NaN or Inf.
const torch::Tensor& finite(const torch::Tensor& product);

/// Makes each component's largest-magnitude entry of `right` positive, flipping `left` alike.
void fix_signs(SvdResult& r);

/// The operator's exact ‖V‖_F² where it knows it, else `estimate`.
void set_total_variance(SvdResult& r, LinearOperator& op, double estimate);

/// The randomized SVDs' result from the final basis Q [P, u] and B = V Q [N, u]: the top `rank`
/// of svd(B), right vectors Q·W, signs fixed, total variance set.
SvdResult svd_from_basis(const torch::Tensor& q_pu, const torch::Tensor& b_nu, int64_t rank,
                         LinearOperator& op, double total_estimate);

/// The same result from G = BᵀB [u, u] (float64, B = V Q) instead of an SVD of B: σ² and W from
/// eigh(G), right vectors Q·W, left B·W/σ. Where σ_k/σ_1 is below √eps of B's dtype the left
/// vectors would lose their orthogonality, so it takes svd_from_basis's SVD of B instead.
SvdResult svd_from_gram(const torch::Tensor& q_pu, const torch::Tensor& b_nu,
                        const torch::Tensor& g_uu, int64_t rank, LinearOperator& op,
                        double total_estimate);

/// The stopping rule of the iterative SVDs: fed the Ritz estimates of the top-k σ after each
/// iteration, it estimates the remaining relative error as the last change d_i = max_j
/// |σ_j^(i) − σ_j^(i−1)| / σ_j^(i), extrapolated with the observed contraction ρ = d_i / d_{i−1}
/// (geometric convergence: the error left is about d_i·ρ/(1 − ρ)), never below d_i itself.
class ConvergenceMonitor {
 public:
  /// Records σ [k] (any dtype/device); returns the current estimate (-1 until two estimates).
  double update(const torch::Tensor& sigma_k);
  double estimate() const { return estimate_; }
  /// Whether the estimate rests on two changes at least and is at most `tol` (> 0).
  bool converged(double tol) const { return tol > 0 && changes_ >= 2 && estimate_ <= tol; }

 private:
  torch::Tensor previous_;  // [k] float64
  double last_change_ = -1, estimate_ = -1;
  int changes_ = 0;
};

/// σ_k/σ_1 from descending Ritz σ estimates [≥ k].
double ritz_ratio(const torch::Tensor& sigma, int64_t rank);

/// The top `rank` Ritz σ of VᵀV on span(Q) from T = Qᵀ(VᵀV Q) [u, u] (symmetrised, float64).
torch::Tensor gram_ritz_sigma(const torch::Tensor& t_uu, int64_t rank);

}  // namespace nfk::detail
