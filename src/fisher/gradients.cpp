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

torch::Tensor per_example_gradients(ScoreModel& model, const torch::Tensor& x_b,
                                    int64_t first_index) {
  auto params = model.parameters();
  auto x = model.prepare(x_b);
  const int64_t batch = x.size(0);
  std::vector<torch::Tensor> rows;
  rows.reserve(batch);
  torch::AutoGradMode grad_on(true);
  if (model.stochastic()) {
    // The noise inside s is drawn per batch: differentiate each example on the batch graph so
    // that J_b matches the batched JVP/VJP products exactly.
    auto s = model.score(x, first_index);
    for (int64_t i = 0; i < batch; ++i) {
      auto g = torch::autograd::grad({s[i]}, params, {}, /*retain_graph=*/i + 1 < batch,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      rows.push_back(flatten_like(g, params));
    }
  } else {
    for (int64_t i = 0; i < batch; ++i) {
      auto s = model.score(x.slice(/*dim=*/0, i, i + 1), first_index + i);
      auto g = torch::autograd::grad({s.sum()}, params, {}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      rows.push_back(flatten_like(g, params));
    }
  }
  return torch::stack(rows);
}

}  // namespace nfk
