// The continual-learning benchmarks of include/nfk/continual.h from the named MNIST sets.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "nfk/continual.h"

namespace nfk {
namespace {

Dataset first(const Dataset& d, int64_t n) {
  if (n <= 0 || n >= d.inputs.size(0)) return d;
  return {d.inputs.slice(0, 0, n), d.labels.slice(0, 0, n)};
}

Dataset rows(const Dataset& d, const torch::Tensor& index) {
  return {d.inputs.index_select(0, index), d.labels.index_select(0, index)};
}

// Splits off the last `fraction` of `d` as validation (at least one example each side).
std::pair<Dataset, Dataset> split_validation(const Dataset& d, double fraction) {
  const int64_t n = d.inputs.size(0);
  const int64_t v = std::clamp<int64_t>(static_cast<int64_t>(fraction * n), 1, n - 1);
  return {{d.inputs.slice(0, 0, n - v), d.labels.slice(0, 0, n - v)},
          {d.inputs.slice(0, n - v, n), d.labels.slice(0, n - v, n)}};
}

Dataset permuted(const Dataset& d, const torch::Tensor& perm) {
  const auto shape = d.inputs.sizes().vec();
  return {d.inputs.reshape({shape[0], -1}).index_select(1, perm).reshape(shape).contiguous(),
          d.labels};
}

}  // namespace

std::vector<ContinualTask> make_continual_benchmark(const ContinualBenchmarkOptions& o) {
  const std::string& name = o.benchmark;
  const bool permute = name.rfind("permuted-", 0) == 0, split = name.rfind("split-", 0) == 0;
  const std::string family = permute ? name.substr(9) : split ? name.substr(6) : "";
  TORCH_CHECK((permute || split) && (family == "mnist" || family == "fashion"),
              "nfk: unknown continual benchmark `", name,
              "`; use permuted-mnist, split-mnist, permuted-fashion or split-fashion");
  TORCH_CHECK(o.validation_fraction > 0 && o.validation_fraction < 1,
              "nfk: the validation fraction must be in (0, 1), got ", o.validation_fraction);
  TORCH_CHECK(!split || o.scenario == "task" || o.scenario == "class", "nfk: unknown scenario `",
              o.scenario, "` for ", name, "; use task or class");
  const int64_t tasks = o.tasks > 0 ? o.tasks : (permute ? 10 : 5);
  TORCH_CHECK(!split || tasks <= 5, "nfk: ", name, " has at most 5 two-class tasks, got ", tasks);
  TORCH_CHECK(tasks <= 100, "nfk: at most 100 tasks, got ", tasks);
  const std::string set = family == "mnist" ? "mnist" : "fashion-mnist";
  const Dataset train_all = load_named_set(set + ":train"),
                test_all = load_named_set(set + ":test");
  std::vector<ContinualTask> out;
  for (int64_t t = 0; t < tasks; ++t) {
    ContinualTask task;
    Dataset train = train_all, test = test_all;
    if (permute) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed * 1000003 + t);
      auto perm = torch::randperm(train_all.inputs[0].numel(), gen, torch::kLong);
      task.name = "permutation " + std::to_string(t);
      train = permuted(first(train, o.train_examples), perm);
      test = permuted(first(test, o.test_examples), perm);
    } else {
      const int64_t a = 2 * t, b = 2 * t + 1;
      task.name = "classes " + std::to_string(a) + "/" + std::to_string(b);
      if (o.scenario == "task") task.classes = {a, b};
      auto in_task = [&](const Dataset& d) {
        return rows(d, torch::nonzero((d.labels == a) | (d.labels == b)).squeeze(1));
      };
      train = first(in_task(train), o.train_examples);
      test = first(in_task(test), o.test_examples);
    }
    std::tie(task.train, task.validation) = split_validation(train, o.validation_fraction);
    task.test = test;
    out.push_back(std::move(task));
  }
  return out;
}

}  // namespace nfk
