#include <torch/csrc/autograd/autograd.h>

#include "nfk/fisher.h"

namespace nfk {

torch::Tensor flatten_like(const std::vector<torch::Tensor>& grads,
                           const std::vector<torch::Tensor>& params) {
  TORCH_INTERNAL_ASSERT(grads.size() == params.size());
  std::vector<torch::Tensor> flat;
  flat.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    flat.push_back(grads[i].defined() ? grads[i].reshape(-1)
                                      : torch::zeros({params[i].numel()}, params[i].options()));
  }
  return torch::cat(flat);
}

namespace {

// Writes one example's parameter gradients (undefined = zeros) into row_p [P].
void write_row(const std::vector<torch::Tensor>& grads, const std::vector<torch::Tensor>& params,
               torch::Tensor row_p) {
  int64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    auto slot = row_p.narrow(0, offset, params[i].numel());
    if (grads[i].defined()) {
      slot.copy_(grads[i].reshape(-1));
    } else {
      slot.zero_();
    }
    offset += params[i].numel();
  }
}

}  // namespace

torch::Tensor per_example_gradients(ScoreModel& model, const torch::Tensor& x_b,
                                    int64_t first_index, torch::Tensor out_bp) {
  auto params = model.parameters();
  auto x = model.prepare(x_b);
  const int64_t batch = x.size(0);
  int64_t p = 0;
  for (const auto& t : params) p += t.numel();
  if (!out_bp.defined()) out_bp = torch::empty({batch, p}, params.front().options());
  TORCH_INTERNAL_ASSERT(out_bp.size(0) == batch && out_bp.size(1) == p);
  torch::AutoGradMode grad_on(true);
  if (model.stochastic()) {
    // The noise inside s is drawn per batch: differentiate each example on the batch graph so
    // that J_b matches the batched JVP/VJP products exactly.
    auto s = model.score(x, first_index);
    for (int64_t i = 0; i < batch; ++i) {
      auto g = torch::autograd::grad({s[i]}, params, {}, /*retain_graph=*/i + 1 < batch,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      write_row(g, params, out_bp[i]);
    }
  } else {
    for (int64_t i = 0; i < batch; ++i) {
      auto s = model.score(x.slice(/*dim=*/0, i, i + 1), first_index + i);
      auto g = torch::autograd::grad({s.sum()}, params, {}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      write_row(g, params, out_bp[i]);
    }
  }
  return out_bp;
}

}  // namespace nfk
