#include <algorithm>
#include <cmath>

#include "linalg/cholesky_qr2.h"
#include "linalg/svd_common.h"
#include "nfk/linalg.h"

namespace nfk {
using detail::check_rank;
using detail::finite;
using detail::fix_signs;
using detail::fix_thread_count;
using detail::set_total_variance;

torch::Tensor LinearOperator::dense() {
  const int64_t n = rows();
  const int64_t block = 64;
  std::vector<torch::Tensor> cols_pn;
  for (int64_t start = 0; start < n; start += block) {
    const int64_t end = std::min(n, start + block);
    auto eye = torch::zeros({n, end - start}, options());
    eye.slice(0, start, end).fill_diagonal_(1.0);
    cols_pn.push_back(apply_t(eye));
  }
  return torch::cat(cols_pn, /*dim=*/1).t().contiguous();
}

std::pair<torch::Tensor, torch::Tensor> LinearOperator::apply_pair(const torch::Tensor& q_pu,
                                                                   const torch::Tensor& m_nl) {
  auto vq = apply(q_pu);
  return {vq, apply_t(m_nl)};
}

torch::Tensor LinearOperator::apply_gram(const torch::Tensor& q_pu) {
  return apply_t(apply(q_pu));
}

torch::Tensor DenseOperator::apply_gram(const torch::Tensor& q_pu) {
  TORCH_CHECK(q_pu.dim() == 2 && q_pu.size(0) == cols(), "nfk: apply_gram expects Q [", cols(),
              ", u], got ", q_pu.sizes());
  // Blocks of about 64 MiB of V: V_b Q and V_bᵀ(V_b Q) while V_b is still in the (last-level)
  // cache; fewer, larger blocks keep the accumulator's traffic (P·u per block) small.
  const int64_t n = rows();
  const int64_t row_bytes = std::max<int64_t>(1, cols() * v_np_.element_size());
  const int64_t block = std::max<int64_t>(64, (int64_t{64} << 20) / row_bytes);
  auto q = q_pu.to(v_np_.options());
  auto acc_pu = torch::zeros({cols(), q.size(1)}, v_np_.options());
  for (int64_t start = 0; start < n; start += block) {
    auto v_bp = v_np_.slice(/*dim=*/0, start, std::min(n, start + block));
    acc_pu.addmm_(v_bp.t(), v_bp.mm(q));
  }
  return acc_pu;
}

double fused_gram_min_ratio(torch::Dtype dtype) {
  // √eps: (σ_k/σ_1)² below the unit roundoff is lost in a product with VᵀV.
  return std::sqrt(dtype == torch::kFloat64 ? 2.220446049250313e-16 : 1.1920928955078125e-07);
}

double default_svd_tol(torch::Dtype dtype) {
  return dtype == torch::kFloat64 ? 1e-8 : 2e-4;
}

const Names<SvdSolver>& svd_solver_names() {
  static const Names<SvdSolver> names("SVD solver", {{SvdSolver::kAuto, "auto"},
                                                     {SvdSolver::kSubspace, "subspace"},
                                                     {SvdSolver::kBlockKrylov, "block-krylov"}});
  return names;
}

namespace detail {

void fix_thread_count() {
  at::init_num_threads();
}

void check_rank(int64_t rank, int64_t n, int64_t p, const char* who) {
  TORCH_CHECK(rank > 0, "nfk::", who, ": rank must be positive, got ", rank);
  TORCH_CHECK(rank <= std::min(n, p), "nfk::", who, ": rank ", rank,
              " exceeds min(examples, parameters) = ", std::min(n, p));
}

// A product with V that is NaN or Inf would make the factorizations fail with LibTorch's
// "input contains non-finite values"; say where it comes from instead.
const torch::Tensor& finite(const torch::Tensor& product) {
  TORCH_CHECK(torch::isfinite(product).all().item<bool>(),
              "nfk: a product with the Fisher vectors V is NaN or Inf: the model's score or its ",
              "gradient is not finite on some examples (or overflows its dtype)");
  return product;
}

void fix_signs(SvdResult& r) {
  auto idx = r.right.abs().argmax(/*dim=*/0);                            // [k]
  auto picked = r.right.gather(/*dim=*/0, idx.unsqueeze(0)).squeeze(0);  // [k]
  auto signs = torch::where(picked < 0, -torch::ones_like(picked), torch::ones_like(picked));
  r.right = r.right * signs.unsqueeze(0);
  r.left = r.left * signs.to(r.left.dtype()).unsqueeze(0);
}

void set_total_variance(SvdResult& r, LinearOperator& op, double estimate) {
  const double exact = op.squared_frobenius();
  r.total_variance = exact >= 0 ? exact : estimate;
  r.total_variance_exact = exact >= 0;
}

}  // namespace detail

SvdResult sketch_svd(LinearOperator& op, const SvdOptions& o, const ProgressFn& progress) {
  fix_thread_count();
  const int64_t n = op.rows(), p = op.cols();
  check_rank(o.rank, n, p, "sketch_svd");
  TORCH_CHECK(o.oversample >= 0, "nfk::sketch_svd: oversample must be >= 0");
  const int64_t s = std::min(o.rank + o.oversample, std::min(n, p));
  const int64_t l = std::min(2 * s + 1, n);  // co-range sketch: Tropp et al.'s l = 2s + 1
  if (progress) progress("svd", 0, 1);

  // Test matrices from a CPU float64 stream, as in randomized_svd.
  auto gen = at::detail::createCPUGenerator(o.seed);
  auto f64 = torch::dtype(torch::kFloat64);
  auto omega_ps = at::normal(0.0, 1.0, {p, s}, gen, f64).to(op.options());
  auto psi_nl = at::normal(0.0, 1.0, {n, l}, gen, f64).to(op.options());
  auto [y_ns, w_pl] = op.apply_pair(omega_ps, psi_nl);  // Y = VΩ, Wᵀ = VᵀΨ: one pass
  finite(y_ns);
  finite(w_pl);
  // E‖ΨᵀV‖_F² = l‖V‖_F² for Gaussian Ψ.
  const double total = squared_norm(w_pl) / static_cast<double>(l);

  auto q_ns = orthonormal_basis(y_ns);
  // X = (ΨᵀQ)⁺ W by the QR of the tall ΨᵀQ [l, s]: X = R⁻¹ (Q₂ᵀ W).
  auto [q2_ls, r_ss] = torch::linalg::qr(psi_nl.t().mm(q_ns), "reduced");
  auto x_sp = torch::linalg::solve_triangular(r_ss, q2_ls.t().mm(w_pl.t()), /*upper=*/true,
                                              /*left=*/true, /*unitriangular=*/false);
  auto [ux, sx, vhx] = torch::linalg::svd(x_sp, /*full_matrices=*/false, /*driver=*/{});
  if (progress) progress("svd", 1, 1);

  SvdResult r;
  r.left = q_ns.mm(ux.slice(/*dim=*/1, 0, o.rank)).contiguous();
  r.singular_values = sx.slice(0, 0, o.rank).contiguous();
  r.right = vhx.slice(/*dim=*/0, 0, o.rank).t().contiguous();
  r.passes = 1;
  set_total_variance(r, op, total);
  fix_signs(r);
  return r;
}

namespace {

// The Gram matrix VVᵀ [N, N] (`rows`) or VᵀV [P, P] in float64, V converted a slab of about
// 16 MiB at a time. A Gram formed in float32 keeps σ_j only to eps·σ_1²/σ_j² (the float32 rule:
// nothing of σ_j/σ_1 below √eps = 3.45e-4), the float64 one to about 1e-16·σ_1²/σ_j².
torch::Tensor gram_float64(const torch::Tensor& v_np, bool rows) {
  if (v_np.scalar_type() == torch::kFloat64) return rows ? v_np.mm(v_np.t()) : v_np.t().mm(v_np);
  const int64_t n = v_np.size(0), p = v_np.size(1);
  const int64_t side = rows ? n : p, length = rows ? p : n;
  const int64_t slab = std::max<int64_t>(1, (int64_t{2} << 20) / std::max<int64_t>(1, side));
  auto gram = torch::zeros({side, side}, v_np.options().dtype(torch::kFloat64));
  for (int64_t start = 0; start < length; start += slab) {
    const int64_t end = std::min(length, start + slab);
    auto part = (rows ? v_np.slice(/*dim=*/1, start, end).t() : v_np.slice(/*dim=*/0, start, end))
                    .to(torch::kFloat64);  // [slab, side]
    gram.addmm_(part.t(), part);
  }
  return gram;
}

}  // namespace

SvdResult exact_svd(const torch::Tensor& v_np, int64_t rank) {
  fix_thread_count();
  TORCH_CHECK(v_np.dim() == 2, "nfk::exact_svd: V must be [N, P], got ", v_np.sizes());
  const int64_t n = v_np.size(0), p = v_np.size(1);
  check_rank(rank, n, p, "exact_svd");
  const bool gram_rows = n <= p;
  auto gram = gram_float64(v_np, gram_rows);             // [N,N] or [P,P], float64
  auto [evals, evecs] = torch::linalg::eigh(gram, "L");  // ascending
  auto top = torch::arange(evals.size(0) - 1, evals.size(0) - 1 - rank, -1,
                           torch::dtype(torch::kLong).device(evals.device()));
  auto lambda = evals.index_select(0, top).clamp_min(0).to(v_np.scalar_type());
  auto vecs = evecs.index_select(1, top).to(v_np.scalar_type());
  auto sigma = lambda.sqrt();
  // Components with σ = 0 have no defined partner vector; leave them zero.
  auto inv_sigma = torch::where(sigma > 0, 1.0 / sigma, torch::zeros_like(sigma));

  SvdResult r;
  r.singular_values = sigma;
  if (gram_rows) {
    r.left = vecs;
    r.right = v_np.t().mm(vecs) * inv_sigma.unsqueeze(0);
  } else {
    r.right = vecs;
    r.left = v_np.mm(vecs) * inv_sigma.unsqueeze(0);
  }
  r.total_variance = squared_norm(v_np);
  r.total_variance_exact = true;
  r.all_eigenvalues = evals.flip(0).clamp_min(0).to(torch::kFloat64).cpu();
  r.passes = 1;
  r.estimated_error = 0;
  fix_signs(r);
  return r;
}

torch::Tensor cholesky_qr2(const torch::Tensor& a) {
  TORCH_CHECK(a.dim() == 2 && a.size(0) >= a.size(1),
              "nfk::cholesky_qr2: need A [m, u] with m >= u, got ", a.sizes());
  const double spread_limit = a.scalar_type() == torch::kFloat64 ? 1e-6 : 1e-4;
  auto eye = torch::eye(a.size(1), a.options().dtype(torch::kFloat64));
  auto q = a;
  for (int pass = 0; pass < 2; ++pass) {
    auto q64 = q.to(torch::kFloat64);
    auto [l, info] = torch::linalg_cholesky_ex(q64.t().mm(q64));
    if (info.item<int64_t>() != 0) return {};
    auto d = l.diagonal();
    if ((d.min() / d.max()).item<double>() < spread_limit) return {};
    // R⁻¹ for the upper-triangular R = Lᵀ: a u × u solve, then one [m, u] × [u, u] GEMM.
    auto r_inv = torch::linalg_solve_triangular(l.t(), eye, /*upper=*/true);
    q = q.mm(r_inv.to(q.scalar_type()));
  }
  return q;
}

torch::Tensor orthonormal_basis(const torch::Tensor& a) {
  if (a.is_cuda() && a.size(0) >= 4 * a.size(1)) {
    auto q = cholesky_qr2(a);
    if (q.defined()) return q;
  }
  return std::get<0>(torch::linalg::qr(a, "reduced"));
}

double DenseOperator::squared_frobenius() {
  return squared_norm(v_np_);
}

double squared_norm(const torch::Tensor& a) {
  if (a.numel() == 0) return 0;  // e.g. the rows of V on a rank with no batch
  const int64_t rows = a.dim() == 0 ? 1 : a.size(0);
  auto flat = a.reshape({rows, -1});
  // Float64 blocks of about 8 MB stay in the CPU's cache (a whole-matrix float64 copy costs 5×
  // the time); on CUDA larger blocks keep the launches few. One sync at the end.
  const int64_t elements = a.is_cuda() ? int64_t{1} << 24 : int64_t{1} << 20;
  const int64_t block = std::max<int64_t>(1, elements / std::max<int64_t>(1, flat.size(1)));
  auto total = torch::zeros({}, flat.options().dtype(torch::kFloat64));
  for (int64_t start = 0; start < rows; start += block) {
    total += flat.slice(0, start, std::min(rows, start + block)).to(torch::kFloat64).square().sum();
  }
  return total.item<double>();
}

torch::Tensor principal_cosines(const torch::Tensor& a, const torch::Tensor& b) {
  auto qa = orthonormal_basis(a.to(torch::kFloat64));
  auto qb = orthonormal_basis(b.to(torch::kFloat64));
  return at::linalg_svdvals(qa.t().mm(qb));
}

}  // namespace nfk
