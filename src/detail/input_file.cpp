#include "detail/input_file.h"

#include <c10/util/Exception.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nfk::detail {
namespace {

[[noreturn]] void refuse(const std::string& path, const std::string& what, const std::string& why) {
  TORCH_CHECK(false, "nfk: cannot read ", what, " ", path, ": ", why);
  __builtin_unreachable();
}

// Opens `path` for reading without blocking (a FIFO with no writer would block open()), and
// checks that it is a regular file. Returns the descriptor, set back to blocking reads.
int open_regular(const std::string& path, const std::string& what) {
  if (path.empty()) refuse("''", what, "empty path");
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) refuse(path, what, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    refuse(path, what, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    refuse(path, what, "it is " + file_type_name(st.st_mode) + ", not a regular file");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

}  // namespace

std::string file_type_name(unsigned mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISREG(mode)) return "a regular file";
  return "not a regular file";
}

void check_input_file(const std::string& path, const std::string& what) {
  ::close(open_regular(path, what));
}

std::string read_input_file(const std::string& path, const std::string& what) {
  const int fd = open_regular(path, what);
  std::string bytes;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) bytes.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      refuse(path, what, std::strerror(err));
    }
    bytes.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return bytes;
}

}  // namespace nfk::detail
