// nfk._nfk: Projector (the fitted NFK), load_projector and load_projector_model.
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings.h"
#include "nfk/embed.h"

namespace nfk_python {
namespace {

std::shared_ptr<nfk::Projector> load_projector(const std::string& path) {
  CallScope scope;
  std::shared_ptr<nfk::Projector> out;
  {
    py::gil_scoped_release release;
    out = std::make_shared<nfk::Projector>(nfk::load_projector(path));
  }
  scope.finish();
  return out;
}

std::shared_ptr<nfk::ScoreModel> load_projector_model(const nfk::Projector& p,
                                                      const std::string& model_path) {
  CallScope scope;
  std::shared_ptr<nfk::ScoreModel> out;
  {
    py::gil_scoped_release release;
    out = std::make_shared<nfk::ScoreModel>(nfk::load_projector_model(p, model_path));
  }
  scope.finish();
  return out;
}

void save_projector(const nfk::Projector& p, const std::string& path) {
  CallScope scope;
  {
    py::gil_scoped_release release;
    nfk::save_projector(path, p);
  }
  scope.finish();
}

}  // namespace

void bind_projector(py::module_& m) {
  py::class_<nfk::Projector, std::shared_ptr<nfk::Projector>>(m, "Projector")
      .def_property_readonly("kind", [](const nfk::Projector& p) { return nfk::to_string(p.kind); })
      .def_property_readonly("method",
                             [](const nfk::Projector& p) { return nfk::to_string(p.method); })
      .def_property_readonly("dtype",
                             [](const nfk::Projector& p) { return nfk::dtype_name(p.model.dtype); })
      .def_property_readonly("rank", &nfk::Projector::rank)
      .def_property_readonly("n_params", &nfk::Projector::n_params)
      .def_readonly("n_examples", &nfk::Projector::n_examples)
      .def_readonly("data_source", &nfk::Projector::data_source)
      .def_readonly("batch_size", &nfk::Projector::batch_size)
      .def_readonly("input_shape", &nfk::Projector::input_shape)
      .def_property_readonly("model_path",
                             [](const nfk::Projector& p) { return p.model.model_path; })
      .def_property_readonly("generator_path",
                             [](const nfk::Projector& p) { return p.model.generator_path; })
      .def_property_readonly("seed", [](const nfk::Projector& p) { return p.model.seed; })
      .def_property_readonly("latent_dim",
                             [](const nfk::Projector& p) { return p.model.latent_dim; })
      .def_property_readonly("output", [](const nfk::Projector& p) { return p.model.output; })
      .def_property_readonly("device", [](const nfk::Projector& p) { return p.model.device.str(); })
      .def_property_readonly(
          "estimator", [](const nfk::Projector& p) { return nfk::to_string(p.fisher.estimator); })
      .def_property_readonly("fisher_reference",
                             [](const nfk::Projector& p) { return p.fisher.reference; })
      .def_property_readonly("n_reference",
                             [](const nfk::Projector& p) { return p.fisher.n_reference; })
      .def_property_readonly("floor_value",
                             [](const nfk::Projector& p) { return p.fisher.floor_value; })
      .def_property_readonly("n_floored",
                             [](const nfk::Projector& p) { return p.fisher.n_floored; })
      .def_property_readonly("svd_oversample",
                             [](const nfk::Projector& p) { return p.svd.oversample; })
      .def_property_readonly("svd_power_iters",
                             [](const nfk::Projector& p) { return p.svd.power_iters; })
      .def_property_readonly("singular_values",
                             [](const nfk::Projector& p) { return to_array(p.singular_values); })
      .def_property_readonly("basis", [](const nfk::Projector& p) { return to_array(p.basis); })
      .def_property_readonly("mean_score",
                             [](const nfk::Projector& p) { return to_array(p.fisher.mean_score); })
      .def_property_readonly("fisher_diag",
                             [](const nfk::Projector& p) { return to_array(p.fisher.fisher_diag); })
      .def_property_readonly(
          "explained_variance_ratio",
          [](const nfk::Projector& p) { return to_array(p.explained_variance_ratio()); })
      .def("components_for", &nfk::Projector::components_for, py::arg("fraction"))
      .def("spectrum_json", [](const nfk::Projector& p) { return p.spectrum_json().dump(); })
      .def("profile_json", [](const nfk::Projector& p) { return p.profile.to_json().dump(); })
      .def_property_readonly("method_note", [](const nfk::Projector& p) { return p.method_note; })
      .def("save", &save_projector, py::arg("path"));

  m.def("load_projector", &load_projector, py::arg("path"));
  m.def("load_projector_model", &load_projector_model, py::arg("projector"),
        py::arg("model_path") = "");
}

}  // namespace nfk_python
