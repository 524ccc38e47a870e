#pragma once
// Small string helpers for one-line error messages.
#include <c10/util/Exception.h>

#include <exception>
#include <sstream>
#include <string>

namespace nfk::detail {

/// The first line of a (possibly multi-line) message.
inline std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

/// One informative line of an error message. LibTorch's own errors put the cause first, but the
/// TorchScript interpreter opens with "The following operation failed ..." and a traceback, and
/// states the cause ("RuntimeError: mat1 and mat2 shapes cannot be multiplied ...") last.
inline std::string summary_line(const std::string& s) {
  const std::string first = first_line(s);
  if (first.find("TorchScript interpreter") == std::string::npos) return first;
  std::istringstream in(s);
  std::string line, last;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t") != std::string::npos) last = line;
  }
  return last.substr(last.find_first_not_of(" \t"));
}

/// An exception's message without LibTorch's C++ backtrace.
inline std::string error_text(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    return c10_error->what_without_backtrace();
  }
  return e.what();
}

/// `s` without a leading "nfk: " (when a message is nested in another one).
inline std::string strip_prefix(const std::string& s) {
  return s.rfind("nfk: ", 0) == 0 ? s.substr(5) : s;
}

}  // namespace nfk::detail
