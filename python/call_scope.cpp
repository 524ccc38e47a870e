// CallScope: LibTorch warnings → `warnings.warn` at the user's line, Ctrl-C between batches.
#include <algorithm>
#include <exception>

#include "bindings.h"

namespace nfk_python {
namespace {

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

}  // namespace

void WarningCollector::process(const c10::SourceLocation& /*location*/, const std::string& msg,
                               const bool /*verbatim*/) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (std::find(messages_.begin(), messages_.end(), msg) == messages_.end()) {
    messages_.push_back(msg);
  }
}

std::vector<std::string> WarningCollector::take() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::move(messages_);
}

CallScope::~CallScope() {
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

void CallScope::finish() {
  finished_ = true;
  guard_.reset();
  if (!emit_warnings(collector_.take())) throw py::error_already_set();
}

nfk::ProgressFn CallScope::progress(const py::object& callback) {
  // A raw pointer: the library copies the function with the GIL released, where a py::object's
  // reference count must not change.
  PyObject* cb = callback.is_none() ? nullptr : callback.ptr();
  return [cb](const std::string& stage, int64_t done, int64_t total) {
    py::gil_scoped_acquire gil;
    if (cb != nullptr) {
      PyObject* r = PyObject_CallFunction(cb, "sLL", stage.c_str(), static_cast<long long>(done),
                                          static_cast<long long>(total));
      if (r == nullptr) throw py::error_already_set();
      Py_DECREF(r);
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  };
}

}  // namespace nfk_python
