// Wide residual networks (zoo arch "wrn"): pre-activation wide basic blocks and the builder.
#include "nfk/zoo_wrn.h"

#include "models/zoo_options.h"
#include "nfk/layer_tape.h"
#include "nfk/zoo.h"

namespace nfk {

namespace nnf = torch::nn::functional;

namespace {

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

}  // namespace

WideBasicBlockImpl::WideBasicBlockImpl(const WideBasicBlockOptions& options_) : options(options_) {
  reset();
}

void WideBasicBlockImpl::reset() {
  const int64_t in = options.in_channels(), out = options.out_channels();
  TORCH_CHECK(in > 0 && out > 0 && options.stride() > 0,
              "nfk: wrn block: channels and stride must be positive");
  TORCH_CHECK(options.dropout() >= 0 && options.dropout() < 1,
              "nfk: wrn: dropout must be in [0, 1), got ", options.dropout());
  bn1 = register_module("bn1", torch::nn::BatchNorm2d(in));
  conv1 = register_module("conv1", conv3x3(in, out, options.stride()));
  bn2 = register_module("bn2", torch::nn::BatchNorm2d(out));
  conv2 = register_module("conv2", conv3x3(out, out, 1));
  shortcut = nullptr;
  if (in != out || options.stride() != 1) {
    shortcut = register_module(
        "shortcut", torch::nn::Conv2d(
                        torch::nn::Conv2dOptions(in, out, 1).stride(options.stride()).bias(false)));
  }
}

torch::Tensor WideBasicBlockImpl::forward(const torch::Tensor& x) {
  auto a = torch::relu(taped(*bn1, x));
  auto h = torch::relu(taped(*bn2, taped(*conv1, a)));
  if (options.dropout() > 0) {
    h = nnf::dropout(h, nnf::DropoutFuncOptions().p(options.dropout()).training(is_training()));
  }
  return taped(*conv2, h) + (has_projection() ? taped(*shortcut, a) : x);
}

WideResNetImpl::WideResNetImpl(const WideResNetOptions& options_) : options(options_) {
  reset();
}

void WideResNetImpl::reset() {
  const int64_t depth = options.depth(), k = options.widen_factor();
  TORCH_CHECK(depth >= 10 && (depth - 4) % 6 == 0,
              "nfk: wrn: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got ", depth);
  TORCH_CHECK(k >= 1, "nfk: wrn: widen_factor must be >= 1, got ", k);
  TORCH_CHECK(options.in_channels() >= 1, "nfk: wrn: in_channels must be >= 1, got ",
              options.in_channels());
  TORCH_CHECK(options.num_classes() >= 2, "nfk: wrn: num_classes must be >= 2, got ",
              options.num_classes());
  TORCH_CHECK(options.image_size() >= 1, "nfk: wrn: image_size must be >= 1, got ",
              options.image_size());
  TORCH_CHECK(options.dropout() >= 0 && options.dropout() < 1,
              "nfk: wrn: dropout must be in [0, 1), got ", options.dropout());
  const int64_t n = (depth - 4) / 6;
  const int64_t widths[3] = {16 * k, 32 * k, 64 * k};
  const int64_t strides[3] = {1, 2, 2};

  conv1 = register_module("conv1", conv3x3(options.in_channels(), 16, 1));
  int64_t in = 16;
  torch::nn::Sequential groups[3];
  for (int g = 0; g < 3; ++g) {
    for (int64_t b = 0; b < n; ++b) {
      groups[g]->push_back(
          WideBasicBlock(WideBasicBlockOptions(in, widths[g], b == 0 ? strides[g] : 1)
                             .dropout(options.dropout())));
      in = widths[g];
    }
  }
  group1 = register_module("group1", groups[0]);
  group2 = register_module("group2", groups[1]);
  group3 = register_module("group3", groups[2]);
  bn = register_module("bn", torch::nn::BatchNorm2d(in));
  fc = register_module("fc", torch::nn::Linear(in, options.num_classes()));

  torch::NoGradGuard no_grad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0, torch::kFanOut, torch::kReLU);
    } else if (auto* norm = m->as<torch::nn::BatchNorm2d>()) {
      norm->weight.fill_(1);
      norm->bias.zero_();
    } else if (auto* linear = m->as<torch::nn::Linear>()) {
      linear->bias.zero_();
    }
  }
}

torch::Tensor WideResNetImpl::forward(const torch::Tensor& x) {
  return classify(features(x));
}

torch::Tensor WideResNetImpl::features(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.in_channels(), "nfk: wrn expects images [B, ",
              options.in_channels(), ", H, W], got ", x.sizes());
  auto h = group3->forward(group2->forward(group1->forward(taped(*conv1, x))));
  return torch::relu(taped(*bn, h)).mean({2, 3});  // global average pool → [B, 64k]
}

torch::Tensor WideResNetImpl::classify(const torch::Tensor& features) {
  return taped(*fc, features);
}

// Builder: options JSON → module; the archive keeps every field (defaults made explicit).
NFK_ZOO_OPTIONS_JSON(WideResNetOptions, depth, widen_factor, in_channels, num_classes, image_size,
                     dropout)

ZooModule make_wide_resnet(const nlohmann::json& o) {
  const auto options = o.get<WideResNetOptions>();
  WideResNet net(options);
  return {"wrn",
          options,
          net.ptr(),
          {{"forward", [net](const torch::Tensor& x) mutable { return net->forward(x); }},
           {"features", [net](const torch::Tensor& x) mutable { return net->features(x); }},
           {"classify", [net](const torch::Tensor& h) mutable { return net->classify(h); }}},
          {}};
}

}  // namespace nfk
