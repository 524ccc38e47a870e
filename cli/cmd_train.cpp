#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "nfk/output_files.h"
#include "train_common.h"

namespace nfk::cli {

void TrainFlags::add_to(CLI::App* app, int64_t default_epochs, int64_t default_batch) {
  epochs = default_epochs;
  batch_size = default_batch;
  app->add_option("--data", data, "Training set, e.g. mnist:train (append [:n] for a subset)")
      ->required();
  app->add_option("--test-data", test_data, "Held-out set for the reported test metrics");
  app->add_option("--epochs", epochs, "Total epochs (a resumed run continues up to this count)")
      ->capture_default_str();
  app->add_option("--batch-size", batch_size, "Examples per step")->capture_default_str();
  app->add_option("--seed", seed, "Seed for initialisation, shuffling and noise")
      ->capture_default_str();
  app->add_option("--device", device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app->add_option("--checkpoint-every", checkpoint_every, "Epochs between checkpoints")
      ->capture_default_str();
  app->add_flag("--no-resume", no_resume,
                "Start afresh even if DIR/checkpoint holds an earlier run's state");
  app->add_option("--out", out, "Output folder (models, checkpoint/, train_log.json, images)")
      ->required();
  app->add_flag("--quiet", quiet, "No progress line or summary");
}

TrainFlags::Prepared TrainFlags::prepare() const {
  TORCH_CHECK(epochs >= 0, "nfk: --epochs must be >= 0, got ", epochs);
  TORCH_CHECK(batch_size > 0, "nfk: --batch-size must be positive, got ", batch_size);
  TORCH_CHECK(checkpoint_every > 0, "nfk: --checkpoint-every must be positive");
  Prepared p;
  p.run.out_dir = out;
  p.run.epochs = epochs;
  p.run.batch_size = batch_size;
  p.run.seed = seed;
  p.run.checkpoint_every = checkpoint_every;
  p.run.resume = !no_resume;
  p.run.device = parse_device(device);
  p.train = load_dataset(data);
  if (!test_data.empty()) p.test = load_dataset(test_data);
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  check_writable(out + "/train_log.json");
  return p;
}

void add_train_command(CLI::App& app) {
  auto* train = app.add_subcommand("train", "Train a zoo model (checkpointed, resumable, seeded)");
  train->require_subcommand(1);
  add_train_classifier(train);
  add_train_gan(train);
  add_train_vae(train);
  add_train_density(train);
}

}  // namespace nfk::cli
