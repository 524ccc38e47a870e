#pragma once
/// Layer tape (SPEC §2 per-example fast path): native modules route each parametric layer call
/// through `nfk::taped(layer, x)`. With no tape active this is exactly `layer->forward(x)`; while
/// the library's tape (src/models/tape_record.h, internal) is active on the thread, the call also
/// records the layer, its input and its output, so that fisher/ can form every per-example
/// gradient from one backward pass (output gradients × saved inputs, as nngeometry/BackPACK do).
/// A C++ module of the user's own takes the fast path by calling `taped` for its layers.
///
/// Recorded: Linear (also with a weight mask, MADE), Conv2d and ConvTranspose2d (zero padding),
/// LayerNorm and GroupNorm (affine), BatchNorm1d/2d in eval mode with running statistics, and
/// Embedding (no max_norm, no scale_grad_by_freq). Calls these rules exclude are not recorded:
/// their parameters stay uncovered and fisher/ falls back to the per-example loop.
/// Users' TorchScript models are recorded too (src/models/torchscript_tape.h): their graphs are
/// rewritten to return each aten::linear, conv2d, _convolution, conv_transpose2d, layer_norm,
/// group_norm, eval-mode batch_norm and embedding call's input, output and parameters, after
/// in-place ops (ReLU(inplace=True), `out += identity`, ...) are made functional where alias
/// analysis allows; ops it cannot expose are named, with the reason, in Network::tape_note().
/// Example (a module's forward): `auto h = torch::relu(nfk::taped(*fc1, x));`

#include <torch/torch.h>

namespace nfk {

/// The layer types the tape understands.
enum class TapedLayer {
  kLinear,
  kConv2d,
  kConvTranspose2d,
  kLayerNorm,
  kGroupNorm,
  kBatchNorm,
  kEmbedding
};

/// layer->forward(x), recorded on the active tape (if any and if the call is supported).
torch::Tensor taped(torch::nn::LinearImpl& layer, const torch::Tensor& x);
torch::Tensor taped(torch::nn::Conv2dImpl& layer, const torch::Tensor& x);
torch::Tensor taped(torch::nn::ConvTranspose2dImpl& layer, const torch::Tensor& x);
torch::Tensor taped(torch::nn::LayerNormImpl& layer, const torch::Tensor& x);
torch::Tensor taped(torch::nn::GroupNormImpl& layer, const torch::Tensor& x);
torch::Tensor taped(torch::nn::BatchNorm1dImpl& layer, const torch::Tensor& x);
torch::Tensor taped(torch::nn::BatchNorm2dImpl& layer, const torch::Tensor& x);
torch::Tensor taped(torch::nn::EmbeddingImpl& layer, const torch::Tensor& x);

/// linear(x, W ⊙ mask, b) for masked layers (MADE), recorded as kLinear with its mask.
torch::Tensor taped_masked_linear(torch::nn::LinearImpl& layer, const torch::Tensor& mask,
                                  const torch::Tensor& x);

}  // namespace nfk
