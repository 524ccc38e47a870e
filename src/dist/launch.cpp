// `nfk ... --nproc N`: runs N ranks of the same command on this machine, torchrun-style.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
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

  std::vector<pid_t> pids(nproc, 0);
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      stop_all(pids);
      TORCH_CHECK(false, "nfk: --nproc: cannot start rank ", r, ": ", why);
    }
    if (pid == 0) {
      const std::string rank = std::to_string(r), world = std::to_string(nproc);
      ::setenv("RANK", rank.c_str(), 1);
      ::setenv("LOCAL_RANK", rank.c_str(), 1);
      ::setenv("WORLD_SIZE", world.c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", world.c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      ::setenv("OMP_NUM_THREADS", threads.c_str(), /*overwrite=*/0);
      ::execv("/proc/self/exe", args.data());
      ::execvp(args[0], args.data());
      std::fprintf(stderr, "nfk: --nproc: cannot run %s: %s\n", args[0], std::strerror(errno));
      ::_exit(127);
    }
    pids[r] = pid;
  }

  int running = nproc;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int rank = -1;
    for (int r = 0; r < nproc; ++r) {
      if (pids[r] == pid) rank = r;
    }
    if (rank < 0) continue;  // not one of ours
    pids[rank] = 0;
    --running;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    stop_all(pids);
    TORCH_CHECK(false, "nfk: rank ", rank, " of ", nproc, " ", describe(status),
                "; stopped the other ranks");
  }
}

}  // namespace nfk::dist
