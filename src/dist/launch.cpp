// `nfk ... --nproc N`: runs N ranks of the same command on this machine, torchrun-style.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "nfk/dist.h"

namespace nfk::dist {
namespace {

// A port the kernel considers free right now (bound to 0, read back, released).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  TORCH_CHECK(fd >= 0, "nfk: --nproc: cannot open a socket: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  TORCH_CHECK(ok, "nfk: --nproc: cannot find a free port on 127.0.0.1");
  return ntohs(addr.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped";
}

// Where each rank leaves its error line (NFK_ERROR_FILE), so that a failed job reports the
// failing rank's own reason in one line instead of every rank's and the launcher's.
class ErrorFiles {
 public:
  ErrorFiles() {
    char dir[] = "/tmp/nfk-ranks-XXXXXX";
    if (::mkdtemp(dir) != nullptr) dir_ = dir;
  }
  ~ErrorFiles() {
    if (dir_.empty()) return;
    for (const auto& f : written_) ::unlink(f.c_str());
    ::rmdir(dir_.c_str());
  }
  std::string path(int rank) {
    if (dir_.empty()) return "";
    written_.push_back(dir_ + "/rank-" + std::to_string(rank));
    return written_.back();
  }
  /// The rank's error line without its "nfk ...: " prefix, or "" if it left none.
  std::string line(int rank) const {
    if (dir_.empty()) return "";
    std::ifstream in(dir_ + "/rank-" + std::to_string(rank));
    std::string l;
    std::getline(in, l);
    const auto colon = l.find("]: ");
    if (l.rfind("nfk [rank", 0) == 0 && colon != std::string::npos) return l.substr(colon + 3);
    return l.rfind("nfk: ", 0) == 0 ? l.substr(5) : l;
  }

 private:
  std::string dir_;
  std::vector<std::string> written_;
};

// Stops the ranks still running: SIGTERM, then SIGKILL after a grace period; reaps them.
void stop_all(std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    if (pid > 0) ::kill(pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (pid_t& pid : pids) {
    while (pid > 0) {
      int status = 0;
      const pid_t got = ::waitpid(pid, &status, WNOHANG);
      if (got == pid || (got < 0 && errno != EINTR)) {
        pid = 0;
      } else if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        pid = 0;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }
}

// While a launcher waits for its ranks, SIGINT and SIGTERM are passed on to every rank (so that
// Ctrl-C or `kill` of the launcher stops the whole job) and remembered: the launcher then
// reports the interruption instead of a rank's failure.
std::atomic<int> g_signal{0};
std::vector<pid_t>* g_ranks = nullptr;

void forward_signal(int sig) {
  g_signal = sig;
  if (g_ranks == nullptr) return;
  for (pid_t pid : *g_ranks) {
    if (pid > 0) ::kill(pid, sig);
  }
}

class SignalForwarding {
 public:
  SignalForwarding() {
    struct sigaction sa {};
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalForwarding() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    g_ranks = nullptr;
  }
  void watch(std::vector<pid_t>* pids) { g_ranks = pids; }
  int received() const { return g_signal.load(); }

 private:
  struct sigaction old_int_ {
  }, old_term_{};
};

}  // namespace

void launch_local(const std::vector<std::string>& argv, int nproc) {
  TORCH_CHECK(nproc >= 1, "nfk: --nproc must be >= 1, got ", nproc);
  TORCH_CHECK(!argv.empty(), "nfk: launch_local needs a command");
  TORCH_CHECK(available() || nproc == 1, "nfk: --nproc ", nproc, " needs distributed support, ",
              "and this nfk was built without c10d/Gloo (NFK_WITH_DISTRIBUTED=OFF)");
  const std::string port = std::to_string(free_port());
  // Like torchrun, keep N ranks from oversubscribing the cores: cores / N threads each, unless
  // the user chose.
  const long cores = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  const std::string threads = std::to_string(std::max(1L, cores / nproc));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  const pid_t launcher = ::getpid();
  // SIGINT/SIGTERM to the launcher stop every rank, then the launcher (see forward_signals).
  SignalForwarding forwarding;
  ErrorFiles errors;
  std::vector<std::string> error_paths;
  for (int r = 0; r < nproc; ++r) error_paths.push_back(errors.path(r));
  std::vector<pid_t> pids(nproc, 0);
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      stop_all(pids);
      TORCH_CHECK(false, "nfk: --nproc: cannot start rank ", r, ": ", why);
    }
    if (pid == 0) {
      // A rank dies with its launcher (also when the launcher is killed by SIGKILL) ...
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(1);  // it died before prctl took effect
      // ... and takes Ctrl-C and kill through it, not from the terminal directly.
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      const std::string rank = std::to_string(r), world = std::to_string(nproc);
      ::setenv("RANK", rank.c_str(), 1);
      ::setenv("LOCAL_RANK", rank.c_str(), 1);
      ::setenv("WORLD_SIZE", world.c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", world.c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      ::setenv("OMP_NUM_THREADS", threads.c_str(), /*overwrite=*/0);
      if (!error_paths[r].empty()) ::setenv("NFK_ERROR_FILE", error_paths[r].c_str(), 1);
      ::execv("/proc/self/exe", args.data());
      ::execvp(args[0], args.data());
      std::fprintf(stderr, "nfk: --nproc: cannot run %s: %s\n", args[0], std::strerror(errno));
      ::_exit(127);
    }
    pids[r] = pid;
  }
  forwarding.watch(&pids);
  if (const int sig = forwarding.received()) {  // arrived while the ranks were being started
    for (pid_t pid : pids) ::kill(pid, sig);
  }

  int running = nproc;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0 && errno != EINTR) break;
    int rank = -1;
    for (int r = 0; r < nproc && pid > 0; ++r) {
      if (pids[r] == pid) rank = r;
    }
    if (rank >= 0) {
      pids[rank] = 0;
      --running;
    }
    if (const int sig = forwarding.received()) {
      stop_all(pids);
      TORCH_CHECK(false, "nfk: --nproc: interrupted by signal ", sig, " (", strsignal(sig),
                  "); stopped every rank");
    }
    if (rank < 0) continue;  // interrupted, or not one of ours
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    stop_all(pids);
    const std::string why = errors.line(rank);
    TORCH_CHECK(why.empty(), "nfk: rank ", rank, " of ", nproc, ": ", why);
    TORCH_CHECK(false, "nfk: rank ", rank, " of ", nproc, " ", describe(status),
                "; stopped the other ranks");
  }
}

}  // namespace nfk::dist
