#include "embed/fit_profile.h"

#ifdef NFK_WITH_CUDA_MEMORY_STATS
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace nfk {

nlohmann::json FitProfile::to_json() const {
  nlohmann::json j = {{"statistics_s", statistics_s},
                      {"gradients_s", gradients_s},
                      {"products_s", products_s},
                      {"factorizations_s", factorizations_s},
                      {"total_s", total_s},
                      {"products", products},
                      {"product_flops", product_flops},
                      {"passes", passes},
                      {"iterations", iterations},
                      {"fused", fused}};
  j["estimated_error"] = estimated_error >= 0 ? nlohmann::json(estimated_error) : nullptr;
  j["peak_device_bytes"] = peak_device_bytes >= 0 ? nlohmann::json(peak_device_bytes) : nullptr;
  return j;
}

namespace detail {

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

Stopwatch::Stopwatch(torch::Device device)
    : device_(device), last_(std::chrono::steady_clock::now()) {}

double Stopwatch::lap() {
  synchronize(device_);
  const auto now = std::chrono::steady_clock::now();
  const double s = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  return s;
}

TimedOperator::TimedOperator(LinearOperator& inner, FitProfile& profile, torch::Device device,
                             int64_t gemm_rows)
    : inner_(inner), profile_(profile), device_(device), gemm_rows_(gemm_rows) {}

void TimedOperator::add(Stopwatch& started, int64_t products, int64_t columns) {
  profile_.products_s += started.lap();
  profile_.products += products;
  if (gemm_rows_ > 0) {
    profile_.product_flops += 2.0 * static_cast<double>(gemm_rows_) *
                              static_cast<double>(inner_.cols()) * static_cast<double>(columns);
  }
}

std::unique_ptr<LinearOperator> TimedOperator::transposed() {
  auto inner_t = inner_.transposed();
  if (!inner_t) return nullptr;
  // The flops stay 2·N·P per column: the transpose's GEMM rows are V's columns.
  auto timed = std::make_unique<TimedOperator>(*inner_t, profile_, device_,
                                               gemm_rows_ > 0 ? inner_.cols() : 0);
  timed->owned_ = std::move(inner_t);
  return timed;
}

torch::Tensor TimedOperator::apply(const torch::Tensor& q_pu) {
  Stopwatch watch(device_);
  auto out = inner_.apply(q_pu);
  add(watch, 1, q_pu.size(1));
  return out;
}

torch::Tensor TimedOperator::apply_t(const torch::Tensor& m_nu) {
  Stopwatch watch(device_);
  auto out = inner_.apply_t(m_nu);
  add(watch, 1, m_nu.size(1));
  return out;
}

std::pair<torch::Tensor, torch::Tensor> TimedOperator::apply_pair(const torch::Tensor& q_pu,
                                                                  const torch::Tensor& m_nl) {
  Stopwatch watch(device_);
  auto out = inner_.apply_pair(q_pu, m_nl);
  add(watch, 2, q_pu.size(1) + m_nl.size(1));
  return out;
}

torch::Tensor TimedOperator::apply_gram(const torch::Tensor& q_pu) {
  Stopwatch watch(device_);
  auto out = inner_.apply_gram(q_pu);
  add(watch, 2, 2 * q_pu.size(1));  // V Q and Vᵀ(V Q): two products, in one pass where fused
  return out;
}

#ifdef NFK_WITH_CUDA_MEMORY_STATS
namespace {
// Models live on an explicit device (parse_device); a bare "cuda" means the first.
c10::DeviceIndex cuda_index(const torch::Device& device) {
  return device.has_index() ? device.index() : c10::DeviceIndex{0};
}
}  // namespace
#endif

void reset_peak_device_memory(const torch::Device& device) {
#ifdef NFK_WITH_CUDA_MEMORY_STATS
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index(device));
#else
  (void)device;
#endif
}

int64_t peak_device_memory(const torch::Device& device) {
#ifdef NFK_WITH_CUDA_MEMORY_STATS
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(cuda_index(device));
    return stats.allocated_bytes[0].peak;  // StatType::AGGREGATE
  }
#else
  (void)device;
#endif
  return -1;
}

}  // namespace detail
}  // namespace nfk
