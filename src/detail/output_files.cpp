#include "nfk/output_files.h"

#include <c10/util/Exception.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "detail/input_file.h"

namespace nfk::detail {
namespace {

[[noreturn]] void cannot_write(const std::string& path, const std::string& why) {
  TORCH_CHECK(false, "nfk: cannot write ", path, ": ", why);
  __builtin_unreachable();
}

std::string folder_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string name_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string join(const std::string& folder, const std::string& name) {
  return folder == "/" ? "/" + name : folder + "/" + name;
}

// Holds off the signals that end a process by default (Ctrl-C, kill, hang-up) for a short
// critical section, so that no named temp file can be left behind; they arrive when it ends.
class SignalHold {
 public:
  SignalHold() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SignalHold() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalHold(const SignalHold&) = delete;
  SignalHold& operator=(const SignalHold&) = delete;

 private:
  sigset_t old_{};
};

// A short temp name in the target's folder (a 255-byte target name must still work).
std::string temp_name(const std::string& folder) {
  static std::atomic<uint64_t> counter{0};
  return join(folder, ".nfk-" + std::to_string(static_cast<long>(::getpid())) + "-" +
                          std::to_string(counter++) + ".tmp");
}

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

// Where an output goes and how: replaced atomically, or written through (devices, FIFOs).
struct Target {
  std::string path;  // resolved
  bool write_through = false;
  mode_t mode = 0644;  // of the file replaced, kept
};

Target classify(const std::string& path) {
  if (path.empty()) cannot_write("''", "empty path");
  Target t{resolved_output_path(path)};
  struct stat st {};
  if (::stat(t.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return t;  // a new file; its folder is checked when it is written
    cannot_write(path, std::strerror(errno));
  }
  if (S_ISREG(st.st_mode)) {
    t.mode = st.st_mode & 07777;
    return t;
  }
  if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
    t.write_through = true;
    return t;
  }
  cannot_write(path, "it is " + file_type_name(st.st_mode) +
                         "; nfk writes regular files, character devices and FIFOs");
}

bool tmpfile_supported() {
  // Giving an O_TMPFILE file a name goes through /proc/self/fd.
  static const bool ok = ::access("/proc/self/fd", X_OK) == 0;
  return ok;
}

// One output written in full and flushed, not yet under its name.
struct Staged {
  std::string shown;  // the path as given (messages)
  Target target;
  int fd = -1;          // an O_TMPFILE file, or -1
  std::string temp;     // a named temp file (no O_TMPFILE), or empty
  std::string through;  // the bytes of a write-through output, written at commit

  void discard() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    if (!temp.empty()) ::unlink(temp.c_str());
    temp.clear();
  }

  [[noreturn]] void fail(int err) {
    discard();
    cannot_write(shown, std::strerror(err));
  }

  void commit() {
    if (target.write_through) {
      // Non-blocking open: a FIFO without a reader fails (ENXIO) instead of hanging.
      const int out = ::open(target.path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (out < 0) {
        if (errno == ENXIO) cannot_write(shown, "it is a FIFO with no reader");
        cannot_write(shown, std::strerror(errno));
      }
      const int flags = ::fcntl(out, F_GETFL);
      if (flags >= 0) ::fcntl(out, F_SETFL, flags & ~O_NONBLOCK);
      const bool ok = write_all(out, through.data(), through.size());
      const int err = errno;
      ::close(out);
      if (!ok) cannot_write(shown, std::strerror(err));
      return;
    }
    SignalHold hold;  // between link and rename a temp name exists
    if (fd >= 0) {
      temp = temp_name(folder_of(target.path));
      const std::string proc = "/proc/self/fd/" + std::to_string(fd);
      if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, temp.c_str(), AT_SYMLINK_FOLLOW) != 0) {
        const int err = errno;
        temp.clear();
        fail(err);
      }
    }
    if (std::rename(temp.c_str(), target.path.c_str()) != 0) fail(errno);
    temp.clear();
    discard();
  }
};

Staged stage(const std::string& path, const std::vector<std::string_view>& parts) {
  Staged s;
  s.shown = path;
  s.target = classify(path);
  if (s.target.write_through) {
    for (const auto& part : parts) s.through.append(part.data(), part.size());
    return s;
  }
  const std::string folder = folder_of(s.target.path);
  if (tmpfile_supported()) {
    s.fd = ::open(folder.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (s.fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) s.fail(errno);
  }
  if (s.fd < 0) {  // no O_TMPFILE here: a named temp file (the caller holds signals off)
    s.temp = temp_name(folder);
    s.fd = ::open(s.temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (s.fd < 0) {
      const int err = errno;
      s.temp.clear();
      s.fail(err);
    }
  }
  if (::fchmod(s.fd, s.target.mode) != 0) s.fail(errno);
  for (const auto& part : parts) {
    if (!write_all(s.fd, part.data(), part.size())) s.fail(errno);
  }
  // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
  if (::fsync(s.fd) != 0) s.fail(errno);
  if (!s.temp.empty()) {
    if (::close(s.fd) != 0) {
      s.fd = -1;
      s.fail(errno);
    }
    s.fd = -1;
  }
  return s;
}

// The staged outputs of this thread's OutputGroup, if one is open.
struct GroupState {
  std::vector<Staged> staged;
  std::optional<SignalHold> hold;  // while a named temp file of the group exists
};
thread_local GroupState* g_group = nullptr;

}  // namespace
}  // namespace nfk::detail

namespace nfk {
using namespace detail;  // the helpers above

std::string resolved_output_path(const std::string& path) {
  std::string p = path;
  if (p.empty() || p[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof(cwd)) != nullptr) p = join(cwd, p);
  }
  for (int depth = 0; depth < 40; ++depth) {  // follow links, dangling ones too
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) break;
    char buf[PATH_MAX];
    const ssize_t n = ::readlink(p.c_str(), buf, sizeof(buf) - 1);
    if (n <= 0) break;
    const std::string link(buf, static_cast<size_t>(n));
    p = link[0] == '/' ? link : join(folder_of(p), link);
  }
  if (char* folder = ::realpath(folder_of(p).c_str(), nullptr)) {
    const std::string name = name_of(p);
    p = name.empty() || name == "." || name == ".." ? p : join(folder, name);
    std::free(folder);
  }
  return p;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, std::vector<std::string_view>{std::string_view(bytes)});
}

void write_file_atomic(const std::string& path, const std::vector<std::string_view>& parts) {
  if (g_group != nullptr) {
    if (!tmpfile_supported() && !g_group->hold) g_group->hold.emplace();
    g_group->staged.push_back(stage(path, parts));
    return;
  }
  std::optional<SignalHold> hold;
  if (!tmpfile_supported()) hold.emplace();
  Staged s = stage(path, parts);
  s.commit();
}

void check_writable(const std::string& path) {
  const Target t = classify(path);
  if (t.write_through) {
    if (::access(t.path.c_str(), W_OK) != 0) cannot_write(path, std::strerror(errno));
    return;
  }
  // What the real write does first, undone at once: nothing is left behind.
  SignalHold hold;
  Staged s = stage(path, {});
  s.discard();
}

OutputGroup::OutputGroup() {
  TORCH_INTERNAL_ASSERT(g_group == nullptr, "nfk: output groups do not nest");
  g_group = new GroupState();
}

OutputGroup::~OutputGroup() {
  if (g_group == nullptr) return;
  for (auto& s : g_group->staged) s.discard();
  delete g_group;
  g_group = nullptr;
}

void OutputGroup::commit() {
  TORCH_INTERNAL_ASSERT(g_group != nullptr, "nfk: OutputGroup committed twice");
  GroupState* group = g_group;
  g_group = nullptr;  // from here on, writes are direct again
  try {
    // Devices and FIFOs first: a write there can still fail (/dev/full), a rename hardly.
    for (auto& s : group->staged) {
      if (s.target.write_through) s.commit();
    }
    for (auto& s : group->staged) {
      if (!s.target.write_through) s.commit();
    }
  } catch (...) {
    for (auto& s : group->staged) s.discard();
    delete group;
    throw;
  }
  delete group;
}

}  // namespace nfk
