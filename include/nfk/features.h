#pragma once
/// Baseline representations computed by the same tool on the same split as the NFK embedding:
/// raw pixels, PCA-k, a network's layer activations, and the full Fisher vectors V_x (AFV).

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "nfk/embed.h"
#include "nfk/model.h"
#include "nfk/progress.h"

namespace nfk {

/// Raw pixels: inputs [N, ...] flattened to [N, D] float32.
torch::Tensor pixel_features(const torch::Tensor& inputs);

/// Principal components of a data set: codes = (x − mean) · components.
struct Pca {
  torch::Tensor mean;                // [D] float64
  torch::Tensor components;          // [D, k] float64, orthonormal columns, by variance
  torch::Tensor explained_variance;  // [k] per-component variance (divided by N)
  /// codes [M, k] float32 of inputs [M, ...] (flattened).
  torch::Tensor project(const torch::Tensor& inputs) const;
  /// inputs' best rank-k reconstruction, shaped like `inputs` (float32).
  torch::Tensor reconstruct(const torch::Tensor& inputs) const;
};

/// PCA-k of `inputs` [N, ...] (flattened to [N, D]), exact (eigendecomposition of the smaller Gram
/// matrix in float64). Example: `auto pca = nfk::fit_pca(train.inputs, 128);`
Pca fit_pca(const torch::Tensor& inputs, int64_t k);

/// Activations [N, F] float32 of `method` (e.g. "features": the zoo's penultimate layer, or any
/// TorchScript method) on `inputs`, in batches, on `device`, flattened per example.
torch::Tensor network_activations(Network& network, const torch::Tensor& inputs,
                                  const std::string& method, int64_t batch_size,
                                  torch::Device device = torch::kCPU);

/// Full Fisher vectors V_x = (∇θ s(x) − z) ⊙ I^{-1/2} [N, P] under the projector's z and I, the
/// AFV representation the NFK compresses. Throws if N·P values would exceed `memory_budget` bytes.
torch::Tensor full_fisher_vectors(const Projector& projector, ScoreModel& model,
                                  const torch::Tensor& inputs, int64_t batch_size,
                                  int64_t memory_budget, const ProgressFn& progress = {});

}  // namespace nfk
