// The two Network implementations (TorchScript, native zoo) and the loader that picks one.
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <fstream>
#include <map>
#include <memory>

#include "detail/input_file.h"
#include "detail/strings.h"
#include "models/torchscript_tape.h"
#include "nfk/layer_tape.h"
#include "nfk/model.h"
#include "nfk/zoo.h"

namespace nfk {
namespace {

class TorchScriptNetwork : public Network {
 public:
  TorchScriptNetwork(torch::jit::Module module, std::string path)
      : module_(std::move(module)), path_(std::move(path)) {
    if (module_.is_training()) {
      TORCH_WARN("nfk: ", path_, " was saved in training mode; nfk evaluates it in eval mode ",
                 "(dropout off, batch-norm running statistics)");
    }
    module_.eval();
  }

  // Methods run unoptimised: the profiling executor swaps in an optimised graph after the first
  // calls, which changes the last bits of s(x) and its gradients, so the operator V would differ
  // between the passes of one fit, and the same call between processes (CLI vs Python).
  torch::Tensor call(const std::string& method, const torch::Tensor& x) override {
    torch::jit::GraphOptimizerEnabledGuard no_optimization(false);
    if (LayerTape::active() != nullptr) {
      if (auto* taped = taped_method(method)) return to_tensor(taped->run(x), method);
    }
    return to_tensor(module_.get_method(method)({x}), method);
  }

  torch::Tensor call_int(const std::string& method, int64_t n) override {
    torch::jit::GraphOptimizerEnabledGuard no_optimization(false);
    return to_tensor(module_.get_method(method)({c10::IValue(n)}), method);
  }

  bool has_method(const std::string& method) const override {
    return module_.find_method(method).has_value();
  }

  std::vector<torch::Tensor> parameters() override {
    std::vector<torch::Tensor> params;
    for (const auto& p : module_.parameters()) {
      if (p.requires_grad()) params.push_back(p);
    }
    return params;
  }

  // Only floating-point tensors take the dtype, as in PyTorch's Module.to: jit::Module::to
  // would also turn integer buffers (Swin's relative_position_index) into floats.
  void to(torch::Device device, torch::Dtype dtype) override {
    module_.to(device);
    for (auto t : module_.parameters()) {
      if (t.is_floating_point()) t.set_data(t.to(dtype));
    }
    for (auto t : module_.buffers()) {
      if (t.is_floating_point()) t.set_data(t.to(dtype));
    }
    module_.eval();
    taped_.clear();  // rebuilt from the eval-mode attributes on next use
    tape_notes_.clear();
  }

  std::string describe() const override { return "torchscript"; }

  // The first few notes (a network of 50 training-mode batch norms needs not list them all).
  std::string tape_note() const override {
    constexpr size_t kShown = 3;
    std::string note;
    for (size_t i = 0; i < std::min(kShown, tape_notes_.size()); ++i) {
      note += (i == 0 ? "" : "; ") + tape_notes_[i].first + ": " + tape_notes_[i].second;
    }
    if (tape_notes_.size() > kShown) {
      note += "; and " + std::to_string(tape_notes_.size() - kShown) + " more";
    }
    return note;
  }

 private:
  torch::Tensor to_tensor(const c10::IValue& v, const std::string& method) const {
    TORCH_CHECK(v.isTensor(), "nfk: ", path_, ": method ", method, " must return a tensor, got ",
                v.tagKind());
    return v.toTensor();
  }

  // The method rewritten to expose its parametric ops (built on first taped call), or nullptr
  // when it has none the tape understands (the loop then gives the per-example gradients).
  detail::TapedScriptMethod* taped_method(const std::string& method) {
    auto it = taped_.find(method);
    if (it == taped_.end()) {
      std::unique_ptr<detail::TapedScriptMethod> taped;
      try {
        taped = std::make_unique<detail::TapedScriptMethod>(module_, method);
        for (const auto& why : taped->notes()) tape_notes_.emplace_back(method, why);
        if (taped->op_count() == 0) taped.reset();
      } catch (const std::exception& e) {  // a graph the rewrite cannot handle: no tape
        tape_notes_.emplace_back(
            method, "the graph rewrite failed: " + detail::summary_line(detail::error_text(e)));
        taped.reset();
      }
      it = taped_.emplace(method, std::move(taped)).first;
    }
    return it->second.get();
  }

  torch::jit::Module module_;
  std::string path_;
  std::map<std::string, std::unique_ptr<detail::TapedScriptMethod>> taped_;
  std::vector<std::pair<std::string, std::string>> tape_notes_;  // (method, why) of taped_
};

class ZooNetwork : public Network {
 public:
  // Eval mode while wrapped (batch-norm on running statistics, no dropout); the module's own
  // mode comes back when the wrapper goes, so a model wrapped mid-training keeps training.
  explicit ZooNetwork(ZooModule zoo)
      : zoo_(std::move(zoo)), was_training_(zoo_.module->is_training()) {
    zoo_.module->eval();
  }
  ~ZooNetwork() override { zoo_.module->train(was_training_); }

  torch::Tensor call(const std::string& method, const torch::Tensor& x) override {
    return zoo_.call(method, x);
  }

  torch::Tensor call_int(const std::string& method, int64_t n) override {
    TORCH_CHECK(method == "sample" && zoo_.sample, "nfk: zoo model ", zoo_.arch, " has no method ",
                method, "(n)");
    return zoo_.sample(n);
  }

  bool has_method(const std::string& method) const override { return zoo_.has_method(method); }

  std::vector<torch::Tensor> parameters() override { return zoo_.module->parameters(); }

  void to(torch::Device device, torch::Dtype dtype) override {
    zoo_.module->to(device, dtype);
    zoo_.module->eval();
  }

  std::string describe() const override { return "zoo:" + zoo_.arch; }

 private:
  ZooModule zoo_;
  bool was_training_;
};

class ClassSubsetNetwork : public Network {
 public:
  ClassSubsetNetwork(std::unique_ptr<Network> net, std::vector<int64_t> classes)
      : net_(std::move(net)), classes_(torch::tensor(classes, torch::kLong)) {
    TORCH_CHECK(classes_.numel() >= 2, "nfk: a class subset needs at least two classes");
  }

  torch::Tensor call(const std::string& method, const torch::Tensor& x) override {
    auto out = net_->call(method, x);
    TORCH_CHECK(out.dim() == 2 && classes_.max().item<int64_t>() < out.size(1),
                "nfk: a class subset needs logits [B, C] with every class below C, got ",
                out.sizes());
    return out.index_select(/*dim=*/1, classes_.to(out.device()));
  }
  torch::Tensor call_int(const std::string& method, int64_t n) override {
    return net_->call_int(method, n);
  }
  bool has_method(const std::string& method) const override { return net_->has_method(method); }
  std::vector<torch::Tensor> parameters() override { return net_->parameters(); }
  void to(torch::Device device, torch::Dtype dtype) override { net_->to(device, dtype); }
  std::string describe() const override { return net_->describe() + " (class subset)"; }
  std::string tape_note() const override { return net_->tape_note(); }

 private:
  std::unique_ptr<Network> net_;
  torch::Tensor classes_;
};

}  // namespace

std::unique_ptr<Network> wrap_zoo_module(const ZooModule& zoo) {
  return std::make_unique<ZooNetwork>(zoo);
}

std::unique_ptr<Network> class_subset_network(std::unique_ptr<Network> net,
                                              std::vector<int64_t> classes) {
  return std::make_unique<ClassSubsetNetwork>(std::move(net), std::move(classes));
}

torch::Tensor labels_in_subset(const torch::Tensor& labels, const std::vector<int64_t>& classes) {
  TORCH_CHECK(!classes.empty(), "nfk: a class subset needs classes");
  auto y = labels.to(torch::kLong);
  auto out = torch::full_like(y, -1);
  for (size_t k = 0; k < classes.size(); ++k)
    out.masked_fill_(y == classes[k], static_cast<int64_t>(k));
  TORCH_CHECK(out.numel() == 0 || out.min().item<int64_t>() >= 0,
              "nfk: a label is not one of the task's classes");
  return out;
}

std::unique_ptr<Network> load_network(const std::string& path) {
  detail::check_input_file(path, "model");
  if (is_zoo_archive(path)) return std::make_unique<ZooNetwork>(load_zoo_module(path));
  try {
    return std::make_unique<TorchScriptNetwork>(torch::jit::load(path), path);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "nfk: ", path, ": not a TorchScript or nfk zoo file (",
                detail::summary_line(detail::error_text(e)), ")");
  }
}

}  // namespace nfk
