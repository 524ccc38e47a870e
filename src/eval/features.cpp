#include "nfk/features.h"

#include "nfk/data.h"
#include "nfk/fisher.h"
#include "nfk/linalg.h"

namespace nfk {

torch::Tensor pixel_features(const torch::Tensor& inputs) {
  TORCH_CHECK(inputs.dim() >= 1 && inputs.size(0) > 0, "nfk: pixel features need [N, ...] inputs");
  return inputs.reshape({inputs.size(0), -1}).to(torch::kFloat32);
}

torch::Tensor Pca::project(const torch::Tensor& inputs) const {
  auto x = inputs.reshape({inputs.size(0), -1}).to(torch::kFloat64);
  TORCH_CHECK(x.size(1) == mean.size(0), "nfk: PCA was fitted on ", mean.size(0), " features, got ",
              x.size(1));
  return (x - mean).mm(components).to(torch::kFloat32);
}

torch::Tensor Pca::reconstruct(const torch::Tensor& inputs) const {
  auto codes = project(inputs).to(torch::kFloat64);
  return (codes.mm(components.t()) + mean).reshape(inputs.sizes()).to(torch::kFloat32);
}

Pca fit_pca(const torch::Tensor& inputs, int64_t k) {
  TORCH_CHECK(inputs.dim() >= 2, "nfk: PCA needs [N, ...] inputs, got ", inputs.sizes());
  check_finite(inputs, "PCA inputs");
  auto x = inputs.reshape({inputs.size(0), -1}).to(torch::kFloat64);
  TORCH_CHECK(k >= 1 && k <= std::min(x.size(0), x.size(1)), "nfk: PCA rank must be in [1, ",
              std::min(x.size(0), x.size(1)), "], got ", k);
  Pca pca;
  pca.mean = x.mean(/*dim=*/0);
  auto svd = exact_svd(x - pca.mean, k);
  pca.components = svd.right;
  pca.explained_variance = svd.singular_values.square() / x.size(0);
  return pca;
}

torch::Tensor network_activations(Network& network, const torch::Tensor& inputs,
                                  const std::string& method, int64_t batch_size,
                                  torch::Device device) {
  TORCH_CHECK(network.has_method(method), "nfk: the network (", network.describe(),
              ") has no method '", method, "'");
  TORCH_CHECK(batch_size > 0, "nfk: batch size must be positive");
  torch::NoGradGuard no_grad;
  network.to(device, torch::kFloat32);
  std::vector<torch::Tensor> out;
  for (int64_t start = 0; start < inputs.size(0); start += batch_size) {
    auto x = inputs.slice(0, start, std::min(inputs.size(0), start + batch_size));
    auto a = network.call(method, x.to(device, torch::kFloat32));
    TORCH_CHECK(a.dim() >= 1 && a.size(0) == x.size(0), "nfk: ", method, " returned ", a.sizes(),
                " for a batch of ", x.size(0));
    out.push_back(a.reshape({x.size(0), -1}).to(torch::kCPU, torch::kFloat32));
  }
  auto features = torch::cat(out);
  check_finite(features, "activations of '" + method + "'");
  return features;
}

torch::Tensor full_fisher_vectors(const Projector& p, ScoreModel& model,
                                  const torch::Tensor& inputs, int64_t batch_size,
                                  int64_t memory_budget, const ProgressFn& progress) {
  const int64_t bytes = inputs.size(0) * p.n_params() *
                        static_cast<int64_t>(c10::elementSize(p.fisher.mean_score.scalar_type()));
  TORCH_CHECK(bytes <= memory_budget, "nfk: full Fisher vectors of ", inputs.size(0), " x ",
              p.n_params(), " need ", bytes >> 20, " MiB, over the memory budget of ",
              memory_budget >> 20, " MiB");
  check_finite(inputs, "inputs");
  FisherVectorOperator op(model, inputs, p.fisher, batch_size, progress);
  return op.dense();
}

}  // namespace nfk
