// Benchmark helper (not part of the library or the CLI):
//   nfk_bench make-models DIR        untrained zoo archives of the benchmark networks (seeded)
//   nfk_bench gradients [N] [REPS] [NET]   per-example gradient throughput, loop vs layer tape, as
//   JSON
//   nfk_bench torchscript MODEL.pt SIZE N REPS BATCH DTYPE   the same for a TorchScript classifier
//   on [N, 3, SIZE, SIZE] inputs (REPS = 0: only which path, why, and the tape's error vs the loop)
//   nfk_bench solvers MODEL N [K] [CONFIGS]   randomized SVD solvers on a resident LeNet-5 V
//   (classifier, mnist:train[:N], float32, empirical Fisher): per solver/products/oversample/tol,
//   time, passes, iterations, estimated and true max relative error of the top-K σ against the
//   float64-Gram exact SVD of the same V; one JSON line each
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "nfk/data.h"
#include "nfk/fisher.h"
#include "nfk/linalg.h"
#include "nfk/run_options.h"
#include "nfk/zoo.h"

namespace {

struct BenchNet {
  std::string name, arch;
  nlohmann::json options;
  std::vector<int64_t> input;  // one example's shape
  int64_t batch;               // examples per batch for the tape (J_b = batch × P floats)
};

const std::vector<BenchNet>& bench_nets() {
  static const std::vector<BenchNet> nets = {
      {"lenet5", "lenet5", {}, {1, 28, 28}, 256},
      {"dcgan-d", "dcgan-d", {{"channels", 3}, {"image_size", 32}, {"width", 64}}, {3, 32, 32}, 64},
      {"wrn-40-2",
       "wrn",
       {{"depth", 40}, {"widen_factor", 2}, {"image_size", 32}},
       {3, 32, 32},
       16},
  };
  return nets;
}

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Seconds of per_example_gradients over all of x, one entry per repeat, sorted.
std::vector<double> timings(nfk::ScoreModel& model, const torch::Tensor& x, int64_t batch, int reps,
                            nfk::GradientPath path) {
  std::vector<double> times;
  auto j_bp = torch::empty({batch, model.num_parameters()}, model.parameters().front().options());
  for (int r = 0; r < reps; ++r) {  // j_bp is reused, as fisher/ does
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < x.size(0); s += batch) {
      const int64_t e = std::min(x.size(0), s + batch);
      nfk::per_example_gradients(model, x.slice(0, s, e), s, j_bp.narrow(0, 0, e - s), path);
    }
    times.push_back(seconds(t0));
  }
  std::sort(times.begin(), times.end());
  return times;
}

// Examples per second of per_example_gradients over n examples (best of reps).
double throughput(nfk::ScoreModel& model, const torch::Tensor& x, int64_t batch, int reps,
                  nfk::GradientPath path) {
  return x.size(0) / timings(model, x, batch, reps, path).front();
}

std::string json_string(const std::string& s) {
  return nlohmann::json(s).dump();
}

// A TorchScript classifier: which gradient path it takes and why, ‖J_tape − J_loop‖/‖J_loop‖
// on the first batch, and (reps > 0) both paths' times over n examples.
int torchscript(const std::string& path, int64_t size, int64_t n, int reps, int64_t batch,
                const std::string& dtype) {
  nfk::ModelOptions o;
  o.model_path = path;
  o.dtype = nfk::parse_dtype(dtype);
  torch::manual_seed(0);
  auto x = torch::rand({n, 3, size, size}, torch::dtype(o.dtype));
  auto model = nfk::load_score_model(nfk::ModelKind::kClassifier, o, x.slice(0, 0, 1));
  const int64_t first = std::min(n, batch);
  const auto choice = nfk::choose_gradient_path(model, x.slice(0, 0, first));
  const bool tape = choice.path == nfk::GradientPath::kLayerTape;
  const std::string note = choice.reason;
  auto tape_rows =
      nfk::per_example_gradients(model, x.slice(0, 0, first), 0, {}, choice.path).clone();
  std::vector<double> tape_s =
      tape ? timings(model, x, batch, reps, choice.path) : std::vector<double>{};
  auto loop_rows =
      nfk::per_example_gradients(model, x.slice(0, 0, first), 0, {}, nfk::GradientPath::kLoop);
  std::vector<double> loop_s = timings(model, x, batch, reps, nfk::GradientPath::kLoop);
  const double rel = ((tape_rows - loop_rows).norm() / loop_rows.norm()).item<double>();
  auto rates = [&](const std::vector<double>& t) {
    if (t.empty()) return std::string("null");
    return nlohmann::json{{"s_min", t.front()},
                          {"s_median", t[t.size() / 2]},
                          {"ex_per_s_best", n / t.front()},
                          {"ex_per_s_median", n / t[t.size() / 2]}}
        .dump();
  };
  std::printf(
      "{\"model\": %s, \"params\": %lld, \"dtype\": \"%s\", \"threads\": %d, \"n\": %lld, "
      "\"batch\": %lld, \"reps\": %d, \"tape_used\": %s, \"fallback_reason\": %s, "
      "\"rel_diff_tape_vs_loop\": %.3e, \"tape\": %s, \"loop\": %s}\n",
      json_string(path).c_str(), static_cast<long long>(model.num_parameters()), dtype.c_str(),
      torch::get_num_threads(), static_cast<long long>(n), static_cast<long long>(batch), reps,
      tape ? "true" : "false", json_string(note).c_str(), rel, rates(tape_s).c_str(),
      rates(loop_s).c_str());
  return 0;
}

int gradients(int64_t n, int reps, const std::string& only) {
  std::printf("[\n");
  for (size_t k = 0; k < bench_nets().size(); ++k) {
    const auto& b = bench_nets()[k];
    if (!only.empty() && b.name != only) continue;
    torch::manual_seed(0);
    auto zoo = nfk::make_zoo_module(b.arch, b.options);
    nfk::ModelOptions o;
    nfk::ScoreModel model(nfk::ModelKind::kClassifier, nfk::wrap_zoo_module(zoo), nullptr, o);
    if (b.arch == "dcgan-d") {
      model = nfk::ScoreModel(nfk::ModelKind::kGan, nfk::wrap_zoo_module(zoo), nullptr, o);
    }
    std::vector<int64_t> shape = {n};
    shape.insert(shape.end(), b.input.begin(), b.input.end());
    auto x = torch::rand(shape);
    const int64_t n_loop = std::min<int64_t>(n, b.arch == "wrn" ? 16 : 128);
    const auto choice = nfk::choose_gradient_path(model, x.slice(0, 0, 8));
    const bool tape = choice.path == nfk::GradientPath::kLayerTape;
    auto tape_rows = nfk::per_example_gradients(model, x.slice(0, 0, n_loop), 0, {}, choice.path);
    const double tape_rate = throughput(model, x, b.batch, reps, choice.path);
    auto loop_rows =
        nfk::per_example_gradients(model, x.slice(0, 0, n_loop), 0, {}, nfk::GradientPath::kLoop);
    const double loop_rate =
        throughput(model, x.slice(0, 0, n_loop), b.batch, reps, nfk::GradientPath::kLoop);
    const double rel = ((tape_rows - loop_rows).norm() / loop_rows.norm()).item<double>();
    std::printf(
        "  {\"net\": \"%s\", \"params\": %lld, \"dtype\": \"float32\", \"threads\": %d, "
        "\"tape_used\": %s, \"batch\": %lld, \"loop_ex_per_s\": %.1f, \"tape_ex_per_s\": %.1f, "
        "\"speedup\": %.1f, \"rel_diff_tape_vs_loop\": %.2e}%s\n",
        b.name.c_str(), static_cast<long long>(model.num_parameters()), torch::get_num_threads(),
        tape ? "true" : "false", static_cast<long long>(b.batch), loop_rate, tape_rate,
        tape_rate / loop_rate, rel, only.empty() && k + 1 < bench_nets().size() ? "," : "");
    std::fflush(stdout);
  }
  std::printf("]\n");
  return 0;
}

// CONFIGS: "solver:gram:oversample:tol:power_iters" separated by commas, gram f|t|a.
int solvers(const std::string& model_path, int64_t n, int64_t k, const std::string& configs) {
  auto ds = nfk::load_dataset("mnist:train[:" + std::to_string(n) + "]");
  nfk::ModelOptions mo;
  mo.model_path = model_path;
  auto model = nfk::load_score_model(nfk::ModelKind::kClassifier, mo, ds.inputs);
  nfk::FisherOptions fo;
  fo.estimator = nfk::Estimator::kEmpirical;
  nfk::FisherStats stats;
  auto t0 = std::chrono::steady_clock::now();
  auto v = nfk::materialize_fisher_vectors(model, ds.inputs, fo, {}, &stats);
  const double gradients_s = seconds(t0);
  t0 = std::chrono::steady_clock::now();
  auto exact = nfk::exact_svd(v, k);
  std::printf(
      "{\"n\": %lld, \"p\": %lld, \"gradients_s\": %.3f, \"exact_s\": %.3f, "
      "\"sigma_k_over_sigma_1\": %.3e}\n",
      static_cast<long long>(n), static_cast<long long>(v.size(1)), gradients_s, seconds(t0),
      (exact.singular_values[k - 1] / exact.singular_values[0]).item<double>());
  std::fflush(stdout);
  auto truth = exact.singular_values.to(torch::kFloat64);
  std::stringstream list(configs);
  std::string c;
  while (std::getline(list, c, ',')) {
    std::stringstream parts(c);
    std::string solver, gram, os, tol, iters;
    std::getline(parts, solver, ':');
    std::getline(parts, gram, ':');
    std::getline(parts, os, ':');
    std::getline(parts, tol, ':');
    std::getline(parts, iters, ':');
    nfk::SvdOptions o;
    o.rank = k;
    o.oversample = std::stoll(os);
    o.tol = std::stod(tol);
    o.power_iters = std::stoll(iters);
    o.solver = nfk::parse_svd_solver(solver);
    o.gram = gram == "f"   ? nfk::GramProducts::kFused
             : gram == "t" ? nfk::GramProducts::kTwoPass
                           : nfk::GramProducts::kAuto;
    nfk::DenseOperator op(v);
    t0 = std::chrono::steady_clock::now();
    auto r = nfk::randomized_svd(op, o);
    const double s = seconds(t0);
    const double err =
        ((r.singular_values.to(torch::kFloat64) - truth).abs() / truth).max().item<double>();
    std::printf(
        "{\"config\": \"%s\", \"seconds\": %.3f, \"passes\": %lld, \"iterations\": "
        "%lld, \"fused\": %s, \"estimated_error\": %.3e, \"max_rel_err\": %.3e}\n",
        c.c_str(), s, static_cast<long long>(r.passes), static_cast<long long>(r.iterations),
        r.fused ? "true" : "false", r.estimated_error, err);
    std::fflush(stdout);
  }
  return 0;
}

int make_models(const std::string& dir) {
  std::filesystem::create_directories(dir);
  for (const auto& b : bench_nets()) {
    torch::manual_seed(0);
    nfk::save_zoo_module(dir + "/" + b.name + ".pt", nfk::make_zoo_module(b.arch, b.options));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  nfk::use_available_cpus();  // as the CLI does
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "make-models" && argc == 3) return make_models(argv[2]);
    if (cmd == "gradients") {
      return gradients(argc > 2 ? std::stoll(argv[2]) : 1024, argc > 3 ? std::stoi(argv[3]) : 3,
                       argc > 4 ? argv[4] : "");
    }
    if (cmd == "torchscript" && argc == 8) {
      return torchscript(argv[2], std::stoll(argv[3]), std::stoll(argv[4]), std::stoi(argv[5]),
                         std::stoll(argv[6]), argv[7]);
    }
    if (cmd == "solvers" && argc >= 4) {
      return solvers(argv[2], std::stoll(argv[3]), argc > 4 ? std::stoll(argv[4]) : 32,
                     argc > 5 ? argv[5]
                              : "subspace:t:10:0:10,subspace:f:10:0:10,subspace:a:10:2e-4:10,"
                                "block-krylov:a:10:2e-4:10,block-krylov:t:10:2e-4:10");
    }
    std::fprintf(stderr,
                 "usage: nfk_bench make-models DIR | gradients [N] [REPS] [NET] | torchscript "
                 "MODEL.pt SIZE N REPS BATCH DTYPE | solvers MODEL N [K] [CONFIGS]\n");
    return 2;
  } catch (const c10::Error& e) {  // one line, without LibTorch's backtrace
    const std::string what = e.what_without_backtrace();
    std::fprintf(stderr, "nfk_bench: %s\n", what.substr(0, what.find('\n')).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nfk_bench: %s\n", e.what());
    return 1;
  }
}
