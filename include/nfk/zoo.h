#pragma once
/// nfk's built-in models (native LibTorch). Each implements the model protocol of SPEC §3 and is
/// saved as a self-describing zoo archive (architecture + options + weights), so `nfk fit
/// --model DIR/net.zoo` loads it without the training code.

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace nfk {

/// LeNet-5 for [B, C, H, W] images (28×28 → 61,706 parameters with the defaults).
struct LeNet5Options {
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;
  TORCH_ARG(int64_t, num_classes) = 10;
};

/// LeNet-5: conv5(6, pad 2)-relu-maxpool-conv5(16)-relu-maxpool-fc120-relu-fc84-relu-fc(classes).
/// forward(x [B, C, H, W]) → logits [B, classes].
struct LeNet5Impl : torch::nn::Cloneable<LeNet5Impl> {
  explicit LeNet5Impl(const LeNet5Options& options = {});
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// Penultimate activations (after fc2 and ReLU) [B, 84]: the zoo method "features".
  torch::Tensor features(const torch::Tensor& x);
  /// The last layer on those features → logits: the zoo method "classify";
  /// forward(x) = classify(features(x)).
  torch::Tensor classify(const torch::Tensor& features);

  LeNet5Options options;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};
TORCH_MODULE(LeNet5);

/// Multi-layer perceptron on flattened inputs, tanh hidden units.
struct MlpOptions {
  TORCH_ARG(int64_t, in_features) = 784;
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{128, 64};
  TORCH_ARG(int64_t, out_features) = 10;
  TORCH_ARG(std::string, activation) = "tanh";  // of the hidden layers: "tanh" | "relu"
};

/// forward(x [B, ...]) → [B, out_features]; with out_features == 1 the output is squeezed to [B].
struct MlpImpl : torch::nn::Cloneable<MlpImpl> {
  explicit MlpImpl(const MlpOptions& options = {});
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// The last hidden layer's activations [B, hidden.back()] (the input, flattened, without
  /// hidden layers): the zoo method "features".
  torch::Tensor features(const torch::Tensor& x);
  /// The output layer on those features: "classify"; forward(x) = classify(features(x)).
  torch::Tensor classify(const torch::Tensor& features);

  MlpOptions options;
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(Mlp);

/// DCGAN-style discriminator for square images whose size is divisible by 4, without batch-norm
/// (per-example gradients must be well defined): two stride-2 convs with leaky ReLU, then linear.
struct DcganDiscriminatorOptions {
  TORCH_ARG(int64_t, channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;
  TORCH_ARG(int64_t, width) = 32;  // filters of the first conv; the second has 2 × width
};

/// forward(x [B, C, S, S]) → D(x) [B] (raw score; energy E = −D).
struct DcganDiscriminatorImpl : torch::nn::Cloneable<DcganDiscriminatorImpl> {
  explicit DcganDiscriminatorImpl(const DcganDiscriminatorOptions& options = {});
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// Activations before the linear head, flattened [B, 2·width·(S/4)²]: the method "features".
  torch::Tensor features(const torch::Tensor& x);

  DcganDiscriminatorOptions options;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(DcganDiscriminator);

/// DCGAN-style generator: linear to (2·width, S/4, S/4), two stride-2 transposed convs, sigmoid.
struct DcganGeneratorOptions {
  TORCH_ARG(int64_t, latent_dim) = 32;
  TORCH_ARG(int64_t, channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;
  TORCH_ARG(int64_t, width) = 32;
  TORCH_ARG(bool,
            batch_norm) = true;  // after the projection and the first deconv (eval: running stats)
};

/// forward(h [B, latent_dim]) → x [B, C, S, S] in (0, 1).
struct DcganGeneratorImpl : torch::nn::Cloneable<DcganGeneratorImpl> {
  explicit DcganGeneratorImpl(const DcganGeneratorOptions& options = {});
  void reset() override;
  torch::Tensor forward(const torch::Tensor& h);

  DcganGeneratorOptions options;
  torch::nn::Linear project{nullptr};
  torch::nn::ConvTranspose2d deconv1{nullptr}, deconv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
};
TORCH_MODULE(DcganGenerator);

/// A zoo module: architecture name, its options (JSON), the module, and the protocol methods it
/// offers (SPEC §3): "forward" always; classifiers (lenet5, mlp, wrn) also "features" (the
/// penultimate activations) and "classify" (features → logits, so a student head and the
/// logits share one trunk pass); "elbo" (VAE) or "log_prob" (density) where they apply,
/// and `sample(n)` for models that can draw from their own distribution.
struct ZooModule {
  using Method = std::function<torch::Tensor(const torch::Tensor&)>;
  std::string arch;
  nlohmann::json options;
  std::shared_ptr<torch::nn::Module> module;
  std::map<std::string, Method> methods;
  std::function<torch::Tensor(int64_t)> sample;  // empty if the model cannot sample

  torch::Tensor forward(const torch::Tensor& x) const { return call("forward", x); }
  torch::Tensor call(const std::string& method, const torch::Tensor& x) const;
  bool has_method(const std::string& method) const;
};

/// Builds a zoo module of one architecture from its options (missing fields keep defaults).
using ZooBuilder = std::function<ZooModule(const nlohmann::json& options)>;

/// The zoo's architectures by name; src/models/zoo_registry.cpp lists them.
const std::map<std::string, ZooBuilder>& zoo_registry();

/// Builds a freshly initialised zoo module (seed the global RNG first for reproducibility).
/// `options` holds the fields of the arch's Options struct by name; missing ones keep defaults.
/// Example: `auto d = nfk::make_zoo_module("dcgan-d", {{"width", 8}});`
ZooModule make_zoo_module(const std::string& arch, const nlohmann::json& options = {});

/// Writes a zoo archive (arch, options, weights) atomically.
void save_zoo_module(const std::string& path, const ZooModule& zoo);

/// Reads a zoo archive; throws "nfk: <path>: ..." if it is not one.
ZooModule load_zoo_module(const std::string& path);

/// True if `path` is an nfk zoo archive (as opposed to a plain TorchScript file).
bool is_zoo_archive(const std::string& path);

}  // namespace nfk
