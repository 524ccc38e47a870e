#pragma once
/// nfk model protocol (SPEC §1, §3): a network of one *kind* defines a per-example scalar score
/// s(x; θ) whose parameter gradients are the rows of J. Networks come as TorchScript files or as
/// native zoo archives (include/nfk/zoo.h); both are loaded by `load_score_model`.

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nfk/names.h"

namespace nfk {

/// The model families of SPEC §1.
enum class ModelKind { kClassifier, kGan, kVae, kDensity, kScore, kNtk };

/// "classifier" | "gan" | "vae" | "density" | "score" | "ntk"; throws on anything else.
const Names<ModelKind>& model_kind_names();  // classifier, gan, vae, density, score, ntk
inline ModelKind parse_model_kind(const std::string& name) {
  return model_kind_names().parse(name);
}
inline std::string to_string(ModelKind value) {
  return model_kind_names().name(value);
}

/// A callable network with parameters: a TorchScript module or a native zoo module.
class Network {
 public:
  virtual ~Network() = default;
  /// Runs `method` ("forward", "elbo", "log_prob", ...) on one tensor argument.
  virtual torch::Tensor call(const std::string& method, const torch::Tensor& x) = 0;
  /// Runs `method` on an integer argument (e.g. "sample"(n)).
  virtual torch::Tensor call_int(const std::string& method, int64_t n) = 0;
  virtual bool has_method(const std::string& method) const = 0;
  /// The trainable parameters θ, in a fixed order (this order defines the layout of θ ∈ R^P).
  virtual std::vector<torch::Tensor> parameters() = 0;
  /// Moves to device/dtype and sets eval mode (dropout off, batch-norm on running statistics).
  virtual void to(torch::Device device, torch::Dtype dtype) = 0;
  /// "torchscript" or "zoo:<arch>".
  virtual std::string describe() const = 0;
  /// Why the layer tape cannot see some of the network's parametric ops, one line per op, e.g.
  /// "forward: aten::batch_norm (bn.weight): not in eval mode ..."; "" when it sees them all
  /// (or before the first taped call). fisher/ appends it to the reason for falling back.
  virtual std::string tape_note() const { return ""; }
};

/// Loads a network file: a native zoo archive (written by nfk) or any TorchScript file.
/// Throws "nfk: <path>: ..." if the file is missing or is neither.
std::unique_ptr<Network> load_network(const std::string& path);

struct ZooModule;
/// Wraps an in-memory zoo module as a Network (sharing its weights), e.g. to monitor a model
/// while it trains. The module is in eval mode while the wrapper lives and gets its own mode
/// back when the wrapper is destroyed.
std::unique_ptr<Network> wrap_zoo_module(const ZooModule& zoo);

/// A classifier's logits restricted to `classes` (in that order), sharing `net`'s weights: the
/// network of p(y|x) over a task's classes (task-incremental learning, "multi-head" by masking).
/// A label c of the full model is position k of `classes` here (classes[k] == c).
std::unique_ptr<Network> class_subset_network(std::unique_ptr<Network> net,
                                              std::vector<int64_t> classes);

/// Labels [N] in the full model's numbering → positions in `classes` (the numbering of
/// `class_subset_network`). Throws "nfk: ..." if a label is not one of `classes`.
torch::Tensor labels_in_subset(const torch::Tensor& labels, const std::vector<int64_t>& classes);

/// How to build a score model; the CLI fills it from its flags.
struct ModelOptions {
  std::string model_path;      // network file (discriminator for `gan`)
  std::string generator_path;  // `gan` only: generator G(h) → x
  int64_t latent_dim = 0;      // `gan` only: dimension of h ~ N(0, I)
  int64_t output = -1;         // `ntk` with [B, C] outputs: column c to use
  uint64_t seed = 0;           // seeds per-example noise inside s (VAE ELBO)
  torch::Dtype dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
};

/// s(x; θ) for one kind, over a network (and a generator for `gan`).
class ScoreModel {
 public:
  ScoreModel(ModelKind kind, std::unique_ptr<Network> net, std::unique_ptr<Network> generator,
             const ModelOptions& options);

  /// Per-example scores of a batch: x [B, ...] → [B] (model dtype/device).
  /// `first_index` is the index of x[0] in its data set: models with noise inside s (VAE) seed
  /// it from (seed, first_index), so the same batch always gives the same function of θ.
  torch::Tensor score(const torch::Tensor& x_b, int64_t first_index = 0);

  /// True if s(x) is random without the seed (VAE ELBO): per-example gradients are then taken
  /// on the batch graph so that they match the batched products exactly.
  bool stochastic() const { return kind_ == ModelKind::kVae; }

  /// Whether the model can draw x ~ p_θ (generator for GANs, sample(n) for VAE/density).
  bool can_sample() const;
  /// n model samples [n, ...], seeded. Throws if `can_sample()` is false.
  torch::Tensor sample(int64_t n, uint64_t seed);

  std::vector<torch::Tensor> parameters() { return net_->parameters(); }
  int64_t num_parameters();
  ModelKind kind() const { return kind_; }
  const ModelOptions& options() const { return options_; }
  Network& network() { return *net_; }
  /// Moves the data to the model's device and dtype.
  torch::Tensor prepare(const torch::Tensor& x) const;

 private:
  ModelKind kind_;
  std::unique_ptr<Network> net_;
  std::unique_ptr<Network> generator_;
  ModelOptions options_;
};

/// Loads a model for `kind` from `options` (network, generator), checking the protocol:
/// the methods the kind needs exist, and a probe batch `probe_x` (if defined, [B, ...]) gives
/// scores of shape [B]. Errors name the file and what is wrong, e.g. "nfk: m.pt: kind `vae`
/// needs a method elbo(x), which this module lacks".
ScoreModel load_score_model(ModelKind kind, const ModelOptions& options,
                            const torch::Tensor& probe_x = {});

/// "float32" | "float64" ↔ torch dtype; throws on anything else.
torch::Dtype parse_dtype(const std::string& name);
std::string dtype_name(torch::Dtype dtype);

/// TF32 tensor-core math for float32 matrix products (cuBLAS) and convolutions (cuDNN) on CUDA.
/// nfk turns it off unless asked (`--tf32`; LibTorch itself allows it for cuDNN by default), so
/// float32 means float32. No effect on CPU or in float64.
void set_tf32(bool allowed);
bool tf32_allowed();  // both cuBLAS and cuDNN allow it

/// Stable hash (FNV-1a 64, hex) of a file's bytes, stored in projectors to catch model swaps.
std::string file_hash(const std::string& path);

}  // namespace nfk
