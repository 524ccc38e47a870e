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

/// Gives LibTorch's intra-op pool (GEMMs, OpenMP loops) one thread per CPU this process may run
/// on (its affinity mask), unless OMP_NUM_THREADS is set, which wins. LibTorch's default is one
/// thread per physical core, which leaves each core's second hardware thread idle: on a 2-vCPU
/// VM that is one thread and about half the GEMM rate. The CLI calls it at start; a library
/// user decides (Python: torch.set_num_threads). Returns the thread count in effect.
int use_available_cpus();

}  // namespace nfk
