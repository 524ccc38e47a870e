// FisherVectorOperator: V's products by forward-mode (JVP) and reverse-mode (VJP) passes,
// neither of which stores J, V or K (SPEC §2 matrix-free, paper Alg. 4).
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>

#include "fisher/dual_level.h"
#include "nfk/fisher.h"

namespace nfk {

torch::Tensor FisherVectorOperator::forward_mode_score(const torch::Tensor& x_b,
                                                       int64_t first_index) {
  while (true) {
    // Forward mode only: no reverse graph, unless a fused kernel forces the differentiable path.
    torch::AutoGradMode grad_mode(jvp_with_grad_mode_);
    try {
      return model_.score(x_b, first_index);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      if (jvp_with_grad_mode_ || what.find("forward AD") == std::string::npos) throw;
      jvp_with_grad_mode_ = true;
    }
  }
}

torch::Tensor FisherVectorOperator::apply(const torch::Tensor& q_pu) {
  TORCH_CHECK(q_pu.dim() == 2 && q_pu.size(0) == cols(), "nfk: apply expects Q [", cols(),
              ", u], got ", q_pu.sizes());
  const int64_t n = rows(), u = q_pu.size(1);
  auto t_up = (q_pu.to(options()) * inv_sqrt_.unsqueeze(1)).t().contiguous();  // I^{-1/2} ⊙ q
  auto offset_u = t_up.mv(z_);                                                 // z · t
  auto params = model_.parameters();
  auto out_nu = torch::empty({n, u}, options());
  for (int64_t start = 0; start < n; start += batch_size_) {
    const int64_t end = std::min(n, start + batch_size_);
    auto x = model_.prepare(inputs_.slice(0, start, end));
    for (int64_t j = 0; j < u; ++j) {
      detail::DualLevel dual;
      dual.set_tangents(params, t_up[j]);
      auto s = forward_mode_score(x, first_index_ + start);
      auto jvp = s._fw_grad(dual.level());
      auto col = out_nu.select(/*dim=*/1, j).slice(0, start, end);
      if (jvp.defined()) {
        col.copy_(jvp - offset_u[j]);
      } else {
        col.fill_(-offset_u[j]);  // s does not depend on θ along this direction
      }
    }
    if (progress_) progress_("JVP", end, n);
  }
  return out_nu;
}

torch::Tensor FisherVectorOperator::apply_t(const torch::Tensor& m_nu) {
  TORCH_CHECK(m_nu.dim() == 2 && m_nu.size(0) == rows(), "nfk: apply_t expects M [", rows(),
              ", u], got ", m_nu.sizes());
  const int64_t n = rows(), u = m_nu.size(1);
  auto m = m_nu.to(options());
  auto params = model_.parameters();
  auto acc_up = torch::zeros({u, cols()}, options());
  torch::AutoGradMode grad_on(true);
  for (int64_t start = 0; start < n; start += batch_size_) {
    const int64_t end = std::min(n, start + batch_size_);
    auto s = model_.score(model_.prepare(inputs_.slice(0, start, end)), first_index_ + start);
    // One forward per batch, one backward per column on the retained graph.
    for (int64_t j = 0; j < u; ++j) {
      auto m_b = m.select(/*dim=*/1, j).slice(0, start, end);
      auto g = torch::autograd::grad({s}, params, {m_b}, /*retain_graph=*/j + 1 < u,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      acc_up[j] += flatten_like(g, params);
    }
    if (progress_) progress_("VJP", end, n);
  }
  // Vᵀm = I^{-1/2} ⊙ (Jᵀm − z Σ_i m_i)
  auto centred_up = acc_up - m.sum(0).unsqueeze(1) * z_.unsqueeze(0);
  return (centred_up * inv_sqrt_.unsqueeze(0)).t().contiguous();
}

}  // namespace nfk
