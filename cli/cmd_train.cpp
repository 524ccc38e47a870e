#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "common.h"
#include "detail/atomic_file.h"
#include "nfk/train.h"

namespace nfk::cli {

void add_train_command(CLI::App& app) {
  struct Flags {
    std::string data, test_data, out, arch = "lenet5";
    int64_t epochs = 1, batch_size = 64;
    double lr = 1e-3;
    uint64_t seed = 0;
    bool quiet = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("train", "Train a zoo model");
  auto* cls = cmd->add_subcommand("classifier", "Train a classifier (lenet5 or mlp) by "
                                                "cross-entropy; writes DIR/classifier.pt");
  cmd->require_subcommand(1);
  cls->add_option("--data", f->data, "Labelled training set, e.g. mnist:train")->required();
  cls->add_option("--test-data", f->test_data, "Labelled test set for the reported accuracy");
  cls->add_option("--arch", f->arch, "Architecture")
      ->check(CLI::IsMember({"lenet5", "mlp"}))
      ->capture_default_str();
  cls->add_option("--epochs", f->epochs, "Passes over the training set (0: save the untrained initialisation)")->capture_default_str();
  cls->add_option("--batch-size", f->batch_size, "Examples per step")->capture_default_str();
  cls->add_option("--lr", f->lr, "Adam learning rate")->capture_default_str();
  cls->add_option("--seed", f->seed, "Seed for initialisation and shuffling")
      ->capture_default_str();
  cls->add_option("--out", f->out, "Output folder")->required();
  cls->add_flag("--quiet", f->quiet, "No progress line or summary");
  cls->callback([f] {
    const auto t0 = std::chrono::steady_clock::now();
    std::filesystem::create_directories(f->out);
    detail::check_writable(f->out + "/classifier.pt");
    auto train = load_dataset(f->data);
    Dataset test = f->test_data.empty() ? Dataset{} : load_dataset(f->test_data);
    ClassifierTrainOptions o;
    o.arch = f->arch;
    o.epochs = f->epochs;
    o.batch_size = f->batch_size;
    o.learning_rate = f->lr;
    o.seed = f->seed;
    ClassifierTrainReport report;
    ProgressLine progress("train", f->quiet);
    auto net = train_classifier(train, test, o, progress.fn(), &report);
    progress.finish();
    std::filesystem::create_directories(f->out);
    const std::string path = f->out + "/classifier.pt";
    save_zoo_module(path, net);
    nlohmann::json log = {{"arch", f->arch},          {"data", f->data},
                          {"epochs", f->epochs},      {"seed", f->seed},
                          {"epoch_loss", report.epoch_loss},
                          {"test_data", f->test_data}, {"test_accuracy", report.test_accuracy}};
    detail::write_file_atomic(f->out + "/train_log.json", log.dump(2) + "\n");
    if (f->quiet) return;
    std::printf("nfk train classifier: %s, %lld epochs", f->arch.c_str(),
                static_cast<long long>(f->epochs));
    if (!report.epoch_loss.empty()) std::printf(", final loss %.4f", report.epoch_loss.back());
    if (report.test_accuracy >= 0) std::printf(", test accuracy %.2f%%", 100 * report.test_accuracy);
    std::printf("; wrote %s in %.1f s\n", path.c_str(), seconds_since(t0));
  });
}

}  // namespace nfk::cli
