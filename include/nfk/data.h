#pragma once
/// nfk data layer: .npy and IDX files, the named sets (mnist / fashion-mnist), batching.
/// Every reader validates what it reads and throws c10::Error (TORCH_CHECK) with a one-line
/// message naming the file and what is wrong; nothing here prints or exits.

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace nfk {

/// Reads a NumPy .npy file (format 1.0/2.0/3.0, C order, little endian) of dtype
/// float32 (<f4), float64 (<f8), uint8 (|u1), int64 (<i8) or int32 (<i4, widened to int64).
/// Returns a CPU tensor of the stored shape and dtype.
/// Example: `auto x = nfk::read_npy("x.npy");  // [N, 1, 28, 28] float32`
torch::Tensor read_npy(const std::string& path);

/// Writes `t` (any device; float32/float64/uint8/int64) as a C-order .npy file, atomically
/// (temp file in the same folder + rename): a failure never leaves a partial file. Refuses
/// floating-point data holding NaN or Inf (naming the first such row): nfk never writes such a
/// result. `allow_non_finite` is for test fixtures and data preparation only.
void write_npy(const std::string& path, const torch::Tensor& t, bool allow_non_finite = false);

/// Reads an IDX file (LeCun's MNIST format), gzip'd or not (detected by magic bytes).
/// Returns uint8 [N, rows, cols] for images (idx3), uint8 [N] for labels (idx1), etc.
torch::Tensor read_idx(const std::string& path);

/// Folder of the named data sets: $NFK_DATA_DIR if set, else the folder fixed at configure time:
/// CMake's NFK_DATA_DIR for the build tree (default <repo>/data, where scripts/setup puts
/// mnist/ and fashion-mnist/), NFK_INSTALL_DATA_DIR for an installation (default
/// <prefix>/share/nfk/data). Throws, naming NFK_DATA_DIR, if it was configured without one.
std::string data_dir();

/// A data set in memory: inputs float [N, ...] and optional labels int64 [N].
struct Dataset {
  torch::Tensor inputs;  // [N, ...] float32 (images scaled to [0, 1], shape [N, 1, 28, 28])
  torch::Tensor labels;  // [N] int64, undefined if none
};

/// Loads a named set: "mnist:train", "mnist:test", "fashion-mnist:train", "fashion-mnist:test".
/// Images come as float32 [N, 1, 28, 28] in [0, 1]; labels int64 [N].
Dataset load_named_set(const std::string& name);

/// Loads inputs from any source the CLI accepts: a named set ("mnist:test"), an .npy file, or
/// an IDX file (optionally .gz). Integer image data (uint8) is scaled to [0, 1] float32;
/// IDX images get a channel axis ([N, 1, H, W]). A source may end in "[:n]" to keep the first
/// n examples, e.g. "mnist:test[:1000]". Throws if any value is NaN or Inf.
/// Example: `auto ds = nfk::load_dataset("mnist:test[:512]");`
Dataset load_dataset(const std::string& source);

/// Loads class labels int64 [N] from a 1-d integer .npy or IDX file, or the labels of a named
/// set ("mnist:test[:1000]"). Throws on floating or negative labels.
torch::Tensor load_labels(const std::string& source);

/// Inputs from an in-memory array exactly as `load_dataset` reads an .npy file (used by the
/// Python bindings): uint8 scaled to [0, 1] float32, other integers to float32, floats kept.
/// Throws if `x` is a scalar or holds NaN or Inf; `what` names it in the message.
/// Example: `auto ds = nfk::dataset_from_array(x_u8, "inputs");  // float32 in [0, 1]`
Dataset dataset_from_array(const torch::Tensor& x, const std::string& what);

/// Throws if `t` (floating) holds NaN or Inf; `what` names the source in the message.
void check_finite(const torch::Tensor& t, const std::string& what);

}  // namespace nfk
