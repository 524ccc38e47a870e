#pragma once
/// Training of zoo models (native LibTorch): seeded, checkpointed every few epochs, resumable,
/// with a JSON log of the training curve. Each family has one options struct and one function.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nfk/data.h"
#include "nfk/progress.h"
#include "nfk/trainer.h"
#include "nfk/zoo.h"

namespace nfk {

struct ClassifierTrainOptions {
  std::string arch = "lenet5";   // "lenet5", "mlp" or "wrn"
  double learning_rate = 1e-3;   // Adam
  int64_t wrn_depth = 16;        // wrn only: depth 6n + 4
  int64_t wrn_widen_factor = 1;  // wrn only: widen factor k
};

/// Trains a zoo classifier by cross-entropy with Adam on `train` (inputs [N, C, H, W], labels
/// [N]); writes run.out_dir/classifier.pt and train_log.json (loss per epoch, test accuracy).
/// Returns the log. Example: `nfk::train_classifier(train, test, run, {});`
nlohmann::json train_classifier(const Dataset& train, const Dataset& test, const TrainRun& run,
                                const ClassifierTrainOptions& options,
                                const ProgressFn& progress = {});

/// GAN as variational EBM training (AFV, Zhai et al. 2019): D(x) = −E(x) is a density model of
/// the data and G learns to sample from it. DCGAN-style D (no batch-norm) and G.
struct GanTrainOptions {
  int64_t latent_dim = 64;
  int64_t width = 32;               // D and G base width
  std::string loss = "standard";    // "standard" | "least-squares" | "hinge"
  double lr_d = 2e-4, lr_g = 2e-4;  // Adam(β1 = 0, β2 = 0.999)
  double ema_decay = 0.999;         // EMA generator (saved as generator.pt)
  double mcmc_step = 0;           // > 0: G regresses onto x + η/2 ∇x D(x) + √η·noise_std·ε
  double mcmc_noise = 0.01;       //   (the MCMC-inspired update; 0 = adversarial G loss)
  double real_mix = 0;            // MCMC update: start x from a real example with prob. p
  int64_t monitor_every = 1;      // epochs between Fisher-similarity checks (0: never)
  int64_t monitor_samples = 500;  // generated samples (and held-out reals) per check
  double monitor_scale = 1.0;     // c in exp(−c · mean((ū_real − z)² / I))
  int64_t snapshot_every = 0;     // > 0: keep D and G every E epochs in snapshots/epoch_NNNN
};

/// Trains D and G on images `train` [N, C, S, S] in [0, 1]; monitors Fisher similarity on
/// `held_out` (if given). Writes discriminator.pt, generator.pt (EMA weights), train_log.json
/// (losses and monitoring per epoch) to run.out_dir. Returns the log.
nlohmann::json train_gan(const Dataset& train, const Dataset& held_out, const TrainRun& run,
                         const GanTrainOptions& options, const ProgressFn& progress = {});

/// Accuracy of a zoo classifier on a labelled data set.
double classifier_accuracy(const ZooModule& net, const Dataset& data, int64_t batch_size = 512);

}  // namespace nfk
