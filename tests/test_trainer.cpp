// The shared training loop and its hooks on toys with known answers: a loss term moves the
// minimiser where the closed form says, a gradient transform equals hand-written preconditioned
// SGD, task phases run in order on the trained model, and resumed runs repeat the weights.
#include <stdexcept>

#include "nfk/trainer.h"
#include "support.h"

namespace nfk {
namespace {

// y = x·w (no bias), float64, as a zoo module (not in the registry: runs without checkpoints).
ZooModule linear_model(int64_t in_features) {
  torch::nn::Linear linear(torch::nn::LinearOptions(in_features, 1).bias(false));
  linear->to(torch::kFloat64);
  return {"toy-linear",
          {},
          linear.ptr(),
          {{"forward",
            [linear](const torch::Tensor& x) mutable { return linear->forward(x).squeeze(1); }}},
          {}};
}

// A regression set y = x·w_true + noise, float64.
Dataset regression(int64_t n, int64_t d, uint64_t seed) {
  test::seed(seed);
  auto x = torch::randn({n, d}, torch::kFloat64);
  auto y = x.matmul(torch::linspace(-1, 1, d, torch::kFloat64)) +
           0.1 * torch::randn({n}, torch::kFloat64);
  return {x, y};
}

TrainLoopOptions in_memory(int64_t epochs, int64_t batch_size) {
  TrainLoopOptions loop;
  loop.run.epochs = epochs;
  loop.run.batch_size = batch_size;
  loop.run.seed = 3;
  loop.checkpoints = false;
  return loop;
}

// One SGD step on the mean squared error for `optimizer` "sgd".
StepFn mse_step(const ZooModule& model) {
  return [&model](Trainer& t, const Batch& b) {
    auto loss = (model.forward(b.inputs) - b.labels).square().mean();
    t.optimize("sgd", loss, b);
    return StepMetrics{{"loss", loss.item<double>()}};
  };
}

torch::Tensor weights(const ZooModule& model) {
  return model.module->parameters().front().detach().flatten().clone();
}

TEST(Trainer, AnchorLossTermMovesTheMinimiserToTheClosedForm) {
  const int64_t n = 40, d = 3;
  const double lambda = 0.5;
  auto data = regression(n, d, 1);
  auto anchor = torch::tensor({2.0, -1.0, 0.5}, torch::kFloat64);
  ZooModule model = linear_model(d);
  torch::optim::SGD sgd(model.module->parameters(), torch::optim::SGDOptions(0.2));
  TrainHooks hooks;
  hooks.loss_terms.push_back({"anchor", [&](const ZooModule& m, const Batch&) {
                                auto w = m.module->parameters().front().flatten();
                                return lambda / 2 * (w - anchor).square().sum();
                              }});
  Trainer trainer(in_memory(/*epochs=*/600, /*batch_size=*/n), hooks);
  trainer.add_module("linear", &model);
  trainer.add_optimizer("sgd", &sgd, &model);
  const auto& log = trainer.run(data, mse_step(model));

  // ∇ = (2/n) Xᵀ(Xw − y) + λ(w − a) = 0.
  const auto& x = data.inputs;
  auto lhs = 2.0 / n * x.t().matmul(x) + lambda * torch::eye(d, torch::kFloat64);
  auto rhs = 2.0 / n * x.t().matmul(data.labels) + lambda * anchor;
  auto expected = torch::linalg::solve(lhs, rhs.unsqueeze(1), /*left=*/true).squeeze(1);
  test::expect_close(weights(model), expected, 1e-10, "penalised least squares");
  // Without the term the solution is elsewhere: the term did move it.
  auto plain = torch::linalg::solve(x.t().matmul(x), x.t().matmul(data.labels).unsqueeze(1),
                                    /*left=*/true)
                   .squeeze(1);
  EXPECT_GT(test::rel_err(weights(model), plain), 1e-2);
  // The term is logged next to the family's loss.
  const auto& last = log["epochs"].back();
  auto w = weights(model);
  EXPECT_NEAR(last["loss_anchor"].get<double>(),
              lambda / 2 * (w - anchor).square().sum().item<double>(), 1e-9);
  EXPECT_TRUE(last.contains("loss"));
}

TEST(Trainer, DiagonalGradientTransformIsPreconditionedSgd) {
  const int64_t n = 10, d = 3, batch = 4, epochs = 3;
  const double lr = 0.05;
  auto data = regression(n, d, 2);
  auto diag = torch::tensor({1.0, 0.25, 4.0}, torch::kFloat64);
  test::seed(7);
  ZooModule model = linear_model(d);
  auto w0 = weights(model);
  torch::optim::SGD sgd(model.module->parameters(), torch::optim::SGDOptions(lr));
  TrainHooks hooks;
  hooks.gradient_transforms.push_back({"diag", [&](const ZooModule& m, const Batch&) {
                                         auto p = m.module->parameters().front();
                                         p.mutable_grad().mul_(diag.view_as(p));
                                       }});
  Trainer trainer(in_memory(epochs, batch), hooks);
  trainer.add_module("linear", &model);
  trainer.add_optimizer("sgd", &sgd, &model);
  trainer.run(data, mse_step(model));

  // By hand: the same shuffles, w ← w − lr · D · ∇ mean (x·w − y)² per batch (last one partial).
  auto w = w0.clone();
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    auto gen = epoch_generator(/*seed=*/3, /*stream=*/0, epoch);
    auto order = at::randperm(n, gen, torch::kLong);
    for (int64_t start = 0; start < n; start += batch) {
      auto idx = order.slice(0, start, std::min(n, start + batch));
      auto x = data.inputs.index_select(0, idx), y = data.labels.index_select(0, idx);
      auto grad = 2.0 / idx.size(0) * x.t().matmul(x.matmul(w) - y);
      w = w - lr * diag * grad;
    }
  }
  test::expect_close(weights(model), w, 1e-12, "preconditioned SGD");
}

TEST(Trainer, TaskPhasesRunInOrderOnTheTrainedModelAndAddTermsForLaterTasks) {
  const int64_t d = 3;
  std::vector<TrainTask> tasks = {
      {"a", regression(20, d, 11)}, {"b", regression(20, d, 12)}, {"c", regression(20, d, 13)}};
  auto sequence = [&](std::vector<torch::Tensor>* seen) {
    test::seed(5);
    ZooModule model = linear_model(d);
    torch::optim::SGD sgd(model.module->parameters(), torch::optim::SGDOptions(0.1));
    Trainer trainer(in_memory(/*epochs=*/4, /*batch_size=*/8));
    trainer.add_module("linear", &model);
    trainer.add_optimizer("sgd", &sgd, &model);
    run_tasks(trainer, tasks, mse_step(model), [&](Trainer& t, int64_t task, const TrainTask&) {
      EXPECT_EQ(static_cast<int64_t>(seen->size()), task);
      seen->push_back(weights(t.module("linear")));
      auto anchor = seen->back();  // EWC-style: stay near the weights that solved this task
      t.hooks().loss_terms.push_back(
          {"anchor_" + std::to_string(task), [anchor](const ZooModule& m, const Batch&) {
             auto w = m.module->parameters().front().flatten();
             return 0.05 * (w - anchor).square().sum();
           }});
    });
    return trainer.log();
  };
  std::vector<torch::Tensor> seen;
  auto log = sequence(&seen);
  ASSERT_EQ(seen.size(), 3u);
  ASSERT_EQ(log["tasks"].size(), 3u);
  EXPECT_EQ(log["tasks"][1]["name"], "b");
  EXPECT_FALSE(log["tasks"][0]["epochs"][0].contains("loss_anchor_0"));
  EXPECT_TRUE(log["tasks"][1]["epochs"][0].contains("loss_anchor_0"));
  EXPECT_TRUE(log["tasks"][2]["epochs"][0].contains("loss_anchor_1"));

  // Phase 0 saw the model trained on task a alone: the same run without later tasks.
  test::seed(5);
  ZooModule alone = linear_model(d);
  torch::optim::SGD sgd(alone.module->parameters(), torch::optim::SGDOptions(0.1));
  Trainer trainer(in_memory(4, 8));
  trainer.add_module("linear", &alone);
  trainer.add_optimizer("sgd", &sgd, &alone);
  trainer.run(tasks[0].train, mse_step(alone));
  EXPECT_TRUE(torch::equal(seen[0], weights(alone)));
  EXPECT_FALSE(torch::equal(seen[0], seen[1]));
}

// An MLP regressor with an EMA copy, checkpointed in `dir`; `fail_at` (epoch, step) throws there
// as a kill would. Returns (weights, EMA weights, log); counts epoch-end calls in `ends`.
struct ResumeRun {
  torch::Tensor w, ema;
  nlohmann::json log;
};
ResumeRun mlp_run(const std::string& dir, std::pair<int64_t, int64_t> fail_at, int* ends) {
  test::seed(9);
  auto x = torch::rand({30, 4});
  auto y = x.sum(1).sin();
  torch::manual_seed(1);
  ZooModule net =
      make_zoo_module("mlp", {{"in_features", 4}, {"hidden", {8}}, {"out_features", 1}});
  ZooModule ema =
      make_zoo_module("mlp", {{"in_features", 4}, {"hidden", {8}}, {"out_features", 1}});
  TrainLoopOptions loop;
  loop.run.out_dir = dir;
  loop.run.epochs = 5;
  loop.run.batch_size = 8;
  loop.run.seed = 4;
  loop.run.checkpoint_every = 2;
  TrainHooks hooks;
  hooks.epoch_end.push_back({"count", [ends](Trainer&, int64_t, nlohmann::json&) { ++*ends; }, 2});
  Trainer trainer(loop, hooks);
  torch::optim::Adam adam(net.module->parameters(), torch::optim::AdamOptions(1e-2));
  trainer.add_ema(&ema, &net, /*decay=*/0.9);
  trainer.add_module("net", &net);
  trainer.add_module("ema", &ema);
  trainer.add_optimizer("adam", &adam, &net);
  trainer.log()["family"] = "toy";
  trainer.resume();
  trainer.run({x, y}, [&](Trainer& t, const Batch& b) {
    if (b.epoch == fail_at.first && b.step == fail_at.second) throw std::runtime_error("killed");
    auto loss = (net.forward(b.inputs) - b.labels).square().mean();
    t.optimize("adam", loss, b);
    return StepMetrics{{"loss", loss.item<double>()}};
  });
  auto flat = [](const ZooModule& m) {
    std::vector<torch::Tensor> ps;
    for (const auto& p : m.module->parameters()) ps.push_back(p.detach().flatten());
    return torch::cat(ps);
  };
  return {flat(net), flat(ema), trainer.log()};
}

TEST(Trainer, ResumeAfterAKillRepeatsWeightsEmaAndLog) {
  const auto dir = test::temp_dir("trainer_resume");
  int ends_full = 0, ends_split = 0;
  auto full = mlp_run(dir + "/full", {-1, -1}, &ends_full);
  EXPECT_EQ(ends_full, 2);  // every = 2: after epochs 2 and 4
  EXPECT_THROW(mlp_run(dir + "/split", {3, 1}, &ends_split), std::runtime_error);
  auto resumed = mlp_run(dir + "/split", {-1, -1}, &ends_split);  // from the epoch-2 checkpoint
  EXPECT_TRUE(torch::equal(full.w, resumed.w));
  EXPECT_TRUE(torch::equal(full.ema, resumed.ema));
  EXPECT_FALSE(torch::equal(full.w, full.ema));
  EXPECT_EQ(test::without_clock(full.log).dump(), test::without_clock(resumed.log).dump());
  EXPECT_EQ(full.log["epochs"].size(), 5u);
}

// A three-task sequence of an MLP regressor, checkpointed in `dir`, each phase adding an anchor
// term; throws at (task, epoch) as a kill would. Returns the final weights; `seen` gets the
// weights each phase saw.
torch::Tensor task_sequence(const std::string& dir, std::pair<int64_t, int64_t> fail_at,
                            std::vector<torch::Tensor>* seen, nlohmann::json* log) {
  std::vector<TrainTask> tasks;
  for (int64_t t = 0; t < 3; ++t) {
    test::seed(20 + t);
    auto x = torch::rand({24, 4});
    tasks.push_back({"t" + std::to_string(t), {x, (x.sum(1) * (t + 1)).sin()}});
  }
  auto flat = [](const ZooModule& m) {
    std::vector<torch::Tensor> ps;
    for (const auto& p : m.module->parameters()) ps.push_back(p.detach().flatten().clone());
    return torch::cat(ps);
  };
  torch::manual_seed(2);
  ZooModule net =
      make_zoo_module("mlp", {{"in_features", 4}, {"hidden", {8}}, {"out_features", 1}});
  TrainLoopOptions loop;
  loop.run.out_dir = dir;
  loop.run.epochs = 3;
  loop.run.batch_size = 8;
  Trainer trainer(loop);
  torch::optim::Adam adam(net.module->parameters(), torch::optim::AdamOptions(1e-2));
  trainer.add_module("net", &net);
  trainer.add_optimizer("adam", &adam, &net);
  int64_t task = 0;
  auto step = [&](Trainer& t, const Batch& b) {
    if (task == fail_at.first && b.epoch == fail_at.second) throw std::runtime_error("killed");
    auto loss = (net.forward(b.inputs) - b.labels).square().mean();
    t.optimize("adam", loss, b);
    return StepMetrics{{"loss", loss.item<double>()}};
  };
  run_tasks(trainer, tasks, step, [&](Trainer& t, int64_t done, const TrainTask&) {
    task = done + 1;
    auto anchor = flat(t.module("net"));
    seen->push_back(anchor);
    t.hooks().loss_terms.push_back(
        {"anchor_" + std::to_string(done), [anchor](const ZooModule& m, const Batch&) {
           std::vector<torch::Tensor> ps;
           for (const auto& p : m.module->parameters()) ps.push_back(p.flatten());
           return 0.1 * (torch::cat(ps) - anchor).square().sum();
         }});
  });
  *log = trainer.log();
  return flat(net);
}

TEST(Trainer, AKilledTaskSequenceResumesWithTheSameWeightsPhasesAndLog) {
  const auto dir = test::temp_dir("trainer_tasks");
  std::vector<torch::Tensor> seen_full, seen_killed, seen_resumed;
  nlohmann::json log_full, log_killed, log_resumed;
  auto full = task_sequence(dir + "/full", {-1, -1}, &seen_full, &log_full);
  EXPECT_THROW(task_sequence(dir + "/split", {1, 2}, &seen_killed, &log_killed),
               std::runtime_error);  // killed in task 1's last epoch
  auto resumed = task_sequence(dir + "/split", {-1, -1}, &seen_resumed, &log_resumed);
  EXPECT_TRUE(torch::equal(full, resumed));
  ASSERT_EQ(seen_resumed.size(), 3u);
  for (size_t t = 0; t < 3; ++t) EXPECT_TRUE(torch::equal(seen_full[t], seen_resumed[t])) << t;
  EXPECT_EQ(test::without_clock(log_full).dump(), test::without_clock(log_resumed).dump());
  EXPECT_TRUE(log_full["tasks"][2]["epochs"][0].contains("loss_anchor_1"));
}

TEST(Trainer, RejectsBadUse) {
  ZooModule model = linear_model(2);
  torch::optim::SGD sgd(model.module->parameters(), torch::optim::SGDOptions(0.1));
  Trainer trainer(in_memory(1, 4));
  trainer.add_optimizer("sgd", &sgd, &model);
  auto has = [](const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  };
  EXPECT_TRUE(has(test::error_of([&] { trainer.module("missing"); }), "no module `missing`"));
  Batch b;
  EXPECT_TRUE(has(test::error_of([&] { trainer.optimize("adam", torch::zeros({1}), b); }),
                  "no optimizer `adam`"));
  TrainLoopOptions drop = in_memory(1, 8);
  drop.drop_last = true;
  Trainer small(drop);
  EXPECT_TRUE(has(test::error_of([&] {
                    small.run(regression(4, 2, 0),
                              [](Trainer&, const Batch&) { return StepMetrics{}; });
                  }),
                  "smaller than one batch"));
}

}  // namespace
}  // namespace nfk
