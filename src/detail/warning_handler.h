#pragma once
// LibTorch warnings (TORCH_WARN, nfk's own included) as one line each, sent where the front end
// wants them (stderr in the CLI, warnings.warn in Python) instead of LibTorch's two glog lines.
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <functional>
#include <mutex>
#include <set>
#include <string>

#include "detail/strings.h"

namespace nfk::detail {

// Installs a handler for its lifetime (the namespace moved in LibTorch 2.0).
#if TORCH_VERSION_MAJOR >= 2
using WarningHandlerGuard = c10::WarningUtils::WarningHandlerGuard;
#else
using WarningHandlerGuard = c10::Warning::WarningHandlerGuard;
#endif

class OneLineWarnings : public c10::WarningHandler {
 public:
  /// `sink` gets each distinct warning once, as its first line without the "nfk: " prefix.
  explicit OneLineWarnings(std::function<void(const std::string&)> sink) : sink_(std::move(sink)) {}

#if TORCH_VERSION_MAJOR >= 2
  void process(const c10::Warning& warning) override {
    emit(warning.msg());
  }
#else
  void process(const c10::SourceLocation&, const std::string& msg, const bool) override {
    emit(msg);
  }
#endif

 private:
  void emit(const std::string& msg) {
    const std::string line = strip_prefix(summary_line(msg));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!seen_.insert(line).second) return;
    }
    sink_(line);
  }

  std::function<void(const std::string&)> sink_;
  std::mutex mutex_;
  std::set<std::string> seen_;
};

}  // namespace nfk::detail
