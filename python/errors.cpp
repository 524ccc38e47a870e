// nfk's errors → Python exceptions, with the one line the CLI prints.
#include <exception>
#include <new>
#include <string>

#include "bindings.h"
#include "nfk/messages.h"

namespace nfk_python {
namespace {

bool names_missing_file(const std::string& line) {
  return line.find(": no such file") != std::string::npos ||
         line.find("No such file or directory") != std::string::npos;
}

}  // namespace

void register_error_translator() {
  // A missing file is a FileNotFoundError, a failed allocation a MemoryError, a rejected input or
  // option (TORCH_CHECK) a ValueError, the rest a RuntimeError. Module-local: it sees only
  // exceptions from this module's functions, so PyTorch's own pybind11 functions keep their
  // translations (and their messages) after `import nfk`.
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const py::error_already_set&) {
      throw;
    } catch (const py::builtin_exception&) {
      throw;
    } catch (const c10::OutOfMemoryError& e) {
      PyErr_SetString(PyExc_MemoryError, nfk::error_line(e).c_str());
    } catch (const c10::Error& e) {
      const std::string line = nfk::error_line(e);
      PyObject* type = names_missing_file(line) ? PyExc_FileNotFoundError : PyExc_ValueError;
      // LibTorch's CPU allocator reports a failed allocation as a plain c10::Error.
      if (line.find("can't allocate memory") != std::string::npos) type = PyExc_MemoryError;
      PyErr_SetString(type, line.c_str());
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      const std::string line = nfk::error_line(e);
      PyErr_SetString(names_missing_file(line) ? PyExc_FileNotFoundError : PyExc_RuntimeError,
                      line.c_str());
    }
  });
}

}  // namespace nfk_python
