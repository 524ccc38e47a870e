#pragma once
// CholeskyQR2, behind orthonormal_basis (internal to linalg/; tests reach it through src/).
#include <torch/torch.h>

namespace nfk {

/// CholeskyQR2 (Fukaya, Nakatsukasa, Yanagisawa & Yamamoto 2014): twice G = AᵀA (in float64),
/// R = chol(G)ᵀ, A ← A R⁻¹. Returns an undefined tensor when the Gram matrix is not numerically
/// positive definite or A too ill-conditioned for A R⁻¹ in A's dtype (diag(R) spread beyond 1e4
/// in float32, 1e6 in float64): rank-deficient inputs go to Householder QR.
torch::Tensor cholesky_qr2(const torch::Tensor& a);

}  // namespace nfk
