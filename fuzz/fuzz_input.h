#pragma once
// Shared by the libFuzzer targets: the fuzz input as a file that nfk's readers open by path, and
// the one rule for what counts as a finding.
//
// nfk's readers take paths. Each input is written to a memfd (an anonymous regular file in
// memory) and handed over as /proc/self/fd/N: no disk, no temp-file names, one file per target.
// An expected rejection is a c10::Error (TORCH_CHECK): the target swallows it and returns 0.
// Anything else is a finding: a crash, an ASan or UBSan report (UBSan aborts: the build uses
// -fno-sanitize-recover), any other exception (std::bad_alloc from a huge allocation included),
// an allocation over libFuzzer's -malloc_limit_mb, or a hang.

#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace nfk::fuzz {

/// One reusable in-memory file per process; write() replaces its whole content.
class InputFile {
 public:
  explicit InputFile(const char* name) {
    fd_ = ::memfd_create(name, MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }

  /// Replaces the file's content with `size` bytes at `data`; returns its path.
  const std::string& write(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    return path_;
  }

  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

/// Runs `read`; a c10::Error (the readers' "nfk: <path>: ..." rejection) is an expected outcome.
/// Returns whether `read` completed.
template <typename Fn>
bool accepts(Fn&& read) {
  try {
    read();
    return true;
  } catch (const c10::Error&) {
    return false;
  }
}

/// Aborts (a finding) with `what` when `ok` is false: an invariant of an accepted input broke.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace nfk::fuzz
