// nfk._nfk: fit, transform, fisher_stats and set_distance, with the CLI's defaults.
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>

#include "bindings.h"
#include "nfk/distance.h"
#include "nfk/embed.h"
#include "nfk/fisher.h"

namespace nfk_python {
namespace {

nfk::FisherOptions fisher_options(const std::string& estimator, int64_t reference_samples,
                                  double fisher_floor) {
  nfk::FisherOptions o;
  o.estimator = nfk::parse_estimator(estimator);
  o.reference_samples = reference_samples;
  o.floor = fisher_floor;
  return o;
}

/// The call's batch size and the model's seed, progress through CallScope.
nfk::RunOptions run_options(const nfk::ScoreModel& model, int64_t batch_size,
                            const py::object& progress) {
  return {batch_size, model.options().seed, nullptr, CallScope::progress(progress)};
}

/// nfk fit: the projector (its model files embedded: `nfk fit --embed-model`), the training
/// embedding Φ diag(σ) [N, k] and the plan (`nfk fit --json`'s "plan").
py::tuple fit(nfk::ScoreModel& model, const py::array& x, int64_t rank,
              const std::string& estimator, int64_t reference_samples, double fisher_floor,
              int64_t oversample, int64_t power_iters, double tol, const std::string& solver,
              const std::string& method, int64_t memory_budget_mib, int64_t batch_size,
              const std::string& data_source, const py::object& progress) {
  CallScope scope;
  const torch::Tensor inputs = to_inputs(x, data_source.empty() ? "inputs" : data_source);
  TORCH_CHECK(memory_budget_mib >= 0 && memory_budget_mib <= (INT64_MAX >> 20),
              "nfk: memory_budget_mib must be in [0, ", INT64_MAX >> 20, "], got ",
              memory_budget_mib);
  nfk::FitOptions o;
  o.method = nfk::parse_fit_method(method);
  o.svd.rank = rank;
  o.svd.oversample = oversample;
  o.svd.power_iters = power_iters;
  o.svd.tol = tol;
  o.svd.solver = nfk::parse_svd_solver(solver);
  o.fisher = fisher_options(estimator, reference_samples, fisher_floor);
  o.memory_budget = memory_budget_mib << 20;
  o.run = run_options(model, batch_size, progress);
  auto proj = std::make_shared<nfk::Projector>();
  torch::Tensor embedding;
  std::string plan_json;
  {
    py::gil_scoped_release release;
    const auto plan = nfk::plan_fit(model, inputs, o);
    // The CLI prints the plan; a notebook hears of the slow path as a warning.
    if (plan.v_operator.gradient_path == nfk::GradientPath::kLoop) {
      TORCH_WARN("nfk: per-example gradients of ", model.network().describe(),
                 " take one backward pass per example (the layer tape does not cover the model: ",
                 plan.gradient_path_reason, ")");
    }
    plan_json = plan.to_json().dump();
    auto result = nfk::fit(model, inputs, o, data_source, &plan);
    *proj = std::move(result.projector);
    embedding = result.train_embedding;
    nfk::record_model_files(*proj, /*embed=*/true);
  }
  auto out = py::make_tuple(proj, to_array(embedding), plan_json);
  scope.finish();
  return out;
}

py::array transform(const nfk::Projector& proj, nfk::ScoreModel& model, const py::array& x,
                    int64_t batch_size, const py::object& progress) {
  CallScope scope;
  const torch::Tensor inputs = to_inputs(x, "inputs");
  torch::Tensor e;
  {
    py::gil_scoped_release release;
    e = nfk::transform(proj, model, inputs, run_options(model, batch_size, progress));
  }
  auto out = to_array(e);
  scope.finish();
  return out;
}

py::dict fisher_stats(nfk::ScoreModel& model, const py::array& x, const std::string& estimator,
                      int64_t reference_samples, double fisher_floor, int64_t batch_size,
                      const py::object& progress) {
  CallScope scope;
  const torch::Tensor inputs = to_inputs(x, "inputs");
  const auto o = fisher_options(estimator, reference_samples, fisher_floor);
  nfk::FisherStats s;
  {
    py::gil_scoped_release release;
    s = nfk::compute_fisher_stats(model, inputs, o, run_options(model, batch_size, progress));
  }
  py::dict d;
  d["fisher_diag"] = to_array(s.fisher_diag);
  d["mean_score"] = to_array(s.mean_score);
  d["estimator"] = nfk::to_string(s.estimator);
  d["reference"] = s.reference;
  d["n_reference"] = s.n_reference;
  d["floor_value"] = s.floor_value;
  d["n_floored"] = s.n_floored;
  scope.finish();
  return d;
}

py::tuple set_distance(const nfk::Projector& proj, nfk::ScoreModel& model, const py::array& a,
                       const py::array& b, int64_t batch_size) {
  CallScope scope;
  const torch::Tensor xa = to_inputs(a, "a"), xb = to_inputs(b, "b");
  nfk::SetDistance d;
  {
    py::gil_scoped_release release;
    d = nfk::fisher_set_distance(proj, model, xa, xb, batch_size, CallScope::progress());
  }
  scope.finish();
  return py::make_tuple(d.fisher, d.embedding);
}

/// ∇θ s(x_i) of one batch x [B, ...] → J [B, P] (model dtype); `first_index` fixes per-example
/// noise.
py::array per_example_gradients(nfk::ScoreModel& model, const py::array& x, int64_t first_index) {
  CallScope scope;
  const torch::Tensor inputs = to_inputs(x, "inputs");
  torch::Tensor j;
  {
    py::gil_scoped_release release;
    j = nfk::per_example_gradients(model, model.prepare(inputs), first_index);
  }
  auto out = to_array(j);
  scope.finish();
  return out;
}

/// D[a, b] = ‖mean_{y=a} V − mean_{y=b} V‖ [C, C] float64 (nfk::class_distance_matrix).
py::array class_distances(const nfk::Projector& proj, nfk::ScoreModel& model, const py::array& x,
                          const py::array& labels, int64_t batch_size, const py::object& progress) {
  CallScope scope;
  const torch::Tensor inputs = to_inputs(x, "inputs"), y = to_labels(labels);
  torch::Tensor d;
  {
    py::gil_scoped_release release;
    d = nfk::class_distance_matrix(proj, model, inputs, y, batch_size,
                                   CallScope::progress(progress));
  }
  auto out = to_array(d);
  scope.finish();
  return out;
}

/// d(a_i, b_j) = ‖V_{a_i} − V_{b_j}‖ [N_A, N_B] float64 (nfk::pairwise_fisher_distances).
py::array pairwise_distances(const nfk::Projector& proj, nfk::ScoreModel& model, const py::array& a,
                             const py::array& b, int64_t batch_size, const py::object& progress) {
  CallScope scope;
  const torch::Tensor xa = to_inputs(a, "a"), xb = to_inputs(b, "b");
  torch::Tensor d;
  {
    py::gil_scoped_release release;
    d = nfk::pairwise_fisher_distances(proj, model, xa, xb, batch_size,
                                       CallScope::progress(progress));
  }
  auto out = to_array(d);
  scope.finish();
  return out;
}

}  // namespace

void bind_fit(py::module_& m) {
  m.def("per_example_gradients", &per_example_gradients, py::arg("model"), py::arg("x"),
        py::arg("first_index") = 0);
  m.def("class_distances", &class_distances, py::arg("projector"), py::arg("model"), py::arg("x"),
        py::arg("labels"), py::arg("batch_size"), py::arg("progress") = py::none());
  m.def("pairwise_distances", &pairwise_distances, py::arg("projector"), py::arg("model"),
        py::arg("a"), py::arg("b"), py::arg("batch_size"), py::arg("progress") = py::none());
  m.def("fit", &fit, py::arg("model"), py::arg("x"), py::arg("rank"), py::arg("estimator"),
        py::arg("reference_samples"), py::arg("fisher_floor"), py::arg("oversample"),
        py::arg("power_iters"), py::arg("tol"), py::arg("solver"), py::arg("method"),
        py::arg("memory_budget_mib"), py::arg("batch_size"), py::arg("data_source"),
        py::arg("progress") = py::none());
  m.def("transform", &transform, py::arg("projector"), py::arg("model"), py::arg("x"),
        py::arg("batch_size"), py::arg("progress") = py::none());
  m.def("fisher_stats", &fisher_stats, py::arg("model"), py::arg("x"), py::arg("estimator"),
        py::arg("reference_samples"), py::arg("fisher_floor"), py::arg("batch_size"),
        py::arg("progress") = py::none());
  m.def("set_distance", &set_distance, py::arg("projector"), py::arg("model"), py::arg("a"),
        py::arg("b"), py::arg("batch_size"));
}

}  // namespace nfk_python
