// Randomized block Krylov SVD (Musco & Musco 2015, Alg. 2) in the right-singular-vector space:
// blocks Z_0 = orth(VᵀΩ), Z_{j+1} = orth((VᵀV) Z_j ⟂ Z_0..Z_j), Rayleigh–Ritz on their span.
#include <algorithm>
#include <optional>

#include "linalg/svd_common.h"

namespace nfk::detail {
namespace {

// Y orthonormalised against the orthonormal columns of `basis` [P, m] and then itself: block
// Gram–Schmidt twice, each round followed by a QR (the QR of a nearly dependent Y brings back a
// little of the basis, the second round removes it).
torch::Tensor orthogonalize_against(const torch::Tensor& basis, torch::Tensor y) {
  auto z = orthonormal_basis(y - basis.mm(basis.t().mm(y)));
  z = z - basis.mm(basis.t().mm(z));
  return orthonormal_basis(z);
}

// Aᵀ B [a, b] in float64 for A [r, a], B [r, b] of any dtype, by row blocks (a float64 copy of
// a tall A would take twice its memory).
torch::Tensor gram_block(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() == torch::kFloat64) return a.t().mm(b).to(torch::kCPU);
  const int64_t rows = a.size(0), block = int64_t{1} << 16;
  auto out = torch::zeros({a.size(1), b.size(1)}, a.options().dtype(torch::kFloat64));
  for (int64_t s = 0; s < rows; s += block) {
    const int64_t e = std::min(rows, s + block);
    out.addmm_(a.slice(0, s, e).to(torch::kFloat64).t(), b.slice(0, s, e).to(torch::kFloat64));
  }
  return out.to(torch::kCPU);
}

struct KrylovRun {
  LinearOperator& op;
  const SvdOptions& o;
  const ProgressFn& progress;
  int64_t u = 0, max_cols = 0, steps = 0, passes = 0;

  void tick() {
    if (progress) progress("svd", std::min(passes, steps), steps);
    ++passes;
  }

  // One pass VᵀV per block: T = Kᵀ(VᵀV)K grows by a block column each time; the Ritz values
  // of T give the convergence estimate; at the end the top-u Ritz vectors form Q and one pass
  // B = V Q gives σ without the Gram's squaring. Returns an undefined result when the float32
  // rule (kAuto) says the Gram cannot resolve σ_k.
  std::optional<SvdResult> fused(const torch::Tensor& z0_pu, double total) {
    const int64_t p = op.cols();
    auto basis = torch::empty({p, max_cols}, z0_pu.options());
    basis.narrow(1, 0, u).copy_(z0_pu);
    auto t = torch::zeros({max_cols, max_cols}, torch::dtype(torch::kFloat64));
    const double min_ratio = fused_gram_min_ratio(z0_pu.scalar_type());
    ConvergenceMonitor monitor;
    // Blocks of u columns; the last one narrower where the space reaches max_cols.
    int64_t start = 0, width = u, cols = u, iterations = 0;
    while (iterations < o.power_iters) {
      tick();
      auto w_pw = finite(op.apply_gram(basis.narrow(1, start, width)));
      auto column = basis.narrow(1, 0, cols).t().mm(w_pw).to(torch::kCPU, torch::kFloat64);
      t.narrow(0, 0, cols).narrow(1, start, width).copy_(column);
      t.narrow(0, start, width).narrow(1, 0, cols).copy_(column.t());
      ++iterations;
      auto sigma_k = gram_ritz_sigma(t.narrow(0, 0, cols).narrow(1, 0, cols), o.rank);
      if (o.gram == GramProducts::kAuto && ritz_ratio(sigma_k, o.rank) < min_ratio) return {};
      monitor.update(sigma_k);
      if (monitor.converged(o.tol) || cols >= max_cols || iterations == o.power_iters) break;
      width = std::min(u, max_cols - cols);
      basis.narrow(1, cols, width)
          .copy_(orthogonalize_against(basis.narrow(1, 0, cols), w_pw).narrow(1, 0, width));
      start = cols;
      cols += width;
    }
    torch::Tensor q_pu = basis.narrow(1, 0, u);
    if (iterations > 0) {
      auto tc = t.narrow(0, 0, cols).narrow(1, 0, cols);
      auto [evals, evecs] = torch::linalg::eigh((tc + tc.t()) * 0.5, "L");  // ascending
      auto top = evecs.narrow(1, cols - u, u).flip(1).to(basis.options());  // [cols, u]
      q_pu = orthonormal_basis(basis.narrow(1, 0, cols).mm(top));
    }
    tick();
    auto b_nu = finite(op.apply(q_pu));
    auto r = svd_from_basis(q_pu, b_nu, o.rank, op, total);
    r.iterations = iterations;
    r.estimated_error = monitor.estimate();
    r.fused = iterations > 0;
    return r;
  }

  // Two passes per block: M_j = V Z_j is kept, so V·K = [M_0, M_1, …] is the Rayleigh–Ritz
  // matrix itself (its SVD gives σ without squaring) and no final pass is needed.
  SvdResult two_pass(const torch::Tensor& z0_pu, double total) {
    const int64_t n = op.rows(), p = op.cols();
    auto basis = torch::empty({p, max_cols}, z0_pu.options());
    auto m_all = torch::empty({n, max_cols}, z0_pu.options());
    basis.narrow(1, 0, u).copy_(z0_pu);
    // G = MᵀM in float64, a block column per iteration: its eigenvalues are σ(M)², as exact as
    // an SVD of M itself, without the SVD's N·cols² cost each iteration (M is tall when the SVD
    // iterates on a wide V's transpose).
    auto g = torch::zeros({max_cols, max_cols}, torch::dtype(torch::kFloat64));
    ConvergenceMonitor monitor;
    int64_t start = 0, width = u, cols = 0, iterations = 0;
    while (true) {
      tick();
      auto m_nw = finite(op.apply(basis.narrow(1, start, width)));
      m_all.narrow(1, start, width).copy_(m_nw);
      cols = start + width;
      auto column = gram_block(m_all.narrow(1, 0, cols), m_nw);
      g.narrow(0, 0, cols).narrow(1, start, width).copy_(column);
      g.narrow(0, start, width).narrow(1, 0, cols).copy_(column.t());
      monitor.update(gram_ritz_sigma(g.narrow(0, 0, cols).narrow(1, 0, cols), o.rank));
      if (monitor.converged(o.tol) || cols >= max_cols || iterations == o.power_iters) break;
      tick();
      auto y_pw = finite(op.apply_t(orthonormal_basis(m_nw)));  // VᵀV Z_j, up to R⁻¹
      width = std::min(u, max_cols - cols);
      basis.narrow(1, cols, width)
          .copy_(orthogonalize_against(basis.narrow(1, 0, cols), y_pw).narrow(1, 0, width));
      start = cols;
      ++iterations;
    }
    auto r = svd_from_gram(basis.narrow(1, 0, cols), m_all.narrow(1, 0, cols),
                           g.narrow(0, 0, cols).narrow(1, 0, cols), o.rank, op, total);
    r.iterations = iterations;
    r.estimated_error = monitor.estimate();
    return r;
  }
};

}  // namespace

SvdResult block_krylov_svd(LinearOperator& op, const SvdOptions& o, const ProgressFn& progress) {
  const int64_t n = op.rows(), p = op.cols();
  KrylovRun run{op, o, progress};
  run.u = std::min(o.rank + o.oversample, std::min(n, p));
  // The Krylov space cannot outgrow min(N, P): a narrower last block fills it (then the
  // Rayleigh–Ritz is exact).
  run.max_cols = std::min(run.u * (o.power_iters + 1), std::min(n, p));
  const bool fuse = o.gram != GramProducts::kTwoPass && op.fuses_gram();
  run.steps = (fuse ? 1 : 2) * o.power_iters + 2;

  auto gen = at::detail::createCPUGenerator(o.seed);  // the probes of randomized_svd
  auto omega_nu =
      at::normal(0.0, 1.0, {n, run.u}, gen, torch::dtype(torch::kFloat64)).to(op.options());
  run.tick();
  auto y_pu = finite(op.apply_t(omega_nu));
  const double total = squared_norm(y_pu) / static_cast<double>(run.u);
  auto z0_pu = orthonormal_basis(y_pu);

  std::optional<SvdResult> r;
  if (fuse) r = run.fused(z0_pu, total);
  if (!r) r = run.two_pass(z0_pu, total);  // kTwoPass, no fused products, or the float32 rule
  if (progress) progress("svd", run.steps, run.steps);
  r->passes = run.passes;
  return *r;
}

}  // namespace nfk::detail
