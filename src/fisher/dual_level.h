#pragma once
// Forward-mode AD scope (internal to fisher/).
#include <torch/csrc/autograd/autograd.h>

#include <cstdint>
#include <vector>

namespace nfk::detail {

/// Enters a forward-AD level and leaves it (clearing every tangent set at it) on scope exit.
class DualLevel {
 public:
  DualLevel() : level_(torch::autograd::forward_ad::enter_dual_level()) {}
  ~DualLevel() { torch::autograd::forward_ad::exit_dual_level(level_); }
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
  uint64_t level() const { return level_; }

  /// Sets the tangents of `params` (θ's layout) to the slices of t_p [P].
  void set_tangents(std::vector<torch::Tensor>& params, const torch::Tensor& t_p) const {
    int64_t offset = 0;
    for (auto& p : params) {
      p._set_fw_grad(t_p.narrow(0, offset, p.numel()).view_as(p), level_,
                     /*is_inplace_op=*/false);
      offset += p.numel();
    }
  }

 private:
  uint64_t level_;
};

}  // namespace nfk::detail
