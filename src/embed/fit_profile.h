#pragma once
// Stage timing for nfk::fit (FitProfile): a device-synchronised stopwatch, an operator decorator
// that times and counts the SVD's products, and the CUDA allocator's peak-memory counter.

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <utility>

#include "nfk/embed.h"
#include "nfk/linalg.h"

namespace nfk::detail {

/// Waits for the work queued on `device` (CUDA runs asynchronously); nothing on the CPU.
void synchronize(const torch::Device& device);

/// Wall seconds between laps, the device synchronised before each reading.
class Stopwatch {
 public:
  explicit Stopwatch(torch::Device device);
  double lap();  // seconds since construction or the previous lap

 private:
  torch::Device device_;
  std::chrono::steady_clock::time_point last_;
};

/// Forwards every product to `inner`, adding its synchronised time and count to `profile`, and
/// its GEMM flops (2 · gemm_rows · P · columns) when `gemm_rows` > 0 (V resident as a matrix).
class TimedOperator : public LinearOperator {
 public:
  TimedOperator(LinearOperator& inner, FitProfile& profile, torch::Device device,
                int64_t gemm_rows);
  int64_t rows() const override { return inner_.rows(); }
  int64_t cols() const override { return inner_.cols(); }
  torch::TensorOptions options() const override { return inner_.options(); }
  torch::Tensor apply(const torch::Tensor& q_pu) override;
  torch::Tensor apply_t(const torch::Tensor& m_nu) override;
  std::pair<torch::Tensor, torch::Tensor> apply_pair(const torch::Tensor& q_pu,
                                                     const torch::Tensor& m_nl) override;
  torch::Tensor apply_gram(const torch::Tensor& q_pu) override;
  bool fuses_gram() const override { return inner_.fuses_gram(); }
  torch::Tensor dense() override { return inner_.dense(); }
  double squared_frobenius() override { return inner_.squared_frobenius(); }
  /// The inner operator's transpose, timed into the same profile.
  std::unique_ptr<LinearOperator> transposed() override;

 private:
  void add(Stopwatch& started, int64_t products, int64_t columns);

  std::unique_ptr<LinearOperator> owned_;  // the inner operator where transposed() made it
  LinearOperator& inner_;
  FitProfile& profile_;
  torch::Device device_;
  int64_t gemm_rows_;
};

/// Starts the CUDA allocator's peak-memory count over; nothing on the CPU.
void reset_peak_device_memory(const torch::Device& device);
/// Bytes at the CUDA allocator's peak since the reset; -1 on the CPU or without the counter.
int64_t peak_device_memory(const torch::Device& device);

}  // namespace nfk::detail
