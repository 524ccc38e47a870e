#pragma once
// Per-example gradients from the layer tape (internal to fisher/).
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "models/tape_record.h"
#include "nfk/model.h"

namespace nfk::detail {

/// One forward of a batch under a LayerTape, after which per-example rows can be formed for any
/// cotangent of the batch's output (one backward each, on the retained graph): the row of
/// example i for cotangent c is ∂⟨c_i, out_i⟩/∂θ. The NFK score uses c = 1 on out = s [B]; the
/// classifier's Fisher uses C cotangents of the logits [B, C] on one forward. K-FAC reads the
/// recorded layers' inputs and their output gradients directly.
class TapedBatch {
 public:
  /// Runs `forward` (the batch's output, e.g. `model.score(x)`) with the tape recording.
  /// `params`: θ in layout order; `net` supplies its tape note after the forward.
  TapedBatch(std::vector<torch::Tensor> params, Network& net,
             const std::function<torch::Tensor()>& forward);
  TapedBatch(const TapedBatch&) = delete;
  TapedBatch& operator=(const TapedBatch&) = delete;

  /// "" when every parameter tensor is used by a taped layer, else why not (then only
  /// `output()` may be used).
  const std::string& uncovered() const { return uncovered_; }
  /// The forward's output [B, ...] (a node of the graph).
  const torch::Tensor& output() const { return output_; }
  int64_t num_params() const { return num_params_; }

  /// Per-example rows for `cotangent` (output's shape) into out_bp [B, P] (every entry written).
  /// `retain_graph`: keep the graph for another call.
  void rows(const torch::Tensor& cotangent, torch::Tensor out_bp, bool retain_graph);

  /// The taped layers whose weight or bias is in θ, in call order, and the gradients of
  /// ⟨cotangent, output⟩ with respect to each one's output (undefined where it does not reach it).
  const std::vector<const TapeRecord*>& layers() const { return used_; }
  std::vector<torch::Tensor> output_gradients(const torch::Tensor& cotangent, bool retain_graph);

  /// Where a parameter tensor's gradient goes in a row of J.
  struct Slot {
    int64_t index = 0;
    int64_t offset = 0;
  };
  /// θ's slot of a layer's weight or bias, or nullptr (undefined, or not in θ).
  const Slot* slot_of(const torch::Tensor& t) const;

 private:
  std::vector<torch::Tensor> params_;
  std::unordered_map<const void*, Slot> slots_;
  int64_t num_params_ = 0;
  torch::Tensor output_;
  std::vector<TapeRecord> records_;
  std::vector<const TapeRecord*> used_;
  std::vector<torch::Tensor> outputs_;
  std::string uncovered_;
};

/// One forward under a LayerTape and one backward to the recorded layer outputs give J_b: the
/// rows are written into out_bp [B, P] (zeroed first). `x` is prepared (model dtype/device).
/// Returns "" on success, else why the tape does not cover the model (out_bp is then unspecified
/// and the caller falls back to the per-example loop).
std::string tape_per_example_gradients(ScoreModel& model, const torch::Tensor& x,
                                       int64_t first_index, torch::Tensor out_bp);

}  // namespace nfk::detail
