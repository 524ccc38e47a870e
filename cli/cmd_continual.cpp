// nfk continual: a continual-learning benchmark run with one penalty, λ chosen on validation.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "nfk/continual.h"
#include "nfk/output_files.h"

namespace nfk::cli {
namespace {

struct ContinualFlags {
  ContinualBenchmarkOptions bench;
  ContinualTrainOptions train;
  std::string method = "ewc", fisher = "true", form = "diag", out;
  std::vector<double> lambdas = {100};
  double gamma = 1;
  int64_t mc_samples = 1, fisher_examples = 1000, fisher_batch_size = 256, seeds = 1;
  bool quiet = false;
};

std::vector<int64_t> train_sizes(const std::vector<ContinualTask>& tasks) {
  std::vector<int64_t> sizes;
  for (const auto& t : tasks) sizes.push_back(t.train.inputs.size(0));
  return sizes;
}

void run(const ContinualFlags& f) {
  namespace fs = std::filesystem;
  const std::string result_path = f.out + "/result.json";
  TORCH_CHECK(!fs::exists(f.out) || fs::is_directory(f.out), "nfk: --out ", f.out,
              " exists and is not a folder; give a folder for result.json");
  const auto tasks = make_continual_benchmark(f.bench);  // (data first: bad input makes no folder)
  EwcOptions penalty;
  penalty.method = parse_continual_method(f.method);
  penalty.fisher.estimator = parse_fisher_estimator(f.fisher);
  penalty.fisher.mc_samples = f.mc_samples;
  penalty.form = parse_fisher_form(f.form);
  penalty.gamma = f.gamma;
  penalty.fisher_examples = f.fisher_examples;
  penalty.batch_size = f.fisher_batch_size;
  fs::create_directories(f.out);
  check_outputs({result_path}, {});
  const bool penalised = penalty.method != ContinualMethod::kFinetune;
  const std::vector<double> grid = penalised ? f.lambdas : std::vector<double>{0};
  if (!f.quiet) {
    std::fprintf(stderr,
                 "plan: %s, %zu tasks of %lld training examples, %s, %zu lambda value(s) x %lld "
                 "seed(s) = %zu runs of %lld epoch(s) per task\n",
                 f.bench.benchmark.c_str(), tasks.size(),
                 static_cast<long long>(tasks[0].train.inputs.size(0)), f.method.c_str(),
                 grid.size(), static_cast<long long>(f.seeds), grid.size() * f.seeds,
                 static_cast<long long>(f.train.epochs));
  }
  nlohmann::json runs = nlohmann::json::array();
  double best_validation = -1, chosen = grid.front();
  for (double lambda : grid) {
    penalty.lambda = lambda;
    std::vector<double> validation;
    for (int64_t s = 0; s < f.seeds; ++s) {
      ContinualTrainOptions train = f.train;
      train.seed = f.train.seed + static_cast<uint64_t>(s);
      penalty.seed = train.seed;
      ProgressLine progress(
          "continual lambda " + std::to_string(lambda) + " seed " + std::to_string(train.seed),
          f.quiet);
      auto r = run_continual(tasks, train, penalty, progress.fn());
      progress.finish();
      validation.push_back(r.average_validation_accuracy);
      runs.push_back({{"lambda", lambda},
                      {"seed", train.seed},
                      {"test_accuracy", r.test_accuracy},
                      {"validation_accuracy", r.validation_accuracy},
                      {"average_test_accuracy", r.average_test_accuracy},
                      {"average_validation_accuracy", r.average_validation_accuracy},
                      {"task_seconds", r.task_seconds}});
      if (!f.quiet)
        std::fprintf(stderr, "  lambda %g seed %llu: average accuracy test %.4f, validation %.4f\n",
                     lambda, static_cast<unsigned long long>(train.seed), r.average_test_accuracy,
                     r.average_validation_accuracy);
    }
    if (mean(validation) > best_validation) {
      best_validation = mean(validation);
      chosen = lambda;
    }
  }
  std::vector<double> chosen_test;
  for (const auto& r : runs)
    if (r["lambda"].get<double>() == chosen)
      chosen_test.push_back(r["average_test_accuracy"].get<double>());
  nlohmann::json result = {
      {"benchmark", f.bench.benchmark},
      {"scenario", f.bench.benchmark.rfind("split-", 0) == 0 ? f.bench.scenario : "domain"},
      {"tasks", tasks.size()},
      {"method", f.method},
      {"fisher", penalised && f.method != "l2" ? f.fisher : "none"},
      {"form", f.form},
      {"mc_samples", f.mc_samples},
      {"gamma", f.gamma},
      {"fisher_examples", f.fisher_examples},
      {"fisher_batch_size", f.fisher_batch_size},
      {"lambda_grid", grid},
      {"lambda", chosen},
      {"lambda_chosen_on", "mean final validation accuracy over seeds"},
      {"network", {{"mlp_hidden", f.train.hidden}, {"activation", f.train.activation}}},
      {"epochs_per_task", f.train.epochs},
      {"batch_size", f.train.batch_size},
      {"learning_rate", f.train.learning_rate},
      {"optimizer", "adam"},
      {"train_examples_per_task", train_sizes(tasks)},
      {"permutation_seed", f.bench.seed},
      {"average_test_accuracy_mean", mean(chosen_test)},
      {"average_test_accuracy_std", stddev(chosen_test)},
      {"runs", runs}};
  write_file_atomic(result_path, result.dump(2) + "\n");
  std::printf(
      "nfk continual: %s %s (fisher %s), lambda %g (on validation): average test accuracy "
      "%.4f +- %.4f over %lld seed(s) -> %s\n",
      f.bench.benchmark.c_str(), f.method.c_str(), result["fisher"].get<std::string>().c_str(),
      chosen, mean(chosen_test), stddev(chosen_test), static_cast<long long>(f.seeds),
      result_path.c_str());
}

}  // namespace

void add_continual_command(CLI::App& app) {
  auto f = std::make_shared<ContinualFlags>();
  auto* cmd = app.add_subcommand(
      "continual",
      "Continual learning on a benchmark: one MLP trained on its tasks in order with fine-tuning, "
      "an L2 pull, EWC or online EWC (the classifier's Fisher), accuracy after every task");
  cmd->add_option("--benchmark", f->bench.benchmark,
                  "permuted-mnist | split-mnist | permuted-fashion | split-fashion")
      ->check(CLI::IsMember({"permuted-mnist", "split-mnist", "permuted-fashion", "split-fashion"}))
      ->capture_default_str();
  cmd->add_option("--tasks", f->bench.tasks, "Tasks (0: 10 permuted, 5 split)")
      ->check(count_in(0, 100))
      ->capture_default_str();
  cmd->add_option("--scenario", f->bench.scenario,
                  "split only: task (task-incremental, the task's two logits) or class "
                  "(class-incremental, one 10-way head)")
      ->check(CLI::IsMember({"task", "class"}))
      ->capture_default_str();
  cmd->add_option("--method", f->method, "finetune | l2 | ewc | online-ewc")
      ->check(CLI::IsMember(nfk::continual_method_names().all()))
      ->capture_default_str();
  cmd->add_option("--fisher", f->fisher,
                  "EWC's Fisher: true | mc | empirical | batched (the squared batch-mean "
                  "gradient: not a Fisher, offered to show the difference)")
      ->check(CLI::IsMember(nfk::fisher_estimator_names().all()))
      ->capture_default_str();
  cmd->add_option("--form", f->form, "EWC's Fisher form: diag, kfac (per layer A and G) or ekfac")
      ->check(CLI::IsMember(nfk::fisher_form_names().all()))
      ->capture_default_str();
  cmd->add_option("--lambda", f->lambdas,
                  "lambda, or a comma-separated grid chosen on the validation split")
      ->delimiter(',')
      ->check(finite_in(-1e-300, 1e12))
      ->capture_default_str();
  cmd->add_option("--gamma", f->gamma, "online-ewc: decay of the running Fisher")
      ->check(finite_in(0, 1))
      ->capture_default_str();
  cmd->add_option("--mc-samples", f->mc_samples, "--fisher mc: labels per example")
      ->check(count_in(1, 10000))
      ->capture_default_str();
  cmd->add_option("--fisher-examples", f->fisher_examples,
                  "Examples of each task's training set the Fisher is taken over (0: all)")
      ->check(count_in(0, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--fisher-batch-size", f->fisher_batch_size,
                  "Examples per batch of the Fisher pass; the B of --fisher batched")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--permutation-seed", f->bench.seed,
                  "permuted-*: seed of the tasks' pixel permutations (the same for every --seed, "
                  "so seeds vary the network, not the tasks)")
      ->capture_default_str();
  cmd->add_option("--seeds", f->seeds, "Seeds per lambda (mean +- std)")
      ->check(count_in(1, 1000))
      ->capture_default_str();
  cmd->add_option("--seed", f->train.seed, "First seed (initialisation, shuffles, mc labels)")
      ->capture_default_str();
  cmd->add_option("--epochs", f->train.epochs, "Epochs per task")
      ->check(count_in(1, 10000))
      ->capture_default_str();
  cmd->add_option("--batch-size", f->train.batch_size, "Examples per step")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--lr", f->train.learning_rate, "Adam learning rate")
      ->check(finite_in(0, 10))
      ->capture_default_str();
  cmd->add_option("--hidden", f->train.hidden, "MLP hidden widths, comma-separated")
      ->delimiter(',')
      ->check(count_in(1, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--activation", f->train.activation, "MLP hidden-layer activation")
      ->check(CLI::IsMember({"tanh", "relu"}))
      ->capture_default_str();
  cmd->add_option("--train-examples", f->bench.train_examples,
                  "Training examples per task before the validation split (0: all)")
      ->check(count_in(0, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--test-examples", f->bench.test_examples, "Test examples per task (0: all)")
      ->check(count_in(0, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--validation-fraction", f->bench.validation_fraction,
                  "Share of each task's training set held out for choosing lambda")
      ->check(finite_in(0, 0.9))
      ->capture_default_str();
  cmd->add_option("--out", f->out, "Output folder (result.json)")->required();
  cmd->add_flag("--quiet", f->quiet, "No plan, progress or per-run lines");
  cmd->callback([f] { run(*f); });
}

}  // namespace nfk::cli
