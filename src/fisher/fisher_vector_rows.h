#pragma once
// Materialised Fisher vectors (internal to fisher/): what both streaming operators' dense() give.
#include "nfk/model.h"
#include "nfk/progress.h"

namespace nfk::detail {

/// V [N, P] = (J − 1zᵀ) I^{-1/2} from per-example gradients of `inputs`, a batch at a time
/// (progress stage "gradients"); `first_index`: the index of inputs[0] in its data set.
torch::Tensor fisher_vector_rows(ScoreModel& model, const torch::Tensor& inputs,
                                 const torch::Tensor& z, const torch::Tensor& inv_sqrt,
                                 int64_t batch_size, const ProgressFn& progress,
                                 int64_t first_index);

}  // namespace nfk::detail
