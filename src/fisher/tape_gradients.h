#pragma once
// Per-example gradients from the layer tape (internal to fisher/).
#include <string>

#include "nfk/model.h"

namespace nfk::detail {

/// One forward under a LayerTape and one backward to the recorded layer outputs give J_b: the
/// rows are written into out_bp [B, P] (zeroed first). `x` is prepared (model dtype/device).
/// Returns "" on success, else why the tape does not cover the model (out_bp is then unspecified
/// and the caller falls back to the per-example loop).
std::string tape_per_example_gradients(ScoreModel& model, const torch::Tensor& x,
                                       int64_t first_index, torch::Tensor out_bp);

}  // namespace nfk::detail
