// NumPy arrays ↔ CPU tensors for nfk._nfk: copies both ways, except for inputs in a private
// (copy-on-write) file mapping, which are read in place.
#include <cstring>
#include <string>
#include <vector>

#include "bindings.h"
#include "nfk/data.h"

namespace nfk_python {
namespace {

/// The tensor dtype of `a`'s elements. Only native byte order: the Python layer
/// (nfk.data._as_array) converts other arrays first, so a big-endian array here would be misread,
/// not just slow.
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

}  // namespace

/// A C-order copy of `a` as a CPU tensor of the same dtype and shape.
torch::Tensor to_tensor(const py::array& a) {
  const torch::Dtype dtype = dtype_of(a);
  if (!(a.flags() & py::array::c_style)) throw py::type_error("nfk: arrays must be C-contiguous");
  std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
  return torch::from_blob(const_cast<void*>(a.data()), shape, dtype).clone();
}

namespace {

/// True for a C-contiguous floating-point np.memmap opened copy-on-write (mode "c"): nfk's
/// spooled batches (nfk._io._spool) or a user's np.load(..., mmap_mode="c"). Writes to such an
/// array (by a model that modifies its input in place) stay private, so it can be read in place.
/// (pybind11 hands a function a base-class ndarray view of a memmap argument: the memmap is
/// found along the views' `base` chain.)
bool is_private_float_mapping(const py::array& a) {
  if (!(a.flags() & py::array::c_style)) return false;
  if (a.dtype().kind() != 'f' || !a.dtype().attr("isnative").cast<bool>()) return false;
  const py::module_ numpy = py::module_::import("numpy");
  const py::object memmap = numpy.attr("memmap"), ndarray = numpy.attr("ndarray");
  for (py::object o = a; py::isinstance(o, ndarray); o = o.attr("base")) {
    if (py::isinstance(o, memmap)) return py::str(o.attr("mode")).cast<std::string>() == "c";
  }
  return false;
}

/// A CPU tensor over `a`'s memory (float32 or float64), keeping `a` alive as long as the tensor.
torch::Tensor borrow(const py::array& a) {
  const torch::Dtype dtype = dtype_of(a);
  std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
  PyObject* owner = a.ptr();
  Py_INCREF(owner);
  return torch::from_blob(
      const_cast<void*>(a.data()), shape,
      [owner](void*) {
        py::gil_scoped_acquire gil;  // the tensor may die in a thread without the GIL
        Py_DECREF(owner);
      },
      torch::TensorOptions().dtype(dtype));
}

}  // namespace

torch::Tensor to_inputs(const py::array& a, const std::string& what) {
  torch::Tensor x = is_private_float_mapping(a) ? borrow(a) : to_tensor(a);
  return nfk::dataset_from_array(x, what).inputs;
}

torch::Tensor to_labels(const py::array& a) {
  TORCH_CHECK(a.ndim() == 1, "nfk: labels must be a 1-d array [N], got ", a.ndim(), " dimensions");
  const torch::Tensor t = to_tensor(a);
  TORCH_CHECK(t.scalar_type() == torch::kInt64, "nfk: labels must be int64, got ", t.scalar_type());
  return t;
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

}  // namespace nfk_python
