#include "detail/atomic_file.h"

#include <c10/util/Exception.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace nfk::detail {
namespace {

// Writes every byte, retrying on short writes and EINTR. Returns false with errno set.
bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

[[noreturn]] void fail(const std::string& path, const std::string& tmp, int err, int fd) {
  if (fd >= 0) ::close(fd);
  if (!tmp.empty()) ::unlink(tmp.c_str());
  TORCH_CHECK(false, "nfk: cannot write ", path, ": ", std::strerror(err));
  __builtin_unreachable();
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, std::vector<std::string_view>{std::string_view(bytes)});
}

void write_file_atomic(const std::string& path, const std::vector<std::string_view>& parts) {
  TORCH_CHECK(!path.empty(), "nfk: cannot write an empty path");
  // The pid suffix keeps concurrent processes writing the same target from clobbering each
  // other's temp files; same folder so that rename() stays on one filesystem and is atomic.
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(::getpid()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, /*tmp=*/"", errno, -1);  // nothing was created, nothing to remove
  for (const auto& part : parts) {
    if (!write_all(fd, part.data(), part.size())) fail(path, tmp, errno, fd);
  }
  // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
  if (::fsync(fd) != 0) fail(path, tmp, errno, fd);
  if (::close(fd) != 0) fail(path, tmp, errno, -1);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(path, tmp, errno, -1);
}

void check_writable(const std::string& path) {
  TORCH_CHECK(!path.empty(), "nfk: cannot write an empty path");
  // Probe with the same temp name the real write will use, then remove it: nothing is left.
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(::getpid()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, /*tmp=*/"", errno, -1);
  ::close(fd);
  ::unlink(tmp.c_str());
}

}  // namespace nfk::detail
