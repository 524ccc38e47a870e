#pragma once
// Each subcommand registers its flags and a callback that calls the library.
#include <CLI/CLI.hpp>

namespace nfk::cli {

void add_fit_command(CLI::App& app);
void add_transform_command(CLI::App& app);
void add_spectrum_command(CLI::App& app);
void add_fisher_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_distance_command(CLI::App& app);

}  // namespace nfk::cli
