#pragma once
/// GAN applications of the Fisher machinery: training monitoring from Fisher similarity, during
/// training and over saved snapshots (AFV Fig. 3), and GAN inversion from NFK embeddings (NFK
/// paper App. C).

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nfk/embed.h"
#include "nfk/fisher.h"
#include "nfk/model.h"
#include "nfk/progress.h"
#include "nfk/zoo.h"

namespace nfk {

/// Fisher-similarity checks while a GAN trains (the per-epoch `fisher_similarity` and
/// `fisher_distance` of `nfk train gan --test-data`).
struct GanTrainingMonitorOptions {
  int64_t every = 1;      // epochs between checks (0: never)
  int64_t samples = 500;  // generated samples (and held-out reals) per check
  double scale = 1.0;     // c in exp(−c · mean((ū_real − z)² / I))
  uint64_t seed = 0;      // the check after epoch e draws its samples with seed + 7919 · (e − 1)
};

/// Fisher similarity of the first min(samples, N) held-out real images `held_out` [N, C, S, S]
/// against as many samples of `generator` (h → x, zoo "dcgan-g"), in the Fisher geometry of
/// `discriminator` (zoo "dcgan-d"), after `epochs_done` epochs. Leaves both modules in eval
/// mode. train_gan reaches it through an epoch-end hook its caller passes (the CLI does).
FisherSimilarity gan_training_fisher_similarity(const ZooModule& discriminator,
                                                const ZooModule& generator,
                                                const torch::Tensor& held_out, int64_t epochs_done,
                                                const GanTrainingMonitorOptions& options);

struct GanMonitorOptions {
  int64_t samples = 500;  // generated samples per snapshot (the Fisher reference)
  uint64_t seed = 0;      // the same draw of h for every snapshot and both sets
  double scale = 1.0;     // c in exp(−c · mean((ū_real − z)² / I))
  int64_t batch_size = 256;
  torch::Device device = torch::kCPU;
};

struct GanMonitorPoint {
  int64_t epoch = 0;
  double train_similarity = 0, test_similarity = 0;  // Fisher similarity of each real set
  double train_distance = 0, test_distance = 0;      // ‖mean_real V‖ (AFV Fisher distance)
};

/// Reads every snapshot `dir/epoch_NNNN/{discriminator,generator}.zoo` (written by `nfk train gan
/// --snapshot-every`) in epoch order and scores how well the generator matches the real `train`
/// and `test` images [N, C, S, S] in D's Fisher geometry. A generator that memorises a small
/// training set keeps a high train similarity while the test similarity falls.
std::vector<GanMonitorPoint> monitor_gan_snapshots(const std::string& dir,
                                                   const torch::Tensor& train,
                                                   const torch::Tensor& test,
                                                   const GanMonitorOptions& options,
                                                   const ProgressFn& progress = {});

/// A linear map from NFK embeddings back to the GAN's latent code: h ≈ (e − ē) W + h̄, fitted by
/// ridge regression on generated pairs (h, e(G(h))).
struct GanInversionOptions {
  int64_t samples = 10000;  // generated (h, x) pairs
  int64_t components = -1;  // leading NFK components used (-1: all of the projector's rank)
  double l2 = 1e-3;         // ridge penalty, relative to the mean eigenvalue of the centred eᵀe
  uint64_t seed = 0;
  int64_t batch_size = 256;
};

struct GanInversion {
  torch::Tensor mean_e, mean_h;  // [k], [latent] float64 (k: the components used)
  torch::Tensor weight;          // [k, latent] float64
  double fit_r2 = 0;             // fraction of latent variance explained on the generated pairs
  /// latent codes [M, latent] float32 of NFK embeddings [M, ≥ k] (the first k columns are used).
  torch::Tensor latents(const torch::Tensor& embeddings) const;
};

/// Fits the inversion for a projector fitted on a GAN discriminator (kind gan); `gan` is its
/// score model (load_projector_model) and `generator` the network G(h) → x.
GanInversion fit_gan_inversion(const Projector& projector, ScoreModel& gan, Network& generator,
                               const GanInversionOptions& options, const ProgressFn& progress = {});

/// G(h) for codes h [M, latent] in batches, float32 on the CPU.
torch::Tensor generate(Network& generator, const torch::Tensor& latents, int64_t batch_size = 256);

}  // namespace nfk
