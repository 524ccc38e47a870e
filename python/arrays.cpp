// NumPy arrays ↔ CPU tensors for nfk._nfk (copies both ways).
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

torch::Tensor to_inputs(const py::array& a, const std::string& what) {
  torch::Tensor x = to_tensor(a);
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
