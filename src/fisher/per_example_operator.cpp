// V products as GEMMs on per-example gradient blocks recomputed per pass (V not resident).
#include "nfk/fisher.h"

namespace nfk {

PerExampleOperator::PerExampleOperator(ScoreModel& model, torch::Tensor inputs,
                                       const FisherStats& stats, int64_t batch_size,
                                       ProgressFn progress, int64_t first_index)
    : model_(model),
      inputs_(std::move(inputs)),
      z_(stats.mean_score),
      inv_sqrt_(stats.inv_sqrt()),
      batch_size_(batch_size),
      progress_(std::move(progress)),
      first_index_(first_index) {
  TORCH_CHECK(batch_size_ > 0, "nfk: batch size must be positive, got ", batch_size_);
  TORCH_CHECK(z_.numel() == model_.num_parameters(), "nfk: Fisher statistics have ", z_.numel(),
              " entries but the model has ", model_.num_parameters(), " parameters");
  j_bp_ = torch::empty({std::max<int64_t>(1, std::min(rows(), batch_size_)), cols()}, options());
}

torch::Tensor PerExampleOperator::apply(const torch::Tensor& q_pu) {
  TORCH_CHECK(q_pu.dim() == 2 && q_pu.size(0) == cols(), "nfk: apply expects Q [", cols(),
              ", u], got ", q_pu.sizes());
  const int64_t n = rows();
  auto t_pu = q_pu.to(options()) * inv_sqrt_.unsqueeze(1);  // I^{-1/2} ⊙ Q
  auto offset_u = z_.unsqueeze(0).mm(t_pu);                 // [1, u] zᵀ T
  auto out_nu = torch::empty({n, q_pu.size(1)}, options());
  for (int64_t start = 0; start < n; start += batch_size_) {
    const int64_t end = std::min(n, start + batch_size_);
    auto j_bp = j_bp_.narrow(0, 0, end - start);
    per_example_gradients(model_, inputs_.slice(0, start, end), first_index_ + start, j_bp);
    torch::NoGradGuard no_grad;
    auto out_bu = out_nu.slice(0, start, end);
    torch::mm_out(out_bu, j_bp, t_pu);
    out_bu.sub_(offset_u);
    if (progress_) progress_("VQ", end, n);
  }
  return out_nu;
}

torch::Tensor PerExampleOperator::apply_t(const torch::Tensor& m_nu) {
  TORCH_CHECK(m_nu.dim() == 2 && m_nu.size(0) == rows(), "nfk: apply_t expects M [", rows(),
              ", u], got ", m_nu.sizes());
  const int64_t n = rows();
  auto m = m_nu.to(options());
  auto acc_pu = torch::zeros({cols(), m.size(1)}, options());
  for (int64_t start = 0; start < n; start += batch_size_) {
    const int64_t end = std::min(n, start + batch_size_);
    auto j_bp = j_bp_.narrow(0, 0, end - start);
    per_example_gradients(model_, inputs_.slice(0, start, end), first_index_ + start, j_bp);
    torch::NoGradGuard no_grad;
    acc_pu.addmm_(j_bp.t(), m.slice(0, start, end));  // Jᵀ M
    if (progress_) progress_("VtM", end, n);
  }
  // Vᵀ M = I^{-1/2} ⊙ (Jᵀ M − z Σ_i m_i)
  acc_pu.sub_(z_.unsqueeze(1) * m.sum(0).unsqueeze(0)).mul_(inv_sqrt_.unsqueeze(1));
  return acc_pu;
}

torch::Tensor PerExampleOperator::dense() {
  const int64_t n = rows();
  auto v_np = torch::empty({n, cols()}, options());
  for (int64_t start = 0; start < n; start += batch_size_) {
    const int64_t end = std::min(n, start + batch_size_);
    auto rows_bp = v_np.slice(0, start, end);
    per_example_gradients(model_, inputs_.slice(0, start, end), first_index_ + start, rows_bp);
    torch::NoGradGuard no_grad;
    rows_bp.sub_(z_).mul_(inv_sqrt_);
  }
  return v_np;
}

}  // namespace nfk
