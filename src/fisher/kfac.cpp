// K-FAC and EK-FAC factors of the classifier's Fisher (include/nfk/kfac.h for the conventions):
// sums over this rank's batches on the layer tape, all-reduced once per pass.
#include "nfk/kfac.h"

#include "fisher/fisher_rows.h"
#include "fisher/kfac_layers.h"

namespace nfk {
namespace {

// EK-FAC's second pass: work in chunks below kChunkElements; keep a batch's projected layer
// inputs across its cotangents up to kKeepElements.
constexpr int64_t kChunkElements = int64_t{1} << 24;
constexpr int64_t kKeepElements = int64_t{1} << 26;

void check_kfac_call(ScoreModel& model, const ClassifierData& data,
                     const ClassifierFisherOptions& options, const char* what) {
  detail::check_classifier_data(model, data, options);
  TORCH_CHECK(options.estimator != FisherEstimator::kBatched, "nfk: ", what,
              " of the batched estimator is not defined (its rows are batch sums, not "
              "per-example rows); use --estimator true, mc or empirical");
  TORCH_CHECK(options.gradient_path != GradientPath::kLoop, "nfk: ", what,
              " reads the layer tape's inputs and output gradients; the per-example loop "
              "(gradient path `loop`) cannot give its factors");
}

// Replaces every tensor of `sums` by its sum over ranks, in one all-reduce.
void allreduce_once(const std::vector<torch::Tensor*>& sums, const RunOptions& run) {
  if (!run.group || !run.group->distributed() || sums.empty()) return;
  std::vector<torch::Tensor> flat;
  for (auto* s : sums) flat.push_back(s->reshape(-1));
  auto total = run.group->allreduce_sum(torch::cat(flat).to(torch::kCPU));
  int64_t offset = 0;
  for (auto* s : sums) {
    *s = total.narrow(0, offset, s->numel()).view(s->sizes()).to(s->device()).clone();
    offset += s->numel();
  }
}

// Eigenvectors and eigenvalues (ascending, clamped at 0: A and G are PSD and rounding can make
// the smallest slightly negative) of a symmetric factor.
void eigen(const torch::Tensor& m, torch::Tensor& q, torch::Tensor& lambda) {
  auto [l, v] = torch::linalg::eigh(m, "L");
  lambda = l.clamp_min(0);
  q = v;
}

void check_finite(const torch::Tensor& t, const KfacLayer& layer, const char* what) {
  TORCH_CHECK(torch::isfinite(t).all().item<bool>(), "nfk: K-FAC's ", what, " of ", layer.name,
              " has NaN or Inf entries (non-finite logits, inputs or gradients on this data)");
}

// A and G of every planned layer, and their eigendecompositions.
KfacFactors kfac_pass(ScoreModel& model, const ClassifierData& data,
                      const ClassifierFisherOptions& options, const RunOptions& run,
                      detail::KfacPlan plan) {
  auto params = model.parameters();
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(params.front().device());
  std::vector<torch::Tensor> a_sum, g_sum;
  for (const auto& l : plan.layers) {
    const int64_t out = l.weight_shape[0] / l.groups, in = l.theta_index.numel() / out;
    a_sum.push_back(torch::zeros({in, in}, f64));
    g_sum.push_back(torch::zeros({out, out}, f64));
  }
  detail::walk_kfac_batches(
      model, data, options, run, plan.layers, "kfac factors",
      [&](size_t i, const TapeRecord& r) {
        const auto& l = plan.layers[i];
        const int64_t batch = r.input.size(0), chunk = detail::kfac_chunk(l);
        for (int64_t s = 0; s < batch; s += chunk) {
          auto a = detail::kfac_inputs(l, r, s, std::min(chunk, batch - s));
          a = a.reshape({-1, a.size(2)});
          a_sum[i] += a.t().mm(a).to(torch::kFloat64);
        }
      },
      [&](size_t i, const TapeRecord& r, const torch::Tensor& g) {
        if (!g.defined()) return;  // the layer does not reach the logits
        const auto& l = plan.layers[i];
        const int64_t batch = g.size(0), chunk = detail::kfac_chunk(l);
        for (int64_t s = 0; s < batch; s += chunk) {
          auto d = detail::kfac_deltas(l, g, s, std::min(chunk, batch - s));
          d = d.reshape({-1, d.size(2)});
          g_sum[i] += d.t().mm(d).to(torch::kFloat64);
        }
      });
  std::vector<torch::Tensor*> sums;
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    sums.push_back(&a_sum[i]);
    sums.push_back(&g_sum[i]);
  }
  allreduce_once(sums, run);
  KfacFactors out;
  out.form = FisherForm::kKfac;
  out.estimator = options.estimator;
  out.n_examples = data.inputs.size(0);
  out.num_params = plan.num_params;
  out.left_out = std::move(plan.left_out);
  out.layers = std::move(plan.layers);
  const double n = static_cast<double>(out.n_examples);
  for (size_t i = 0; i < out.layers.size(); ++i) {
    auto& l = out.layers[i];
    // Symmetrised, so that mv (the full matrices) and eigh (one triangle) describe the same ones.
    l.a = (a_sum[i] + a_sum[i].t()) / (2 * n * static_cast<double>(l.positions));
    l.g = (g_sum[i] + g_sum[i].t()) / (2 * n);
    check_finite(l.a, l, "input factor A");
    check_finite(l.g, l, "gradient factor G");
    eigen(l.a, l.qa, l.eig_a);
    eigen(l.g, l.qg, l.eig_g);
  }
  return out;
}

}  // namespace

KfacFactors kfac_factors(ScoreModel& model, const ClassifierData& data,
                         const ClassifierFisherOptions& options, const RunOptions& run) {
  check_kfac_call(model, data, options, "K-FAC");
  return kfac_pass(model, data, options, run, detail::plan_kfac_layers(model, data));
}

KfacFactors ekfac_factors(ScoreModel& model, const ClassifierData& data,
                          const ClassifierFisherOptions& options, const RunOptions& run) {
  check_kfac_call(model, data, options, "EK-FAC");
  KfacFactors out = kfac_pass(model, data, options, run, detail::plan_kfac_layers(model, data));
  out.form = FisherForm::kEkfac;
  // Second pass: each Fisher row's layer gradient D_ir = Σ_t δ_t ā_tᵀ in the eigenbasis,
  // Q_Gᵀ D_ir Q_A = Σ_t (Q_Gᵀ δ_t)(Q_Aᵀ ā_t)ᵀ, squared and summed. The projected inputs
  // Q_Aᵀ ā [B, T, in'] are kept for the batch's R cotangents where they fit kKeepElements, else
  // recomputed per chunk and cotangent. With one position (T = 1) ā_i is the same for every r:
  // Σ_r (Q_Gᵀ δ_ir)² ((Q_Aᵀ ā_i)²)ᵀ sums the squares over r first, then one GEMM per batch.
  const size_t n_layers = out.layers.size();
  std::vector<torch::Tensor> s_sum, projected(n_layers), d2(n_layers);
  for (const auto& l : out.layers) s_sum.push_back(torch::zeros({l.out(), l.in()}, l.a.options()));
  auto project = [&](size_t i, const TapeRecord& r, int64_t start, int64_t count) {
    auto a = detail::kfac_inputs(out.layers[i], r, start, count);  // [count, T, in']
    return a.matmul(out.layers[i].qa.to(a.scalar_type()));
  };
  auto flush = [&](size_t i) {  // T = 1: the batch's Σ_r d² [B, out] against its a² [B, in']
    if (d2[i].defined()) s_sum[i] += d2[i].t().mm(projected[i]).to(torch::kFloat64);
    d2[i] = torch::Tensor();
  };
  detail::walk_kfac_batches(
      model, data, options, run, out.layers, "ekfac scalings",
      [&](size_t i, const TapeRecord& r) {
        const auto& l = out.layers[i];
        const int64_t batch = r.input.size(0);
        if (l.positions == 1) {
          flush(i);  // the previous batch's
          projected[i] = project(i, r, 0, batch).select(1, 0).square();
        } else {
          projected[i] = batch * l.positions * l.in() <= kKeepElements ? project(i, r, 0, batch)
                                                                       : torch::Tensor();
        }
      },
      [&](size_t i, const TapeRecord& r, const torch::Tensor& g) {
        if (!g.defined()) return;
        const auto& l = out.layers[i];
        const int64_t batch = g.size(0);
        auto qg = l.qg.to(g.scalar_type());
        if (l.positions == 1) {
          auto d = detail::kfac_deltas(l, g, 0, batch).select(1, 0).matmul(qg).square();
          d2[i] = d2[i].defined() ? d2[i] + d : d;
          return;
        }
        const int64_t per_example = l.out() * l.in() + l.positions * (l.in() + l.out());
        const int64_t chunk = std::max<int64_t>(1, kChunkElements / per_example);
        for (int64_t s = 0; s < batch; s += chunk) {
          const int64_t count = std::min(chunk, batch - s);
          auto a =
              projected[i].defined() ? projected[i].narrow(0, s, count) : project(i, r, s, count);
          auto d = detail::kfac_deltas(l, g, s, count).matmul(qg);  // [count, T, out]
          auto rows = d.transpose(1, 2).bmm(a);                     // [count, out, in']
          s_sum[i] += rows.square().sum(/*dim=*/0).to(torch::kFloat64);
        }
      });
  for (size_t i = 0; i < n_layers; ++i) flush(i);
  std::vector<torch::Tensor*> sums;
  for (auto& s : s_sum) sums.push_back(&s);
  allreduce_once(sums, run);
  for (size_t i = 0; i < out.layers.size(); ++i) {
    out.layers[i].scalings = s_sum[i] / static_cast<double>(out.n_examples);
    check_finite(out.layers[i].scalings, out.layers[i], "EK-FAC scalings");
  }
  return out;
}

}  // namespace nfk
