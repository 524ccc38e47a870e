// Per-example gradients ∇θ s(x_i): the two paths (the layer tape, one backward per batch; the
// loop, one backward per example), the probe that chooses between them, and GradientBlocks.
#include <torch/csrc/autograd/autograd.h>

#include "detail/strings.h"
#include "fisher/tape_gradients.h"
#include "nfk/fisher.h"

namespace nfk {

torch::Tensor flatten_like(const std::vector<torch::Tensor>& grads,
                           const std::vector<torch::Tensor>& params) {
  TORCH_INTERNAL_ASSERT(grads.size() == params.size());
  std::vector<torch::Tensor> flat;
  flat.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    flat.push_back(grads[i].defined() ? grads[i].reshape(-1)
                                      : torch::zeros({params[i].numel()}, params[i].options()));
  }
  return torch::cat(flat);
}

namespace {

// Writes one example's parameter gradients (undefined = zeros) into row_p [P].
void write_row(const std::vector<torch::Tensor>& grads, const std::vector<torch::Tensor>& params,
               torch::Tensor row_p) {
  int64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    auto slot = row_p.narrow(0, offset, params[i].numel());
    if (grads[i].defined()) {
      slot.copy_(grads[i].reshape(-1));
    } else {
      slot.zero_();
    }
    offset += params[i].numel();
  }
}

}  // namespace

namespace {

// One backward per example (or per row of the batch graph for stochastic models): the reference
// path, and the fallback for models the layer tape does not cover. Fills the first `rows` rows.
void loop_gradients(ScoreModel& model, const torch::Tensor& x, int64_t first_index,
                    torch::Tensor out_bp, int64_t rows) {
  auto params = model.parameters();
  torch::AutoGradMode grad_on(true);
  if (model.stochastic()) {
    // The noise inside s is drawn per batch: differentiate each example on the batch graph so
    // that J_b matches the batched JVP/VJP products exactly.
    auto s = model.score(x, first_index);
    for (int64_t i = 0; i < rows; ++i) {
      auto g = torch::autograd::grad({s[i]}, params, {}, /*retain_graph=*/i + 1 < rows,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      write_row(g, params, out_bp[i]);
    }
  } else {
    for (int64_t i = 0; i < rows; ++i) {
      auto s = model.score(x.slice(/*dim=*/0, i, i + 1), first_index + i);
      auto g = torch::autograd::grad({s.sum()}, params, {}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      write_row(g, params, out_bp[i]);
    }
  }
}

// The layer tape's rows, or the reason it cannot give them.
std::string try_layer_tape(ScoreModel& model, const torch::Tensor& x, int64_t first_index,
                           torch::Tensor out_bp) {
  try {
    return detail::tape_per_example_gradients(model, x, first_index, out_bp);
  } catch (const std::exception& e) {  // the TorchScript interpreter throws std::runtime_error
    const std::string why = detail::summary_line(detail::error_text(e));
    // The tape's rewrite failing is a reason to fall back; the model itself failing on this
    // batch is the error to report (score() rethrows it).
    torch::NoGradGuard no_grad;
    model.score(x, first_index);
    return why;
  }
}

// On a model's first batch the tape's rows are checked against the loop on a few examples, so
// that a parameter reaching the score outside its taped layer (or examples that interact)
// turns the tape off instead of giving a wrong answer.
bool agrees_with_loop(ScoreModel& model, const torch::Tensor& x, int64_t first_index,
                      const torch::Tensor& fast_bp) {
  const int64_t rows = std::min<int64_t>(2, x.size(0));
  auto ref = torch::empty({rows, fast_bp.size(1)}, fast_bp.options());
  loop_gradients(model, model.stochastic() ? x : x.slice(0, 0, rows), first_index, ref, rows);
  // A score that is NaN or Inf is not the tape's fault: the caller reports it by example.
  if (!torch::isfinite(ref).all().item<bool>() ||
      !torch::isfinite(fast_bp.slice(0, 0, rows)).all().item<bool>()) {
    return true;
  }
  const double tol = fast_bp.scalar_type() == torch::kFloat64 ? 1e-9 : 1e-3;
  auto diff = (fast_bp.slice(0, 0, rows) - ref).norm().item<double>();
  return diff <= tol * ref.norm().item<double>() + 1e-30;
}

}  // namespace

const Names<GradientPath>& gradient_path_names() {
  static const Names<GradientPath> names("gradient path", {{GradientPath::kAuto, "auto"},
                                                           {GradientPath::kLayerTape, "layer-tape"},
                                                           {GradientPath::kLoop, "loop"}});
  return names;
}

namespace {

// The tape's rows of a prepared batch checked against the loop: "" when they stand, else why
// not (out_bp then holds nothing useful).
std::string tape_rows_checked(ScoreModel& model, const torch::Tensor& x, int64_t first_index,
                              torch::Tensor out_bp) {
  std::string why = try_layer_tape(model, x, first_index, out_bp);
  if (why.empty() && !agrees_with_loop(model, x, first_index, out_bp)) {
    why =
        "its rows disagree with the per-example loop (a parameter used outside its layer, or "
        "examples that interact)";
  }
  return why;
}

// Rows of a prepared batch on a decided path (kLayerTape or kLoop).
void rows_on_path(ScoreModel& model, const torch::Tensor& x, int64_t first_index,
                  torch::Tensor out_bp, GradientPath path) {
  if (path == GradientPath::kLayerTape) {
    const std::string why = try_layer_tape(model, x, first_index, out_bp);
    if (why.empty()) return;
    TORCH_WARN("nfk: the layer tape failed on a batch of ", model.network().describe(),
               " (examples ", first_index, "..", first_index + x.size(0) - 1,
               "), which takes one backward pass per example instead: ", why);
  }
  loop_gradients(model, x, first_index, out_bp, x.size(0));
}

torch::Tensor prepared_rows(ScoreModel& model, const torch::Tensor& x_b, torch::Tensor out_bp,
                            torch::Tensor* x) {
  auto params = model.parameters();
  *x = model.prepare(x_b);
  int64_t p = 0;
  for (const auto& t : params) p += t.numel();
  if (!out_bp.defined()) out_bp = torch::empty({x->size(0), p}, params.front().options());
  TORCH_INTERNAL_ASSERT(out_bp.size(0) == x->size(0) && out_bp.size(1) == p);
  return out_bp;
}

}  // namespace

GradientPathChoice choose_gradient_path(ScoreModel& model, const torch::Tensor& x_b,
                                        int64_t first_index) {
  TORCH_CHECK(x_b.dim() >= 1 && x_b.size(0) > 0, "nfk: the gradient-path probe needs examples");
  torch::Tensor x;
  auto rows = prepared_rows(model, x_b, {}, &x);
  std::string why = tape_rows_checked(model, x, first_index, rows);
  if (why.empty()) return {GradientPath::kLayerTape, ""};
  return {GradientPath::kLoop, why};
}

torch::Tensor GradientBlocks::operator()(const torch::Tensor& x_b, int64_t first_index,
                                         torch::Tensor out_bp) {
  torch::Tensor x;
  out_bp = prepared_rows(model_, x_b, std::move(out_bp), &x);
  if (x.size(0) == 0) return out_bp;
  if (choice_.path == GradientPath::kAuto) {
    // The first batch decides: the tape's rows stand if they agree with the loop's.
    choice_.reason = tape_rows_checked(model_, x, first_index, out_bp);
    choice_.path = choice_.reason.empty() ? GradientPath::kLayerTape : GradientPath::kLoop;
    if (choice_.path == GradientPath::kLayerTape) return out_bp;
    TORCH_WARN("nfk: per-example gradients of ", model_.network().describe(),
               " take one backward pass per example: ", choice_.reason);
  }
  rows_on_path(model_, x, first_index, out_bp, choice_.path);
  return out_bp;
}

torch::Tensor per_example_gradients(ScoreModel& model, const torch::Tensor& x_b,
                                    int64_t first_index, torch::Tensor out_bp, GradientPath path) {
  return GradientBlocks(model, path)(x_b, first_index, std::move(out_bp));
}

}  // namespace nfk
