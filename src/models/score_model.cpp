#include <fstream>
#include <sstream>

#include "detail/strings.h"
#include "nfk/model.h"

namespace nfk {
namespace {

// splitmix64: decorrelates (seed, index) pairs into per-batch RNG seeds.
uint64_t mix_seed(uint64_t seed, uint64_t index) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (index + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// Accepts [B] or [B, 1] and returns [B].
torch::Tensor as_scores(const torch::Tensor& out, int64_t batch, const std::string& what) {
  TORCH_CHECK(out.dim() >= 1 && out.size(0) == batch && out.numel() == batch, "nfk: ", what,
              " must give one score per example ([", batch, "] or [", batch, ", 1]), got ",
              shape_str(out));
  return out.reshape({batch});
}

const char* method_for(ModelKind kind) {
  switch (kind) {
    case ModelKind::kVae:
      return "elbo";
    case ModelKind::kDensity:
      return "log_prob";
    default:
      return "forward";
  }
}

}  // namespace

const Names<ModelKind>& model_kind_names() {
  static const Names<ModelKind> names("model kind", {{ModelKind::kClassifier, "classifier"},
                                                     {ModelKind::kGan, "gan"},
                                                     {ModelKind::kVae, "vae"},
                                                     {ModelKind::kDensity, "density"},
                                                     {ModelKind::kScore, "score"},
                                                     {ModelKind::kNtk, "ntk"}});
  return names;
}

ScoreModel::ScoreModel(ModelKind kind, std::unique_ptr<Network> net,
                       std::unique_ptr<Network> generator, const ModelOptions& options)
    : kind_(kind), net_(std::move(net)), generator_(std::move(generator)), options_(options) {
  TORCH_CHECK(net_, "nfk: ScoreModel needs a network");
  net_->to(options_.device, options_.dtype);
  if (generator_) generator_->to(options_.device, options_.dtype);
}

torch::Tensor ScoreModel::prepare(const torch::Tensor& x) const {
  return x.to(options_.device, options_.dtype);
}

torch::Tensor ScoreModel::score(const torch::Tensor& x_b, int64_t first_index) {
  const int64_t batch = x_b.size(0);
  const std::string what = "model `" + options_.model_path + "` (kind " + to_string(kind_) + ")";
  switch (kind_) {
    case ModelKind::kClassifier: {
      auto logits = net_->call("forward", x_b);
      TORCH_CHECK(logits.dim() == 2 && logits.size(0) == batch && logits.size(1) >= 2,
                  "nfk: ", what, " must give logits [", batch, ", C] with C >= 2, got ",
                  shape_str(logits));
      return torch::logsumexp(logits, /*dim=*/1);  // free energy −E(x) (JEM)
    }
    case ModelKind::kVae:
      torch::manual_seed(mix_seed(options_.seed, static_cast<uint64_t>(first_index)));
      return as_scores(net_->call("elbo", x_b), batch, what + " elbo(x)");
    case ModelKind::kDensity:
      return as_scores(net_->call("log_prob", x_b), batch, what + " log_prob(x)");
    case ModelKind::kGan:
    case ModelKind::kScore:
      return as_scores(net_->call("forward", x_b), batch, what + " forward(x)");
    case ModelKind::kNtk: {
      auto out = net_->call("forward", x_b);
      if (out.dim() == 2 && out.size(0) == batch && out.size(1) > 1) {
        TORCH_CHECK(options_.output >= 0 && options_.output < out.size(1), "nfk: ", what, " gives ",
                    out.size(1), " outputs per example; choose one with --output c in [0, ",
                    out.size(1), ")");
        return out.select(/*dim=*/1, options_.output);
      }
      return as_scores(out, batch, what + " forward(x)");
    }
  }
  TORCH_INTERNAL_ASSERT(false, "unhandled ModelKind");
}

bool ScoreModel::can_sample() const {
  if (kind_ == ModelKind::kGan) return generator_ != nullptr;
  if (kind_ == ModelKind::kVae || kind_ == ModelKind::kDensity) return net_->has_method("sample");
  return false;
}

torch::Tensor ScoreModel::sample(int64_t n, uint64_t seed) {
  TORCH_CHECK(can_sample(), "nfk: model `", options_.model_path, "` (kind ", to_string(kind_),
              ") cannot draw samples", kind_ == ModelKind::kGan ? "; pass --generator G.pt" : "");
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  if (kind_ == ModelKind::kGan) {
    auto h = torch::randn({n, options_.latent_dim},
                          torch::TensorOptions().dtype(options_.dtype).device(options_.device));
    return generator_->call("forward", h).detach();
  }
  auto x = net_->call_int("sample", n).detach();
  TORCH_CHECK(x.dim() >= 1 && x.size(0) == n, "nfk: model `", options_.model_path,
              "` sample(n) must return [n, ...], got ", shape_str(x));
  return x.to(options_.dtype);
}

int64_t ScoreModel::num_parameters() {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

namespace {

// A classifier's score is the free energy logsumexp_y f_y(x). Outputs that are already
// log-probabilities (log_softmax: every row's logsumexp is 0) make it constant, and
// probabilities (softmax) make it meaningless: refuse both, naming the likely cause.
void check_logits(const torch::Tensor& out, const std::string& path) {
  auto f = out.to(torch::kFloat64);
  const bool log_probs = (torch::logsumexp(f, /*dim=*/1).abs() < 1e-4).all().item<bool>();
  TORCH_CHECK(!log_probs, "nfk: ", path, ": forward(x) gives log-probabilities (every row's ",
              "logsumexp is 0, as after log_softmax), so the free-energy score is constant; ",
              "save the classifier without its final log_softmax (logits)");
  const bool probs =
      (f >= 0).all().item<bool>() && ((f.sum(/*dim=*/1) - 1).abs() < 1e-4).all().item<bool>();
  TORCH_CHECK(!probs, "nfk: ", path, ": forward(x) gives probabilities (rows are non-negative ",
              "and sum to 1, as after softmax); save the classifier without its final softmax ",
              "(logits)");
}

// A graph recorded through one of PyTorch's fused inference kernels (e.g. a transformer traced
// under torch.no_grad: aten::_transformer_encoder_layer_fwd) runs, but has no gradient at all.
void check_differentiable(ScoreModel& model, const torch::Tensor& x, const std::string& path) {
  torch::AutoGradMode grad_mode(true);
  try {
    auto params = model.parameters();
    torch::autograd::grad({model.score(x).sum()}, params, {}, /*retain_graph=*/false,
                          /*create_graph=*/false, /*allow_unused=*/true);
  } catch (const std::exception& e) {
    const std::string why = detail::summary_line(detail::error_text(e));
    if (why.find("derivative for") == std::string::npos) throw;
    TORCH_CHECK(false, "nfk: ", path, ": the score has no gradient (", detail::strip_prefix(why),
                "): the model holds a fused inference kernel, as torch.jit.trace records under ",
                "torch.no_grad or inference mode; trace it with gradients enabled, or script it");
  }
}

}  // namespace

ScoreModel load_score_model(ModelKind kind, const ModelOptions& options,
                            const torch::Tensor& probe_x) {
  TORCH_CHECK(!options.model_path.empty(), "nfk: no model given (--model M.pt)");
  auto net = load_network(options.model_path);
  const char* method = method_for(kind);
  TORCH_CHECK(net->has_method(method), "nfk: ", options.model_path, ": kind `", to_string(kind),
              "` needs a method ", method, "(x), which this model lacks");
  std::unique_ptr<Network> generator;
  if (kind == ModelKind::kGan) {
    TORCH_CHECK(!options.generator_path.empty(),
                "nfk: kind `gan` needs --generator G.pt (its samples centre the Fisher score)");
    TORCH_CHECK(options.latent_dim > 0, "nfk: kind `gan` needs --latent-dim D > 0");
    generator = load_network(options.generator_path);
  }
  ScoreModel model(kind, std::move(net), std::move(generator), options);
  auto params = model.parameters();
  TORCH_CHECK(!params.empty(), "nfk: ", options.model_path, ": model has no trainable parameters");
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK(torch::isfinite(params[i]).all().item<bool>(), "nfk: ", options.model_path,
                ": parameter tensor ", i, " holds NaN or Inf");
  }
  if (kind == ModelKind::kGan) {
    try {
      model.sample(1, 0);
    } catch (const std::exception& e) {  // the TorchScript interpreter throws std::runtime_error
      TORCH_CHECK(false, "nfk: generator ", options.generator_path, " fails on h [1, ",
                  options.latent_dim, "] (--latent-dim ", options.latent_dim,
                  "): ", detail::strip_prefix(detail::summary_line(detail::error_text(e))));
    }
  }
  if (probe_x.defined() && probe_x.size(0) > 0) {
    auto x = model.prepare(probe_x.slice(/*dim=*/0, 0, std::min<int64_t>(2, probe_x.size(0))));
    torch::NoGradGuard no_grad;
    try {
      model.score(x);
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "nfk: ", options.model_path, " does not work as kind `", to_string(kind),
                  "` on data of shape ", shape_str(x), ": ",
                  detail::strip_prefix(detail::summary_line(detail::error_text(e))));
    }
    if (kind == ModelKind::kClassifier) {
      check_logits(model.network().call("forward", x), options.model_path);
    }
    check_differentiable(model, x, options.model_path);
  }
  return model;
}

void set_tf32(bool allowed) {
  at::globalContext().setAllowTF32CuBLAS(allowed);
  at::globalContext().setAllowTF32CuDNN(allowed);
}

bool tf32_allowed() {
  return at::globalContext().allowTF32CuBLAS() && at::globalContext().allowTF32CuDNN();
}

torch::Dtype parse_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "float64") return torch::kFloat64;
  TORCH_CHECK(false, "nfk: unsupported dtype `", name, "` (expected float32 or float64)");
}

std::string dtype_name(torch::Dtype dtype) {
  if (dtype == torch::kFloat32) return "float32";
  if (dtype == torch::kFloat64) return "float64";
  TORCH_CHECK(false, "nfk: unsupported dtype ", dtype, " (expected float32 or float64)");
}

std::string file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), "nfk: ", path, ": cannot read");
  uint64_t h = 1469598103934665603ULL;
  char buf[1 << 16];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 1099511628211ULL;
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace nfk
