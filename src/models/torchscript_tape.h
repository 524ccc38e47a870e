#pragma once
// The layer tape for users' TorchScript models (SPEC §2: "their graphs can expose each parametric
// op's input and output"). A method's graph is copied, inlined, its non-tensor attributes
// (training flags, strides, ...) folded to constants, and rewritten to also return, for every
// parametric op it recognises, the op's input, output and parameters. In-place ops are first
// replaced by their functional forms (torch::jit::RemoveTensorMutation) where alias analysis
// proves it keeps the meaning, so ReLU(inplace=True) and `out += identity` do not hide the ops
// around them. Running that graph under an
// active LayerTape records the ops exactly as native taped layers do, so fisher/ gets every
// per-example gradient from one backward per batch. Internal to models/.
#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

#include "models/tape_record.h"

namespace nfk::detail {

class TapedScriptMethod {
 public:
  /// Rewrites `method` of `module` (which must outlive this object).
  TapedScriptMethod(torch::jit::Module& module, const std::string& method);
  /// Runs the method on x, records its recognised ops on the active tape, returns its output.
  c10::IValue run(const torch::Tensor& x);
  /// Recognised ops (0: the tape records nothing and fisher/ uses the per-example loop).
  size_t op_count() const { return ops_.size(); }
  /// Recognised ops the rewrite could not expose, each with the reason, e.g.
  /// "aten::batch_norm (bn.weight): not in eval mode ..." (empty when every one is exposed).
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  // One recognised op: its kind, geometry, and which tuple entries hold its tensors.
  struct Op {
    TapeRecord geometry;  // layer, kernel/stride/padding/dilation, groups, eps, ...
    int input = -1, output = -1, weight = -1, bias = -1, running_mean = -1, running_var = -1;
  };

  torch::jit::Module& module_;
  std::unique_ptr<torch::jit::GraphFunction> function_;
  std::vector<Op> ops_;
  std::vector<std::string> notes_;
};

}  // namespace nfk::detail
