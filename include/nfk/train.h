#pragma once
/// Training of zoo models (native LibTorch): seeded, checkpointed every few epochs, resumable,
/// with a JSON log of the training curve. Each family has one options struct and one function,
/// all running the one loop of nfk/trainer.h; `hooks` add loss terms, gradient transforms and
/// epoch-end callbacks (monitoring, pictures) to it. Hooks reach the run's modules by name —
/// classifier: "classifier" (optimizer "adam"); vae: "vae" ("adam"); density: "density"
/// ("adam"); gan: "discriminator", "generator_raw", "generator" (EMA) ("adam_d", "adam_g").

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nfk/data.h"
#include "nfk/natural_gradient.h"
#include "nfk/progress.h"
#include "nfk/trainer.h"
#include "nfk/zoo.h"

namespace nfk {

struct ClassifierTrainOptions {
  std::string arch = "lenet5";  // "lenet5", "mlp" or "wrn"
  std::string optimizer =
      "adam";  // "adam" | "sgd" | "ngd-diag" | "kfac" (include/nfk/natural_gradient.h)
  double learning_rate = 1e-3;     // Adam's, or SGD's (also stepping ngd-diag / kfac)
  double momentum = 0.9;           // sgd, ngd-diag, kfac
  NaturalGradientOptions natural;  // ngd-diag / kfac: estimator, damping, intervals, KL clip
  int64_t wrn_depth = 16;          // wrn only: depth 6n + 4
  int64_t wrn_widen_factor = 1;    // wrn only: widen factor k
  /// Steps between test-accuracy evaluations inside epochs (0: at epoch ends only), logged as
  /// "evaluations": [{step, epoch (fractional), train_seconds, test_accuracy}], train_seconds
  /// counting training steps only (not the evaluations). Needs a labelled test set.
  int64_t eval_every = 0;
};

/// Trains a zoo classifier by cross-entropy on `train` (inputs [N, C, H, W], labels [N]) with
/// Adam, SGD with momentum, or SGD with momentum along a natural gradient (ngd-diag: the diagonal
/// classifier Fisher; kfac: K-FAC), a gradient transform that composes with `hooks`' loss terms;
/// writes run.out_dir/classifier.zoo and train_log.json (loss per epoch, test accuracy).
/// Returns the log. Example: `nfk::train_classifier(train, test, run, {});`
nlohmann::json train_classifier(const Dataset& train, const Dataset& test, const TrainRun& run,
                                const ClassifierTrainOptions& options,
                                const ProgressFn& progress = {}, const TrainHooks& hooks = {});

/// GAN as variational EBM training (AFV, Zhai et al. 2019): D(x) = −E(x) is a density model of
/// the data and G learns to sample from it. DCGAN-style D (no batch-norm) and G.
struct GanTrainOptions {
  int64_t latent_dim = 64;
  int64_t width = 32;               // D and G base width
  std::string loss = "standard";    // "standard" | "least-squares" | "hinge"
  double lr_d = 2e-4, lr_g = 2e-4;  // Adam(β1 = 0, β2 = 0.999)
  double ema_decay = 0.999;         // EMA generator (saved as generator.zoo)
  double mcmc_step = 0;        // > 0: G regresses onto x + η/2 ∇x D(x) + √η·noise_std·ε
  double mcmc_noise = 0.01;    //   (the MCMC-inspired update; 0 = adversarial G loss)
  double real_mix = 0;         // MCMC update: start x from a real example with prob. p
  int64_t snapshot_every = 0;  // > 0: keep D and G every E epochs in snapshots/epoch_NNNN
};

/// Trains D and G on images `train` [N, C, S, S] in [0, 1] (drop-last batches; shuffles and noise
/// from epoch_generator stream 1). Writes discriminator.zoo, generator.zoo (EMA weights) and
/// train_log.json (per epoch loss_d, loss_g, d_real, d_fake) to run.out_dir; returns the log.
/// The trainer's modules are "discriminator", "generator_raw" and "generator" (EMA): an
/// epoch-end hook reaches them by name, e.g. the Fisher-similarity monitor of nfk/gan_eval.h.
nlohmann::json train_gan(const Dataset& train, const TrainRun& run, const GanTrainOptions& options,
                         const ProgressFn& progress = {}, const TrainHooks& hooks = {});

// ---------------------------------------------------------------------------------------------
// Generative trainers (same seeding / checkpoint / resume / log conventions as train_classifier)
// ---------------------------------------------------------------------------------------------

struct VaeTrainOptions {
  int64_t latent_dim = 16;
  int64_t width = 32;
  std::string likelihood = "bernoulli";  // or "gaussian" (learned σ)
  double learning_rate = 1e-3;           // Adam
  int64_t iwae_examples = 1000;          // test examples for the final IWAE estimate (0: none)
  int64_t iwae_samples = 100;            // K of the IWAE estimate
};

/// Trains a `vae` zoo model on images [N, C, S, S] in [0, 1] by maximising the ELBO with Adam
/// (loss = −mean ELBO, one reparameterised sample per example; the global RNG is seeded per
/// epoch from (run.seed, epoch), so a resumed run repeats the uninterrupted curve exactly).
/// Logs per epoch {loss, test_elbo}; at the end test_elbo and test_iwae (log-likelihood
/// estimate with K = iwae_samples on the first iwae_examples test images) when `test` has
/// inputs. Writes run.out_dir/vae.zoo and train_log.json; returns the log.
nlohmann::json train_vae(const Dataset& train, const Dataset& test, const TrainRun& run,
                         const VaeTrainOptions& options, const ProgressFn& progress = {},
                         const TrainHooks& hooks = {});

struct DensityTrainOptions {
  std::string arch = "made";
  std::vector<int64_t> hidden = {512};
  std::string likelihood = "gaussian";  // or "bernoulli" (dynamic binarization)
  double logit_alpha = 1e-6;
  bool dequantize = true;       // gaussian: x = (255·x + u)/256, u ~ U(0, 1) (8-bit data)
  double learning_rate = 1e-3;  // Adam
};

/// Trains a `made` zoo model by maximum likelihood with Adam (loss = −mean log p per example,
/// nats, on dequantized / dynamically binarized training data; the noise comes from the
/// epoch's generator). Logs per epoch {loss, test_log_likelihood, test_bits_per_dim}; at the
/// end the same keys at the top level when `test` has inputs (test noise is fixed).
/// Writes run.out_dir/density.zoo and train_log.json; returns the log.
nlohmann::json train_density(const Dataset& train, const Dataset& test, const TrainRun& run,
                             const DensityTrainOptions& options, const ProgressFn& progress = {},
                             const TrainHooks& hooks = {});

/// The data a density model is scored on, as in training: dequantized (gaussian, if
/// `dequantize`) or binarized (bernoulli) with noise from `gen`.
torch::Tensor density_preprocess(const torch::Tensor& x, const DensityTrainOptions& options,
                                 at::Generator gen);

/// Mean log p and bits/dim of a density zoo model on (already preprocessed) inputs `x`.
/// bits/dim = (−log p / D + [log 256 if dequantized]) / log 2.
std::pair<double, double> density_test_metrics(const ZooModule& model, const torch::Tensor& x,
                                               bool dequantized, int64_t batch_size = 500);

/// Accuracy of a zoo classifier on a labelled data set.
double classifier_accuracy(const ZooModule& net, const Dataset& data, int64_t batch_size = 512);

}  // namespace nfk
