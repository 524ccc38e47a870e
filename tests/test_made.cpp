// The MADE of the generative zoo: autoregressive masks via autograd, normalisation on a grid / over
// all binary vectors, the incremental sampler against a naive one, samples that follow the model.
#include <string>
#include <vector>

#include "generative_support.h"

namespace nfk {
namespace {

using test::tiny_made;

TEST(Made, ConditionalsAreAutoregressive) {
  for (const std::string lik : {"gaussian", "bernoulli"}) {
    auto zoo = tiny_made(6, 1, {16, 12}, lik);
    MadeImpl& made = as_made(zoo);
    test::seed(2);
    auto y = torch::randn({1, 6}).requires_grad_(true);
    auto [first, second] = made.conditionals(y);
    for (int64_t i = 0; i < 6; ++i) {
      std::vector<torch::Tensor> outs = {first[0][i]};
      if (second.defined()) outs.push_back(second[0][i]);
      for (const auto& o : outs) {
        auto g = torch::autograd::grad({o}, {y}, {}, true, false, true)[0];
        if (!g.defined()) g = torch::zeros_like(y);
        EXPECT_EQ(g[0].slice(0, i).abs().max().item<double>(), 0.0)
            << lik << ": conditional " << i << " depends on x_j, j >= " << i;
        if (i > 0) {
          EXPECT_GT(g[0].slice(0, 0, i).abs().max().item<double>(), 0.0)
              << lik << ": conditional " << i << " ignores its past";
        }
      }
    }
  }
}

TEST(Made, GaussianDensityIntegratesToOne) {
  // D = 2 with a coarse logit (α = 0.05): integrate p(x) over the whole support
  // (−α/(1−2α), 1+α/(1−2α))² by the midpoint rule.
  const double a = 0.05;
  auto zoo = tiny_made(2, 1, {8}, "gaussian", a);
  zoo.module->to(torch::kFloat64);
  const int64_t m = 800;
  const double lo = -a / (1 - 2 * a), hi = (1 - a) / (1 - 2 * a), h = (hi - lo) / m;
  auto t = lo + (torch::arange(m, torch::kFloat64) + 0.5) * h;
  auto grid = torch::stack({t.repeat_interleave(m), t.repeat({m})}, 1);
  torch::NoGradGuard no_grad;
  const double integral = zoo.call("log_prob", grid).exp().sum().item<double>() * h * h;
  EXPECT_NEAR(integral, 1.0, 2e-3);
}

TEST(Made, BernoulliProbabilitiesSumToOne) {
  auto zoo = tiny_made(4, 1, {10}, "bernoulli");
  auto codes = torch::arange(16).unsqueeze(1).bitwise_right_shift(torch::arange(4)).bitwise_and(1);
  torch::NoGradGuard no_grad;
  auto p = zoo.call("log_prob", codes.to(torch::kFloat32).view({16, 4, 1, 1})).exp();
  EXPECT_NEAR(p.sum().item<double>(), 1.0, 1e-5);
}

TEST(Made, IncrementalSamplerMatchesNaiveAncestralSampling) {
  for (std::vector<int64_t> hidden :
       {std::vector<int64_t>{12, 9}, std::vector<int64_t>{7}, std::vector<int64_t>{}}) {
    auto zoo = tiny_made(1, 3, hidden, "gaussian", 1e-3);
    zoo.module->to(torch::kFloat64);
    MadeImpl& made = as_made(zoo);
    test::seed(4);
    auto fast = zoo.sample(6);
    ASSERT_EQ(fast.sizes(), torch::IntArrayRef({6, 1, 3, 3}));
    // Naive: a full pass per dimension, one randn({n}) per dimension in order.
    test::seed(4);
    torch::NoGradGuard no_grad;
    auto v = torch::zeros({6, 9}, torch::kFloat64);
    for (int64_t j = 0; j < 9; ++j) {
      auto [mu, ls] = made.conditionals(v);
      v.select(1, j).copy_(mu.select(1, j) +
                           ls.select(1, j).exp() * torch::randn({6}, torch::kFloat64));
    }
    auto naive = ((torch::sigmoid(v) - 1e-3) / (1 - 2e-3)).view({6, 1, 3, 3});
    test::expect_close(fast, naive, 1e-12, "hidden layers " + std::to_string(hidden.size()));
  }
}

TEST(Made, BernoulliSamplesFollowTheModel) {
  auto zoo = tiny_made(3, 1, {8}, "bernoulli");
  test::seed(6);
  auto s = zoo.sample(20000).view({20000, 3});
  ASSERT_TRUE(((s == 0) | (s == 1)).all().item<bool>());
  auto code = (s.select(1, 0) + 2 * s.select(1, 1) + 4 * s.select(1, 2)).to(torch::kLong);
  auto freq = torch::bincount(code, {}, 8).to(torch::kFloat64) / 20000;
  auto codes = torch::arange(8).unsqueeze(1).bitwise_right_shift(torch::arange(3)).bitwise_and(1);
  torch::NoGradGuard no_grad;
  auto p = zoo.call("log_prob", codes.to(torch::kFloat32)).exp().to(torch::kFloat64);
  EXPECT_LT((freq - p).abs().max().item<double>(), 0.015);
}

}  // namespace
}  // namespace nfk
