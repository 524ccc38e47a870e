// The layer tape: each taped() call runs the layer and, when a tape is active and the call is one
// the per-example formulas cover, records its input, output and geometry.
#include <variant>

#include "models/tape_record.h"

namespace nfk {
namespace {

thread_local LayerTape* g_active_tape = nullptr;

std::vector<int64_t> vec(at::IntArrayRef a) {
  return a.vec();
}

// Conv padding is a variant (c10::variant in LibTorch 1.x, std::variant in 2.x): the unqualified
// call finds the right get_if by argument-dependent lookup in either.
template <typename Options>
bool explicit_zero_padding(const Options& o, std::vector<int64_t>* padding) {
  using std::get_if;
  if (!get_if<torch::enumtype::kZeros>(&o.padding_mode())) return false;
  if (const auto* p = get_if<torch::ExpandingArray<2>>(&o.padding())) {
    *padding = vec(*p);
    return true;
  }
  if (get_if<torch::enumtype::kValid>(&o.padding())) {
    *padding = {0, 0};
    return true;
  }
  return false;  // kSame: asymmetric padding, not covered
}

// Whether a recorded output can take part in the backward pass of the score.
bool recordable(const torch::Tensor& output) {
  return LayerTape::active() != nullptr && output.requires_grad();
}

TapeRecord make_record(TapedLayer layer, torch::nn::Module* module, const torch::Tensor& weight,
                       const torch::Tensor& bias, const torch::Tensor& x, const torch::Tensor& y) {
  TapeRecord r;
  r.layer = layer;
  r.module = module;
  r.weight = weight;
  r.bias = bias;
  r.input = x;
  r.output = y;
  return r;
}

// Conv2d and ConvTranspose2d: the same options and record (only the layer type differs).
template <typename ConvImpl>
torch::Tensor taped_conv(ConvImpl& layer, TapedLayer type, const torch::Tensor& x) {
  auto y = layer.forward(x);
  const auto& o = layer.options;
  std::vector<int64_t> padding;
  if (recordable(y) && x.dim() == 4 && explicit_zero_padding(o, &padding)) {
    auto r = make_record(type, &layer, layer.weight, layer.bias, x, y);
    r.kernel = vec(o.kernel_size());
    r.stride = vec(o.stride());
    r.dilation = vec(o.dilation());
    r.padding = padding;
    r.groups = o.groups();
    LayerTape::active()->record(std::move(r));
  }
  return y;
}

template <typename BatchNormImpl>
torch::Tensor taped_batch_norm(BatchNormImpl& layer, const torch::Tensor& x) {
  auto y = layer.forward(x);
  const auto& o = layer.options;
  // Training mode normalises by batch statistics: examples interact, no per-example formula.
  if (!recordable(y) || layer.is_training() || !o.affine() || !o.track_running_stats()) return y;
  auto r = make_record(TapedLayer::kBatchNorm, &layer, layer.weight, layer.bias, x, y);
  r.eps = o.eps();
  r.running_mean = layer.running_mean;
  r.running_var = layer.running_var;
  LayerTape::active()->record(std::move(r));
  return y;
}

}  // namespace

LayerTape::LayerTape() : previous_(g_active_tape) {
  g_active_tape = this;
}

LayerTape::~LayerTape() {
  g_active_tape = previous_;
}

LayerTape* LayerTape::active() {
  return g_active_tape;
}

torch::Tensor taped(torch::nn::LinearImpl& layer, const torch::Tensor& x) {
  auto y = layer.forward(x);
  if (recordable(y) && x.dim() >= 2) {
    LayerTape::active()->record(
        make_record(TapedLayer::kLinear, &layer, layer.weight, layer.bias, x, y));
  }
  return y;
}

torch::Tensor taped_masked_linear(torch::nn::LinearImpl& layer, const torch::Tensor& mask,
                                  const torch::Tensor& x) {
  auto y = torch::nn::functional::linear(x, layer.weight * mask, layer.bias);
  if (recordable(y) && x.dim() >= 2) {
    auto r = make_record(TapedLayer::kLinear, &layer, layer.weight, layer.bias, x, y);
    r.weight_mask = mask;
    LayerTape::active()->record(std::move(r));
  }
  return y;
}

torch::Tensor taped(torch::nn::Conv2dImpl& layer, const torch::Tensor& x) {
  return taped_conv(layer, TapedLayer::kConv2d, x);
}

torch::Tensor taped(torch::nn::ConvTranspose2dImpl& layer, const torch::Tensor& x) {
  return taped_conv(layer, TapedLayer::kConvTranspose2d, x);
}

torch::Tensor taped(torch::nn::LayerNormImpl& layer, const torch::Tensor& x) {
  auto y = layer.forward(x);
  const auto& o = layer.options;
  const int64_t norm_dims = static_cast<int64_t>(o.normalized_shape().size());
  if (recordable(y) && o.elementwise_affine() && x.dim() > norm_dims) {
    auto r = make_record(TapedLayer::kLayerNorm, &layer, layer.weight, layer.bias, x, y);
    r.eps = o.eps();
    r.normalized_shape = o.normalized_shape();
    LayerTape::active()->record(std::move(r));
  }
  return y;
}

torch::Tensor taped(torch::nn::GroupNormImpl& layer, const torch::Tensor& x) {
  auto y = layer.forward(x);
  const auto& o = layer.options;
  if (recordable(y) && o.affine() && x.dim() >= 2) {
    auto r = make_record(TapedLayer::kGroupNorm, &layer, layer.weight, layer.bias, x, y);
    r.eps = o.eps();
    r.groups = o.num_groups();
    LayerTape::active()->record(std::move(r));
  }
  return y;
}

torch::Tensor taped(torch::nn::BatchNorm1dImpl& layer, const torch::Tensor& x) {
  return taped_batch_norm(layer, x);
}

torch::Tensor taped(torch::nn::BatchNorm2dImpl& layer, const torch::Tensor& x) {
  return taped_batch_norm(layer, x);
}

torch::Tensor taped(torch::nn::EmbeddingImpl& layer, const torch::Tensor& x) {
  auto y = layer.forward(x);
  const auto& o = layer.options;
  // max_norm rescales the table in place and scale_grad_by_freq couples the examples.
  if (recordable(y) && x.dim() >= 1 && !o.max_norm().has_value() && !o.scale_grad_by_freq()) {
    auto r = make_record(TapedLayer::kEmbedding, &layer, layer.weight, torch::Tensor(), x, y);
    r.padding_idx = o.padding_idx().has_value() ? *o.padding_idx() : -1;
    LayerTape::active()->record(std::move(r));
  }
  return y;
}

}  // namespace nfk
