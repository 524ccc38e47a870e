// nfk: one binary, one subcommand per library entry point. Errors end here as one line.
#include <c10/util/Logging.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "commands.h"
#include "common.h"
#include "nfk/messages.h"
#include "nfk/run_options.h"
#ifdef C10_USE_GLOG
#include <glog/logging.h>
#endif

namespace {

// "nfk [rank r/w]: " in a rank of a distributed run, else "nfk: ".
// LibTorch's own log lines (glog in Debian's build: c10d's "The client socket has timed out",
// "Logging before InitGoogleLogging()") would add lines to nfk's one-line errors, which already
// say what failed: only fatal ones stay.
void quiet_library_logging() {
#ifdef C10_USE_GLOG
  FLAGS_minloglevel = google::GLOG_FATAL;
#endif
}

std::string line_prefix() {
  const char* rank = std::getenv("RANK");
  const char* world = std::getenv("WORLD_SIZE");
  if (rank != nullptr && world != nullptr && std::string(world) != "1") {
    return "nfk [rank " + std::string(rank) + "/" + world + "]: ";
  }
  return "nfk: ";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "nfk — Neural Fisher Kernel toolkit: Fisher vectors, diagonal Fisher information "
      "and low-rank NFK embeddings of a trained network"};
  app.require_subcommand(1);
  // Parse errors as one line too (CLI11 adds a second, "Run with --help ...").
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("nfk: ") + e.what() + " (see --help)\n";
  });
  app.set_version_flag("--version", std::string("nfk ") + NFK_VERSION);
  nfk::cli::add_fit_command(app);
  nfk::cli::add_transform_command(app);
  nfk::cli::add_spectrum_command(app);
  nfk::cli::add_fisher_command(app);
  nfk::cli::add_continual_command(app);
  nfk::cli::add_distill_command(app);
  nfk::cli::add_distance_command(app);
  nfk::cli::add_features_command(app);
  nfk::cli::add_probe_commands(app);
  nfk::cli::add_gan_eval_commands(app);
  nfk::cli::add_train_command(app);
  nfk::cli::set_command_line(argc, argv);
  quiet_library_logging();
  nfk::use_available_cpus();
  nfk::OneLineWarnings warnings([](const std::string& line) {
    // Every rank of a distributed run would say the same: rank 0 speaks for them.
    const char* rank = std::getenv("RANK");
    if (rank != nullptr && std::string(rank) != "0") return;
    std::fprintf(stderr, "%swarning: %s\n", line_prefix().c_str(), line.c_str());
  });
  nfk::WarningHandlerGuard warning_guard(&warnings);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    // One line; a rank of a distributed run says which one it is.
    const std::string line = nfk::error_line(e);
    const std::string prefix = line_prefix();
    const std::string text =
        (prefix == "nfk: " ? line : prefix + nfk::strip_nfk_prefix(line)) + "\n";
    // A rank started by `--nproc` leaves its line to the launcher, which reports the failing
    // rank's reason once (the other ranks' errors are consequences of it).
    if (const char* path = std::getenv("NFK_ERROR_FILE")) {
      if (FILE* f = std::fopen(path, "w")) {
        const bool ok = std::fputs(text.c_str(), f) >= 0;
        if (std::fclose(f) == 0 && ok) return 1;
      }
    }
    std::fputs(text.c_str(), stderr);
    return 1;
  }
  return 0;
}
