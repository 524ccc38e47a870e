// nfk._nfk: pybind11 bindings of the nfk library (SPEC §4 "python/: same library calls").
// Thin: each function converts arrays, calls the one library function the matching CLI
// subcommand calls (with the same defaults), and converts back. The sklearn-style front end
// (nfk.NFK) is plain Python in python/nfk/__init__.py.
//
// Arrays cross the boundary as NumPy arrays (copied), so the module needs LibTorch's C++ library
// only, never PyTorch's Python bindings; torch tensors are turned into arrays on the Python side.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "detail/strings.h"
#include "nfk/data.h"
#include "nfk/distance.h"
#include "nfk/embed.h"
#include "nfk/fisher.h"
#include "nfk/model.h"
#include "nfk/progress.h"

namespace py = pybind11;

namespace {

// --- arrays ------------------------------------------------------------------------------------

/// The tensor dtype of `a`'s elements. Only native byte order: the Python layer (nfk._as_array)
/// converts other arrays first, so a big-endian array here would be misread, not just slow.
torch::Dtype dtype_of(const py::array& a) {
  const py::dtype dt = a.dtype();
  const std::string name = py::str(dt.attr("str")).cast<std::string>();
  if (!dt.attr("isnative").cast<bool>()) {
    throw py::type_error("nfk: arrays must be in native byte order, got dtype " + name);
  }
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4) return torch::kFloat32;
  if (kind == 'f' && size == 8) return torch::kFloat64;
  if (kind == 'u' && size == 1) return torch::kUInt8;
  if (kind == 'i' && size == 8) return torch::kInt64;
  if (kind == 'i' && size == 4) return torch::kInt32;
  throw py::type_error("nfk: unsupported array dtype " + name +
                       " (float32, float64, uint8, int32 or int64)");
}

/// A C-order copy of `a` as a CPU tensor of the same dtype and shape.
torch::Tensor to_tensor(const py::array& a) {
  const torch::Dtype dtype = dtype_of(a);
  if (!(a.flags() & py::array::c_style)) throw py::type_error("nfk: arrays must be C-contiguous");
  std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
  return torch::from_blob(const_cast<void*>(a.data()), shape, dtype).clone();
}

/// Inputs [N, ...] from an array exactly as `nfk` reads an .npy file (load_dataset): uint8 images
/// scaled to [0, 1] float32, other integers to float32, NaN/Inf rejected.
torch::Tensor to_inputs(const py::array& a, const std::string& what) {
  torch::Tensor x = to_tensor(a);
  return nfk::dataset_from_array(x, what).inputs;
}

py::array to_array(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  py::dtype dt;
  switch (c.scalar_type()) {
    case torch::kFloat32:
      dt = py::dtype::of<float>();
      break;
    case torch::kFloat64:
      dt = py::dtype::of<double>();
      break;
    case torch::kUInt8:
      dt = py::dtype::of<uint8_t>();
      break;
    case torch::kInt64:
      dt = py::dtype::of<int64_t>();
      break;
    default:
      TORCH_CHECK(false, "nfk: cannot return a tensor of dtype ", c.scalar_type());
  }
  py::array out(dt, std::vector<py::ssize_t>(c.sizes().begin(), c.sizes().end()));
  std::memcpy(out.mutable_data(), c.data_ptr(), c.nbytes());
  return out;
}

// --- errors ------------------------------------------------------------------------------------

/// The one line `nfk` prints for an error (cli/main.cpp).
std::string error_line(const std::exception& e) {
  const std::string line = nfk::detail::summary_line(nfk::detail::error_text(e));
  return line.rfind("nfk", 0) == 0 ? line : "nfk: " + line;
}

bool names_missing_file(const std::string& line) {
  return line.find(": no such file") != std::string::npos ||
         line.find("No such file or directory") != std::string::npos;
}

// --- one binding call: warnings and Ctrl-C ----------------------------------------------------

/// Collects the LibTorch warnings (TORCH_WARN, TorchScript's warnings.warn) raised during one
/// binding call, each distinct message once. They arrive with the GIL released, so they are only
/// stored here; CallScope re-emits them through Python's `warnings` module.
class WarningCollector : public c10::WarningHandler {
 public:
  void process(const c10::SourceLocation& /*location*/, const std::string& msg,
               const bool /*verbatim*/) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (std::find(messages_.begin(), messages_.end(), msg) == messages_.end()) {
      messages_.push_back(msg);
    }
  }

  std::vector<std::string> take() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::move(messages_);
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> messages_;
};

/// The `stacklevel` of warnings.warn that points at the first caller outside the nfk package
/// (the user's line), however deep in the package the binding was called from.
int caller_stacklevel() {
  int level = 1;
  PyFrameObject* top = PyEval_GetFrame();  // borrowed; null when called from C
  if (top == nullptr) return level;
  py::object frame = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(top));
  while (!frame.is_none()) {
    const py::object module = frame.attr("f_globals").attr("get")("__name__", "");
    const std::string name = py::str(module);
    if (name != "nfk" && name.rfind("nfk.", 0) != 0) break;
    frame = frame.attr("f_back");
    ++level;
  }
  return level;
}

/// Emits `messages` as UserWarning from the caller's line; false (a Python error set) when a
/// warning filter turned one into an exception.
bool emit_warnings(const std::vector<std::string>& messages) {
  if (messages.empty()) return true;
  const int level = caller_stacklevel();
  for (const auto& msg : messages) {
    if (PyErr_WarnEx(PyExc_UserWarning, msg.c_str(), level) != 0) return false;
  }
  return true;
}

/// The length of one binding call, from its first statement (GIL held) to its return: LibTorch
/// warnings go to a WarningCollector instead of glog on stderr, and come out as `warnings.warn`
/// (UserWarning) when the call ends; `progress()` lets Ctrl-C stop the library's long loops.
/// Example: `CallScope scope; ...; auto r = nfk::transform(..., scope.progress()); scope.finish();`
class CallScope {
 public:
  CallScope() : guard_(std::in_place, &collector_) {}
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  /// On an error the warnings still reach Python (they may explain it), but a warning filter
  /// that turns one into an exception cannot replace the error in flight.
  ~CallScope() {
    if (finished_) return;
    guard_.reset();
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);  // an error already set stays the one raised
    try {
      if (!emit_warnings(collector_.take())) PyErr_Clear();
    } catch (const std::exception&) {  // py::error_already_set from the frame walk
    }
    PyErr_Restore(type, value, traceback);
  }

  /// Restores the previous warning handler and emits the collected warnings (GIL held). Throws
  /// py::error_already_set when a filter (`warnings.simplefilter("error")`) makes one an error.
  void finish() {
    finished_ = true;
    guard_.reset();
    if (!emit_warnings(collector_.take())) throw py::error_already_set();
  }

  /// The progress callback for every long library call, called between batches with the GIL
  /// released: it takes the GIL and runs Python's signal handlers. A pending Ctrl-C raises
  /// KeyboardInterrupt, thrown as py::error_already_set through the library (which only holds
  /// RAII state) back to the binding, where pybind11 restores it.
  static nfk::ProgressFn progress() {
    return [](const std::string& /*stage*/, int64_t /*done*/, int64_t /*total*/) {
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    };
  }

 private:
  WarningCollector collector_;
  std::optional<c10::Warning::WarningHandlerGuard> guard_;  // declared after the collector
  bool finished_ = false;
};

// --- library calls -----------------------------------------------------------------------------
// Each one: a CallScope first (warnings, Ctrl-C), arrays converted with the GIL held, the library
// call with the GIL released, results converted, scope.finish().

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

nfk::FisherOptions fisher_options(const std::string& estimator, int64_t reference_samples,
                                  double fisher_floor) {
  nfk::FisherOptions o;
  o.estimator = nfk::parse_estimator(estimator);
  o.reference_samples = reference_samples;
  o.floor = fisher_floor;
  return o;
}

/// The call's batch size and the model's seed, progress through CallScope.
nfk::RunOptions run_options(const nfk::ScoreModel& model, int64_t batch_size) {
  return {batch_size, model.options().seed, nullptr, CallScope::progress()};
}

/// nfk fit: the projector and the training embedding Φ diag(σ) [N, k].
py::tuple fit(nfk::ScoreModel& model, const py::array& x, int64_t rank,
              const std::string& estimator, int64_t reference_samples, double fisher_floor,
              int64_t oversample, int64_t power_iters, const std::string& method,
              int64_t memory_budget_mib, int64_t batch_size, const std::string& data_source) {
  CallScope scope;
  const torch::Tensor inputs = to_inputs(x, data_source.empty() ? "inputs" : data_source);
  TORCH_CHECK(memory_budget_mib >= 0 && memory_budget_mib <= (INT64_MAX >> 20),
              "nfk: memory_budget_mib must be in [0, ", INT64_MAX >> 20, "], got ",
              memory_budget_mib);
  nfk::FitOptions o;
  o.method = nfk::parse_fit_method(method);
  o.svd = {rank, oversample, power_iters};
  o.fisher = fisher_options(estimator, reference_samples, fisher_floor);
  o.memory_budget = memory_budget_mib << 20;
  o.run = run_options(model, batch_size);
  auto proj = std::make_shared<nfk::Projector>();
  torch::Tensor embedding;
  {
    py::gil_scoped_release release;
    auto result = nfk::fit(model, inputs, o, data_source);
    *proj = std::move(result.projector);
    embedding = result.train_embedding;
    nfk::record_model_files(*proj);
  }
  auto out = py::make_tuple(proj, to_array(embedding));
  scope.finish();
  return out;
}

py::array transform(const nfk::Projector& proj, nfk::ScoreModel& model, const py::array& x,
                    int64_t batch_size) {
  CallScope scope;
  const torch::Tensor inputs = to_inputs(x, "inputs");
  torch::Tensor e;
  {
    py::gil_scoped_release release;
    e = nfk::transform(proj, model, inputs, run_options(model, batch_size));
  }
  auto out = to_array(e);
  scope.finish();
  return out;
}

py::dict fisher_stats(nfk::ScoreModel& model, const py::array& x, const std::string& estimator,
                      int64_t reference_samples, double fisher_floor, int64_t batch_size) {
  CallScope scope;
  const torch::Tensor inputs = to_inputs(x, "inputs");
  const auto o = fisher_options(estimator, reference_samples, fisher_floor);
  nfk::FisherStats s;
  {
    py::gil_scoped_release release;
    s = nfk::compute_fisher_stats(model, inputs, o, run_options(model, batch_size));
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

PYBIND11_MODULE(_nfk, m) {
  m.doc() = "nfk's C++ library (internal; use the `nfk` package)";
  m.attr("__version__") = NFK_VERSION;

  // nfk's errors → Python, with the one line the CLI prints: a missing file is a
  // FileNotFoundError, a failed allocation a MemoryError, a rejected input or option
  // (TORCH_CHECK) a ValueError, the rest a RuntimeError. Module-local: it sees only exceptions from
  // this module's functions, so PyTorch's own pybind11 functions keep their translations (and their
  // messages) after `import nfk`.
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const py::error_already_set&) {
      throw;
    } catch (const py::builtin_exception&) {
      throw;
    } catch (const c10::OutOfMemoryError& e) {
      PyErr_SetString(PyExc_MemoryError, error_line(e).c_str());
    } catch (const c10::Error& e) {
      const std::string line = error_line(e);
      PyObject* type = names_missing_file(line) ? PyExc_FileNotFoundError : PyExc_ValueError;
      // LibTorch's CPU allocator reports a failed allocation as a plain c10::Error.
      if (line.find("can't allocate memory") != std::string::npos) type = PyExc_MemoryError;
      PyErr_SetString(type, line.c_str());
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      const std::string line = error_line(e);
      PyErr_SetString(names_missing_file(line) ? PyExc_FileNotFoundError : PyExc_RuntimeError,
                      line.c_str());
    }
  });

  py::class_<nfk::ScoreModel, std::shared_ptr<nfk::ScoreModel>>(m, "ScoreModel")
      .def_property_readonly("kind", [](nfk::ScoreModel& s) { return nfk::to_string(s.kind()); })
      .def_property_readonly("n_params", &nfk::ScoreModel::num_parameters)
      .def_property_readonly("model_path",
                             [](nfk::ScoreModel& s) { return s.options().model_path; })
      .def_property_readonly("describe", [](nfk::ScoreModel& s) { return s.network().describe(); })
      .def_property_readonly("can_sample", &nfk::ScoreModel::can_sample);

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
      .def_property_readonly("model_path",
                             [](const nfk::Projector& p) { return p.model.model_path; })
      .def_property_readonly("generator_path",
                             [](const nfk::Projector& p) { return p.model.generator_path; })
      .def_property_readonly("seed", [](const nfk::Projector& p) { return p.model.seed; })
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
  m.def("load_score_model", &load_model, py::arg("kind"), py::arg("model"),
        py::arg("generator") = "", py::arg("latent_dim") = 0, py::arg("output") = -1,
        py::arg("seed") = 0, py::arg("dtype") = "float32", py::arg("device") = "cpu",
        py::arg("probe") = py::none());
  m.def("fit", &fit, py::arg("model"), py::arg("x"), py::arg("rank"), py::arg("estimator"),
        py::arg("reference_samples"), py::arg("fisher_floor"), py::arg("oversample"),
        py::arg("power_iters"), py::arg("method"), py::arg("memory_budget_mib"),
        py::arg("batch_size"), py::arg("data_source"));
  m.def("transform", &transform, py::arg("projector"), py::arg("model"), py::arg("x"),
        py::arg("batch_size"));
  m.def("fisher_stats", &fisher_stats, py::arg("model"), py::arg("x"), py::arg("estimator"),
        py::arg("reference_samples"), py::arg("fisher_floor"), py::arg("batch_size"));
  m.def("set_distance", &set_distance, py::arg("projector"), py::arg("model"), py::arg("a"),
        py::arg("b"), py::arg("batch_size"));
  m.def("get_num_threads", [] { return at::get_num_threads(); });
  m.def("set_tf32", &nfk::set_tf32, py::arg("allowed"));
  m.def("tf32_allowed", &nfk::tf32_allowed);
  m.def(
      "set_num_threads", [](int n) { at::set_num_threads(n); }, py::arg("n"));
  m.def("load_dataset", &load_dataset, py::arg("source"));
}
