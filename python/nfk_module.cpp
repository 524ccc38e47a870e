// nfk._nfk: pybind11 bindings of the nfk library (SPEC §4 "python/: same
// library calls"). Thin: each function converts arrays, calls the one library
// function the matching CLI subcommand calls (with the same defaults), and
// converts back. The sklearn-style front end (nfk.NFK) is plain Python in
// python/nfk/. The bindings live in bind_*.cpp, their shared helpers (arrays,
// CallScope, errors) in bindings.h.
#include "bindings.h"

PYBIND11_MODULE(_nfk, m) {
  namespace py = pybind11;
  m.doc() = "nfk's C++ library (internal; use the `nfk` package)";
  m.attr("__version__") = NFK_VERSION;
  m.attr("libtorch_version") = NFK_LIBTORCH_VERSION;  // the LibTorch linked (CMake)

  nfk_python::register_error_translator();
  nfk_python::bind_models(m);
  nfk_python::bind_projector(m);
  nfk_python::bind_fit(m);
  nfk_python::bind_classifier_fisher(m);

  m.def("get_num_threads", [] { return at::get_num_threads(); });
  m.def("set_tf32", &nfk::set_tf32, py::arg("allowed"));
  m.def("tf32_allowed", &nfk::tf32_allowed);
  m.def(
      "set_num_threads", [](int n) { at::set_num_threads(n); }, py::arg("n"));
}
