#include <algorithm>
#include <cstdlib>
#include <exception>
#include <string>

#include "detail/strings.h"
#include "nfk/dist.h"

#ifdef NFK_WITH_DISTRIBUTED
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace nfk::dist {
namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  try {
    size_t used = 0;
    const int x = std::stoi(v, &used);
    TORCH_CHECK(used == std::string(v).size(), "");
    return x;
  } catch (...) {
    TORCH_CHECK(false, "nfk: environment variable ", name, "=", v, " is not an integer");
  }
}

std::string env_str(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v == nullptr || *v == '\0' ? fallback : std::string(v);
}

}  // namespace

bool available() {
#ifdef NFK_WITH_DISTRIBUTED
  return true;
#else
  return false;
#endif
}

Shard shard_range(int64_t n, int64_t block, int rank, int world) {
  TORCH_CHECK(n >= 0 && block > 0 && world > 0 && rank >= 0 && rank < world,
              "nfk: bad shard request (n=", n, ", block=", block, ", rank=", rank,
              ", world=", world, ")");
  const int64_t blocks = (n + block - 1) / block;
  // Rank r takes blocks [r·b/w, (r+1)·b/w): sizes differ by at most one block.
  const int64_t first = blocks * rank / world, last = blocks * (rank + 1) / world;
  return {std::min(n, first * block), std::min(n, last * block)};
}

std::vector<int64_t> shard_sizes(int64_t n, int64_t block, int world) {
  std::vector<int64_t> sizes;
  for (int r = 0; r < world; ++r) sizes.push_back(shard_range(n, block, r, world).size());
  return sizes;
}

#ifdef NFK_WITH_DISTRIBUTED
struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};
#else
struct Group::Impl {};
#endif

Group::Group() = default;
Group::~Group() = default;

std::unique_ptr<Group> Group::from_env(std::chrono::milliseconds timeout) {
  const int world = env_int("WORLD_SIZE", 1);
  TORCH_CHECK(world >= 1, "nfk: WORLD_SIZE must be >= 1, got ", world);
  if (world == 1) return std::make_unique<Group>();
  TORCH_CHECK(available(), "nfk: WORLD_SIZE=", world, " asks for a distributed run, but this nfk ",
              "was built without c10d/Gloo (NFK_WITH_DISTRIBUTED=OFF: LibTorch without the gloo "
              "headers); run single-process or rebuild against a LibTorch with libgloo-dev");
  const int rank = env_int("RANK", -1);
  TORCH_CHECK(rank >= 0 && rank < world, "nfk: WORLD_SIZE=", world,
              " needs RANK in [0, WORLD_SIZE), got ", env_str("RANK", "(unset)"));
  const int port = env_int("MASTER_PORT", -1);
  TORCH_CHECK(port > 0 && port < 65536, "nfk: a distributed run needs MASTER_PORT, got ",
              env_str("MASTER_PORT", "(unset)"));
  return create(rank, world, env_str("MASTER_ADDR", "127.0.0.1"), port, timeout);
}

std::unique_ptr<Group> Group::create(int rank, int world, const std::string& addr, int port,
                                     std::chrono::milliseconds timeout) {
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "nfk: bad rank ", rank, " of ", world);
  auto group = std::make_unique<Group>();
  if (world == 1) return group;
  TORCH_CHECK(available(), "nfk: a distributed run (", world, " ranks) needs c10d/Gloo, and this ",
              "nfk was built without it (NFK_WITH_DISTRIBUTED=OFF)");
#ifdef NFK_WITH_DISTRIBUTED
  group->rank_ = rank;
  group->world_ = world;
  group->timeout_ = timeout;
  group->impl_ = std::make_unique<Impl>();
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<size_t>(world);
    so.waitWorkers = true;
    so.timeout = timeout;
    group->impl_->store = c10::make_intrusive<c10d::TCPStore>(addr, so);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
    options->threads = 1;
    group->impl_->pg =
        c10::make_intrusive<c10d::ProcessGroupGloo>(group->impl_->store, rank, world, options);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "nfk: rank ", rank, " of ", world, " could not join the process group at ",
                addr, ":", port, " within ", timeout.count() / 1000.0,
                " s (did every rank start?): ", detail::summary_line(detail::error_text(e)));
  }
#endif
  return group;
}

#ifdef NFK_WITH_DISTRIBUTED
namespace {

// Waits for a collective; a dead or stalled peer surfaces here as Gloo's error or timeout.
void wait_for(const c10::intrusive_ptr<c10d::Work>& work, const char* op, int rank, int world,
              std::chrono::milliseconds timeout) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "nfk: distributed ", op, " failed on rank ", rank, " of ", world,
                " (another rank died, or stalled past the ", timeout.count() / 1000.0,
                " s timeout): ", detail::summary_line(detail::error_text(e)));
  }
}

}  // namespace
#endif

torch::Tensor Group::allreduce_sum(const torch::Tensor& t) {
  if (!distributed()) return t;
#ifdef NFK_WITH_DISTRIBUTED
  std::vector<torch::Tensor> buf{t.detach().to(torch::kCPU).contiguous().clone()};
  wait_for(impl_->pg->allreduce(buf), "allreduce", rank_, world_, timeout_);
  return buf[0].to(t.device());
#else
  TORCH_INTERNAL_ASSERT(false, "distributed group without distributed support");
#endif
}

torch::Tensor Group::allgather_rows(const torch::Tensor& local,
                                    const std::vector<int64_t>& rows_per_rank) {
  TORCH_CHECK(static_cast<int>(rows_per_rank.size()) == world_ && local.dim() >= 1 &&
                  local.size(0) == rows_per_rank[rank_],
              "nfk: allgather_rows: rank ", rank_, " holds ", local.dim() >= 1 ? local.size(0) : -1,
              " rows, expected ", rows_per_rank.size() > size_t(rank_) ? rows_per_rank[rank_] : -1);
  if (!distributed()) return local;
#ifdef NFK_WITH_DISTRIBUTED
  // Gloo's allgather wants equal shapes: pad every shard to the largest, then trim.
  const int64_t max_rows = *std::max_element(rows_per_rank.begin(), rows_per_rank.end());
  auto shape = local.sizes().vec();
  shape[0] = max_rows;
  auto padded = torch::zeros(shape, local.options().device(torch::kCPU));
  padded.slice(0, 0, local.size(0)).copy_(local.detach());
  std::vector<torch::Tensor> inputs{padded};
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < world_; ++r) outputs[0].push_back(torch::empty_like(padded));
  wait_for(impl_->pg->allgather(outputs, inputs), "allgather", rank_, world_, timeout_);
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < world_; ++r) parts.push_back(outputs[0][r].slice(0, 0, rows_per_rank[r]));
  return torch::cat(parts, /*dim=*/0).to(local.device());
#else
  TORCH_INTERNAL_ASSERT(false, "distributed group without distributed support");
#endif
}

torch::Tensor Group::broadcast(const torch::Tensor& t, int root) {
  if (!distributed()) return t;
#ifdef NFK_WITH_DISTRIBUTED
  std::vector<torch::Tensor> buf{t.detach().to(torch::kCPU).contiguous().clone()};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  wait_for(impl_->pg->broadcast(buf, o), "broadcast", rank_, world_, timeout_);
  return buf[0].to(t.device());
#else
  TORCH_INTERNAL_ASSERT(false, "distributed group without distributed support");
#endif
}

void Group::barrier() {
  if (!distributed()) return;
#ifdef NFK_WITH_DISTRIBUTED
  wait_for(impl_->pg->barrier(), "barrier", rank_, world_, timeout_);
#endif
}

}  // namespace nfk::dist
