#include <torch/csrc/autograd/autograd.h>

#include <algorithm>

#include "nfk/fisher.h"

namespace nfk {
namespace {

// Enters a forward-AD level and leaves it (clearing every tangent set at it) on scope exit.
class DualLevel {
 public:
  DualLevel() : level_(torch::autograd::forward_ad::enter_dual_level()) {}
  ~DualLevel() { torch::autograd::forward_ad::exit_dual_level(level_); }
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
  uint64_t level() const { return level_; }

 private:
  uint64_t level_;
};

}  // namespace

FisherVectorOperator::FisherVectorOperator(ScoreModel& model, torch::Tensor inputs,
                                           const FisherStats& stats, int64_t batch_size,
                                           ProgressFn progress)
    : model_(model),
      inputs_(std::move(inputs)),
      z_(stats.mean_score),
      inv_sqrt_(stats.inv_sqrt()),
      batch_size_(batch_size),
      progress_(std::move(progress)) {
  TORCH_CHECK(batch_size_ > 0, "nfk: batch size must be positive, got ", batch_size_);
  TORCH_CHECK(z_.numel() == model_.num_parameters(), "nfk: Fisher statistics have ", z_.numel(),
              " entries but the model has ", model_.num_parameters(), " parameters");
}

torch::Tensor FisherVectorOperator::apply(const torch::Tensor& q_pu) {
  TORCH_CHECK(q_pu.dim() == 2 && q_pu.size(0) == cols(), "nfk: apply expects Q [", cols(),
              ", u], got ", q_pu.sizes());
  const int64_t n = rows(), u = q_pu.size(1);
  auto t_up = (q_pu.to(options()) * inv_sqrt_.unsqueeze(1)).t().contiguous();  // I^{-1/2} ⊙ q
  auto offset_u = t_up.mv(z_);                                                 // z · t
  auto params = model_.parameters();
  auto out_nu = torch::empty({n, u}, options());
  torch::NoGradGuard no_grad;  // forward mode only: no reverse graph
  for (int64_t start = 0; start < n; start += batch_size_) {
    const int64_t end = std::min(n, start + batch_size_);
    auto x = model_.prepare(inputs_.slice(0, start, end));
    for (int64_t j = 0; j < u; ++j) {
      DualLevel dual;
      int64_t offset = 0;
      for (auto& p : params) {
        p._set_fw_grad(t_up[j].narrow(0, offset, p.numel()).view_as(p), dual.level(),
                       /*is_inplace_op=*/false);
        offset += p.numel();
      }
      auto s = model_.score(x, start);
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
    auto s = model_.score(model_.prepare(inputs_.slice(0, start, end)), start);
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

torch::Tensor FisherVectorOperator::dense() {
  const int64_t n = rows();
  auto v_np = torch::empty({n, cols()}, options());
  for (int64_t start = 0; start < n; start += batch_size_) {
    const int64_t end = std::min(n, start + batch_size_);
    auto j_bp = per_example_gradients(model_, inputs_.slice(0, start, end), start);
    v_np.slice(0, start, end).copy_((j_bp - z_.unsqueeze(0)) * inv_sqrt_.unsqueeze(0));
    if (progress_) progress_("gradients", end, n);
  }
  return v_np;
}

}  // namespace nfk

