// One-line messages for front ends (include/nfk/messages.h).
#include "nfk/messages.h"

#include "detail/strings.h"

namespace nfk {

std::string error_line(const std::exception& e) {
  const std::string line = detail::summary_line(detail::error_text(e));
  return line.rfind("nfk", 0) == 0 ? line : "nfk: " + line;
}

std::string strip_nfk_prefix(const std::string& line) {
  return detail::strip_prefix(line);
}

void OneLineWarnings::emit(const std::string& msg) {
  const std::string line = detail::strip_prefix(detail::summary_line(msg));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!seen_.insert(line).second) return;
  }
  sink_(line);
}

}  // namespace nfk
