// Knowledge distillation: the teacher's term (KD or NFKD) as a loss term of the one trainer loop.
#include "nfk/distill.h"

#include <cmath>
#include <filesystem>
#include <memory>

#include "nfk/output_files.h"
#include "nfk/train.h"
#include "nfk/zoo.h"

namespace nfk {

const Names<DistillMethod>& distill_method_names() {
  static const Names<DistillMethod> names(
      "distillation method",
      {{DistillMethod::kNone, "none"}, {DistillMethod::kKd, "kd"}, {DistillMethod::kNfkd, "nfkd"}});
  return names;
}

const Names<TargetLoss>& target_loss_names() {
  static const Names<TargetLoss> names("NFKD loss",
                                       {{TargetLoss::kL2, "l2"}, {TargetLoss::kCosine, "cosine"}});
  return names;
}

torch::Tensor nfkd_target_loss(const torch::Tensor& head, const torch::Tensor& target,
                               TargetLoss loss) {
  TORCH_CHECK(head.dim() == 2 && head.sizes() == target.sizes(), "nfk: NFKD head outputs ",
              head.sizes(), " and targets ", target.sizes(), " must both be [B, k]");
  if (loss == TargetLoss::kL2) return (head - target).pow(2).sum(1).mean();
  auto norms = (head.norm(2, 1) * target.norm(2, 1)).clamp_min(1e-12);
  return (1 - (head * target).sum(1) / norms).mean();
}

torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                      double temperature) {
  TORCH_CHECK(temperature > 0, "nfk: the KD temperature must be positive");
  TORCH_CHECK(student_logits.dim() == 2 && student_logits.sizes() == teacher_logits.sizes(),
              "nfk: student logits ", student_logits.sizes(), " and teacher logits ",
              teacher_logits.sizes(), " must both be [B, C]");
  auto log_p_s = torch::log_softmax(student_logits / temperature, 1);
  auto log_p_t = torch::log_softmax(teacher_logits / temperature, 1);
  auto kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean();
  return temperature * temperature * kl;
}

NfkTargets scaled_nfk_targets(const torch::Tensor& embedding, int64_t rank) {
  TORCH_CHECK(embedding.dim() == 2 && rank >= 0 && rank <= embedding.size(1),
              "nfk: NFK targets of shape ", embedding.sizes(), " have fewer than --rank ", rank,
              " columns (the rank exceeds the embedding's)");
  auto e = embedding.to(torch::kCPU, torch::kFloat64);
  if (rank > 0) e = e.slice(1, 0, rank);
  TORCH_CHECK(torch::isfinite(e).all().item<bool>(),
              "nfk: the teacher's NFK embedding has NaN/Inf entries; check the teacher");
  NfkTargets t;
  t.scale = std::sqrt(e.pow(2).sum(1).mean().item<double>());
  TORCH_CHECK(t.scale > 0, "nfk: the teacher's NFK embedding is zero on the training set");
  t.embedding = e.to(torch::kFloat32).contiguous();
  return t;
}

NfkTargets nfk_targets(const Projector& projector, ScoreModel& teacher, const torch::Tensor& inputs,
                       int64_t rank, const RunOptions& run) {
  TORCH_CHECK(rank >= 0 && rank <= projector.rank(), "nfk: --rank ", rank,
              " exceeds the projector's rank ", projector.rank());
  return scaled_nfk_targets(transform(projector, teacher, inputs, run), rank);
}

torch::Tensor teacher_logits(Network& teacher, const torch::Tensor& inputs, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const auto device = teacher.parameters().front().device();
  const auto dtype = teacher.parameters().front().scalar_type();
  std::vector<torch::Tensor> out;
  for (int64_t start = 0; start < inputs.size(0); start += batch_size) {
    auto x = inputs.slice(0, start, std::min(inputs.size(0), start + batch_size));
    auto y = teacher.call("forward", x.to(device, dtype));
    TORCH_CHECK(y.dim() == 2, "nfk: the teacher's forward gives ", y.sizes(),
                "; a classifier teacher must give logits [B, classes]");
    out.push_back(y.to(torch::kCPU, torch::kFloat32));
  }
  auto logits = torch::cat(out);
  TORCH_CHECK(torch::isfinite(logits).all().item<bool>(),
              "nfk: the teacher's logits have NaN/Inf entries; check the teacher");
  return logits;
}

torch::Tensor random_subset(int64_t n, int64_t m, uint64_t seed) {
  if (m <= 0 || m >= n) return torch::arange(n, torch::kLong);
  auto gen = epoch_generator(seed, /*stream=*/7, /*epoch=*/0);
  return std::get<0>(at::randperm(n, gen, torch::kLong).slice(0, 0, m).sort());
}

namespace {

ZooModule make_student(const Dataset& train, int64_t classes, const DistillOptions& o) {
  nlohmann::json options = o.student_options.is_object() ? o.student_options : nlohmann::json{};
  if (o.student_arch == "mlp") {
    options["in_features"] = train.inputs[0].numel();
    options["out_features"] = classes;
  } else {
    TORCH_CHECK(train.inputs.dim() == 4, "nfk: student `", o.student_arch,
                "` expects images [N, C, H, W], got ", train.inputs.sizes());
    options["in_channels"] = train.inputs.size(1);
    options["image_size"] = train.inputs.size(2);
    options["num_classes"] = classes;
  }
  auto student = make_zoo_module(o.student_arch, options);
  TORCH_CHECK(student.has_method("features") && student.has_method("classify"), "nfk: student `",
              o.student_arch, "` has no features/classify methods");
  return student;
}

// The student's trunk output of the step, shared by the step and the teacher's loss term, so
// that CE and the teacher's term differentiate one forward pass.
struct StepActivations {
  torch::Tensor features, logits, rows;  // of the examples the teacher's term sees
};

}  // namespace

nlohmann::json train_student(const Dataset& train, const Dataset& test, const TrainRun& run,
                             const DistillOptions& o, const DistillTeacher& teacher,
                             const ProgressFn& progress) {
  TORCH_CHECK(train.labels.defined(), "nfk: distillation needs the training labels");
  TORCH_CHECK(o.alpha >= 0 && o.alpha <= 1, "nfk: --alpha must be in [0, 1], got ", o.alpha);
  const int64_t n = train.inputs.size(0);
  const bool kd = o.method == DistillMethod::kKd, nfkd = o.method == DistillMethod::kNfkd;
  const auto labelled = random_subset(n, o.labels, o.label_seed);
  const int64_t n_labelled = labelled.size(0);
  const bool reduced = n_labelled < n;
  // Only the labelled examples' labels are ever read (the classes too come from them).
  const Dataset labelled_set = reduced ? Dataset{train.inputs.index_select(0, labelled),
                                                 train.labels.index_select(0, labelled)}
                                       : train;
  const int64_t classes = labelled_set.labels.max().item<int64_t>() + 1;
  if (kd) {
    TORCH_CHECK(teacher.logits.defined() && teacher.logits.dim() == 2 &&
                    teacher.logits.size(0) == n && teacher.logits.size(1) >= classes,
                "nfk: kd needs the teacher's logits [", n, ", >= ", classes, "]");
  }
  if (nfkd) {
    TORCH_CHECK(teacher.targets.defined() && teacher.targets.dim() == 2 &&
                    teacher.targets.size(0) == n && teacher.targets.size(1) > 0,
                "nfk: nfkd needs the teacher's NFK targets [", n, ", k]");
  }
  const int64_t student_classes = kd ? teacher.logits.size(1) : classes;

  torch::manual_seed(run.seed);
  ZooModule student = make_student(train, student_classes, o);
  student.module->to(run.device);
  std::vector<torch::Tensor> params = student.module->parameters();
  ZooModule head;
  if (nfkd) {
    torch::NoGradGuard no_grad;
    const int64_t width =
        student.call("features", train.inputs.slice(0, 0, 1).to(run.device)).flatten(1).size(1);
    head = make_zoo_module("mlp", {{"in_features", width},
                                   {"hidden", std::vector<int64_t>{}},
                                   {"out_features", teacher.targets.size(1)}});
    head.module->to(run.device);
    for (const auto& p : head.module->parameters()) params.push_back(p);
  }
  torch::optim::Adam adam(params, torch::optim::AdamOptions(o.learning_rate));

  // Reduced labels: the loop walks every image without its label; labels come from the subset.
  const Dataset loop_set = reduced ? Dataset{train.inputs, torch::Tensor()} : train;
  const auto on_device = [&](const torch::Tensor& t) { return t.to(run.device); };
  const auto targets = nfkd ? on_device(teacher.targets) : torch::Tensor();
  const auto logits_t = kd ? on_device(teacher.logits) : torch::Tensor();

  auto acts = std::make_shared<StepActivations>();
  TrainHooks hooks;
  if (kd) {
    hooks.loss_terms.push_back({"kd", [acts, logits_t, o](const ZooModule&, const Batch&) {
                                  auto t =
                                      logits_t.index_select(0, acts->rows.to(logits_t.device()));
                                  return (1 - o.alpha) * kd_loss(acts->logits, t, o.temperature);
                                }});
  }
  if (nfkd) {
    hooks.loss_terms.push_back(
        {"nfkd", [acts, targets, o, &head](const ZooModule&, const Batch&) {
           auto h = head.forward(acts->features.flatten(1)).reshape({acts->features.size(0), -1});
           auto q = targets.index_select(0, acts->rows.to(targets.device()));
           return (1 - o.alpha) * nfkd_target_loss(h, q, o.target_loss);
         }});
  }
  hooks.epoch_begin.push_back([&](Trainer&, int64_t) {
    student.module->train();
    if (nfkd) head.module->train();
  });
  if (test.labels.defined()) {
    hooks.epoch_end.push_back({"test_accuracy", [&](Trainer&, int64_t, nlohmann::json& entry) {
                                 entry["test_accuracy"] = classifier_accuracy(student, test);
                               }});
  }
  TrainLoopOptions loop;
  loop.run = run;
  Trainer trainer(loop, hooks);
  trainer.add_module("student", &student);
  if (nfkd) trainer.add_module("head", &head);
  trainer.add_optimizer("adam", &adam, &student);
  trainer.log() = {{"family", "distill"},
                   {"method", to_string(o.method)},
                   {"student_arch", o.student_arch},
                   {"alpha", o.alpha},
                   {"labelled_examples", n_labelled},
                   {"epochs", nlohmann::json::array()}};
  if (kd) trainer.log()["temperature"] = o.temperature;
  if (nfkd) {
    trainer.log()["rank"] = teacher.targets.size(1);
    trainer.log()["target_loss"] = to_string(o.target_loss);
  }
  trainer.resume();

  const double ce_weight = o.method == DistillMethod::kNone ? 1.0 : o.alpha;
  auto step = [&](Trainer& t, const Batch& b) {
    torch::Tensor x_labelled = b.inputs, y = b.labels;
    if (reduced) {  // a labelled batch of the same size, drawn from the epoch's generator
      auto pick = at::randint(n_labelled, {b.inputs.size(0)}, b.generator, torch::kLong);
      x_labelled = on_device(labelled_set.inputs.index_select(0, pick));
      y = on_device(labelled_set.labels.index_select(0, pick));
    }
    const bool teacher_term = kd || nfkd;
    // One trunk pass over the labelled batch and, with reduced labels, the distilled batch.
    auto x = reduced && teacher_term ? torch::cat({x_labelled, b.inputs}) : x_labelled;
    auto features = student.call("features", x);
    auto logits = student.call("classify", features);
    const int64_t bl = x_labelled.size(0);
    auto ce = torch::nn::functional::cross_entropy(logits.slice(0, 0, bl), y);
    if (teacher_term) {
      const int64_t first = reduced ? bl : 0;
      acts->features = features.slice(0, first);
      acts->logits = logits.slice(0, first);
      acts->rows = b.indices;
    }
    auto total = t.optimize("adam", ce_weight * ce, b);
    return StepMetrics{{"loss", total.item<double>()}, {"ce", ce.item<double>()}};
  };
  nlohmann::json log = trainer.run(loop_set, step, progress);
  student.module->eval();
  if (test.labels.defined()) log["test_accuracy"] = classifier_accuracy(student, test);
  std::filesystem::create_directories(run.out_dir);
  save_zoo_module(run.out_dir + "/student.zoo", student);
  if (nfkd) save_zoo_module(run.out_dir + "/head.zoo", head);
  write_file_atomic(run.out_dir + "/train_log.json", log.dump(2) + "\n");
  return log;
}

}  // namespace nfk
