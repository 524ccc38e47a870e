#pragma once
// Flags every `nfk train <family>` shares, and the per-family registration hooks.
#include <CLI/CLI.hpp>
#include <string>
#include <utility>

#include "common.h"
#include "nfk/train.h"

namespace nfk::cli {

/// --data, --test-data, --epochs, --batch-size, --seed, --device, --checkpoint-every,
/// --no-resume, --out, --quiet.
struct TrainFlags {
  std::string data, test_data, out, device = "cpu";
  int64_t epochs = 5, batch_size = 64, checkpoint_every = 1;
  uint64_t seed = 0;
  bool no_resume = false, quiet = false;

  void add_to(CLI::App* app, int64_t default_epochs, int64_t default_batch);
  /// What a trainer needs, in the order that leaves nothing behind on bad input: the flags
  /// checked, then the --data and --test-data sets loaded (test: an empty Dataset if none was
  /// given), and only then the output folder made and checked writable.
  struct Prepared {
    TrainRun run;
    Dataset train, test;
  };
  Prepared prepare() const;
};

void add_train_classifier(CLI::App* train);
void add_train_gan(CLI::App* train);
void add_train_vae(CLI::App* train);
void add_train_density(CLI::App* train);

}  // namespace nfk::cli
