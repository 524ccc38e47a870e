#include "nfk/fisher.h"

namespace nfk {

torch::Tensor project_fisher_vectors(ScoreModel& model, const torch::Tensor& inputs,
                                     const FisherStats& stats, const torch::Tensor& basis_pk,
                                     int64_t batch_size, const ProgressFn& progress,
                                     int64_t first_index) {
  TORCH_CHECK(batch_size > 0, "nfk: batch size must be positive, got ", batch_size);
  const int64_t n = inputs.size(0), p = model.num_parameters();
  TORCH_CHECK(basis_pk.dim() == 2 && basis_pk.size(0) == p, "nfk: basis must be [", p,
              ", k], got ", basis_pk.sizes());
  auto opts = torch::dtype(model.options().dtype).device(model.options().device);
  auto z = stats.mean_score.to(opts), inv_sqrt = stats.inv_sqrt().to(opts);
  // Fold I^{-1/2} into the basis once: V B = (J − z) (I^{-1/2} ⊙ B).
  auto scaled_pk = basis_pk.to(opts) * inv_sqrt.unsqueeze(1);
  auto z_k = z.unsqueeze(0).mm(scaled_pk);  // [1, k]
  auto out_nk = torch::empty({n, basis_pk.size(1)}, opts);
  auto j_bp = torch::empty({std::max<int64_t>(1, std::min(n, batch_size)), p}, opts);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    auto rows = j_bp.slice(0, 0, end - start);
    per_example_gradients(model, inputs.slice(0, start, end), first_index + start, rows);
    out_nk.slice(0, start, end).copy_(rows.mm(scaled_pk) - z_k);
    if (progress) progress("gradients", end, n);
  }
  return out_nk;
}

}  // namespace nfk
