#pragma once
/// Knowledge distillation into a zoo student (SPEC §1c; NFK paper §4.2, App. D.2):
///
///   none  the student alone: CE(f_s(x), y);
///   kd    Hinton et al. 2015: α·CE + (1 − α)·T²·KL(softmax(f_t(x)/T) ‖ softmax(f_s(x)/T));
///   nfkd  α·CE + (1 − α)·L_t(h_s(x), Q_t(x)): Q_t the teacher's rank-k NFK embedding
///         e(x) = Pᵀ V_x (classifier kind), h_s a linear head on the student's penultimate
///         features, L_t the squared ℓ2 distance or the cosine distance.
///
/// Q_t is computed once for every training example (nfk's fit, then `transform`) and scaled by
/// one number so that its mean squared norm over the training set is 1: the kernel's geometry
/// (the relative size of its components) is kept, only its unit changes. nfk's trainers draw no
/// random augmentation, so Q_t(x) is exactly the target of the input the student sees.
///
/// With a reduced labelled set (`labels` > 0), an epoch is one pass over all training images
/// (the distillation term sees every image: teacher and Q_t need no labels) and every step
/// also draws a batch of the labelled examples for the CE term; `none` takes only that labelled
/// batch, so every method makes the same steps with the same schedule.

#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nfk/data.h"
#include "nfk/embed.h"
#include "nfk/names.h"
#include "nfk/progress.h"
#include "nfk/trainer.h"

namespace nfk {

enum class DistillMethod { kNone, kKd, kNfkd };
const Names<DistillMethod>& distill_method_names();  // none, kd, nfkd
inline DistillMethod parse_distill_method(const std::string& name) {
  return distill_method_names().parse(name);
}
inline std::string to_string(DistillMethod value) {
  return distill_method_names().name(value);
}

/// L_t of NFKD. "l2" | "cosine".
enum class TargetLoss { kL2, kCosine };
const Names<TargetLoss>& target_loss_names();  // l2, cosine
inline TargetLoss parse_target_loss(const std::string& name) {
  return target_loss_names().parse(name);
}
inline std::string to_string(TargetLoss value) {
  return target_loss_names().name(value);
}

/// L_t(h, q) averaged over the batch, h and q [B, k]: l2 Σ_j (h_j − q_j)²; cosine
/// 1 − ⟨h, q⟩ / max(‖h‖ ‖q‖, 1e-12).
torch::Tensor nfkd_target_loss(const torch::Tensor& head, const torch::Tensor& target,
                               TargetLoss loss);

/// T²·KL(softmax(teacher/T) ‖ softmax(student/T)) averaged over the batch (logits [B, C]).
torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                      double temperature);

/// The teacher's NFK targets of a training set.
struct NfkTargets {
  torch::Tensor embedding;  // e(x) = Pᵀ V_x [N, k] float32, as `nfk transform` gives it
  double scale = 1;         // √(mean_x ‖e(x)‖²): Q_t = embedding / scale
  torch::Tensor q() const { return embedding / scale; }
};

/// NFK targets from an embedding [N, ≥ rank] (its first `rank` columns; 0: all), with the scale.
/// Throws if it is not finite or is zero.
NfkTargets scaled_nfk_targets(const torch::Tensor& embedding, int64_t rank);

/// e(x) of every row of `inputs` by `projector` (its top `rank` components; 0: all) and the scale.
/// Throws if the embedding is not finite or is zero.
NfkTargets nfk_targets(const Projector& projector, ScoreModel& teacher, const torch::Tensor& inputs,
                       int64_t rank, const RunOptions& run = {});

/// The teacher's logits [N, C] float32 on the CPU, in eval mode, by batches.
torch::Tensor teacher_logits(Network& teacher, const torch::Tensor& inputs,
                             int64_t batch_size = 512);

/// `m` of `n` examples chosen at random by `seed` (sorted indices, int64): the labelled subset
/// of the reduced-label setting, the NFK fit's subset. `m` ≤ 0 or ≥ n keeps them all.
torch::Tensor random_subset(int64_t n, int64_t m, uint64_t seed);

struct DistillOptions {
  DistillMethod method = DistillMethod::kNfkd;
  double alpha = 0.5;                        // weight of CE (1 − α: the teacher's term)
  double temperature = 4;                    // kd
  TargetLoss target_loss = TargetLoss::kL2;  // nfkd
  std::string student_arch = "mlp";          // lenet5 | mlp | wrn
  nlohmann::json student_options;            // the arch's options (classes and input filled in)
  double learning_rate = 1e-3;               // Adam
  int64_t labels = 0;       // labelled training examples (0: all); the rest only distil
  uint64_t label_seed = 0;  // which ones (the same for every student seed)
};

/// What the teacher gives each training example: logits [N, C] (kd) or Q_t [N, k] (nfkd).
struct DistillTeacher {
  torch::Tensor logits;
  torch::Tensor targets;
};

/// Trains a student (and, for nfkd, its head "head": a linear map features → k) by Adam on
/// `train` with the teacher's term as a trainer loss term ("kd" or "nfkd", logged as loss_kd /
/// loss_nfkd with its weight 1 − α; "ce" is logged unweighted). Logs per epoch the test
/// accuracy when `test` has labels. Writes run.out_dir/student.zoo (a zoo classifier, usable by
/// every nfk command), head.zoo (nfkd) and train_log.json; returns the log.
nlohmann::json train_student(const Dataset& train, const Dataset& test, const TrainRun& run,
                             const DistillOptions& options, const DistillTeacher& teacher,
                             const ProgressFn& progress = {});

}  // namespace nfk
