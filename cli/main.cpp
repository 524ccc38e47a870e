// nfk: one binary, one subcommand per library entry point. Errors end here as one line.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "commands.h"
#include "common.h"
#include "detail/strings.h"

int main(int argc, char** argv) {
  CLI::App app{
      "nfk — Neural Fisher Kernel toolkit: Fisher vectors, diagonal Fisher information "
      "and low-rank NFK embeddings of a trained network"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("nfk ") + NFK_VERSION);
  nfk::cli::add_fit_command(app);
  nfk::cli::add_transform_command(app);
  nfk::cli::add_spectrum_command(app);
  nfk::cli::add_fisher_command(app);
  nfk::cli::add_distance_command(app);
  nfk::cli::add_features_command(app);
  nfk::cli::add_probe_commands(app);
  nfk::cli::add_gan_eval_commands(app);
  nfk::cli::add_train_command(app);
  nfk::cli::set_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::string line = nfk::detail::summary_line(nfk::detail::error_text(e));
    if (line.rfind("nfk", 0) != 0) line = "nfk: " + line;
    // A rank of a distributed run says which one it is.
    const char* rank = std::getenv("RANK");
    const char* world = std::getenv("WORLD_SIZE");
    if (rank != nullptr && world != nullptr && std::string(world) != "1") {
      line =
          "nfk [rank " + std::string(rank) + "/" + world + "]: " + nfk::detail::strip_prefix(line);
    }
    std::fprintf(stderr, "%s\n", line.c_str());
    return 1;
  }
  return 0;
}
