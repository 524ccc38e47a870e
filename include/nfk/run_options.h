#pragma once
/// How a computation over data runs: the knobs that every streaming algorithm shares, set once by
/// the caller (not copied into each algorithm's options).

#include <cstdint>

#include "nfk/dist.h"
#include "nfk/progress.h"

namespace nfk {

/// Example: `nfk::RunOptions run{/*batch_size=*/128, /*seed=*/3}; run.progress = my_callback;`
struct RunOptions {
  int64_t batch_size = 256;      // examples per batch (per-example gradients, JVP/VJP passes)
  uint64_t seed = 0;             // every random choice: SVD probes, reference subsets, samples
  dist::Group* group = nullptr;  // data-parallel ranks (not owned); null: this process alone
  ProgressFn progress;           // called with (stage, done, total) as batches finish
};

}  // namespace nfk
