#include "embed/fit_checkpoint.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "detail/input_file.h"
#include "nfk/data.h"
#include "nfk/output_files.h"

namespace nfk::detail {
namespace {

// Doubles round-trip exactly as C99 hex floats ("0x1.8p+3").
std::string exact(double x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%a", x);
  return buf;
}

int64_t count(const nlohmann::json& j) {
  TORCH_CHECK(
      j.is_number_integer() &&
          (j.is_number_unsigned() ? j.get<uint64_t>() <= uint64_t{1} << 62 : j.get<int64_t>() >= 0),
      "bad count ", j.dump());
  return j.get<int64_t>();
}

// The SVD basis after power iteration `iteration`.
std::string q_file(const nlohmann::json& iteration) {
  return "q-" + std::to_string(count(iteration)) + ".npy";
}

double from_exact(const nlohmann::json& j) {
  const std::string s = j.get<std::string>();
  char* end = nullptr;
  const double x = std::strtod(s.c_str(), &end);
  TORCH_CHECK(end != nullptr && *end == '\0', "bad number ", s);
  return x;
}

}  // namespace

FitCheckpoint::FitCheckpoint(std::string dir, bool resume, nlohmann::json fingerprint, bool writer)
    : dir_(std::move(dir)), writer_(writer && !dir_.empty()), fingerprint_(std::move(fingerprint)) {
  TORCH_CHECK(!resume || !dir_.empty(), "nfk: --resume needs --checkpoint DIR");
  state_ = {{"format", "nfk-fit-checkpoint"}, {"version", 1}, {"fingerprint", fingerprint_}};
  if (dir_.empty()) return;
  if (writer_) {
    ::mkdir(dir_.c_str(), 0755);  // exists already: fine; cannot: the first write says why
  }
  if (!resume) return;
  const std::string json_path = dir_ + "/checkpoint.json";
  nlohmann::json saved;
  try {
    saved = nlohmann::json::parse(read_input_file(json_path, "checkpoint"));
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "nfk: ", json_path, ": corrupt checkpoint (", e.what(), ")");
  }
  TORCH_CHECK(saved.value("format", "") == "nfk-fit-checkpoint", "nfk: ", json_path,
              ": not an nfk fit checkpoint");
  TORCH_CHECK(saved.at("fingerprint") == fingerprint_, "nfk: ", json_path,
              " is the checkpoint of another fit (model, data or options differ): ",
              "run without --resume to start afresh");
  try {
    state_ = saved;
    if (saved.contains("method")) method_ = parse_fit_method(saved.at("method"));
    if (saved.contains("stats")) {
      const auto& s = saved.at("stats");
      FisherStats f;
      f.mean_score = read_npy(dir_ + "/mean_score.npy");
      f.fisher_diag = read_npy(dir_ + "/fisher_diag.npy");
      const std::string est = s.at("estimator");
      f.estimator = estimator_names().parse(est);
      f.reference = s.at("reference");
      f.n_reference = count(s.at("n_reference"));
      f.floor_value = from_exact(s.at("floor_value"));
      f.n_floored = count(s.at("n_floored"));
      stats_ = f;
    }
    if (saved.contains("svd")) {
      const auto& s = saved.at("svd");
      svd_ = SvdState{count(s.at("iteration")), read_npy(dir_ + "/" + q_file(s.at("iteration"))),
                      from_exact(s.at("total_variance"))};
    }
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "nfk: ", json_path, ": corrupt checkpoint (", e.what(), ")");
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "nfk: ", json_path, ": corrupt checkpoint (", e.what_without_backtrace(),
                ")");
  }
}

void FitCheckpoint::write_json() {
  write_file_atomic(dir_ + "/checkpoint.json", state_.dump(1) + "\n");
}

void FitCheckpoint::save_method(FitMethod method) {
  if (!writer_) return;
  state_["method"] = to_string(method);
  write_json();
}

void FitCheckpoint::save_stats(const FisherStats& s) {
  if (!writer_) return;
  write_npy(dir_ + "/mean_score.npy", s.mean_score);
  write_npy(dir_ + "/fisher_diag.npy", s.fisher_diag);
  state_["stats"] = {{"estimator", to_string(s.estimator)},
                     {"reference", s.reference},
                     {"n_reference", s.n_reference},
                     {"floor_value", exact(s.floor_value)},
                     {"n_floored", s.n_floored}};
  write_json();
}

SvdCheckpointFn FitCheckpoint::svd_saver() {
  if (!writer_) return {};
  return [this](const SvdState& s) {
    // A new file per iteration, named by the JSON only once it is complete, and the previous
    // one removed only after that: a kill between any two steps leaves a consistent pair.
    write_npy(dir_ + "/" + q_file(s.iteration), s.q_pu);
    const auto previous = state_.contains("svd") ? state_["svd"]["iteration"] : nlohmann::json();
    state_["svd"] = {{"iteration", s.iteration}, {"total_variance", exact(s.total_variance)}};
    write_json();
    if (previous.is_number_integer() && previous.get<int64_t>() != s.iteration) {
      ::unlink((dir_ + "/" + q_file(previous)).c_str());
    }
  };
}

}  // namespace nfk::detail
