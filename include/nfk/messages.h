#pragma once
/// One-line messages for front ends (the CLI, the Python module, your program): an error as the
/// one line to print, and LibTorch warnings (TORCH_WARN, nfk's own included) as one line each,
/// sent where the front end wants them instead of LibTorch's two glog lines.

#include <c10/util/Exception.h>
#include <torch/version.h>

#include <exception>
#include <functional>
#include <mutex>
#include <set>
#include <string>

namespace nfk {

/// The one line to print for an error, starting "nfk: ": its informative line (for TorchScript
/// interpreter errors the cause, which comes last), without LibTorch's C++ backtrace.
/// Example: `catch (const std::exception& e) { std::fprintf(stderr, "%s\n",
/// nfk::error_line(e).c_str()); }`
std::string error_line(const std::exception& e);

/// `line` without a leading "nfk: " (to nest a message in another one).
std::string strip_nfk_prefix(const std::string& line);

/// Installs a warning handler for its lifetime (the namespace moved in LibTorch 2.0).
#if TORCH_VERSION_MAJOR >= 2
using WarningHandlerGuard = c10::WarningUtils::WarningHandlerGuard;
#else
using WarningHandlerGuard = c10::Warning::WarningHandlerGuard;
#endif

/// A LibTorch warning handler that gives `sink` each distinct warning once, as one line without
/// the "nfk: " prefix. Thread-safe. Example:
/// `nfk::OneLineWarnings w(print_line); nfk::WarningHandlerGuard guard(&w);`
class OneLineWarnings : public c10::WarningHandler {
 public:
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
  void emit(const std::string& msg);

  std::function<void(const std::string&)> sink_;
  std::mutex mutex_;
  std::set<std::string> seen_;
};

}  // namespace nfk
