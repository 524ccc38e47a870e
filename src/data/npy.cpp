#include <c10/util/Exception.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "nfk/output_files.h"
#include "detail/input_file.h"
#include "nfk/data.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "nfk reads and writes little-endian .npy data in place; big-endian hosts are unsupported"
#endif

namespace nfk {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
  bool has_descr = false, has_fortran = false, has_shape = false;
};

// A tiny parser for the Python dict literal numpy writes, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// It accepts either quote style, any key order, any whitespace and optional trailing commas,
// since other writers (not only numpy) produce these headers.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& path) : s_(text), path_(path) {}

  NpyHeader parse() {
    NpyHeader h;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = parse_string();
      expect(':');
      if (key == "descr") {
        h.descr = parse_string();
        h.has_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = parse_bool();
        h.has_fortran = true;
      } else if (key == "shape") {
        h.shape = parse_tuple();
        h.has_shape = true;
      } else {
        fail("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_ws();
      if (peek() != '}') fail("expected ',' or '}'");
    }
    ++pos_;  // '}'
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the header dict");
    if (!h.has_descr) fail("missing 'descr'");
    if (!h.has_fortran) fail("missing 'fortran_order'");
    if (!h.has_shape) fail("missing 'shape'");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    TORCH_CHECK(false, "nfk: ", path_, ": malformed .npy header: ", what, " at offset ", pos_);
    __builtin_unreachable();
  }

  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }

  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }

  void expect(char c) {
    skip_ws();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  std::string parse_string() {
    skip_ws();
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted string");
    const size_t end = s_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }

  bool parse_bool() {
    skip_ws();
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("expected True or False");
  }

  std::vector<int64_t> parse_tuple() {
    std::vector<int64_t> dims;
    expect('(');
    while (true) {
      skip_ws();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a dimension");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        const int digit = peek() - '0';
        if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) fail("dimension overflows");
        v = v * 10 + digit;
        ++pos_;
      }
      // Python longs may carry an 'L' suffix in headers written by numpy under Python 2.
      if (peek() == 'L') ++pos_;
      dims.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_ws();
      if (peek() != ')') fail("expected ',' or ')' in shape");
    }
    ++pos_;  // ')'
    return dims;
  }

  std::string_view s_;
  const std::string& path_;
  size_t pos_ = 0;
};

struct DtypeInfo {
  torch::ScalarType stored;  // type of the bytes on disk
  size_t itemsize;
};

DtypeInfo parse_descr(const std::string& descr, const std::string& path) {
  TORCH_CHECK(descr.size() >= 2, "nfk: ", path, ": unsupported .npy dtype '", descr, "'");
  const char order = descr[0];
  const std::string kind = descr.substr(1);
  TORCH_CHECK(order != '>', "nfk: ", path, ": big-endian .npy data ('", descr,
              "') is not supported; save it little-endian (e.g. arr.astype('<f4'))");
  const bool known_order = order == '<' || order == '|' || order == '=';
  if (known_order) {
    if (kind == "f4") return {torch::kFloat32, 4};
    if (kind == "f8") return {torch::kFloat64, 8};
    if (kind == "u1") return {torch::kUInt8, 1};
    if (kind == "i8") return {torch::kInt64, 8};
    if (kind == "i4") return {torch::kInt32, 4};
  }
  TORCH_CHECK(false, "nfk: ", path, ": unsupported .npy dtype '", descr,
              "' (supported: <f4, <f8, |u1, <i4, <i8)");
  __builtin_unreachable();
}

const char* descr_for(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return "<f4";
    case torch::kFloat64:
      return "<f8";
    case torch::kUInt8:
      return "|u1";
    case torch::kInt64:
      return "<i8";
    default:
      return nullptr;
  }
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + (shape.size() == 1 ? ",)" : ")");
}

// Bytes of a C-order array of `shape`, or throws when LibTorch could not describe it: its
// strides are products of the dimensions with 0 taken as 1, so those must fit in int64 too,
// also for an empty array such as (10**12, 0, 10**12). All products are overflow-checked.
uint64_t array_bytes(const std::vector<int64_t>& shape, uint64_t itemsize,
                     const std::string& path) {
  uint64_t span = itemsize;  // itemsize * prod(max(d, 1)): bounds every stride and the size
  uint64_t bytes = itemsize;
  bool overflow = false;
  for (const int64_t d : shape) {
    const auto du = static_cast<uint64_t>(d);
    overflow = overflow || __builtin_mul_overflow(span, du == 0 ? 1 : du, &span);
    bytes *= du;  // <= span once the loop is done: cannot overflow when span does not
  }
  TORCH_CHECK(!overflow && span <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              "nfk: ", path, ": .npy shape ", shape_string(shape), " is too large");
  return bytes;
}

uint64_t read_le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

torch::Tensor read_npy(const std::string& path) {
  // Only a regular file: a FIFO would block the open below, a directory "opens" and reads nothing.
  detail::check_input_file(path, ".npy file");
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.is_open(), "nfk: cannot read .npy file ", path, ": ", std::strerror(errno));
  in.seekg(0, std::ios::end);
  const auto file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0, std::ios::beg);

  unsigned char pre[12];
  TORCH_CHECK(file_size >= 10, "nfk: ", path, ": not a .npy file (", file_size, " bytes)");
  in.read(reinterpret_cast<char*>(pre), 10);
  TORCH_CHECK(in && std::memcmp(pre, kMagic, kMagicLen) == 0, "nfk: ", path,
              ": not a .npy file (bad magic)");
  const int major = pre[6];
  TORCH_CHECK(major >= 1 && major <= 3, "nfk: ", path, ": unsupported .npy format version ", major,
              ".", static_cast<int>(pre[7]));
  uint64_t header_len = 0;
  uint64_t prefix_len = 10;
  if (major == 1) {
    header_len = read_le(pre + 8, 2);
  } else {
    TORCH_CHECK(file_size >= 12, "nfk: ", path, ": truncated .npy header");
    in.read(reinterpret_cast<char*>(pre + 10), 2);
    header_len = read_le(pre + 8, 4);
    prefix_len = 12;
  }
  TORCH_CHECK(prefix_len + header_len <= file_size, "nfk: ", path,
              ": truncated .npy header: expected ", header_len, " bytes, got ",
              file_size - prefix_len);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  TORCH_CHECK(in, "nfk: cannot read ", path, ": read error in header");

  const NpyHeader h = HeaderParser(header, path).parse();
  const DtypeInfo dt = parse_descr(h.descr, path);
  TORCH_CHECK(!h.fortran_order, "nfk: ", path,
              ": Fortran-order .npy arrays are not supported; save with np.ascontiguousarray");

  // Checked against the file size before anything is allocated.
  const uint64_t data_bytes = array_bytes(h.shape, dt.itemsize, path);
  const uint64_t got = file_size - prefix_len - header_len;
  TORCH_CHECK(got >= data_bytes, "nfk: ", path, ": truncated .npy data: expected ", data_bytes,
              " bytes, got ", got);
  TORCH_CHECK(got == data_bytes, "nfk: ", path, ": .npy data size mismatch: expected ", data_bytes,
              " bytes, got ", got, " (trailing bytes)");

  auto out = torch::empty(h.shape, torch::TensorOptions().dtype(dt.stored));
  if (data_bytes > 0) {
    in.read(static_cast<char*>(out.data_ptr()), static_cast<std::streamsize>(data_bytes));
    TORCH_CHECK(in, "nfk: cannot read ", path, ": read error in data");
  }
  if (dt.stored == torch::kInt32) out = out.to(torch::kInt64);
  return out;
}

void write_npy(const std::string& path, const torch::Tensor& t, bool allow_non_finite) {
  TORCH_CHECK(t.defined(), "nfk: cannot write ", path, ": undefined tensor");
  const char* descr = descr_for(t.scalar_type());
  TORCH_CHECK(descr != nullptr, "nfk: cannot write ", path, ": unsupported dtype ", t.scalar_type(),
              " for .npy (supported: float32, float64, uint8, int64)");
  const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  if (!allow_non_finite && c.is_floating_point() && c.numel() > 0) {
    // nfk never writes a NaN or Inf result: name the first row that holds one.
    const auto bad = torch::isfinite(c).logical_not();
    if (bad.any().item<bool>()) {
      const auto rows = c.dim() > 0 ? bad.reshape({c.size(0), -1}).any(/*dim=*/1) : bad.reshape(1);
      const int64_t row = rows.nonzero().index({0, 0}).item<int64_t>();
      TORCH_CHECK(false, "nfk: cannot write ", path, ": the result holds NaN or Inf (first at row ",
                  row, " of ", c.dim() > 0 ? c.size(0) : 1,
                  "); the model's output is not finite there, or overflows ",
                  c.scalar_type() == torch::kFloat32 ? "float32 (try --dtype float64)" : "float64");
    }
  }

  std::string shape = "(";
  for (int64_t i = 0; i < c.dim(); ++i) {
    shape += std::to_string(c.size(i));
    shape += (c.dim() == 1) ? "," : (i + 1 < c.dim() ? ", " : "");
  }
  shape += ")";
  std::string dict =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";

  // Pad with spaces so the data starts on a 64-byte boundary, as numpy does; the header ends
  // in '\n'. Version 2.0 (4-byte length) only when the header does not fit in 16 bits.
  const size_t base = dict.size() + 1;
  const bool v2 = 10 + base + 63 > 0xFFFF;
  const size_t prefix = v2 ? 12 : 10;
  const size_t total = (prefix + base + 63) / 64 * 64;
  const size_t header_len = total - prefix;
  dict.append(header_len - base, ' ');
  dict.push_back('\n');

  std::string head(kMagic, kMagicLen);
  head.push_back(static_cast<char>(v2 ? 2 : 1));
  head.push_back('\0');
  for (size_t i = 0; i < (v2 ? 4u : 2u); ++i) {
    head.push_back(static_cast<char>((header_len >> (8 * i)) & 0xFF));
  }
  head += dict;

  const size_t nbytes = static_cast<size_t>(c.numel()) * c.element_size();
  write_file_atomic(
      path,
      {std::string_view(head), std::string_view(static_cast<const char*>(c.data_ptr()), nbytes)});
}

}  // namespace nfk
