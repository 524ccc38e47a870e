// V products as GEMMs on per-example gradient blocks recomputed per pass (V not resident).
#include "nfk/fisher.h"

namespace nfk {

PerExampleOperator::PerExampleOperator(ScoreModel& model, torch::Tensor inputs,
                                       const FisherStats& stats, int64_t batch_size,
                                       ProgressFn progress, int64_t first_index,
                                       GradientPath gradient_path)
    : StreamingVOperator(model, std::move(inputs), stats, batch_size, std::move(progress),
                         first_index, gradient_path) {
  j_bp_ = torch::empty({std::max<int64_t>(1, std::min(rows(), batch_size_)), cols()}, options());
}

torch::Tensor PerExampleOperator::apply(const torch::Tensor& q_pu) {
  TORCH_CHECK(q_pu.defined(), "nfk: apply expects Q [", cols(), ", u]");
  return apply_pair(q_pu, torch::Tensor()).first;
}

torch::Tensor PerExampleOperator::apply_t(const torch::Tensor& m_nu) {
  TORCH_CHECK(m_nu.defined(), "nfk: apply_t expects M [", rows(), ", u]");
  return apply_pair(torch::Tensor(), m_nu).second;
}

// One pass over the per-example blocks J_b, forming whichever of V Q and Vᵀ M is asked for
// (an undefined argument skips its product): V_b Q = J_b T − 1 zᵀT with T = I^{-1/2} ⊙ Q, and
// Vᵀ M = I^{-1/2} ⊙ (Σ_b J_bᵀ M_b − z Σ_i m_i).
std::pair<torch::Tensor, torch::Tensor> PerExampleOperator::apply_pair(const torch::Tensor& q_pu,
                                                                       const torch::Tensor& m_nl) {
  const bool do_q = q_pu.defined(), do_m = m_nl.defined();
  TORCH_CHECK(!do_q || (q_pu.dim() == 2 && q_pu.size(0) == cols()), "nfk: V products expect Q [",
              cols(), ", u], got ", q_pu.sizes());
  TORCH_CHECK(!do_m || (m_nl.dim() == 2 && m_nl.size(0) == rows()), "nfk: Vt products expect M [",
              rows(), ", l], got ", m_nl.sizes());
  const int64_t n = rows();
  torch::Tensor t_pu, offset_u, out_nu, m, acc_pl;
  if (do_q) {
    t_pu = q_pu.to(options()) * inv_sqrt_.unsqueeze(1);
    offset_u = z_.unsqueeze(0).mm(t_pu);  // [1, u] zᵀ T
    out_nu = torch::empty({n, q_pu.size(1)}, options());
  }
  if (do_m) {
    m = m_nl.to(options());
    acc_pl = torch::zeros({cols(), m.size(1)}, options());
  }
  const char* stage = do_q && do_m ? "VQ+VtM" : do_q ? "VQ" : "VtM";
  for (int64_t start = 0; start < n; start += batch_size_) {
    const int64_t end = std::min(n, start + batch_size_);
    auto j_bp = j_bp_.narrow(0, 0, end - start);
    gradients_(inputs_.slice(0, start, end), first_index_ + start, j_bp);
    torch::NoGradGuard no_grad;
    if (do_q) {
      auto out_bu = out_nu.slice(0, start, end);
      torch::mm_out(out_bu, j_bp, t_pu);
      out_bu.sub_(offset_u);
    }
    if (do_m) acc_pl.addmm_(j_bp.t(), m.slice(0, start, end));
    if (progress_) progress_(stage, end, n);
  }
  if (do_m) acc_pl.sub_(z_.unsqueeze(1) * m.sum(0).unsqueeze(0)).mul_(inv_sqrt_.unsqueeze(1));
  return {out_nu, acc_pl};
}

// VᵀV Q = I^{-1/2} ⊙ (Σ_b J_bᵀ W_b − z Σ_i w_i) with W_b = V_b Q: J_b computed once per block.
torch::Tensor PerExampleOperator::apply_gram(const torch::Tensor& q_pu) {
  TORCH_CHECK(q_pu.dim() == 2 && q_pu.size(0) == cols(), "nfk: V products expect Q [", cols(),
              ", u], got ", q_pu.sizes());
  const int64_t n = rows();
  auto t_pu = q_pu.to(options()) * inv_sqrt_.unsqueeze(1);
  auto offset_u = z_.unsqueeze(0).mm(t_pu);  // [1, u] zᵀ T
  auto acc_pu = torch::zeros({cols(), q_pu.size(1)}, options());
  auto w_sum_u = torch::zeros({1, q_pu.size(1)}, options());
  for (int64_t start = 0; start < n; start += batch_size_) {
    const int64_t end = std::min(n, start + batch_size_);
    auto j_bp = j_bp_.narrow(0, 0, end - start);
    gradients_(inputs_.slice(0, start, end), first_index_ + start, j_bp);
    torch::NoGradGuard no_grad;
    auto w_bu = j_bp.mm(t_pu).sub_(offset_u);
    acc_pu.addmm_(j_bp.t(), w_bu);
    w_sum_u += w_bu.sum(/*dim=*/0, /*keepdim=*/true);
    if (progress_) progress_("VtVQ", end, n);
  }
  return acc_pu.sub_(z_.unsqueeze(1) * w_sum_u).mul_(inv_sqrt_.unsqueeze(1));
}

}  // namespace nfk
