#pragma once
/// nfk dist layer (SPEC §4, bottom): a data-parallel process group over torch.distributed's c10d
/// (Gloo), created from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), and
/// a local launcher that runs N ranks of the same command (`nfk ... --nproc N`).
/// Collectives run on CPU copies of their tensors (Gloo), whatever device the tensors live on;
/// their results come back on the input's device and dtype.

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nfk::dist {

/// True when nfk was built with c10d/Gloo (CMake option NFK_WITH_DISTRIBUTED).
bool available();

/// Rows [begin, end) of a data set that one rank owns.
struct Shard {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

/// Rank `rank`'s contiguous shard of `n` rows split among `world` ranks in whole blocks of
/// `block` rows (batch boundaries stay where a single process puts them, so per-batch noise
/// seeded by the batch's first index is the same). Ranks past the last block get empty shards.
/// Example: `shard_range(1000, 256, 1, 2)` → [512, 1000).
Shard shard_range(int64_t n, int64_t block, int rank, int world);

/// A process group: rank, world size and the collectives nfk needs. World size 1 (no
/// environment) is a trivial group whose collectives return their input.
/// Every collective must be called by every rank in the same order. A rank that dies or stalls
/// makes the others throw "nfk: distributed <op> failed on rank r of w ..." (within the timeout)
/// instead of hanging.
class Group {
 public:
  /// World size 1, no communication.
  Group();
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  /// From torchrun's variables: WORLD_SIZE unset or 1 → single process; otherwise RANK,
  /// MASTER_ADDR (default 127.0.0.1) and MASTER_PORT are required, rank 0 hosts the TCPStore and
  /// every collective (and the rendezvous) gives up after `timeout`.
  static std::unique_ptr<Group> from_env(std::chrono::milliseconds timeout);

  /// Rank `rank` of `world` ranks meeting at addr:port (rank 0 hosts the store there).
  /// Example: `auto g = Group::create(0, 2, "127.0.0.1", 29500, std::chrono::seconds(60));`
  static std::unique_ptr<Group> create(int rank, int world, const std::string& addr, int port,
                                       std::chrono::milliseconds timeout);

  int rank() const { return rank_; }
  int world_size() const { return world_; }
  bool is_root() const { return rank_ == 0; }
  bool distributed() const { return world_ > 1; }

  /// Elementwise sum over ranks; every rank gets the same tensor (same shape on every rank).
  torch::Tensor allreduce_sum(const torch::Tensor& t);
  /// Rows of every rank, concatenated in rank order: `local` is [rows_per_rank[rank], ...] and
  /// the result [Σ rows_per_rank, ...]. Trailing shape and dtype must agree across ranks.
  torch::Tensor allgather_rows(const torch::Tensor& local,
                               const std::vector<int64_t>& rows_per_rank);
  /// Rank `root`'s tensor on every rank (`t` gives shape and dtype on the others).
  torch::Tensor broadcast(const torch::Tensor& t, int root = 0);
  void barrier();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0;
  int world_ = 1;
  std::chrono::milliseconds timeout_{0};
};

/// Rows per rank of `n` rows sharded by `shard_range(n, block, r, world)`.
std::vector<int64_t> shard_sizes(int64_t n, int64_t block, int world);

/// Runs `argv` (argv[0]: the executable) `nproc` times as ranks 0..nproc−1 of one job on this
/// machine (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT a
/// free port) and waits for all. If any rank fails, the others are stopped and
/// c10::Error says which rank failed and how ("nfk: rank 1 of 2 was killed by signal 9 ...").
void launch_local(const std::vector<std::string>& argv, int nproc);

}  // namespace nfk::dist
