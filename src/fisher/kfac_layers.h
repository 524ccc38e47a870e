#pragma once
// K-FAC's view of the taped layers (internal to fisher/): which layers it covers, and each
// covered layer call's inputs ā and output gradients δ per position.
#include <functional>
#include <vector>

#include "fisher/tape_gradients.h"
#include "nfk/kfac.h"

namespace nfk::detail {

/// The covered layers (factors still undefined) and the left-out parameters, from one taped
/// forward of data.inputs[0:1]. Throws "nfk: ..." where the tape does not cover the model.
struct KfacPlan {
  std::vector<KfacLayer> layers;
  std::vector<KfacLeftOut> left_out;
  int64_t num_params = 0;
};
KfacPlan plan_kfac_layers(ScoreModel& model, const ClassifierData& data);

/// Layer inputs per position for examples [start, start + count) of the batch:
/// ā [count, T, in'] (model dtype), the bias column of ones last when `layer.bias_index >= 0`.
/// Convolutions unfold the input with the layer's kernel, stride, padding and dilation.
torch::Tensor kfac_inputs(const KfacLayer& layer, const TapeRecord& r, int64_t start,
                          int64_t count);

/// Output gradients per position for examples [start, start + count): δ [count, T, out], from
/// g (the layer output's gradient, [B, out, H, W] for a conv, [B, ..., out] for a Linear).
torch::Tensor kfac_deltas(const KfacLayer& layer, const torch::Tensor& g, int64_t start,
                          int64_t count);

/// Examples per chunk so that a layer's ā [count, T, in'] and δ [count, T, out] stay below a
/// fixed element budget.
int64_t kfac_chunk(const KfacLayer& layer);

/// Called once per batch and covered layer with its tape record (inputs).
using KfacInputsFn = std::function<void(size_t layer, const TapeRecord& r)>;
/// Called per batch, cotangent r and covered layer with the output gradient g (undefined where
/// the layer does not reach the logits).
using KfacGradientsFn =
    std::function<void(size_t layer, const TapeRecord& r, const torch::Tensor& g)>;

/// Walks data[shard] batch by batch (this rank's whole batches under run.group): one taped
/// forward, the estimator's logit cotangents, and one backward to the layer outputs per
/// cotangent. Progress as (stage, done, total).
void walk_kfac_batches(ScoreModel& model, const ClassifierData& data,
                       const ClassifierFisherOptions& options, const RunOptions& run,
                       const std::vector<KfacLayer>& layers, const char* stage,
                       const KfacInputsFn& on_inputs, const KfacGradientsFn& on_gradients);

}  // namespace nfk::detail
