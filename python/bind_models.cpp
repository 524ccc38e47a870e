// nfk._nfk: ScoreModel, load_score_model and load_dataset.
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings.h"
#include "nfk/data.h"

namespace nfk_python {
namespace {

nfk::ModelOptions model_options(const std::string& model, const std::string& generator,
                                int64_t latent_dim, int64_t output, uint64_t seed,
                                const std::string& dtype, const std::string& device) {
  TORCH_CHECK(device == "cpu" || device == "cuda", "nfk: unknown device `", device,
              "` (cpu or cuda)");
  TORCH_CHECK(device == "cpu" || torch::cuda::is_available(),
              "nfk: --device cuda asked for, but no CUDA device is available");
  nfk::ModelOptions o;
  o.model_path = model;
  o.generator_path = generator;
  o.latent_dim = latent_dim;
  o.output = output;
  o.seed = seed;
  o.dtype = nfk::parse_dtype(dtype);
  o.device = device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  return o;
}

std::shared_ptr<nfk::ScoreModel> load_model(const std::string& kind, const std::string& model,
                                            const std::string& generator, int64_t latent_dim,
                                            int64_t output, uint64_t seed, const std::string& dtype,
                                            const std::string& device, const py::object& probe) {
  CallScope scope;
  const auto options = model_options(model, generator, latent_dim, output, seed, dtype, device);
  const torch::Tensor probe_x =
      probe.is_none() ? torch::Tensor() : to_inputs(probe.cast<py::array>(), "inputs");
  std::shared_ptr<nfk::ScoreModel> out;
  {
    py::gil_scoped_release release;
    out = std::make_shared<nfk::ScoreModel>(
        nfk::load_score_model(nfk::parse_model_kind(kind), options, probe_x));
  }
  scope.finish();
  return out;
}

py::tuple load_dataset(const std::string& source) {
  CallScope scope;
  nfk::Dataset ds;
  {
    py::gil_scoped_release release;
    ds = nfk::load_dataset(source);
  }
  auto out = py::make_tuple(to_array(ds.inputs),
                            ds.labels.defined() ? py::object(to_array(ds.labels)) : py::none());
  scope.finish();
  return out;
}

}  // namespace

void bind_models(py::module_& m) {
  py::class_<nfk::ScoreModel, std::shared_ptr<nfk::ScoreModel>>(m, "ScoreModel")
      .def_property_readonly("kind", [](nfk::ScoreModel& s) { return nfk::to_string(s.kind()); })
      .def_property_readonly("n_params", &nfk::ScoreModel::num_parameters)
      .def_property_readonly("model_path",
                             [](nfk::ScoreModel& s) { return s.options().model_path; })
      .def_property_readonly("describe", [](nfk::ScoreModel& s) { return s.network().describe(); })
      .def_property_readonly("can_sample", &nfk::ScoreModel::can_sample);

  m.def("load_score_model", &load_model, py::arg("kind"), py::arg("model"),
        py::arg("generator") = "", py::arg("latent_dim") = 0, py::arg("output") = -1,
        py::arg("seed") = 0, py::arg("dtype") = "float32", py::arg("device") = "cpu",
        py::arg("probe") = py::none());
  m.def("load_dataset", &load_dataset, py::arg("source"));
}

}  // namespace nfk_python
