// nfk._nfk: the classifier's Fisher of p(y|x) — diagonal, capacity statistics, F v, and K-FAC /
// EK-FAC factors as an object with mv and inverse_mv (include/nfk/classifier_fisher.h, kfac.h).
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings.h"
#include "nfk/classifier_fisher.h"
#include "nfk/kfac.h"

namespace nfk_python {
namespace {

struct Call {
  nfk::ClassifierData data;
  nfk::ClassifierFisherOptions options;
  nfk::RunOptions run;
};

// Converts the arguments (GIL held): inputs, optional labels, options, run.
Call make_call(nfk::ScoreModel& model, const py::array& x, const py::object& labels,
               const std::string& estimator, int64_t mc_samples, int64_t batch_size,
               const py::object& progress) {
  Call c;
  c.data.inputs = to_inputs(x, "inputs");
  if (!labels.is_none()) c.data.labels = to_labels(labels.cast<py::array>());
  c.options.estimator = nfk::parse_fisher_estimator(estimator);
  c.options.mc_samples = mc_samples;
  c.run = {batch_size, model.options().seed, nullptr, CallScope::progress(progress)};
  return c;
}

py::dict classifier_fisher_diag(nfk::ScoreModel& model, const py::array& x,
                                const py::object& labels, const std::string& estimator,
                                int64_t mc_samples, int64_t batch_size,
                                const py::object& progress) {
  CallScope scope;
  auto c = make_call(model, x, labels, estimator, mc_samples, batch_size, progress);
  nfk::ClassifierFisherDiag f;
  {
    py::gil_scoped_release release;
    f = nfk::classifier_fisher_diag(model, c.data, c.options, c.run);
  }
  py::dict d;
  d["diag"] = to_array(f.diag);
  d["estimator"] = nfk::to_string(f.estimator);
  d["n_examples"] = f.n_examples;
  d["n_rows"] = f.n_rows;
  d["gradient_path"] = nfk::to_string(f.path.path);
  d["gradient_path_reason"] = f.path.reason;
  scope.finish();
  return d;
}

py::dict fisher_capacity(nfk::ScoreModel& model, const py::array& x, const py::object& labels,
                         const std::string& estimator, int64_t mc_samples, int64_t batch_size,
                         const py::array& diag, int64_t top_k, double sloppy_relative,
                         int64_t power_iters, double tol, const py::object& progress) {
  CallScope scope;
  auto c = make_call(model, x, labels, estimator, mc_samples, batch_size, progress);
  auto d_p = to_tensor(diag);
  nfk::CapacityOptions o;
  o.top_k = top_k;
  o.sloppy_relative = sloppy_relative;
  o.power_iters = power_iters;
  o.tol = tol;
  nfk::FisherCapacity cap;
  {
    py::gil_scoped_release release;
    cap = nfk::fisher_capacity(model, c.data, c.options, c.run, d_p, o);
  }
  py::dict d;
  d["trace"] = cap.trace;
  d["top_eigenvalues"] = to_array(cap.top_eigenvalues);
  d["effective_rank_entropy"] = cap.effective_rank_entropy;
  d["effective_rank_ratio"] = cap.effective_rank_ratio;
  d["top_k_share"] = cap.top_k_share;
  d["sloppy_threshold"] = cap.sloppy_threshold;
  d["sloppy_fraction"] = cap.sloppy_fraction;
  d["iterations"] = cap.iterations;
  d["estimated_error"] = cap.estimated_error >= 0 ? py::object(py::float_(cap.estimated_error))
                                                  : py::object(py::none());
  scope.finish();
  return d;
}

py::array fisher_vector_product(nfk::ScoreModel& model, const py::array& x,
                                const py::object& labels, const std::string& estimator,
                                int64_t mc_samples, int64_t batch_size, const py::array& v,
                                const py::object& progress) {
  CallScope scope;
  auto c = make_call(model, x, labels, estimator, mc_samples, batch_size, progress);
  auto v_t = to_tensor(v);
  torch::Tensor out;
  {
    py::gil_scoped_release release;
    nfk::FisherVectorProduct fvp(model, c.data, c.options, c.run);
    const bool vector = v_t.dim() == 1;
    TORCH_CHECK(v_t.dim() == 1 || v_t.dim() == 2, "nfk: v must be [P] or [P, u], got ",
                v_t.sizes());
    out = fvp.apply(vector ? v_t.unsqueeze(1) : v_t);
    if (vector) out = out.squeeze(1);
  }
  auto result = to_array(out);
  scope.finish();
  return result;
}

std::shared_ptr<nfk::KfacFactors> kfac_factors(nfk::ScoreModel& model, const py::array& x,
                                               const py::object& labels,
                                               const std::string& estimator, int64_t mc_samples,
                                               const std::string& form, int64_t batch_size,
                                               const py::object& progress) {
  CallScope scope;
  auto c = make_call(model, x, labels, estimator, mc_samples, batch_size, progress);
  const auto f = nfk::parse_fisher_form(form);
  TORCH_CHECK(f != nfk::FisherForm::kDiag, "nfk: kfac_factors takes form kfac or ekfac");
  auto out = std::make_shared<nfk::KfacFactors>();
  {
    py::gil_scoped_release release;
    *out = f == nfk::FisherForm::kKfac ? nfk::kfac_factors(model, c.data, c.options, c.run)
                                       : nfk::ekfac_factors(model, c.data, c.options, c.run);
  }
  scope.finish();
  return out;
}

py::array apply(const nfk::KfacFactors& k, const py::array& v, bool inverse, double damping,
                bool tikhonov) {
  CallScope scope;
  auto v_t = to_tensor(v);
  torch::Tensor out;
  {
    py::gil_scoped_release release;
    out = inverse ? k.inverse_mv(
                        v_t, damping,
                        tikhonov ? nfk::KfacDamping::kFactoredTikhonov : nfk::KfacDamping::kExact)
                  : k.mv(v_t);
  }
  auto result = to_array(out);
  scope.finish();
  return result;
}

py::list layers(const nfk::KfacFactors& k) {
  py::list out;
  for (const auto& layer : k.layers) {
    py::dict d;
    d["name"] = layer.name;
    d["A"] = to_array(layer.a);
    d["G"] = to_array(layer.g);
    if (layer.scalings.defined()) d["scalings"] = to_array(layer.scalings);
    d["weight_index"] = layer.weight_index;
    d["bias_index"] = layer.bias_index;
    out.append(d);
  }
  return out;
}

}  // namespace

void bind_classifier_fisher(py::module_& m) {
  m.def("classifier_fisher_diag", &classifier_fisher_diag, py::arg("model"), py::arg("x"),
        py::arg("labels"), py::arg("estimator"), py::arg("mc_samples"), py::arg("batch_size"),
        py::arg("progress") = py::none());
  m.def("fisher_capacity", &fisher_capacity, py::arg("model"), py::arg("x"), py::arg("labels"),
        py::arg("estimator"), py::arg("mc_samples"), py::arg("batch_size"), py::arg("diag"),
        py::arg("top_k"), py::arg("sloppy_relative"), py::arg("power_iters"), py::arg("tol"),
        py::arg("progress") = py::none());
  m.def("fisher_vector_product", &fisher_vector_product, py::arg("model"), py::arg("x"),
        py::arg("labels"), py::arg("estimator"), py::arg("mc_samples"), py::arg("batch_size"),
        py::arg("v"), py::arg("progress") = py::none());
  m.def("kfac_factors", &kfac_factors, py::arg("model"), py::arg("x"), py::arg("labels"),
        py::arg("estimator"), py::arg("mc_samples"), py::arg("form"), py::arg("batch_size"),
        py::arg("progress") = py::none());
  py::class_<nfk::KfacFactors, std::shared_ptr<nfk::KfacFactors>>(m, "KfacFactors")
      .def_property_readonly("form",
                             [](const nfk::KfacFactors& k) { return nfk::to_string(k.form); })
      .def_property_readonly("num_params", [](const nfk::KfacFactors& k) { return k.num_params; })
      .def_property_readonly("n_examples", [](const nfk::KfacFactors& k) { return k.n_examples; })
      .def("layers", &layers)
      .def("mv", [](const nfk::KfacFactors& k,
                    const py::array& v) { return apply(k, v, false, 0, false); })
      .def(
          "inverse_mv",
          [](const nfk::KfacFactors& k, const py::array& v, double damping, bool tikhonov) {
            return apply(k, v, true, damping, tikhonov);
          },
          py::arg("v"), py::arg("damping"), py::arg("tikhonov") = false);
}

}  // namespace nfk_python
