#pragma once
// Flags shared by several subcommands, and the progress line. Thin: parsing and printing only.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "nfk/dist.h"
#include "nfk/model.h"
#include "nfk/progress.h"

namespace nfk::cli {

/// Option checks with one-line messages (CLI11 applies them while parsing): an integer count in
/// [lo, hi]; a finite number in (lo, hi].
CLI::Validator count_in(int64_t lo, int64_t hi);
CLI::Validator finite_in(double lo_exclusive, double hi);
/// An SVD tolerance: auto or a number in [0, 1); `parse_svd_tol` maps auto to -1 (the dtype's
/// default in SvdOptions).
CLI::Validator svd_tol_in();
double parse_svd_tol(const std::string& text);

/// --device/--tf32: where a command computes, and whether float32 may use TF32 on CUDA.
struct DeviceFlags {
  std::string device = "cpu";
  bool tf32 = false;

  void add_to(CLI::App* app, const std::string& device_help = "Device: cpu or cuda");
  /// Sets the TF32 switch and returns the parsed device.
  torch::Device apply() const;
};

/// --model/--kind/--generator/--latent-dim/--output/--dtype/--device/--tf32/--seed.
struct ModelFlags {
  std::string model, kind, generator, dtype = "float32";
  int64_t latent_dim = 0, output = -1;
  uint64_t seed = 0;
  DeviceFlags device;

  void add_to(CLI::App* app);
  ModelOptions to_options() const;
};

/// --nproc/--dist-timeout: data-parallel runs, launched by nfk itself or by torchrun.
struct DistFlags {
  int nproc = 1;
  double timeout_s = 1800;

  void add_to(CLI::App* app);
};

/// Remembers the command line, for `--nproc` to re-run it as every rank (main() calls it).
void set_command_line(int argc, char** argv);

/// With --nproc N > 1: re-runs this command line (without --nproc) as ranks 0..N−1 and waits;
/// a failed rank stops the others and throws. Otherwise joins the process group described by
/// torchrun's variables (a single-process group without them) and runs `body` with it.
void run_distributed(const DistFlags& flags, const std::function<void(dist::Group&)>& body);

/// Draws "[stage] done/total, rate/s, ETA" on stderr at most 4 times a second; silent if quiet.
/// A fit's passes come as ("svd", step, steps) followed by per-batch ("JVP"/"VJP" or, per-example,
/// "VQ"/"VtM"/"VQ+VtM", done, N);
/// the ETA then covers the whole SVD.
class ProgressLine {
 public:
  ProgressLine(std::string task, bool quiet) : task_(std::move(task)), quiet_(quiet) {}
  ~ProgressLine() { finish(); }
  ProgressFn fn();
  void finish();

 private:
  void update(const std::string& stage, int64_t done, int64_t total);

  std::string task_;
  bool quiet_;
  bool drawn_ = false;
  int64_t svd_step_ = -1, svd_steps_ = 0;
  std::string stage_;
  std::chrono::steady_clock::time_point stage_start_, last_draw_, svd_start_;
};

/// Before any work, for a command that reads `inputs` (files, or data sources such as
/// "x.npy[:100]") and writes `outputs` (empty strings are skipped): each output can be written
/// (check_writable), no two outputs name the same file, and no output names one of the
/// inputs (`--out` equal to `--model` would destroy the model). Throws one line otherwise.
void check_outputs(const std::vector<std::string>& outputs, const std::vector<std::string>& inputs);

/// "cpu" | "cuda" → device; throws if CUDA is asked for and absent.
torch::Device parse_device(const std::string& name);

/// Seconds since `t0`.
double seconds_since(std::chrono::steady_clock::time_point t0);

/// Mean and sample standard deviation (n − 1; 0 for fewer than two values) of runs over seeds.
double mean(const std::vector<double>& v);
double stddev(const std::vector<double>& v);

}  // namespace nfk::cli
