#include "models/zoo_options.h"
#include "nfk/layer_tape.h"
#include "nfk/zoo.h"

namespace nfk {

namespace nnf = torch::nn::functional;

LeNet5Impl::LeNet5Impl(const LeNet5Options& options_) : options(options_) {
  reset();
}

void LeNet5Impl::reset() {
  TORCH_CHECK(options.image_size() % 4 == 0 && options.image_size() >= 12,
              "nfk: lenet5: image_size must be a multiple of 4 and >= 12, got ",
              options.image_size());
  conv1 = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels(), 6, 5).padding(2)));
  conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 16, 5)));
  const int64_t side = options.image_size() / 2 / 2 - 2;  // 28 → 14 → 10 → 5
  fc1 = register_module("fc1", torch::nn::Linear(16 * side * side, 120));
  fc2 = register_module("fc2", torch::nn::Linear(120, 84));
  fc3 = register_module("fc3", torch::nn::Linear(84, options.num_classes()));
}

torch::Tensor LeNet5Impl::features(const torch::Tensor& x) {
  auto h = nnf::max_pool2d(torch::relu(taped(*conv1, x)), nnf::MaxPool2dFuncOptions(2));
  h = nnf::max_pool2d(torch::relu(taped(*conv2, h)), nnf::MaxPool2dFuncOptions(2));
  h = torch::relu(taped(*fc1, h.flatten(/*start_dim=*/1)));
  return torch::relu(taped(*fc2, h));
}

torch::Tensor LeNet5Impl::forward(const torch::Tensor& x) {
  return classify(features(x));
}

torch::Tensor LeNet5Impl::classify(const torch::Tensor& features) {
  return taped(*fc3, features);
}

MlpImpl::MlpImpl(const MlpOptions& options_) : options(options_) {
  reset();
}

void MlpImpl::reset() {
  TORCH_CHECK(options.activation() == "tanh" || options.activation() == "relu",
              "nfk: unknown MLP activation `", options.activation(), "` (expected tanh or relu)");
  layers = register_module("layers", torch::nn::ModuleList());
  int64_t width = options.in_features();
  for (int64_t h : options.hidden()) {
    layers->push_back(torch::nn::Linear(width, h));
    width = h;
  }
  layers->push_back(torch::nn::Linear(width, options.out_features()));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return classify(features(x));
}

namespace {
torch::nn::LinearImpl& mlp_layer(torch::nn::ModuleList& layers, size_t i) {
  return *layers[i]->as<torch::nn::Linear>();
}
}  // namespace

torch::Tensor MlpImpl::features(const torch::Tensor& x) {
  auto h = x.flatten(/*start_dim=*/1);
  const bool relu = options.activation() == "relu";
  for (size_t i = 0; i + 1 < layers->size(); ++i) {
    h = taped(mlp_layer(layers, i), h);
    h = relu ? torch::relu(h) : torch::tanh(h);
  }
  return h;
}

torch::Tensor MlpImpl::classify(const torch::Tensor& features) {
  auto h = taped(mlp_layer(layers, layers->size() - 1), features);
  return options.out_features() == 1 ? h.squeeze(/*dim=*/1) : h;
}

DcganDiscriminatorImpl::DcganDiscriminatorImpl(const DcganDiscriminatorOptions& options_)
    : options(options_) {
  reset();
}

void DcganDiscriminatorImpl::reset() {
  TORCH_CHECK(options.image_size() % 4 == 0, "nfk: dcgan-d: image_size must be divisible by 4");
  const int64_t w = options.width();
  conv1 = register_module(
      "conv1",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(options.channels(), w, 4).stride(2).padding(1)));
  conv2 = register_module(
      "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(w, 2 * w, 4).stride(2).padding(1)));
  const int64_t side = options.image_size() / 4;
  head = register_module("head", torch::nn::Linear(2 * w * side * side, 1));
}

torch::Tensor DcganDiscriminatorImpl::features(const torch::Tensor& x) {
  auto h = torch::leaky_relu(taped(*conv1, x), 0.2);
  return torch::leaky_relu(taped(*conv2, h), 0.2).flatten(/*start_dim=*/1);
}

torch::Tensor DcganDiscriminatorImpl::forward(const torch::Tensor& x) {
  return taped(*head, features(x)).squeeze(/*dim=*/1);
}

DcganGeneratorImpl::DcganGeneratorImpl(const DcganGeneratorOptions& options_) : options(options_) {
  reset();
}

void DcganGeneratorImpl::reset() {
  TORCH_CHECK(options.image_size() % 4 == 0, "nfk: dcgan-g: image_size must be divisible by 4");
  const int64_t w = options.width();
  const int64_t side = options.image_size() / 4;
  project =
      register_module("project", torch::nn::Linear(options.latent_dim(), 2 * w * side * side));
  deconv1 = register_module(
      "deconv1", torch::nn::ConvTranspose2d(
                     torch::nn::ConvTranspose2dOptions(2 * w, w, 4).stride(2).padding(1)));
  deconv2 = register_module(
      "deconv2",
      torch::nn::ConvTranspose2d(
          torch::nn::ConvTranspose2dOptions(w, options.channels(), 4).stride(2).padding(1)));
  if (options.batch_norm()) {
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(2 * w));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(w));
  }
}

torch::Tensor DcganGeneratorImpl::forward(const torch::Tensor& h) {
  const int64_t side = options.image_size() / 4;
  auto x = taped(*project, h).view({h.size(0), 2 * options.width(), side, side});
  x = torch::relu(bn1 ? taped(*bn1, x) : x);
  x = taped(*deconv1, x);
  x = torch::relu(bn2 ? taped(*bn2, x) : x);
  return torch::sigmoid(taped(*deconv2, x));
}

// Builders: options JSON → module; the archive keeps every field (defaults made explicit).

NFK_ZOO_OPTIONS_JSON(LeNet5Options, in_channels, image_size, num_classes)
NFK_ZOO_OPTIONS_JSON(MlpOptions, in_features, hidden, out_features, activation)
NFK_ZOO_OPTIONS_JSON(DcganDiscriminatorOptions, channels, image_size, width)
NFK_ZOO_OPTIONS_JSON(DcganGeneratorOptions, latent_dim, channels, image_size, width, batch_norm)

ZooModule make_lenet5(const nlohmann::json& o) {
  const auto options = o.get<LeNet5Options>();
  LeNet5 net(options);
  return {"lenet5",
          options,
          net.ptr(),
          {{"forward", [net](const torch::Tensor& x) mutable { return net->forward(x); }},
           {"features", [net](const torch::Tensor& x) mutable { return net->features(x); }},
           {"classify", [net](const torch::Tensor& h) mutable { return net->classify(h); }}},
          {}};
}

ZooModule make_mlp(const nlohmann::json& o) {
  const auto options = o.get<MlpOptions>();
  Mlp net(options);
  return {"mlp",
          options,
          net.ptr(),
          {{"forward", [net](const torch::Tensor& x) mutable { return net->forward(x); }},
           {"features", [net](const torch::Tensor& x) mutable { return net->features(x); }},
           {"classify", [net](const torch::Tensor& h) mutable { return net->classify(h); }}},
          {}};
}

ZooModule make_dcgan_discriminator(const nlohmann::json& o) {
  const auto options = o.get<DcganDiscriminatorOptions>();
  DcganDiscriminator net(options);
  return {"dcgan-d",
          options,
          net.ptr(),
          {{"forward", [net](const torch::Tensor& x) mutable { return net->forward(x); }},
           {"features", [net](const torch::Tensor& x) mutable { return net->features(x); }}},
          {}};
}

ZooModule make_dcgan_generator(const nlohmann::json& o) {
  const auto options = o.get<DcganGeneratorOptions>();
  DcganGenerator net(options);
  return {"dcgan-g",
          options,
          net.ptr(),
          {{"forward", [net](const torch::Tensor& h) mutable { return net->forward(h); }}},
          {}};
}

}  // namespace nfk
