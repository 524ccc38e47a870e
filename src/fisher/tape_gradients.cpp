// Per-example weight/bias gradients of each taped layer from its saved input and the gradient
// of Σ_i s(x_i) with respect to its output. In eval mode an example's score depends on that
// example alone, so row i of ∂(Σ_j s_j)/∂y is ∂s_i/∂y_i and the per-example gradient of a layer
// is a contraction of that row with the example's own input (nngeometry/BackPACK).
#include "fisher/tape_gradients.h"

#include <torch/csrc/autograd/autograd.h>

#include <sstream>
#include <unordered_map>

#include "models/tape_record.h"

namespace nfk::detail {
namespace {

namespace nnf = torch::nn::functional;

// Unfolded patches are chunked over examples to stay below this many elements.
constexpr int64_t kUnfoldChunkElements = int64_t{1} << 25;

// dst [B, numel] (a column block of J_b) = src [B, ...], or += where a weight shared by several
// calls has been written already.
void put_rows(torch::Tensor dst, const torch::Tensor& src, bool accumulate) {
  if (accumulate) {
    dst.add_(src.reshape(dst.sizes()));
  } else {
    dst.copy_(src.reshape(dst.sizes()));
  }
}

// Per-example sums Σ_positions of [B, ...] straight into dst [B, numel] (no temporaries kept).
torch::Tensor sum_rows(const torch::Tensor& t, int64_t numel) {
  return t.reshape({t.size(0), -1, numel}).sum(/*dim=*/1);
}

// Σ over every dim but the batch dim 0 and channel dim 1: [B, C, *] → [B, C].
torch::Tensor sum_spatial(const torch::Tensor& t) {
  return t.reshape({t.size(0), t.size(1), -1}).sum(/*dim=*/2);
}

// dst3 [b, m, n] (a strided view into J_b) = a [b, m, k] @ c [b, k, n] (+ dst3 if accumulate):
// the GEMMs write into J directly, without a temporary of J's size.
void batched_gemm_into(torch::Tensor dst3, const torch::Tensor& a, const torch::Tensor& c,
                       bool accumulate) {
  // beta = 0 does not mask NaN in the uninitialised block on every LibTorch CPU path: zero it.
  if (!accumulate) dst3.zero_();
  dst3.baddbmm_(a, c);
}

void linear_gradients(const TapeRecord& r, const torch::Tensor& g, torch::Tensor w_bp,
                      torch::Tensor b_bp, bool accumulate) {
  const int64_t batch = g.size(0), out = r.weight.size(0), in = r.weight.size(1);
  auto w3 = w_bp.view({batch, out, in});
  if (r.input.dim() == 2 && !accumulate) {  // outer products g_i x_iᵀ
    torch::mul_out(w3, g.unsqueeze(2), r.input.unsqueeze(1));
  } else {
    auto x3 = r.input.reshape({batch, -1, in});  // [B, T, in]
    auto g3 = g.reshape({batch, -1, out});       // [B, T, out]
    batched_gemm_into(w3, g3.transpose(1, 2), x3, accumulate);
  }
  if (r.weight_mask.defined()) w3.mul_(r.weight_mask);
  if (b_bp.defined()) put_rows(b_bp, sum_rows(g, out), accumulate);
}

// Per-example weight gradients of a convolution as batched GEMMs: `rows_src` [B, R, *] (R =
// weight.size(0)) against the patches of `patch_src` unfolded with the layer's kernel, stride,
// padding and dilation ([B, G·patch, L], L = rows_src's positions), into w_bp [B, |W|] viewed
// as the weight's layout [B, G, R/G, patch].
//   conv (rows_src = g, patch_src = x):            ∂s/∂W[o, c, k] = Σ_l g[o, l] x_unf[c·k, l]
//   transposed conv (rows_src = x, patch_src = g): ∂s/∂W[c, o, k] = Σ_i x[c, i] g_unf[o·k, i]
void unfolded_conv_gradients(const TapeRecord& r, const torch::Tensor& rows_src,
                             const torch::Tensor& patch_src, torch::Tensor w_bp, bool accumulate) {
  const int64_t batch = rows_src.size(0), groups = r.groups, rows = r.weight.size(0);
  const int64_t patch = r.weight[0].numel();
  const int64_t positions = rows_src.size(2) * rows_src.size(3);
  const int64_t chunk = std::max<int64_t>(1, kUnfoldChunkElements / (patch * groups * positions));
  auto unfold =
      nnf::UnfoldFuncOptions(r.kernel).dilation(r.dilation).padding(r.padding).stride(r.stride);
  for (int64_t start = 0; start < batch; start += chunk) {
    const int64_t b = std::min(chunk, batch - start);
    auto cols = nnf::unfold(patch_src.narrow(0, start, b), unfold);  // [b, G·patch, L]
    TORCH_CHECK(cols.size(2) == positions, "conv2d: unfolded positions ", cols.size(2),
                " != ", positions, " (a transposed conv with output_padding >= stride?)");
    auto rr = rows_src.narrow(0, start, b).reshape({b, groups, rows / groups, positions});
    auto cc = cols.view({b, groups, patch, positions}).transpose(2, 3);
    auto w4 = w_bp.narrow(0, start, b).view({b, groups, rows / groups, patch});
    if (groups == 1) {  // straight into J
      batched_gemm_into(w4.select(1, 0), rr.select(1, 0), cc.select(1, 0), accumulate);
    } else {  // one batched product over (example, group): depthwise convs have hundreds
      put_rows(w4, torch::matmul(rr, cc), accumulate);
    }
  }
}

void conv2d_gradients(const TapeRecord& r, const torch::Tensor& g, torch::Tensor w_bp,
                      torch::Tensor b_bp, bool accumulate) {
  const bool transposed = r.layer == TapedLayer::kConvTranspose2d;
  unfolded_conv_gradients(r, transposed ? r.input : g, transposed ? g : r.input, w_bp, accumulate);
  if (b_bp.defined()) put_rows(b_bp, sum_spatial(g), accumulate);
}

// Affine norms: y = x̂ ⊙ γ + β with x̂ independent of γ, β.
void affine_norm_gradients(const torch::Tensor& x_hat, const torch::Tensor& g, int64_t numel,
                           torch::Tensor w_bp, torch::Tensor b_bp, bool channel_first,
                           bool accumulate) {
  if (channel_first) {  // [B, C, *] → per channel
    put_rows(w_bp, sum_spatial(g * x_hat), accumulate);
    if (b_bp.defined()) put_rows(b_bp, sum_spatial(g), accumulate);
  } else {  // [B, *, normalized...] → per normalized entry
    put_rows(w_bp, sum_rows(g * x_hat, numel), accumulate);
    if (b_bp.defined()) put_rows(b_bp, sum_rows(g, numel), accumulate);
  }
}

void norm_gradients(const TapeRecord& r, const torch::Tensor& g, torch::Tensor w_bp,
                    torch::Tensor b_bp, bool accumulate) {
  const auto& x = r.input;
  switch (r.layer) {
    case TapedLayer::kLayerNorm: {
      auto x_hat = torch::layer_norm(x, r.normalized_shape, {}, {}, r.eps);
      affine_norm_gradients(x_hat, g, r.weight.numel(), w_bp, b_bp, /*channel_first=*/false,
                            accumulate);
      return;
    }
    case TapedLayer::kGroupNorm: {
      auto x_hat = torch::group_norm(x, r.groups, {}, {}, r.eps);
      affine_norm_gradients(x_hat, g, r.weight.numel(), w_bp, b_bp, /*channel_first=*/true,
                            accumulate);
      return;
    }
    case TapedLayer::kBatchNorm: {
      std::vector<int64_t> shape(x.dim(), 1);
      shape[1] = x.size(1);
      auto x_hat = (x - r.running_mean.view(shape)) * (r.running_var.view(shape) + r.eps).rsqrt();
      affine_norm_gradients(x_hat, g, r.weight.numel(), w_bp, b_bp, /*channel_first=*/true,
                            accumulate);
      return;
    }
    default:
      TORCH_INTERNAL_ASSERT(false, "not a norm layer");
  }
}

void embedding_gradients(const TapeRecord& r, const torch::Tensor& g, torch::Tensor w_bp,
                         bool accumulate) {
  const int64_t batch = g.size(0), vocab = r.weight.size(0), dim = r.weight.size(1);
  auto rows =
      (torch::arange(batch, r.input.options().dtype(torch::kLong)) * vocab).view({batch, 1}) +
      r.input.reshape({batch, -1}).to(torch::kLong);
  auto gw = torch::zeros({batch * vocab, dim}, g.options());
  gw.index_add_(0, rows.reshape(-1), g.reshape({-1, dim}));
  auto gw3 = gw.view({batch, vocab, dim});
  if (r.padding_idx >= 0) gw3.select(/*dim=*/1, r.padding_idx).zero_();
  put_rows(w_bp, gw3, accumulate);
}

// Writes (or, for a weight already written by an earlier call, adds) one layer call's
// per-example gradients into its column blocks w_bp [B, |W|] and b_bp [B, |b|] of J_b.
void put_layer_gradients(const TapeRecord& r, const torch::Tensor& g, torch::Tensor w_bp,
                         torch::Tensor b_bp, bool accumulate) {
  switch (r.layer) {
    case TapedLayer::kLinear:
      return linear_gradients(r, g, w_bp, b_bp, accumulate);
    case TapedLayer::kConv2d:
    case TapedLayer::kConvTranspose2d:
      return conv2d_gradients(r, g, w_bp, b_bp, accumulate);
    case TapedLayer::kLayerNorm:
    case TapedLayer::kGroupNorm:
    case TapedLayer::kBatchNorm:
      return norm_gradients(r, g, w_bp, b_bp, accumulate);
    case TapedLayer::kEmbedding:
      return embedding_gradients(r, g, w_bp, accumulate);
  }
}

}  // namespace

TapedBatch::TapedBatch(std::vector<torch::Tensor> params, Network& net,
                       const std::function<torch::Tensor()>& forward)
    : params_(std::move(params)) {
  int64_t offset = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    slots_[params_[i].unsafeGetTensorImpl()] = {static_cast<int64_t>(i), offset};
    offset += params_[i].numel();
  }
  num_params_ = offset;
  torch::AutoGradMode grad_on(true);
  {
    LayerTape tape;
    output_ = forward();
    records_ = tape.records();
  }
  std::vector<bool> covered(params_.size(), false);
  for (const auto& r : records_) {
    const Slot* w = slot_of(r.weight);
    const Slot* b = slot_of(r.bias);
    if (!w && !b) continue;  // a layer outside θ (e.g. frozen)
    if (w) covered[w->index] = true;
    if (b) covered[b->index] = true;
    used_.push_back(&r);
    outputs_.push_back(r.output);
  }
  // The network's own account of the ops it could not expose (TorchScript: in-place writes,
  // training-mode batch norm, control flow), appended to the reason.
  const std::string note = net.tape_note();
  const std::string because = note.empty() ? "" : " (the tape skipped: " + note + ")";
  if (records_.empty() && !note.empty()) {
    uncovered_ = "the tape could not expose any parametric op: " + note;
  } else if (records_.empty()) {
    uncovered_ =
        "the network records no layer calls (a TorchScript graph without aten::linear, "
        "conv2d, _convolution, layer_norm, group_norm, eval batch_norm or embedding on its "
        "parameters, or a native module without taped layers)";
  } else {
    for (size_t i = 0; i < params_.size() && uncovered_.empty(); ++i) {
      if (!covered[i]) {
        std::ostringstream why;
        why << "parameter tensor " << i << " of shape " << params_[i].sizes()
            << " is not used by a supported layer" << because;
        uncovered_ = why.str();
      }
    }
  }
}

const TapedBatch::Slot* TapedBatch::slot_of(const torch::Tensor& t) const {
  if (!t.defined()) return nullptr;
  auto it = slots_.find(t.unsafeGetTensorImpl());
  return it == slots_.end() ? nullptr : &it->second;
}

std::vector<torch::Tensor> TapedBatch::output_gradients(const torch::Tensor& cotangent,
                                                        bool retain_graph) {
  TORCH_INTERNAL_ASSERT(uncovered_.empty(), "TapedBatch: the tape does not cover the model");
  torch::AutoGradMode grad_on(true);
  return torch::autograd::grad({output_}, outputs_, {cotangent}, retain_graph,
                               /*create_graph=*/false, /*allow_unused=*/true);
}

void TapedBatch::rows(const torch::Tensor& cotangent, torch::Tensor out_bp, bool retain_graph) {
  auto grads = output_gradients(cotangent, retain_graph);
  torch::NoGradGuard no_grad;
  const int64_t batch = output_.size(0);
  // Every parameter tensor is covered; a layer called twice (shared weights) adds to its rows.
  // Its weight and bias share one call, so the weight's flag stands for both.
  std::vector<bool> written(params_.size(), false);
  for (size_t k = 0; k < used_.size(); ++k) {
    if (!grads[k].defined()) continue;  // the output does not reach the score
    const TapeRecord& r = *used_[k];
    const Slot* w = slot_of(r.weight);
    const Slot* b = slot_of(r.bias);
    const bool accumulate = (w && written[w->index]) || (b && written[b->index]);
    auto w_bp = w ? out_bp.narrow(1, w->offset, r.weight.numel())
                  : torch::zeros({batch, r.weight.numel()}, out_bp.options());
    auto b_bp = b ? out_bp.narrow(1, b->offset, r.bias.numel()) : torch::Tensor();
    if (accumulate) {  // zero whichever of the two has not been written yet
      if (w && !written[w->index]) w_bp.zero_();
      if (b && !written[b->index]) b_bp.zero_();
    }
    put_layer_gradients(r, grads[k], w_bp, b_bp, accumulate);
    if (w) written[w->index] = true;
    if (b) written[b->index] = true;
  }
  for (size_t i = 0; i < params_.size(); ++i) {  // parameters whose layers do not reach s
    if (!written[i])
      out_bp.narrow(1, slots_.at(params_[i].unsafeGetTensorImpl()).offset, params_[i].numel())
          .zero_();
  }
}

std::string tape_per_example_gradients(ScoreModel& model, const torch::Tensor& x,
                                       int64_t first_index, torch::Tensor out_bp) {
  TapedBatch batch(model.parameters(), model.network(),
                   [&] { return model.score(x, first_index); });
  if (!batch.uncovered().empty()) return batch.uncovered();
  batch.rows(torch::ones_like(batch.output()), out_bp, /*retain_graph=*/false);
  return "";
}

}  // namespace nfk::detail
