#pragma once
// A fit's resumable state (FitOptions::checkpoint_dir): what an interrupted `nfk fit` needs to
// continue and give the uninterrupted run's projector bit for bit.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "nfk/embed.h"
#include "nfk/linalg.h"

namespace nfk::detail {

/// The folder holds checkpoint.json (the fit's fingerprint, its resolved method, the Fisher
/// statistics' metadata and the SVD's iteration and total-variance estimate) beside
/// mean_score.npy, fisher_diag.npy and q-<iteration>.npy; every file is written atomically, the
/// JSON last, so that a kill at any point leaves a consistent checkpoint.
class FitCheckpoint {
 public:
  /// `dir` empty: does nothing. `resume`: reads the folder and refuses a checkpoint of another
  /// fit (a different fingerprint). Only a `writer` (rank 0 of a distributed fit) writes.
  FitCheckpoint(std::string dir, bool resume, nlohmann::json fingerprint, bool writer);

  /// The method the interrupted fit had resolved; kAuto when starting afresh.
  FitMethod method() const { return method_; }
  void save_method(FitMethod method);
  /// The interrupted fit's Fisher statistics, if it had computed them.
  const std::optional<FisherStats>& stats() const { return stats_; }
  void save_stats(const FisherStats& stats);
  /// The interrupted SVD's last state (null: none), and the callback that saves each new one.
  const SvdState* svd_state() const { return svd_ ? &*svd_ : nullptr; }
  SvdCheckpointFn svd_saver();

 private:
  void write_json();

  std::string dir_;
  bool writer_ = false;
  nlohmann::json fingerprint_, state_;
  FitMethod method_ = FitMethod::kAuto;
  std::optional<FisherStats> stats_;
  std::optional<SvdState> svd_;
};

}  // namespace nfk::detail
