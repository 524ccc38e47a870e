#pragma once
/// The layer tape's records (internal; the public entry is `nfk::taped`, include/nfk/layer_tape.h):
/// while a LayerTape lives on a thread, every taped() call on it appends a TapeRecord.

#include <vector>

#include "nfk/layer_tape.h"

namespace nfk {

/// One recorded layer call.
struct TapeRecord {
  TapedLayer layer = TapedLayer::kLinear;
  torch::nn::Module* module = nullptr;  // the layer (its options: stride, eps, ...)
  torch::Tensor weight, bias;           // its parameters as used (bias may be undefined)
  torch::Tensor weight_mask;            // kLinear only: y = x (W ⊙ mask)ᵀ + b; else undefined
  torch::Tensor input;                  // [B, ...] as given to the layer
  torch::Tensor output;                 // [B, ...] the layer's output (a node of the graph)
  // Geometry the per-example formulas need (conv: 2 entries each; norms: eps, groups).
  std::vector<int64_t> kernel, stride, padding, dilation;
  int64_t groups = 1;                       // conv groups, GroupNorm groups
  double eps = 0;                           // norms
  std::vector<int64_t> normalized_shape;    // kLayerNorm
  torch::Tensor running_mean, running_var;  // kBatchNorm (eval mode)
  int64_t padding_idx = -1;                 // kEmbedding (-1: none)
};

/// Records layer calls made on this thread while it lives (scopes nest; the innermost records).
class LayerTape {
 public:
  LayerTape();
  ~LayerTape();
  LayerTape(const LayerTape&) = delete;
  LayerTape& operator=(const LayerTape&) = delete;

  const std::vector<TapeRecord>& records() const { return records_; }
  void record(TapeRecord r) { records_.push_back(std::move(r)); }
  /// The innermost active tape on this thread, or nullptr.
  static LayerTape* active();

 private:
  std::vector<TapeRecord> records_;
  LayerTape* previous_ = nullptr;
};

}  // namespace nfk
