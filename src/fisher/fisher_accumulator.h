#pragma once
// The streaming accumulator of z and I (internal to fisher/; tests reach it through src/).
#include <torch/torch.h>

#include <string>

#include "nfk/dist.h"
#include "nfk/fisher.h"

namespace nfk {

/// Streams per-example gradient rows into the mean score z and diagonal Fisher I, accumulated
/// in float64 around a shift (the first rows' mean) so that E[d²] − E[d]² does not cancel.
class FisherAccumulator {
 public:
  void add(const torch::Tensor& j_bp);
  /// z, I floored at floor × mean(I), in `dtype`; throws if I is zero everywhere.
  FisherStats finish(double floor, torch::Dtype dtype, const std::string& reference) const;
  int64_t count() const { return count_; }
  /// Sums the statistics of every rank of `group` (each rank added its own rows), so that
  /// finish() gives the statistics of all rows on every rank. `p`/`device`: the row size and
  /// device, for ranks that added no rows. Every rank must call it.
  void reduce(dist::Group& group, int64_t p, torch::Device device);

 private:
  torch::Tensor shift_, sum_, sum_sq_;
  int64_t count_ = 0;
};

}  // namespace nfk
