// Benchmark helper (not part of the library or the CLI):
//   nfk_bench make-models DIR        untrained zoo archives of the benchmark networks (seeded)
//   nfk_bench gradients [N] [REPS] [NET]   per-example gradient throughput, loop vs layer tape, as
//   JSON
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "nfk/fisher.h"
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

// Examples per second of per_example_gradients over n examples (best of reps).
double throughput(nfk::ScoreModel& model, const torch::Tensor& x, int64_t batch, int reps,
                  nfk::GradientPath path) {
  double best = 1e300;
  auto j_bp = torch::empty({batch, model.num_parameters()});  // reused, as fisher/ does
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < x.size(0); s += batch) {
      const int64_t e = std::min(x.size(0), s + batch);
      nfk::per_example_gradients(model, x.slice(0, s, e), s, j_bp.narrow(0, 0, e - s), path);
    }
    best = std::min(best, seconds(t0));
  }
  return x.size(0) / best;
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
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "make-models" && argc == 3) return make_models(argv[2]);
    if (cmd == "gradients") {
      return gradients(argc > 2 ? std::stoll(argv[2]) : 1024, argc > 3 ? std::stoi(argv[3]) : 3,
                       argc > 4 ? argv[4] : "");
    }
    std::fprintf(stderr, "usage: nfk_bench make-models DIR | gradients [N] [REPS] [NET]\n");
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
