// nfk distill: a zoo student trained alone, by KD, or by NFKD (the teacher's NFK embedding).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.h"
#include "common.h"
#include "nfk/data.h"
#include "nfk/distill.h"
#include "nfk/output_files.h"
#include "nfk/train.h"

namespace nfk::cli {
namespace {

struct DistillFlags {
  std::string teacher, projector, targets, data, test_data, train_labels, test_labels, out,
      method = "nfkd", loss = "l2", arch = "mlp", device = "cpu";
  std::vector<int64_t> hidden = {100};
  int64_t depth = 16, widen_factor = 1, rank = 20, labels = 0, seeds = 1, epochs = 5,
          batch_size = 64, fit_examples = 0, fit_batch_size = 256;
  double alpha = 0.5, temperature = 4, lr = 1e-3;
  uint64_t seed = 0, label_seed = 0;
  bool quiet = false, no_resume = false;
};

std::string seed_dir(const DistillFlags& f, int64_t s) {
  return f.out + "/seed_" + std::to_string(f.seed + static_cast<uint64_t>(s));
}

// A data set with labels: a named set's own, or those of `labels_file` for array data.
Dataset load_labelled(const std::string& data, const std::string& labels_file,
                      const std::string& flag) {
  Dataset d = load_dataset(data);
  if (!labels_file.empty()) d.labels = load_labels(labels_file);
  TORCH_CHECK(d.labels.defined(), "nfk: ", data, " has no labels; give them with ", flag);
  TORCH_CHECK(d.labels.size(0) == d.inputs.size(0),
              "nfk: ", labels_file.empty() ? data : labels_file, " has ", d.labels.size(0),
              " labels for ", d.inputs.size(0), " examples");
  return d;
}

std::vector<double> to_vector(const torch::Tensor& t) {
  auto d = t.to(torch::kCPU, torch::kDouble).contiguous();
  return {d.data_ptr<double>(), d.data_ptr<double>() + d.numel()};
}

// The teacher's NFK projector given by --projector, checked against the teacher.
Projector given_projector(const DistillFlags& f, ScoreModel& teacher, const Dataset& train) {
  Projector p = load_projector(f.projector);
  TORCH_CHECK(p.kind == ModelKind::kClassifier, "nfk: ", f.projector,
              ": the projector is of kind `", to_string(p.kind),
              "`; NFKD needs a classifier-kind projector of the teacher");
  check_projector_model(p, teacher, train.inputs.slice(0, 0, 1));
  TORCH_CHECK(p.model_hash.empty() || p.model_hash == file_hash(f.teacher), "nfk: ", f.projector,
              ": fitted on another model than --teacher ", f.teacher,
              " (file hashes differ); fit it on the teacher");
  TORCH_CHECK(f.rank <= p.rank(), "nfk: --rank ", f.rank, " exceeds the rank ", p.rank(), " of ",
              f.projector);
  return p;
}

// The teacher's NFK fitted here on (a seeded subset of) the training set, saved as
// DIR/teacher_nfk.nfk.
Projector fit_teacher_projector(const DistillFlags& f, ScoreModel& teacher, const Dataset& train) {
  FitOptions o;
  o.svd.rank = f.rank;
  o.run = {f.fit_batch_size, f.seed};
  const auto rows = random_subset(train.inputs.size(0), f.fit_examples, f.seed);
  const auto inputs = train.inputs.index_select(0, rows);
  const auto plan = plan_fit(teacher, inputs, o);
  if (!f.quiet) std::fprintf(stderr, "nfk distill: teacher NFK %s\n", plan.describe().c_str());
  ProgressLine progress("teacher NFK fit", f.quiet);
  o.run.progress = progress.fn();
  auto result = fit(teacher, inputs, o, f.data, &plan);
  progress.finish();
  record_model_files(result.projector);
  save_projector(f.out + "/teacher_nfk.nfk", result.projector);
  return result.projector;
}

void run(const DistillFlags& f) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  TORCH_CHECK(!fs::exists(f.out) || fs::is_directory(f.out), "nfk: --out ", f.out,
              " exists and is not a folder; give a folder for the students and result.json");
  const auto method = parse_distill_method(f.method);
  const std::string result_path = f.out + "/result.json", targets_path = f.out + "/nfk_targets.npy";
  TORCH_CHECK(method == DistillMethod::kNfkd || (f.projector.empty() && f.targets.empty()),
              "nfk: --projector and --targets are the teacher's NFK, for --method nfkd only");
  TORCH_CHECK(f.projector.empty() || f.targets.empty(),
              "nfk: give the teacher's NFK as --projector or as --targets, not both");
  auto train = load_labelled(f.data, f.train_labels, "--train-labels");
  auto test = load_labelled(f.test_data, f.test_labels, "--test-labels");
  TORCH_CHECK(f.labels <= train.inputs.size(0), "nfk: --labelled ", f.labels, " exceeds the ",
              train.inputs.size(0), " training examples");

  ModelOptions mo;
  mo.model_path = f.teacher;
  mo.device = parse_device(f.device);
  auto teacher = load_score_model(ModelKind::kClassifier, mo, train.inputs.slice(0, 0, 2));
  std::optional<Projector> projector;
  if (!f.projector.empty()) projector = given_projector(f, teacher, train);
  std::optional<NfkTargets> file_targets;
  if (!f.targets.empty()) {
    file_targets = scaled_nfk_targets(read_npy(f.targets), f.rank);
    TORCH_CHECK(file_targets->embedding.size(0) == train.inputs.size(0), "nfk: ", f.targets,
                " has ", file_targets->embedding.size(0), " rows for ", train.inputs.size(0),
                " training examples; give the embedding of --data's rows");
  }
  DistillTeacher given;
  // The training set's logits only for kd (they are its targets); the test set's for the
  // teacher's accuracy and the check of its output count.
  if (method == DistillMethod::kKd) given.logits = teacher_logits(teacher.network(), train.inputs);
  const auto test_logits = teacher_logits(teacher.network(), test.inputs);
  TORCH_CHECK(test_logits.size(1) > train.labels.max().item<int64_t>(), "nfk: the teacher has ",
              test_logits.size(1), " outputs but the labels go up to ",
              train.labels.max().item<int64_t>());
  const double teacher_accuracy =
      (test_logits.argmax(1) == test.labels).to(torch::kDouble).mean().item<double>();

  // Everything is checked: now the folders, and no output may be an input.
  std::vector<std::string> outputs = {result_path, targets_path, f.out + "/teacher_nfk.nfk"};
  for (int64_t s = 0; s < f.seeds; ++s) {
    fs::create_directories(seed_dir(f, s));
    for (const char* file : {"student.zoo", "head.zoo", "train_log.json"})
      outputs.push_back(seed_dir(f, s) + "/" + file);
  }
  check_outputs(outputs, {f.teacher, f.projector, f.targets, f.data, f.test_data, f.train_labels,
                          f.test_labels});

  DistillOptions o;
  o.method = method;
  o.alpha = f.alpha;
  o.temperature = f.temperature;
  o.target_loss = parse_target_loss(f.loss);
  o.student_arch = f.arch;
  if (f.arch == "mlp") o.student_options = {{"hidden", f.hidden}};
  if (f.arch == "wrn") o.student_options = {{"depth", f.depth}, {"widen_factor", f.widen_factor}};
  o.learning_rate = f.lr;
  o.labels = f.labels;
  o.label_seed = f.label_seed;
  const int64_t n_labelled = random_subset(train.inputs.size(0), f.labels, 0).size(0);
  if (!f.quiet) {
    std::fprintf(stderr,
                 "plan: teacher %s (test accuracy %.4f); student %s; method %s; %lld training "
                 "images, %lld labelled; %lld epoch(s) x %lld seed(s), batch %lld, Adam lr %g\n",
                 f.teacher.c_str(), teacher_accuracy, f.arch.c_str(), f.method.c_str(),
                 static_cast<long long>(train.inputs.size(0)), static_cast<long long>(n_labelled),
                 static_cast<long long>(f.epochs), static_cast<long long>(f.seeds),
                 static_cast<long long>(f.batch_size), f.lr);
  }

  nlohmann::json result = {{"method", f.method},
                           {"teacher", fs::absolute(f.teacher).string()},
                           {"teacher_test_accuracy", teacher_accuracy},
                           {"student_arch", f.arch},
                           {"student_options", o.student_options},
                           {"data", f.data},
                           {"test_data", f.test_data},
                           {"labelled_examples", n_labelled},
                           {"label_seed", f.label_seed},
                           {"epochs", f.epochs},
                           {"batch_size", f.batch_size},
                           {"optimizer", "adam"},
                           {"learning_rate", f.lr}};
  if (method != DistillMethod::kNone) result["alpha"] = f.alpha;
  if (method == DistillMethod::kKd) result["temperature"] = f.temperature;
  if (method == DistillMethod::kNfkd) {
    const auto ts = std::chrono::steady_clock::now();
    NfkTargets targets;
    if (file_targets) {
      targets = *file_targets;
      result["teacher_nfk"] = {{"targets", fs::absolute(f.targets).string()}};
    } else {
      if (!projector) projector = fit_teacher_projector(f, teacher, train);
      ProgressLine progress("teacher NFK targets", f.quiet);
      targets = nfk_targets(*projector, teacher, train.inputs, f.rank,
                            {f.fit_batch_size, f.seed, nullptr, progress.fn()});
      progress.finish();
      write_npy(targets_path, targets.embedding);
      result["teacher_nfk"] = {
          {"projector", f.projector.empty() ? f.out + "/teacher_nfk.nfk" : f.projector},
          {"fit_examples", projector->n_examples},
          {"method_note", projector->method_note},
          {"singular_values",
           to_vector(projector->singular_values.slice(0, 0, std::min(f.rank, projector->rank())))}};
    }
    given.targets = targets.q();
    result["rank"] = f.rank;
    result["target_loss"] = f.loss;
    result["target_scale"] = targets.scale;
    result["target_normalisation"] = "Q_t = e(x) / sqrt(mean over the training set of |e(x)|^2)";
    result["targets_seconds"] = seconds_since(ts);
  }

  nlohmann::json seeds = nlohmann::json::array();
  std::vector<double> accuracies;
  for (int64_t s = 0; s < f.seeds; ++s) {
    TrainRun run;
    run.seed = f.seed + static_cast<uint64_t>(s);
    run.out_dir = seed_dir(f, s);
    run.epochs = f.epochs;
    run.batch_size = f.batch_size;
    run.resume = !f.no_resume;
    run.device = parse_device(f.device);
    const auto ts = std::chrono::steady_clock::now();
    ProgressLine progress("student seed " + std::to_string(run.seed), f.quiet);
    auto log = train_student(train, test, run, o, given, progress.fn());
    progress.finish();
    const double acc = log.value("test_accuracy", -1.0);
    accuracies.push_back(acc);
    seeds.push_back({{"seed", run.seed},
                     {"test_accuracy", acc},
                     {"seconds", seconds_since(ts)},
                     {"out", run.out_dir}});
    if (!f.quiet)
      std::fprintf(stderr, "  seed %llu: test accuracy %.4f\n",
                   static_cast<unsigned long long>(run.seed), acc);
  }
  result["seeds"] = seeds;
  result["test_accuracy_mean"] = mean(accuracies);
  result["test_accuracy_std"] = stddev(accuracies);
  result["seconds"] = seconds_since(t0);
  write_file_atomic(result_path, result.dump(2) + "\n");
  std::printf(
      "nfk distill: %s student (%s) test accuracy %.4f +- %.4f over %lld seed(s); "
      "teacher %.4f -> %s\n",
      f.method.c_str(), f.arch.c_str(), mean(accuracies), stddev(accuracies),
      static_cast<long long>(f.seeds), teacher_accuracy, result_path.c_str());
}

}  // namespace

void add_distill_command(CLI::App& app) {
  auto f = std::make_shared<DistillFlags>();
  auto* cmd = app.add_subcommand(
      "distill",
      "Knowledge distillation: a zoo student trained alone (none), by KD (the teacher's softened "
      "logits) or by NFKD (a head on its features regresses the teacher's rank-k NFK embedding)");
  cmd->add_option("--teacher", f->teacher,
                  "Teacher classifier: a zoo archive (nfk train classifier) or TorchScript file")
      ->required();
  cmd->add_option("--method", f->method,
                  "none: CE only | kd: a*CE + (1-a)*T^2*KL(teacher/T || student/T) | nfkd: a*CE + "
                  "(1-a)*L_t(head(features), Q_t)")
      ->check(CLI::IsMember(nfk::distill_method_names().all()))
      ->capture_default_str();
  cmd->add_option("--student-arch", f->arch, "Student: mlp (tanh), lenet5 or wrn")
      ->check(CLI::IsMember({"mlp", "lenet5", "wrn"}))
      ->capture_default_str();
  cmd->add_option("--hidden", f->hidden, "mlp student: hidden widths, comma-separated")
      ->delimiter(',')
      ->check(count_in(1, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--depth", f->depth, "wrn student: depth 6n + 4")->capture_default_str();
  cmd->add_option("--widen-factor", f->widen_factor, "wrn student: widen factor k")
      ->check(count_in(1, 64))
      ->capture_default_str();
  cmd->add_option("--rank", f->rank, "nfkd: k, the NFK embedding's dimension (paper: 20)")
      ->check(count_in(1, 4096))
      ->capture_default_str();
  cmd->add_option("--alpha", f->alpha, "kd, nfkd: weight a of the CE term")
      ->check(finite_in(-1e-300, 1))
      ->capture_default_str();
  cmd->add_option("--loss", f->loss, "nfkd: L_t, l2 (squared distance) or cosine (1 - cos)")
      ->check(CLI::IsMember(nfk::target_loss_names().all()))
      ->capture_default_str();
  cmd->add_option("--temperature", f->temperature, "kd: softmax temperature T")
      ->check(finite_in(0, 1000))
      ->capture_default_str();
  cmd->add_option("--projector", f->projector,
                  "nfkd: the teacher's NFK (nfk fit --kind classifier --model TEACHER) instead of "
                  "fitting it here; its top --rank components are used");
  cmd->add_option("--targets", f->targets,
                  "nfkd: the teacher's NFK embedding of --data's rows (.npy [N, >= rank]), e.g. "
                  "an earlier run's nfk_targets.npy or nfk transform's output, instead of a fit");
  cmd->add_option("--fit-examples", f->fit_examples,
                  "nfkd: fit the teacher's NFK on this many training images drawn by --seed (0: "
                  "all); every image is then embedded")
      ->check(count_in(0, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--fit-batch-size", f->fit_batch_size,
                  "nfkd: batch size of the fit and embedding")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--data", f->data, "Training set, e.g. fashion-mnist:train (append [:n])")
      ->required();
  cmd->add_option("--test-data", f->test_data, "Test set for the reported accuracies")->required();
  cmd->add_option("--train-labels", f->train_labels,
                  "Labels of --data when it is an array (.npy / IDX); named sets have their own");
  cmd->add_option("--test-labels", f->test_labels, "Labels of --test-data when it is an array");
  cmd->add_option("--labelled", f->labels,
                  "Labelled training examples, drawn by --label-seed (0: all); the others are "
                  "used only by the teacher's term")
      ->check(count_in(0, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--label-seed", f->label_seed, "Which examples keep their labels")
      ->capture_default_str();
  cmd->add_option("--seeds", f->seeds, "Students trained, seeds --seed, --seed + 1, ...")
      ->check(count_in(1, 1000))
      ->capture_default_str();
  cmd->add_option("--seed", f->seed, "First seed (student initialisation, shuffles; NFK fit)")
      ->capture_default_str();
  cmd->add_option("--epochs", f->epochs, "Epochs (passes over all training images)")
      ->check(count_in(0, 100000))
      ->capture_default_str();
  cmd->add_option("--batch-size", f->batch_size, "Examples per step")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--lr", f->lr, "Adam learning rate")
      ->check(finite_in(0, 10))
      ->capture_default_str();
  cmd->add_option("--device", f->device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--no-resume", f->no_resume, "Start every student afresh (no checkpoint resume)");
  cmd->add_option("--out", f->out,
                  "Output folder: result.json, seed_S/ (student.zoo, head.zoo, train_log.json), "
                  "nfkd: nfk_targets.npy (e(x), unscaled) and teacher_nfk.nfk")
      ->required();
  cmd->add_flag("--quiet", f->quiet, "No plan, progress or per-seed lines");
  cmd->callback([f] { run(*f); });
}

}  // namespace nfk::cli
