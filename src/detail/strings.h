#pragma once
// Small string helpers for one-line error messages.
#include <string>

namespace nfk::detail {

/// The first line of a (possibly multi-line) message, e.g. a LibTorch error with a backtrace.
inline std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace nfk::detail
