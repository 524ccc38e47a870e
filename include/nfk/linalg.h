#pragma once
/// nfk linear algebra: truncated SVD of an operator V ∈ R^{N×P} that is known only through its
/// products. Knows nothing about models (SPEC §4): every algorithm consumes `LinearOperator`.

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "nfk/names.h"
#include "nfk/progress.h"

namespace nfk {

/// A matrix V ∈ R^{N×P} given by its products.
class LinearOperator {
 public:
  virtual ~LinearOperator() = default;
  virtual int64_t rows() const = 0;  // N
  virtual int64_t cols() const = 0;  // P
  /// V Q: Q [P, u] → [N, u].
  virtual torch::Tensor apply(const torch::Tensor& q_pu) = 0;
  /// Vᵀ M: M [N, u] → [P, u].
  virtual torch::Tensor apply_t(const torch::Tensor& m_nu) = 0;
  /// (V Q, Vᵀ M) for Q [P, u] and M [N, l] together. The default makes two passes (apply, then
  /// apply_t); operators that stream V override it to make one, for `sketch_svd`.
  virtual std::pair<torch::Tensor, torch::Tensor> apply_pair(const torch::Tensor& q_pu,
                                                             const torch::Tensor& m_nl);
  /// VᵀV Q: Q [P, u] → [P, u], one power iteration's product. The default makes two passes
  /// (apply, then apply_t); operators with `fuses_gram()` read each block of V once, forming
  /// V_b Q and accumulating V_bᵀ (V_b Q) while the block is at hand.
  virtual torch::Tensor apply_gram(const torch::Tensor& q_pu);
  /// Whether `apply_gram` reads V once (the SVDs then count it as one pass).
  virtual bool fuses_gram() const { return false; }
  /// V itself, [N, P]. The default builds it from apply_t on identity blocks (N passes' worth);
  /// operators that can do better override it.
  virtual torch::Tensor dense();
  /// ‖V‖_F² when the operator knows it exactly (V resident), else a negative number; the SVDs
  /// then report it as the total variance instead of their estimate.
  virtual double squared_frobenius() { return -1; }
  /// dtype and device of the products.
  virtual torch::TensorOptions options() const = 0;
  /// Vᵀ as an operator with fused products where that is as cheap as V's own (null if not):
  /// the SVDs then iterate in the smaller of the two spaces (see `randomized_svd`).
  virtual std::unique_ptr<LinearOperator> transposed() { return nullptr; }
};

/// A materialised V [N, P] as an operator: products are single GEMMs.
class DenseOperator : public LinearOperator {
 public:
  explicit DenseOperator(torch::Tensor v_np) : v_np_(std::move(v_np)) {}
  int64_t rows() const override { return v_np_.size(0); }
  int64_t cols() const override { return v_np_.size(1); }
  torch::Tensor apply(const torch::Tensor& q_pu) override { return v_np_.mm(q_pu); }
  torch::Tensor apply_t(const torch::Tensor& m_nu) override { return v_np_.t().mm(m_nu); }
  /// Σ_b V_bᵀ (V_b Q) over row blocks of about 64 MiB: V read once.
  torch::Tensor apply_gram(const torch::Tensor& q_pu) override;
  bool fuses_gram() const override { return true; }
  torch::Tensor dense() override { return v_np_; }
  double squared_frobenius() override;
  torch::TensorOptions options() const override { return v_np_.options(); }
  /// A view of V's transpose; its `apply_gram` is V(VᵀM) by column blocks of V.
  std::unique_ptr<LinearOperator> transposed() override {
    return std::make_unique<DenseOperator>(v_np_.t());
  }

 private:
  torch::Tensor v_np_;
};

/// Which randomized solver `randomized_svd` runs (SvdOptions::solver).
/// kSubspace: subspace (power) iteration, paper Alg. 4 / Halko et al. 2011 Alg. 4.4: the basis is
///   replaced by orth(VᵀV Q) every iteration;
/// kBlockKrylov: randomized block Krylov (Musco & Musco 2015, "Randomized block Krylov methods
///   for stronger and faster approximate singular value decomposition", Alg. 2): the blocks
///   [VᵀΩ, (VᵀV)VᵀΩ, …] are all kept (each orthonormalised against the previous ones) and the
///   SVD is taken on their span by Rayleigh–Ritz; memory P·u·(iterations + 1). On LeNet-5's
///   spectrum it reaches 2e-4 on the top-32 σ in 6 iterations where subspace iteration needs
///   more than 10 (bench/README.md);
/// kAuto: block Krylov, except subspace where a run is checkpointed or resumed.
enum class SvdSolver { kAuto, kSubspace, kBlockKrylov };
const Names<SvdSolver>& svd_solver_names();  // auto, subspace, block-krylov
inline SvdSolver parse_svd_solver(const std::string& name) {
  return svd_solver_names().parse(name);
}
inline std::string to_string(SvdSolver value) {
  return svd_solver_names().name(value);
}

/// How an iteration multiplies by VᵀV (SvdOptions::gram).
/// kFused: one pass, `apply_gram` (VᵀV Q block by block) where the operator `fuses_gram()`;
/// kTwoPass: V Q, orthonormalised, then Vᵀ(·): two passes (paper Alg. 4);
/// kAuto: fused where the operator fuses, falling back to two-pass for the rest of the run once
///   the Ritz estimate of σ_k/σ_1 drops below `fused_gram_min_ratio(dtype)`.
enum class GramProducts { kAuto, kFused, kTwoPass };

/// The float32 rule: below this σ_k/σ_1 the one-pass VᵀV Q is not trusted and kAuto falls back
/// to two passes. Forming VᵀV squares the condition number: rounding of about eps·σ_1² in a
/// product with VᵀV (or in the Gram Rayleigh–Ritz of block Krylov) swamps σ_k² once
/// (σ_k/σ_1)² < eps, i.e. σ_k/σ_1 < √eps = 3.45e-4 in float32 (1.5e-8 in float64).
double fused_gram_min_ratio(torch::Dtype dtype);

/// The convergence tolerance a negative SvdOptions::tol stands for: 2e-4 in float32 (SPEC §5's
/// accuracy target on the top-k σ), 1e-8 in float64 (validation runs, held to 1e-6).
double default_svd_tol(torch::Dtype dtype);

/// Options of the randomized truncated SVD (paper Alg. 4; Halko et al. 2011, Alg. 4.4).
struct SvdOptions {
  int64_t rank = 32;         // k: components kept
  int64_t oversample = 10;   // extra probes: u = k + oversample
  int64_t power_iters = 10;  // L: the most iterations (each one VᵀV product)
  uint64_t seed = 0;         // seeds the Gaussian probes
  /// Stop once the estimated relative error of the top-k σ (from the Ritz values of successive
  /// iterates, extrapolated geometrically) is at most `tol`; 0 runs all L iterations; < 0:
  /// `default_svd_tol` of the operator's dtype.
  double tol = -1;
  SvdSolver solver = SvdSolver::kAuto;
  GramProducts gram = GramProducts::kAuto;
  /// Where V is wide (N < P) and its operator has no fused transpose (V streamed): iterate on
  /// Vᵀ all the same, through V's own products (two passes per iteration, N-long bases). The
  /// fit's plan sets it for block Krylov when its P-long basis would not fit in memory. Not for
  /// operators whose rows are sharded across processes.
  bool transpose_wide = false;
};

/// Truncated SVD V ≈ Φ diag(σ) Pᵀ.
struct SvdResult {
  torch::Tensor left;                 // Φ [N, k], orthonormal columns
  torch::Tensor singular_values;      // σ [k], descending
  torch::Tensor right;                // P [P, k], orthonormal columns
  double total_variance = 0;          // ‖V‖_F² = Σ all σ², for explained-variance ratios
  bool total_variance_exact = false;  // false: Hutchinson estimate from the first probes
                                      // (true where the operator knows ‖V‖_F²)
  torch::Tensor
      all_eigenvalues;          // exact method only: every Gram eigenvalue, descending [min(N, P)]
  int64_t iterations = 0;       // power / Krylov iterations made (≤ SvdOptions::power_iters)
  int64_t passes = 0;           // passes over V (a fused VᵀV Q counts one; the exact method one)
  double estimated_error = -1;  // estimated max relative error of the top-k σ when the run
                                // ended (-1: fewer than two Ritz estimates; 0 for exact)
  bool fused = false;           // the iterations used the one-pass VᵀV Q
};

/// Where a randomized SVD stands after `iteration` of its power iterations (0: after the first
/// pass VᵀΩ): the orthonormal basis Q [P, u] and the total-variance estimate. Resuming from it
/// gives the uninterrupted run's result bit for bit.
struct SvdState {
  int64_t iteration = 0;
  torch::Tensor q_pu;
  double total_variance = 0;
};
using SvdCheckpointFn = std::function<void(const SvdState&)>;

/// Matrix-free randomized SVD (u = k + oversample columns per product, orthonormalised after
/// every product): VᵀΩ, then at most L iterations of the solver, then V Q and a small SVD.
/// Passes over V: L + 2 with fused VᵀV products, 2·L + 2 with two-pass ones (block Krylov
/// two-pass: its last V·basis is the Rayleigh–Ritz, no separate final product). With `tol` > 0 it
/// stops early once the top-k σ have converged (SvdResult::iterations, passes, estimated_error).
/// Where V is wider than tall (N < P) and `op.transposed()` exists (V resident), a run that is
/// not checkpointed iterates on Vᵀ instead: the same passes over V, but its bases and their
/// orthogonalisation are N rather than P long (`SvdOptions::transpose_wide`: also without one).
/// Signs are fixed so that the largest-magnitude entry of each P column is positive.
/// `checkpoint` (if set) gets the state after the first pass and after every power iteration;
/// `resume` (if not null) continues from such a state instead of starting over (subspace solver
/// only; the convergence history starts over, so resumable runs use tol = 0 and kTwoPass to be
/// bit for bit the uninterrupted run).
/// Example: `auto r = nfk::randomized_svd(op, {.rank = 16});`
SvdResult randomized_svd(LinearOperator& op, const SvdOptions& options,
                         const ProgressFn& progress = {}, const SvdState* resume = nullptr,
                         const SvdCheckpointFn& checkpoint = {});

/// Single-pass sketch SVD (Tropp, Yurtsever, Udell & Cevher 2017, "Practical sketching algorithms
/// for low-rank matrix approximation", Alg. 7 with the fixed-rank truncation of §5): one
/// `apply_pair` call takes the range sketch Y = VΩ (s = k + oversample columns) and the co-range
/// sketch W = ΨᵀV (l = 2s + 1 rows) in a single pass over V; then Q = qr(Y), X = (ΨᵀQ)⁺W,
/// V ≈ Q X and the top k of svd(X). Less accurate than `randomized_svd` when the spectrum decays
/// slowly (no power iterations), but it reads V once. The total variance is the Hutchinson
/// estimate ‖W‖_F² / l. Same sign convention as `randomized_svd`.
SvdResult sketch_svd(LinearOperator& op, const SvdOptions& options,
                     const ProgressFn& progress = {});

/// Exact truncated SVD of a materialised V [N, P] (paper Alg. 1): eigendecomposition of the
/// smaller Gram matrix (VVᵀ or VᵀV), formed and eigendecomposed in float64 whatever V's dtype
/// (a float32 Gram would lose σ_j/σ_1 below √eps, the float32 rule), results in V's dtype.
/// Cost: N·P·min(N, P) multiply-adds for the Gram plus about 9·min(N, P)³ for the eigensolver.
/// Same sign convention as `randomized_svd`.
SvdResult exact_svd(const torch::Tensor& v_np, int64_t rank);

/// An orthonormal basis Q [m, u] of the columns of A [m, u] (m ≥ u) as the SVDs use it:
/// CholeskyQR2 on CUDA for tall A (two passes of Gram, Cholesky, Q = A R⁻¹: GEMMs, where
/// Householder QR's panels are a chain of small kernels), Householder QR elsewhere and whenever
/// CholeskyQR2 declines.
torch::Tensor orthonormal_basis(const torch::Tensor& a);

/// ‖A‖_F² accumulated in float64, a block of rows at a time (no full-size temporaries).
double squared_norm(const torch::Tensor& a);

/// Cosines of the principal angles between the column spaces of A [n, k] and B [n, k]
/// (orthonormalised first), descending.
torch::Tensor principal_cosines(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace nfk
