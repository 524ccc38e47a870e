// K-FAC's covered layers and their per-position inputs and output gradients, on the layer tape.
#include "fisher/kfac_layers.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "fisher/fisher_rows.h"

namespace nfk::detail {
namespace {

namespace nnf = torch::nn::functional;

// Rows per block: out / groups.
int64_t block_out(const KfacLayer& l) {
  return l.weight_shape[0] / l.groups;
}

// A chunk of ā [count, T, in'] stays below this many elements.
constexpr int64_t kChunkElements = int64_t{1} << 24;

torch::Tensor logits_of(ScoreModel& model, const torch::Tensor& x) {
  return model.network().call("forward", x);
}

std::string layer_kind_name(TapedLayer kind) {
  switch (kind) {
    case TapedLayer::kLinear:
      return "Linear";
    case TapedLayer::kConv2d:
      return "Conv2d";
    case TapedLayer::kConvTranspose2d:
      return "ConvTranspose2d";
    case TapedLayer::kLayerNorm:
      return "LayerNorm";
    case TapedLayer::kGroupNorm:
      return "GroupNorm";
    case TapedLayer::kBatchNorm:
      return "BatchNorm";
    case TapedLayer::kEmbedding:
      return "Embedding";
  }
  return "?";
}

// "" if K-FAC covers the call, else why not.
std::string why_left_out(const TapeRecord& r, bool weight_in_theta, int weight_calls) {
  if (!weight_in_theta) return "its layer's weight is not in θ";
  if (weight_calls > 1) return "its weight is used by more than one layer call";
  if (r.layer == TapedLayer::kLinear) {
    return r.weight_mask.defined() ? "a masked Linear (K-FAC covers unmasked Linear)" : "";
  }
  if (r.layer == TapedLayer::kConv2d)
    return r.input.dim() == 4 ? "" : "a Conv2d on unbatched input";
  return "a " + layer_kind_name(r.layer) + " (K-FAC covers Linear and Conv2d)";
}

std::vector<int64_t> shape_of(const torch::Tensor& t) {
  return std::vector<int64_t>(t.sizes().begin(), t.sizes().end());
}

}  // namespace

KfacPlan plan_kfac_layers(ScoreModel& model, const ClassifierData& data) {
  auto params = model.parameters();
  auto x = model.prepare(data.inputs.slice(0, 0, 1));
  TapedBatch probe(params, model.network(), [&] { return logits_of(model, x); });
  TORCH_CHECK(probe.uncovered().empty(),
              "nfk: K-FAC needs the layer tape to cover the model (it reads each layer's inputs "
              "and output gradients), but ",
              probe.uncovered());
  KfacPlan plan;
  plan.num_params = probe.num_params();
  std::map<int64_t, int> weight_calls;
  for (const TapeRecord* r : probe.layers()) {
    if (const auto* w = probe.slot_of(r->weight)) ++weight_calls[w->index];
  }
  std::set<int64_t> listed;  // parameter tensors already left out
  int calls = 0;             // covered layer calls
  for (const TapeRecord* r : probe.layers()) {
    const auto* w = probe.slot_of(r->weight);
    const auto* b = probe.slot_of(r->bias);
    const std::string why = why_left_out(*r, w != nullptr, w ? weight_calls[w->index] : 0);
    if (!why.empty()) {
      for (const auto* slot : {w, b}) {
        if (slot && listed.insert(slot->index).second)
          plan.left_out.push_back({slot->index, shape_of(params[slot->index]), why});
      }
      continue;
    }
    const bool conv = r->layer == TapedLayer::kConv2d;
    const int64_t groups = conv ? r->groups : 1;
    const int64_t out = r->weight.size(0) / groups, in_w = r->weight[0].numel();
    for (int64_t group = 0; group < groups; ++group) {
      KfacLayer layer;
      layer.kind = r->layer;
      char name[48];
      std::snprintf(name, sizeof(name), "layer%02d.%s", calls, conv ? "conv2d" : "linear");
      layer.name = name;
      if (groups > 1) layer.name += ".group" + std::to_string(group);
      layer.group = group;
      layer.groups = groups;
      layer.weight_shape = shape_of(r->weight);
      layer.weight_index = w->index;
      layer.weight_offset = w->offset;
      if (b) {
        layer.bias_index = b->index;
        layer.bias_offset = b->offset;
      }
      layer.positions = conv ? r->output.size(2) * r->output.size(3) : r->input.numel() / in_w;
      // Group g's weight rows [g·out, (g+1)·out) are contiguous in θ, and so are its biases.
      auto idx = torch::TensorOptions().dtype(torch::kLong);
      auto index = w->offset + (group * out + torch::arange(out, idx).view({out, 1})) * in_w +
                   torch::arange(in_w, idx).view({1, in_w});
      if (b)
        index = torch::cat(
            {index, b->offset + group * out + torch::arange(out, idx).view({out, 1})}, 1);
      layer.theta_index = index.reshape(-1).to(params.front().device());
      plan.layers.push_back(std::move(layer));
    }
    ++calls;
  }
  std::sort(plan.left_out.begin(), plan.left_out.end(),
            [](const KfacLeftOut& a, const KfacLeftOut& b) { return a.index < b.index; });
  return plan;
}

int64_t kfac_chunk(const KfacLayer& layer) {
  const int64_t out = block_out(layer), in = layer.theta_index.numel() / out;
  return std::max<int64_t>(1, kChunkElements / (layer.positions * std::max(in, out)));
}

torch::Tensor kfac_inputs(const KfacLayer& layer, const TapeRecord& r, int64_t start,
                          int64_t count) {
  auto x = r.input.narrow(0, start, count);
  torch::Tensor a;  // [count, T, in]
  if (layer.kind == TapedLayer::kConv2d) {
    const int64_t channels = r.weight.size(1);  // the group's input channels
    auto unfold =
        nnf::UnfoldFuncOptions(r.kernel).dilation(r.dilation).padding(r.padding).stride(r.stride);
    a = nnf::unfold(x.narrow(1, layer.group * channels, channels), unfold).transpose(1, 2);
  } else {
    a = x.reshape({count, -1, r.weight.size(1)});
  }
  TORCH_INTERNAL_ASSERT(a.size(1) == layer.positions, "K-FAC: positions changed between batches");
  if (layer.bias_index < 0) return a;
  return torch::cat({a, torch::ones({count, a.size(1), 1}, a.options())}, /*dim=*/2);
}

torch::Tensor kfac_deltas(const KfacLayer& layer, const torch::Tensor& g, int64_t start,
                          int64_t count) {
  auto d = g.narrow(0, start, count);
  const int64_t out = block_out(layer);
  if (layer.kind == TapedLayer::kConv2d) {
    return d.narrow(1, layer.group * out, out).reshape({count, out, -1}).transpose(1, 2);
  }
  return d.reshape({count, -1, out});
}

void walk_kfac_batches(ScoreModel& model, const ClassifierData& data,
                       const ClassifierFisherOptions& options, const RunOptions& run,
                       const std::vector<KfacLayer>& layers, const char* stage,
                       const KfacInputsFn& on_inputs, const KfacGradientsFn& on_gradients) {
  TORCH_CHECK(run.batch_size >= 1, "nfk: batch size must be positive, got ", run.batch_size);
  std::unordered_map<int64_t, std::vector<size_t>> by_weight;  // a conv's blocks per group
  for (size_t i = 0; i < layers.size(); ++i) by_weight[layers[i].weight_index].push_back(i);
  const int64_t n = data.inputs.size(0);
  const auto [begin, end] = rank_range(n, run);
  auto params = model.parameters();
  for (int64_t start = begin; start < end; start += run.batch_size) {
    const int64_t stop = std::min(end, start + run.batch_size);
    auto x = model.prepare(data.inputs.slice(0, start, stop));
    auto y = data.labels.defined() ? data.labels.slice(0, start, stop) : torch::Tensor();
    TapedBatch taped(params, model.network(), [&] { return logits_of(model, x); });
    TORCH_CHECK(taped.uncovered().empty(), "nfk: K-FAC needs the layer tape to cover the model, ",
                "but on examples [", start, ", ", stop, ") ", taped.uncovered());
    const auto& used = taped.layers();
    std::vector<const std::vector<size_t>*> blocks_of(used.size(), nullptr);
    std::vector<int> calls(layers.size(), 0);
    for (size_t k = 0; k < used.size(); ++k) {
      const auto* w = taped.slot_of(used[k]->weight);
      auto it = w ? by_weight.find(w->index) : by_weight.end();
      if (it == by_weight.end()) continue;
      blocks_of[k] = &it->second;
      for (size_t i : it->second) ++calls[i];
    }
    for (size_t i = 0; i < layers.size(); ++i) {
      TORCH_CHECK(calls[i] == 1, "nfk: K-FAC: ", layers[i].name, " was called ", calls[i],
                  " times on examples [", start, ", ", stop,
                  ") and once on the first example; K-FAC needs one call per forward");
    }
    {
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < used.size(); ++k)
        if (blocks_of[k])
          for (size_t i : *blocks_of[k]) on_inputs(i, *used[k]);
    }
    auto c = logit_cotangents(taped.output().detach(), y, options, run.seed, start);
    for (int64_t r = 0; r < c.size(0); ++r) {
      auto grads = taped.output_gradients(c[r], /*retain_graph=*/r + 1 < c.size(0));
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < used.size(); ++k)
        if (blocks_of[k])
          for (size_t i : *blocks_of[k]) on_gradients(i, *used[k], grads[k]);
    }
    if (run.progress) run.progress(stage, stop - begin, end - begin);
  }
}

}  // namespace nfk::detail
