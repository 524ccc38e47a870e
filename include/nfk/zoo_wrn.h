#pragma once
/// Wide residual networks (Zagoruyko & Komodakis 2016, "Wide Residual Networks") for the zoo:
/// arch "wrn", `make_zoo_module("wrn", {{"depth", 16}, {"widen_factor", 2}})`, a classifier
/// (forward(x) → logits) trained by `nfk train classifier --arch wrn`.
///
/// Batch-norm and per-example gradients: in eval mode (which nfk's Network::to() sets) every
/// BatchNorm2d normalises with its running statistics, so an example's logits — and hence its
/// score and score gradient — depend on that example alone. Training runs in train mode (batch
/// statistics) as usual. Nothing in these modules looks at batch statistics outside train mode.

#include <torch/torch.h>

#include <cstdint>

namespace nfk {

/// One pre-activation wide basic block (the WRN paper's B(3,3)).
struct WideBasicBlockOptions {
  WideBasicBlockOptions(int64_t in_channels, int64_t out_channels, int64_t stride = 1)
      : in_channels_(in_channels), out_channels_(out_channels), stride_(stride) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(int64_t, stride) = 1;  // of the first 3×3 conv (and of the projection shortcut)
  TORCH_ARG(double, dropout) = 0;  // between the two convs, train mode only
};

/// BN-ReLU-conv3×3-BN-ReLU-conv3×3 with a residual sum:
///   a = relu(bn1(x)), h = conv1(a) (3×3, stride), h = relu(bn2(h)), h = dropout(h),
///   y = conv2(h) (3×3) + shortcut,
/// where shortcut = x if the shape is unchanged (same channels, stride 1), else the 1×1
/// projection conv (stride) of the activated input a (as in the authors' code). Convs have no
/// bias (each is followed by batch-norm or a residual sum).
struct WideBasicBlockImpl : torch::nn::Cloneable<WideBasicBlockImpl> {
  explicit WideBasicBlockImpl(const WideBasicBlockOptions& options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  bool has_projection() const { return !shortcut.is_empty(); }

  WideBasicBlockOptions options;
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Conv2d shortcut{nullptr};  // empty for the identity shortcut
};
TORCH_MODULE(WideBasicBlock);

/// Options of the `wrn` zoo architecture: WRN-depth-widen_factor for [B, C, S, S] images.
struct WideResNetOptions {
  TORCH_ARG(int64_t, depth) = 16;        // 6n + 4 (n blocks per group), e.g. 10, 16, 22, 28, 40
  TORCH_ARG(int64_t, widen_factor) = 1;  // k: group widths 16k, 32k, 64k
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, image_size) = 32;  // recorded for reference; any size works (global pool)
  TORCH_ARG(double, dropout) = 0;       // inside each block, train mode only
};

/// conv3×3(C → 16) → group1 (n blocks, width 16k, stride 1) → group2 (32k, stride 2) →
/// group3 (64k, stride 2) → BN-ReLU → global average pool → linear(64k → classes).
/// forward(x [B, C, H, W]) → logits [B, classes]. Parameters with 10 classes and 3 input
/// channels: WRN-16-1 175,066; WRN-40-2 2,243,546; WRN-28-10 36,479,194.
/// Initialisation: convs He-normal (fan_out, as in the authors' code), BN γ = 1, β = 0,
/// linear default weights and zero bias.
struct WideResNetImpl : torch::nn::Cloneable<WideResNetImpl> {
  explicit WideResNetImpl(const WideResNetOptions& options = {});
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// After the final BN-ReLU and the global average pool [B, 64k]: the zoo method "features".
  torch::Tensor features(const torch::Tensor& x);
  /// The linear layer on those features → logits: "classify"; forward = classify ∘ features.
  torch::Tensor classify(const torch::Tensor& features);

  WideResNetOptions options;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::Sequential group1{nullptr}, group2{nullptr}, group3{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(WideResNet);

}  // namespace nfk
