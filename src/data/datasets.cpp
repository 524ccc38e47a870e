#include <c10/util/Exception.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "data/data_source.h"
#include "detail/input_file.h"
#include "nfk/data.h"

namespace nfk {
namespace {

constexpr const char* kNamedSets[] = {"mnist:train", "mnist:test", "fashion-mnist:train",
                                      "fashion-mnist:test"};

std::string valid_names() {
  std::string out;
  for (const char* n : kNamedSets) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

bool is_named_set(const std::string& s) {
  for (const char* n : kNamedSets) {
    if (s == n) return true;
  }
  return false;
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Returns `base` or `base.gz`, whichever exists (plain first), or "" if neither does.
std::string find_idx_file(const std::string& base) {
  if (is_regular_file(base)) return base;
  if (is_regular_file(base + ".gz")) return base + ".gz";
  return "";
}

torch::Tensor images_to_float(const torch::Tensor& x) {
  return x.to(torch::kFloat32).div_(255.0f);
}

/// An array as data inputs: uint8 images scaled to [0, 1] float32, other integers to float32.
torch::Tensor array_to_inputs(torch::Tensor x, const std::string& what) {
  TORCH_CHECK(x.dim() >= 1, "nfk: ", what, ": expected an array [N, ...], got a scalar");
  // An empty array is no data; with N > 0 empty examples, e.g. shape (10**12, 0), every command
  // would walk through N batches of nothing.
  TORCH_CHECK(x.numel() > 0, "nfk: ", what, ": the array holds no values (shape ", x.sizes(),
              "); expected [N, ...] with N > 0 examples of at least one value");
  if (x.scalar_type() == torch::kUInt8) return images_to_float(x);
  if (!x.is_floating_point()) return x.to(torch::kFloat32);
  return x;
}

enum class Format { kNpy, kIdx };

Format sniff_format(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.is_open(), "nfk: cannot read ", path, ": ", std::strerror(errno));
  unsigned char b[6] = {0, 0, 0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(b), 6);
  const auto n = in.gcount();
  if (n >= 6 && std::memcmp(b, "\x93NUMPY", 6) == 0) return Format::kNpy;
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return Format::kIdx;  // gzip: IDX inside
  if (n >= 4 && b[0] == 0 && b[1] == 0) return Format::kIdx;
  TORCH_CHECK(false, "nfk: ", path,
              ": unrecognized data file (expected .npy, IDX, or gzip'd IDX by its magic bytes)");
  __builtin_unreachable();
}

}  // namespace

Dataset load_named_set(const std::string& name) {
  TORCH_CHECK(is_named_set(name), "nfk: unknown data set '", name,
              "' (valid names: ", valid_names(), ")");
  const size_t colon = name.find(':');
  const std::string family = name.substr(0, colon);
  const std::string split = name.substr(colon + 1);
  const std::string dir = data_dir() + "/" + family;
  const std::string prefix = dir + "/" + (split == "train" ? "train" : "t10k");

  const std::string base_images = prefix + "-images-idx3-ubyte";
  const std::string base_labels = prefix + "-labels-idx1-ubyte";
  const std::string images_path = find_idx_file(base_images);
  const std::string labels_path = find_idx_file(base_labels);
  TORCH_CHECK(!images_path.empty() && !labels_path.empty(), "nfk: ", name, ": missing data file ",
              images_path.empty() ? base_images : base_labels,
              "[.gz]; run scripts/setup to install it, or point the environment variable "
              "NFK_DATA_DIR at a folder holding ",
              family, "/");

  const torch::Tensor images = read_idx(images_path);
  const torch::Tensor labels = read_idx(labels_path);
  TORCH_CHECK(images.dim() == 3 && images.size(1) == 28 && images.size(2) == 28,
              "nfk: ", images_path, ": expected images of shape [N, 28, 28], got ", images.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0), "nfk: ", labels_path,
              ": expected ", images.size(0), " labels to match ", images_path, ", got shape ",
              labels.sizes());
  TORCH_CHECK(labels.numel() == 0 || labels.max().item<int64_t>() <= 9, "nfk: ", labels_path,
              ": label out of range [0, 9]: ", labels.max().item<int64_t>());

  Dataset ds;
  ds.inputs = images_to_float(images).unsqueeze(1);
  ds.labels = labels.to(torch::kInt64);
  return ds;
}

namespace detail {

DataSource parse_data_source(const std::string& source) {
  TORCH_CHECK(!source.empty(), "nfk: empty data source");
  DataSource out;
  out.name = source;
  const size_t open = source.rfind("[:");
  if (open != std::string::npos && source.back() == ']') {
    const std::string digits = source.substr(open + 2, source.size() - open - 3);
    bool ok = !digits.empty() && digits.size() <= 18;  // 18 digits always fit in int64
    for (const char c : digits) ok = ok && c >= '0' && c <= '9';
    TORCH_CHECK(ok, "nfk: ", source, ": bad slice suffix (expected \"[:n]\" with n a count)");
    out.limit = std::stoll(digits);
    TORCH_CHECK(out.limit > 0, "nfk: ", source, ": slice \"[:0]\" keeps no examples");
    out.name = source.substr(0, open);
    TORCH_CHECK(!out.name.empty(), "nfk: ", source, ": empty data source before the slice");
  }
  out.named = is_named_set(out.name);
  return out;
}

}  // namespace detail

Dataset load_dataset(const std::string& source) {
  const detail::DataSource parsed = detail::parse_data_source(source);
  const std::string& src = parsed.name;
  const int64_t n = parsed.limit;

  Dataset ds;
  if (parsed.named) {
    ds = load_named_set(src);
  } else if (!is_regular_file(src)) {
    // Something shaped like "family:split" that is not a file is almost surely a mistyped set.
    const bool looks_named = src.find(':') != std::string::npos &&
                             src.find('/') == std::string::npos &&
                             src.find('.') == std::string::npos;
    TORCH_CHECK(!looks_named, "nfk: unknown data set '", src, "' (valid names: ", valid_names(),
                ")");
    struct stat st;
    TORCH_CHECK(::stat(src.c_str(), &st) == 0, "nfk: cannot read ", src, ": ", std::strerror(errno),
                " (expected a .npy or IDX file, or one of: ", valid_names(), ")");
    detail::check_input_file(src, "data");  // says what it is instead (a FIFO, a folder, ...)
  } else if (sniff_format(src) == Format::kNpy) {
    ds.inputs = array_to_inputs(read_npy(src), src);
  } else {
    torch::Tensor x = read_idx(src);
    if (x.dim() == 3) x = x.unsqueeze(1);
    ds.inputs = array_to_inputs(x, src);
  }

  if (n >= 0 && n < ds.inputs.size(0)) {
    // clone() so the slice does not pin the whole set in memory.
    ds.inputs = ds.inputs.narrow(0, 0, n).clone();
    if (ds.labels.defined()) ds.labels = ds.labels.narrow(0, 0, n).clone();
  }
  check_finite(ds.inputs, src);
  return ds;
}

torch::Tensor load_labels(const std::string& source) {
  const detail::DataSource parsed = detail::parse_data_source(source);
  const std::string& src = parsed.name;
  const int64_t n = parsed.limit;
  torch::Tensor y;
  if (parsed.named) {
    y = load_named_set(src).labels;
  } else {
    struct stat st;
    TORCH_CHECK(::stat(src.c_str(), &st) == 0, "nfk: cannot read labels ", src,
                ": no such file (expected a .npy or IDX label file, or one of: ", valid_names(),
                ")");
    detail::check_input_file(src, "labels");  // not a FIFO, a folder, ...
    y = sniff_format(src) == Format::kNpy ? read_npy(src) : read_idx(src);
  }
  TORCH_CHECK(y.dim() == 1, "nfk: ", src, ": labels must be a 1-d array [N], got shape ",
              y.sizes());
  TORCH_CHECK(!y.is_floating_point(), "nfk: ", src, ": labels must be integers, got ",
              y.scalar_type());
  y = y.to(torch::kLong);
  TORCH_CHECK(y.numel() == 0 || y.min().item<int64_t>() >= 0, "nfk: ", src,
              ": labels must be non-negative");
  if (n >= 0 && n < y.size(0)) y = y.narrow(0, 0, n).clone();
  return y;
}

Dataset dataset_from_array(const torch::Tensor& x, const std::string& what) {
  Dataset ds;
  ds.inputs = array_to_inputs(x, what);
  check_finite(ds.inputs, what);
  return ds;
}

void check_finite(const torch::Tensor& t, const std::string& what) {
  if (!t.defined() || !t.is_floating_point() || t.numel() == 0) return;
  // Row blocks of about 2^22 values: the check's temporaries stay small whatever the data's size
  // (inputs may be a file mapping the process does not hold).
  const torch::Tensor rows = t.dim() == 0 ? t.reshape({1, 1}) : t.reshape({t.size(0), -1});
  const int64_t per_block =
      std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, rows.size(1)));
  for (int64_t begin = 0; begin < rows.size(0); begin += per_block) {
    const torch::Tensor block = rows.narrow(0, begin, std::min(per_block, rows.size(0) - begin));
    if (torch::isfinite(block).all().item<bool>()) continue;
    const torch::Tensor bad = ~torch::isfinite(rows);
    const int64_t n_nan = torch::isnan(rows).sum().item<int64_t>();
    const int64_t n_bad = bad.sum().item<int64_t>();
    const int64_t first = bad.reshape(-1).nonzero()[0][0].item<int64_t>();
    TORCH_CHECK(false, "nfk: ", what, ": data holds ", n_nan, " NaN and ", n_bad - n_nan,
                " Inf values (first at flat index ", first, ")");
  }
}

}  // namespace nfk
