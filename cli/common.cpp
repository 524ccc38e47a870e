#include "common.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "nfk/output_files.h"

namespace nfk::cli {

CLI::Validator count_in(int64_t lo, int64_t hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || end == nullptr || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
          return "expected a whole number in " + range + ", got `" + text + "`";
        }
        return {};
      },
      "INT in " + range);
}

CLI::Validator svd_tol_in() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        if (v == "auto") return "";
        try {
          size_t used = 0;
          const double t = std::stod(v, &used);
          if (used == v.size() && std::isfinite(t) && t >= 0 && t < 1) return "";
        } catch (const std::exception&) {
        }
        return "must be auto or a number in [0, 1), got " + v;
      },
      "auto|[0,1)");
}

double parse_svd_tol(const std::string& text) {
  return text == "auto" ? -1.0 : std::stod(text);
}

CLI::Validator finite_in(double lo_exclusive, double hi) {
  char range[64];
  std::snprintf(range, sizeof(range), "(%g, %g]", lo_exclusive, hi);
  const std::string r = range;
  return CLI::Validator(
      [lo_exclusive, hi, r](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end == nullptr || *end != '\0' || !std::isfinite(v) ||
            !(v > lo_exclusive) || v > hi) {
          return "expected a finite number in " + r + ", got `" + text + "`";
        }
        return {};
      },
      "NUMBER in " + r);
}

void ModelFlags::add_to(CLI::App* app) {
  app->add_option("--model", model, "Model file: TorchScript (.pt) or nfk zoo archive")->required();
  app->add_option("--kind", kind,
                  "Model kind: classifier (free energy logsumexp f(x)), gan (discriminator D(x)), "
                  "vae (elbo(x)), density (log_prob(x)), score (forward(x) -> [B]), ntk "
                  "(forward(x), no centring/scaling)")
      ->required()
      ->check(CLI::IsMember(nfk::model_kind_names().all()));
  app->add_option(
      "--generator", generator,
      "gan only: generator G(h) -> x whose samples centre the score and give the Fisher");
  app->add_option("--latent-dim", latent_dim, "gan only: dimension of h ~ N(0, I)");
  app->add_option("--output", output, "ntk only: output column c when forward(x) gives [B, C]");
  app->add_option("--dtype", dtype, "Compute dtype")
      ->check(CLI::IsMember({"float32", "float64"}))
      ->capture_default_str();
  device.add_to(app);
  app->add_option("--seed", seed, "Seed for every random choice (probes, samples, noise)")
      ->capture_default_str();
}

ModelOptions ModelFlags::to_options() const {
  ModelOptions o;
  o.model_path = model;
  o.generator_path = generator;
  o.latent_dim = latent_dim;
  o.output = output;
  o.seed = seed;
  o.dtype = parse_dtype(dtype);
  o.device = device.apply();
  return o;
}

void DeviceFlags::add_to(CLI::App* app, const std::string& device_help) {
  app->add_option("--device", device, device_help)
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app->add_flag("--tf32", tf32,
                "cuda, float32: allow TF32 tensor-core math in matrix products and convolutions "
                "(faster, about 1e-3 relative error per product; off: full float32)");
}

torch::Device DeviceFlags::apply() const {
  set_tf32(tf32);
  return parse_device(device);
}

namespace {
std::vector<std::string> g_command_line;
}  // namespace

void set_command_line(int argc, char** argv) {
  g_command_line.assign(argv, argv + argc);
}

void DistFlags::add_to(CLI::App* app) {
  app->add_option("--nproc", nproc,
                  "Run as N data-parallel processes on this machine (c10d/Gloo); under torchrun "
                  "leave it out: RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT are read instead")
      ->check(count_in(1, 1024))
      ->capture_default_str();
  app->add_option("--dist-timeout", timeout_s,
                  "Seconds a rank waits for the others (rendezvous and each collective) before "
                  "the run fails")
      ->check(finite_in(0, 1e7))
      ->capture_default_str();
}

void run_distributed(const DistFlags& flags, const std::function<void(dist::Group&)>& body) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_s * 1000));
  if (flags.nproc > 1) {
    const char* world = std::getenv("WORLD_SIZE");
    TORCH_CHECK(world == nullptr || std::string(world) == "1" || std::string(world).empty(),
                "nfk: --nproc ", flags.nproc, " inside a distributed job (WORLD_SIZE=", world,
                "): use one or the other");
    std::vector<std::string> argv;
    for (size_t i = 0; i < g_command_line.size(); ++i) {
      const std::string& a = g_command_line[i];
      if (a == "--nproc") {
        ++i;  // and its value
      } else if (a.rfind("--nproc=", 0) != 0) {
        argv.push_back(a);
      }
    }
    dist::launch_local(argv, flags.nproc);
    return;
  }
  auto group = dist::Group::from_env(timeout);
  body(*group);
}

namespace {

// The file a data source reads: "x.npy[:100]" reads x.npy; named sets read nfk's data folder.
std::string source_file(const std::string& source) {
  struct stat st {};
  if (::stat(source.c_str(), &st) == 0) return source;
  const size_t open = source.rfind('[');
  return open != std::string::npos && source.back() == ']' ? source.substr(0, open) : source;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0) {
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  }
  return resolved_output_path(a) == resolved_output_path(b);
}

}  // namespace

void check_outputs(const std::vector<std::string>& outputs,
                   const std::vector<std::string>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& out = outputs[i];
    if (out.empty()) continue;
    for (const auto& source : inputs) {
      if (source.empty()) continue;
      const std::string in = source_file(source);
      TORCH_CHECK(!same_file(out, in), "nfk: output ", out, " is also an input of this command (",
                  in, "): writing it would destroy that input; choose another output path");
    }
    for (size_t j = 0; j < i; ++j) {
      TORCH_CHECK(outputs[j].empty() || !same_file(out, outputs[j]), "nfk: outputs ", outputs[j],
                  " and ", out, " name the same file; choose two different paths");
    }
    check_writable(out);
  }
}

torch::Device parse_device(const std::string& name) {
  TORCH_CHECK(name == "cpu" || name == "cuda", "nfk: unknown device `", name, "` (cpu or cuda)");
  TORCH_CHECK(name == "cpu" || torch::cuda::is_available(),
              "nfk: --device cuda asked for, but no CUDA device is available");
  if (name == "cpu") return torch::Device(torch::kCPU);
  // A rank of a distributed run takes its node-local GPU (torchrun's LOCAL_RANK).
  const char* local_rank = std::getenv("LOCAL_RANK");
  const int count = static_cast<int>(torch::cuda::device_count());
  const int index =
      local_rank != nullptr && *local_rank != '\0' ? std::atoi(local_rank) % count : 0;
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

ProgressFn ProgressLine::fn() {
  if (quiet_) return {};
  return
      [this](const std::string& stage, int64_t done, int64_t total) { update(stage, done, total); };
}

void ProgressLine::update(const std::string& stage, int64_t done, int64_t total) {
  const auto now = std::chrono::steady_clock::now();
  if (stage == "svd") {
    if (done == 0) svd_start_ = now;
    svd_step_ = done;
    svd_steps_ = total;
    if (done == 0 || now - last_draw_ < std::chrono::milliseconds(250)) return;
    last_draw_ = now;
    const double per_pass = std::chrono::duration<double>(now - svd_start_).count() / done;
    std::fprintf(stderr, "\r[%s] svd pass %lld/%lld, %.2f s/pass, ETA %.0fs   ", task_.c_str(),
                 static_cast<long long>(std::min(done + 1, total)), static_cast<long long>(total),
                 per_pass, std::ceil(per_pass * (total - done)));
    drawn_ = true;
    return;
  }
  if (stage != stage_ || done <= 0 || now < stage_start_) {
    stage_ = stage;
    stage_start_ = now;
  }
  if (done < total && now - last_draw_ < std::chrono::milliseconds(250)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - stage_start_).count();
  const double rate = elapsed > 0 ? done / elapsed : 0;
  double remaining = rate > 0 ? (total - done) / rate : 0;
  std::string pass;
  const bool svd_pass =
      stage == "JVP" || stage == "VJP" || stage == "VQ" || stage == "VtM" || stage == "VQ+VtM";
  if (svd_step_ >= 0 && svd_pass) {
    pass = " pass " + std::to_string(svd_step_ + 1) + "/" + std::to_string(svd_steps_);
    if (rate > 0) remaining += double(svd_steps_ - svd_step_ - 1) * total / rate;
  }
  std::fprintf(stderr, "\r[%s]%s %s %lld/%lld ex, %.0f ex/s, ETA %.0fs   ", task_.c_str(),
               pass.c_str(), stage.c_str(), static_cast<long long>(done),
               static_cast<long long>(total), rate, std::ceil(remaining));
  drawn_ = true;
}

void ProgressLine::finish() {
  if (drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

}  // namespace nfk::cli
