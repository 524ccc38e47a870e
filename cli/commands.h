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
void add_probe_commands(CLI::App& app);  // probe, knn, semisup
void add_features_command(CLI::App& app);
void add_gan_eval_commands(CLI::App& app);  // monitor, invert
void add_continual_command(CLI::App& app);
void add_distill_command(CLI::App& app);

}  // namespace nfk::cli
