// nfk: one binary, one subcommand per library entry point. Errors end here as one line.
#include <CLI/CLI.hpp>


#include <cstdio>
#include <exception>

#include "commands.h"
#include "detail/strings.h"

int main(int argc, char** argv) {
  CLI::App app{"nfk — Neural Fisher Kernel toolkit: Fisher vectors, diagonal Fisher information "
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    const std::string line = nfk::detail::summary_line(nfk::detail::error_text(e));
    std::fprintf(stderr, "%s%s\n", line.rfind("nfk", 0) == 0 ? "" : "nfk: ", line.c_str());
    return 1;
  }
  return 0;
}
