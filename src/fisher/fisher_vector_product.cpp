// FisherVectorProduct: F v = (1/N) Σ_x J_fᵀ H_x J_f v of the classifier's Fisher without
// forming F — per batch and column one forward-mode JVP of the logits, the output-space Fisher
// H_x = Σ_r c_r c_rᵀ of the estimator's cotangents, and one VJP on a retained graph.
#include <algorithm>
#include <string>

#include "fisher/dual_level.h"
#include "fisher/fisher_rows.h"

namespace nfk {
namespace {

// J_f v of a batch [B, C] under tangents already set at `dual`; forward mode alone unless a
// fused kernel needs the differentiable path (then retried with grad mode on).
torch::Tensor logits_jvp(ScoreModel& model, const torch::Tensor& x, const detail::DualLevel& dual,
                         bool* with_grad_mode) {
  while (true) {
    torch::AutoGradMode grad_mode(*with_grad_mode);
    try {
      auto out = model.network().call("forward", x);
      auto jvp = out._fw_grad(dual.level());
      return jvp.defined() ? jvp.detach() : torch::zeros_like(out).detach();
    } catch (const std::exception& e) {
      if (*with_grad_mode || std::string(e.what()).find("forward AD") == std::string::npos) throw;
      *with_grad_mode = true;
    }
  }
}

}  // namespace

FisherVectorProduct::FisherVectorProduct(ScoreModel& model, ClassifierData data,
                                         ClassifierFisherOptions options, RunOptions run)
    : model_(model), data_(std::move(data)), options_(options), run_(std::move(run)) {
  detail::check_classifier_data(model_, data_, options_);
  TORCH_CHECK(run_.batch_size >= 1, "nfk: batch size must be positive, got ", run_.batch_size);
}

int64_t FisherVectorProduct::rows() const {
  return model_.num_parameters();
}
int64_t FisherVectorProduct::cols() const {
  return model_.num_parameters();
}
torch::TensorOptions FisherVectorProduct::options() const {
  return model_.parameters().front().options();
}

torch::Tensor FisherVectorProduct::apply(const torch::Tensor& v_pu) {
  TORCH_CHECK(v_pu.dim() == 2 && v_pu.size(0) == cols(), "nfk: F v expects V [", cols(),
              ", u], got ", v_pu.sizes());
  const int64_t n = data_.inputs.size(0), u = v_pu.size(1);
  const auto [begin, end] = detail::rank_range(n, run_);
  const bool batched = options_.estimator == FisherEstimator::kBatched;
  auto v_up = v_pu.to(options()).t().contiguous();
  auto params = model_.parameters();
  auto acc_up = torch::zeros({u, cols()}, options());
  bool jvp_with_grad_mode = false;
  for (int64_t start = begin; start < end; start += run_.batch_size) {
    const int64_t stop = std::min(end, start + run_.batch_size);
    auto x = model_.prepare(data_.inputs.slice(0, start, stop));
    auto y = data_.labels.defined() ? data_.labels.slice(0, start, stop) : torch::Tensor();
    torch::AutoGradMode grad_on(true);
    auto logits = model_.network().call("forward", x);
    auto c = detail::logit_cotangents(logits.detach(), y, options_, run_.seed, start);  // [R,B,C]
    for (int64_t j = 0; j < u; ++j) {
      torch::Tensor jv;  // [B, C]
      {
        detail::DualLevel dual;
        dual.set_tangents(params, v_up[j]);
        jv = logits_jvp(model_, x, dual, &jvp_with_grad_mode);
      }
      // H_x (J v) = Σ_r c_r ⟨c_r, J v⟩: per example, or (batched) one row for the whole batch.
      auto proj = (c * jv.unsqueeze(0)).sum(/*dim=*/2, /*keepdim=*/true);  // [R, B, 1]
      if (batched) proj = proj.sum(/*dim=*/1, /*keepdim=*/true);
      auto h_jv = (c * proj).sum(/*dim=*/0);  // [B, C]
      auto g = torch::autograd::grad({logits}, params, {h_jv}, /*retain_graph=*/j + 1 < u,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      acc_up[j] += flatten_like(g, params);
    }
    if (run_.progress) run_.progress("F v", stop - begin, end - begin);
  }
  if (run_.group && run_.group->distributed()) acc_up = run_.group->allreduce_sum(acc_up);
  return (acc_up / detail::row_normaliser(n, options_, run_.batch_size)).t().contiguous();
}

}  // namespace nfk
