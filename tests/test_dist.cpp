// The dist layer: shards, and collectives of two ranks run as two threads of this process (c10d
// over loopback), checked against the same computation on one process.
#include <unistd.h>

#include <thread>

#include "nfk/dist.h"
#include "fisher/fisher_accumulator.h"
#include "nfk/fisher.h"
#include "nfk/sharded_operator.h"
#include "support.h"

namespace nfk {
namespace {

TEST(ShardRange, CoversEveryRowOnceInWholeBlocks) {
  for (int64_t n : {0, 1, 63, 64, 300, 1000}) {
    for (int world : {1, 2, 3, 4, 7}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        auto s = dist::shard_range(n, /*block=*/64, r, world);
        EXPECT_EQ(s.begin, next) << n << " rows, rank " << r << " of " << world;
        EXPECT_GE(s.size(), 0);
        if (s.end < n) EXPECT_EQ(s.end % 64, 0) << "shards end on batch boundaries";
        next = s.end;
      }
      EXPECT_EQ(next, n);
    }
  }
  EXPECT_EQ(dist::shard_range(1000, 256, 1, 2).begin, 512);
  EXPECT_EQ(dist::shard_sizes(300, 64, 2), (std::vector<int64_t>{128, 172}));
}

TEST(Group, SingleProcessCollectivesReturnTheirInput) {
  dist::Group g;
  EXPECT_FALSE(g.distributed());
  auto t = torch::randn({3, 2});
  EXPECT_TRUE(g.allreduce_sum(t).equal(t));
  EXPECT_TRUE(g.allgather_rows(t, {3}).equal(t));
  EXPECT_TRUE(g.broadcast(t).equal(t));
  g.barrier();
}

// Runs body(group) on `world` threads, each one rank of a loopback process group.
void run_ranks(int world, const std::function<void(dist::Group&)>& body) {
  const int port = 20000 + static_cast<int>(::getpid() % 20000);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto g = dist::Group::create(r, world, "127.0.0.1", port, std::chrono::seconds(30));
        body(*g);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

TEST(Group, ShardedRandomizedAndSketchSvdEqualSingleProcess) {
  if (!dist::available()) GTEST_SKIP() << "built without c10d/Gloo";
  test::seed(3);
  const int64_t n = 70, p = 40, block = 16;
  auto v =
      torch::randn({n, p}, torch::kFloat64) * torch::pow(0.8, torch::arange(p, torch::kFloat64));
  SvdOptions o;
  o.rank = 6;
  DenseOperator whole(v);
  auto ref = randomized_svd(whole, o);
  auto ref_sketch = sketch_svd(whole, o);
  const int world = 3;
  std::vector<SvdResult> results(world), sketches(world);
  std::vector<torch::Tensor> gathered(world);
  run_ranks(world, [&](dist::Group& g) {
    auto shard = dist::shard_range(n, block, g.rank(), world);
    DenseOperator local(v.slice(0, shard.begin, shard.end));
    ShardedOperator op(local, g, dist::shard_sizes(n, block, world));
    results[g.rank()] = randomized_svd(op, o);
    sketches[g.rank()] = sketch_svd(op, o);  // apply_pair: one local pass, two reductions
    gathered[g.rank()] = op.dense();
  });
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(results[r].singular_values.defined()) << "rank " << r;
    test::expect_close(results[r].singular_values, ref.singular_values, 1e-12, "sigma");
    test::expect_close(results[r].right, ref.right, 1e-10, "P");
    test::expect_close(results[r].left, ref.left, 1e-10, "Phi");
    test::expect_close(sketches[r].singular_values, ref_sketch.singular_values, 1e-12, "sketch");
    test::expect_close(sketches[r].right, ref_sketch.right, 1e-10, "sketch P");
    EXPECT_TRUE(gathered[r].equal(v)) << "dense() gathers V in row order";
  }
}

TEST(Group, ReducedFisherStatisticsEqualTwoPassFloat64Moments) {
  if (!dist::available()) GTEST_SKIP() << "built without c10d/Gloo";
  test::seed(4);
  const int64_t n = 45, p = 9, block = 8;
  // Far from zero (1e3) with a spread of 1e-3: E[j²] − E[j]² would lose all digits. Columns 0–3
  // also differ by 5 between the ranks' rows, so the merge of per-rank shifted sums is tested.
  auto j = torch::randn({n, p}, torch::kFloat64) * 1e-3 + 1e3;
  j.slice(0, 30, n).slice(1, 0, 4) += 5.0;
  // The truth, independent of the accumulator: two passes over all rows in float64.
  auto z_ref = j.mean(0);
  auto fisher_ref = (j - z_ref).square().mean(0);
  ASSERT_LT(fisher_ref.slice(0, 4).max().item<double>(), 2e-6);    // tiny variances...
  ASSERT_GT(fisher_ref.slice(0, 0, 4).min().item<double>(), 5.0);  // ...and large ones
  const int world = 4;  // with 6 blocks: shard sizes 8, 16, 8, 13
  std::vector<FisherStats> stats(world);
  run_ranks(world, [&](dist::Group& g) {
    auto shard = dist::shard_range(n, block, g.rank(), world);
    FisherAccumulator acc;
    for (int64_t s = shard.begin; s < shard.end; s += block) {
      acc.add(j.slice(0, s, std::min(shard.end, s + block)));
    }
    acc.reduce(g, p, torch::kCPU);
    EXPECT_EQ(acc.count(), n);
    stats[g.rank()] = acc.finish(1e-8, torch::kFloat64, "data");
  });
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(stats[r].fisher_diag.defined()) << "rank " << r;
    test::expect_close(stats[r].mean_score, z_ref, 1e-14, "z");
    // Entry by entry: the tiny variances must be right too, not only the large ones.
    EXPECT_LE(test::max_entry_rel_err(stats[r].fisher_diag, fisher_ref), 1e-8) << "I, rank " << r;
    EXPECT_EQ(stats[r].n_floored, 0);
  }
}

// compute_fisher_stats over 3 ranks, each streaming its shard of the data through the model,
// against z and I from a plain per-example loop over all of the data in this process.
TEST(Group, DistributedFisherStatisticsMatchAPerExampleLoopOverAllData) {
  if (!dist::available()) GTEST_SKIP() << "built without c10d/Gloo";
  const int world = 3;
  const int64_t n = 23, batch = 4;  // 6 batches: shards of 8, 8, 7 rows
  std::vector<ScoreModel> models;
  for (int r = 0; r < world; ++r) {
    models.push_back(test::make_test_model(ModelKind::kClassifier,
                                           test::temp_dir("dist_stats_" + std::to_string(r))));
  }
  auto x = test::test_inputs(n, 8);
  auto j = test::explicit_jacobian(models[0], x, 1);  // [n, P], one example at a time
  auto z_ref = j.mean(0);
  auto fisher_ref = (j - z_ref).square().mean(0);
  fisher_ref = fisher_ref.clamp_min(1e-8 * fisher_ref.mean().item<double>());
  std::vector<FisherStats> stats(world);
  run_ranks(world, [&](dist::Group& g) {
    FisherOptions fo;
    fo.estimator = Estimator::kEmpirical;
    RunOptions run;
    run.batch_size = batch;
    run.group = &g;
    stats[g.rank()] = compute_fisher_stats(models[g.rank()], x, fo, run);
  });
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(stats[r].fisher_diag.defined()) << "rank " << r;
    EXPECT_EQ(stats[r].n_reference, n) << "rank " << r;
    test::expect_close(stats[r].mean_score, z_ref, 1e-12, "z, rank " + std::to_string(r));
    EXPECT_LE(test::max_entry_rel_err(stats[r].fisher_diag, fisher_ref), 1e-10) << "I, rank " << r;
  }
}

TEST(Group, AMissingRankFailsWithinTheTimeout) {
  if (!dist::available()) GTEST_SKIP() << "built without c10d/Gloo";
  const int port = 20000 + static_cast<int>((::getpid() + 7919) % 20000);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    dist::Group::create(0, 2, "127.0.0.1", port, std::chrono::seconds(1));
    FAIL() << "rank 0 joined a group whose rank 1 never started";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("could not join"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
}

}  // namespace
}  // namespace nfk
