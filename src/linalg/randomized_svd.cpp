// randomized_svd: subspace iteration with one-pass VᵀV products, the float32 fallback rule and
// the convergence stop; block Krylov is in block_krylov.cpp.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <utility>

#include "linalg/svd_common.h"

namespace nfk {
namespace detail {
namespace {

// Vᵀ through V's own products: apply is V's apply_t and the reverse; its Gram V(VᵀX) reads V
// twice (no fused form).
class TransposedView : public LinearOperator {
 public:
  explicit TransposedView(LinearOperator& v) : v_(v) {}
  int64_t rows() const override { return v_.cols(); }
  int64_t cols() const override { return v_.rows(); }
  torch::Tensor apply(const torch::Tensor& x_nu) override { return v_.apply_t(x_nu); }
  torch::Tensor apply_t(const torch::Tensor& m_pu) override { return v_.apply(m_pu); }
  double squared_frobenius() override { return v_.squared_frobenius(); }
  torch::TensorOptions options() const override { return v_.options(); }

 private:
  LinearOperator& v_;
};

}  // namespace

SvdResult block_krylov_svd(LinearOperator& op, const SvdOptions& o, const ProgressFn& progress);
SvdResult subspace_svd(LinearOperator& op, const SvdOptions& o, const ProgressFn& progress,
                       const SvdState* resume, const SvdCheckpointFn& checkpoint);

double ConvergenceMonitor::update(const torch::Tensor& sigma_k) {
  auto now = sigma_k.detach().to(torch::kCPU, torch::kFloat64);
  if (previous_.defined() && previous_.numel() == now.numel()) {
    auto scale = now.abs().clamp_min(std::numeric_limits<double>::min());
    const double change = ((now - previous_).abs() / scale).max().item<double>();
    double estimate = change;
    if (last_change_ > 0) {
      // Geometric convergence with ratio ρ leaves about d·ρ/(1 − ρ) after a change d; ρ ≥ 1
      // (no contraction seen yet) counts as far from converged.
      const double rho = change / last_change_;
      estimate = rho < 1 ? std::max(change, change * rho / (1 - rho)) : 10 * change;
    } else if (last_change_ == 0) {
      estimate = change == 0 ? 0 : 10 * change;
    }
    last_change_ = change;
    estimate_ = estimate;
    ++changes_;
  }
  previous_ = now;
  return estimate_;
}

double ritz_ratio(const torch::Tensor& sigma, int64_t rank) {
  const double top = sigma[0].item<double>();
  return top > 0 ? sigma[rank - 1].item<double>() / top : 0;
}

torch::Tensor gram_ritz_sigma(const torch::Tensor& t_uu, int64_t rank) {
  auto t = t_uu.to(torch::kFloat64);
  auto theta = torch::linalg::eigvalsh((t + t.t()) * 0.5, "L").flip(0);  // descending
  return theta.slice(0, 0, rank).clamp_min(0).sqrt();
}

SvdResult svd_from_basis(const torch::Tensor& q_pu, const torch::Tensor& b_nu, int64_t rank,
                         LinearOperator& op, double total_estimate) {
  auto [ub, sb, vhb] = torch::linalg::svd(b_nu, /*full_matrices=*/false, /*driver=*/{});
  SvdResult r;
  r.left = ub.slice(/*dim=*/1, 0, rank).contiguous();
  r.singular_values = sb.slice(0, 0, rank).contiguous();
  r.right = q_pu.mm(vhb.slice(/*dim=*/0, 0, rank).t()).contiguous();
  set_total_variance(r, op, total_estimate);
  fix_signs(r);
  return r;
}

SvdResult svd_from_gram(const torch::Tensor& q_pu, const torch::Tensor& b_nu,
                        const torch::Tensor& g_uu, int64_t rank, LinearOperator& op,
                        double total_estimate) {
  auto g = g_uu.to(torch::kCPU, torch::kFloat64);
  auto [evals, evecs] = torch::linalg::eigh((g + g.t()) * 0.5, "L");  // ascending
  const int64_t u = evals.size(0);
  auto sigma = evals.slice(0, u - rank, u).flip(0).clamp_min(0).sqrt();  // [k] descending
  const double top = sigma[0].item<double>();
  const auto dtype = c10::typeMetaToScalarType(b_nu.dtype());
  if (!(top > 0) || sigma[rank - 1].item<double>() < fused_gram_min_ratio(dtype) * top) {
    return svd_from_basis(q_pu, b_nu, rank, op, total_estimate);
  }
  auto w = evecs.narrow(1, u - rank, rank).flip(1);  // [u, k]
  SvdResult r;
  r.singular_values = sigma.to(b_nu.options());
  r.right = q_pu.mm(w.to(q_pu.options())).contiguous();
  r.left = (b_nu.mm(w.to(b_nu.options())) / r.singular_values).contiguous();
  set_total_variance(r, op, total_estimate);
  fix_signs(r);
  return r;
}

}  // namespace detail

using detail::finite;

SvdResult randomized_svd(LinearOperator& op, const SvdOptions& o, const ProgressFn& progress,
                         const SvdState* resume, const SvdCheckpointFn& checkpoint) {
  detail::fix_thread_count();
  const int64_t n = op.rows(), p = op.cols();
  detail::check_rank(o.rank, n, p, "randomized_svd");
  TORCH_CHECK(o.oversample >= 0 && o.power_iters >= 0,
              "nfk::randomized_svd: oversample and power_iters must be >= 0");
  TORCH_CHECK(std::isfinite(o.tol), "nfk::randomized_svd: tol must be finite, got ", o.tol);
  const auto dtype = c10::typeMetaToScalarType(op.options().dtype());
  SvdOptions o_resolved = o;
  if (o.tol < 0) o_resolved.tol = default_svd_tol(dtype);
  const bool resumable = resume != nullptr || static_cast<bool>(checkpoint);
  TORCH_CHECK(!resumable || o.solver != SvdSolver::kBlockKrylov,
              "nfk::randomized_svd: the block Krylov solver cannot be checkpointed or resumed "
              "(use the subspace solver)");
  auto solve = [&](LinearOperator& a) {
    if (o.solver == SvdSolver::kBlockKrylov || (o.solver == SvdSolver::kAuto && !resumable)) {
      return detail::block_krylov_svd(a, o_resolved, progress);
    }
    return detail::subspace_svd(a, o_resolved, progress, resume, checkpoint);
  };
  // A checkpoint's basis lives in V's column space, so only unresumable runs transpose.
  std::unique_ptr<LinearOperator> vt = n < p && !resumable ? op.transposed() : nullptr;
  if (!vt && n < p && !resumable && o.transpose_wide) {
    vt = std::make_unique<detail::TransposedView>(op);
  }
  if (!vt) return solve(op);
  auto r = solve(*vt);  // Vᵀ = R Σ Lᵀ: its left vectors are V's right ones
  std::swap(r.left, r.right);
  detail::fix_signs(r);
  return r;
}

namespace detail {

SvdResult subspace_svd(LinearOperator& op, const SvdOptions& o, const ProgressFn& progress,
                       const SvdState* resume, const SvdCheckpointFn& checkpoint) {
  const int64_t n = op.rows(), p = op.cols();
  const int64_t u = std::min(o.rank + o.oversample, std::min(n, p));
  bool fused = o.gram != GramProducts::kTwoPass && op.fuses_gram();
  bool fell_back = false;
  const double min_ratio = fused_gram_min_ratio(c10::typeMetaToScalarType(op.options().dtype()));
  ConvergenceMonitor monitor;
  const int64_t steps = (fused ? 1 : 2) * o.power_iters + 2;
  int64_t passes = 0, step = 0;
  auto tick = [&](int64_t pass_count) {
    if (progress) progress("svd", std::min(step, steps), steps);
    step += 1;
    passes += pass_count;
  };

  torch::Tensor q_pu;
  double total = 0;
  int64_t first_iteration = 0;
  if (resume != nullptr) {
    TORCH_CHECK(resume->q_pu.dim() == 2 && resume->q_pu.size(0) == p && resume->q_pu.size(1) == u &&
                    resume->iteration >= 0 && resume->iteration <= o.power_iters,
                "nfk::randomized_svd: the state to resume from does not fit (", p, " x ", u,
                " basis after at most ", o.power_iters, " iterations expected)");
    q_pu = resume->q_pu.to(op.options());
    total = resume->total_variance;
    first_iteration = resume->iteration;
    step = 1 + (fused ? 1 : 2) * first_iteration;
    passes = step;  // the whole run's passes, as the uninterrupted run reports them
  } else {
    // Probes come from a CPU float64 stream so every device and dtype sees the same numbers.
    auto gen = at::detail::createCPUGenerator(o.seed);
    auto omega_nu =
        at::normal(0.0, 1.0, {n, u}, gen, torch::dtype(torch::kFloat64)).to(op.options());
    tick(1);
    auto y_pu = finite(op.apply_t(omega_nu));
    // E‖VᵀΩ‖_F² = u‖V‖_F² for Gaussian Ω: a free estimate of the total variance.
    total = squared_norm(y_pu) / static_cast<double>(u);
    q_pu = orthonormal_basis(y_pu);
    if (checkpoint) checkpoint({0, q_pu, total});
  }
  int64_t i = first_iteration;
  while (i < o.power_iters) {
    torch::Tensor sigma_k, next_pu;  // the Ritz σ of this iteration's basis; the next basis
    if (fused) {
      tick(1);
      auto w_pu = finite(op.apply_gram(q_pu));  // VᵀV Q, one pass
      sigma_k = detail::gram_ritz_sigma(q_pu.t().mm(w_pu), o.rank);
      if (o.gram == GramProducts::kAuto && detail::ritz_ratio(sigma_k, o.rank) < min_ratio) {
        fused = false;  // the float32 rule: redo this iteration, and the rest, in two passes
        fell_back = true;
      } else {
        next_pu = orthonormal_basis(w_pu);
      }
    }
    if (!fused) {
      tick(1);
      auto m_nu = finite(op.apply(q_pu));
      sigma_k = at::linalg_svdvals(m_nu).slice(0, 0, o.rank);
      auto z_nu = orthonormal_basis(m_nu);
      tick(1);
      next_pu = orthonormal_basis(finite(op.apply_t(z_nu)));
    }
    q_pu = next_pu;
    ++i;
    if (checkpoint) checkpoint({i, q_pu, total});
    monitor.update(sigma_k);
    if (monitor.converged(o.tol)) break;
  }
  tick(1);
  auto b_nu = finite(op.apply(q_pu));  // B = V Q
  auto r = detail::svd_from_basis(q_pu, b_nu, o.rank, op, total);
  if (progress) progress("svd", steps, steps);
  r.iterations = i;
  r.passes = passes;
  r.estimated_error = monitor.estimate();
  r.fused = fused && !fell_back && i > first_iteration;
  return r;
}

}  // namespace detail
}  // namespace nfk
