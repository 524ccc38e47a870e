#include <c10/util/Exception.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "detail/input_file.h"
#include "nfk/data.h"

namespace nfk {
namespace {

// Deflate expands at most 1032:1 (zlib's FAQ), so a gzip file of S bytes holds at most this many
// bytes of data; a header that declares more is refused before its tensor is allocated.
constexpr uint64_t kMaxGzipRatio = 1032;

// Owns a gzFile; gzopen/gzread read gzip'd and plain files alike.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    // Only a regular file: gzopen would block on a FIFO.
    detail::check_input_file(path, "IDX file");
    errno = 0;
    f_ = gzopen(path.c_str(), "rb");
    TORCH_CHECK(f_ != nullptr, "nfk: cannot read ", path, ": ",
                errno != 0 ? std::strerror(errno) : "gzopen failed");
    gzbuffer(f_, 1 << 18);
  }
  /// Whether the file is read as is (not gzip'd); valid after the first read.
  bool plain() { return gzdirect(f_) == 1; }

  ~GzReader() {
    if (f_ != nullptr) gzclose(f_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to n bytes; returns how many were read (fewer only at end of file).
  uint64_t read(void* dst, uint64_t n) {
    auto* p = static_cast<char*>(dst);
    uint64_t done = 0;
    while (done < n) {
      // gzread takes an unsigned and returns an int: read in chunks below INT_MAX.
      const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(n - done, 1u << 30));
      const int r = gzread(f_, p + done, chunk);
      if (r < 0) {
        int errnum = 0;
        const char* msg = gzerror(f_, &errnum);
        TORCH_CHECK(false, "nfk: cannot read ", path_, ": ",
                    errnum == Z_ERRNO ? std::strerror(errno) : msg);
      }
      if (r == 0) break;
      done += static_cast<uint64_t>(r);
    }
    return done;
  }

 private:
  std::string path_;
  gzFile f_ = nullptr;
};

std::string hex_byte(int v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02X", v & 0xFF);
  return buf;
}

const char* idx_type_name(int type) {
  switch (type) {
    case 0x08:
      return "uint8";
    case 0x09:
      return "int8";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "unknown";
  }
}

}  // namespace

torch::Tensor read_idx(const std::string& path) {
  GzReader in(path);
  unsigned char magic[4];
  const uint64_t got_magic = in.read(magic, 4);
  TORCH_CHECK(got_magic == 4, "nfk: ", path, ": truncated IDX header: expected 4 bytes, got ",
              got_magic);
  TORCH_CHECK(magic[0] == 0 && magic[1] == 0, "nfk: ", path,
              ": not an IDX file (bad magic: first two bytes must be zero)");
  const int type = magic[2];
  const int ndim = magic[3];
  TORCH_CHECK(type == 0x08, "nfk: ", path, ": unsupported IDX element type ", hex_byte(type), " (",
              idx_type_name(type), "); only 0x08 (uint8) is supported");
  TORCH_CHECK(ndim >= 1, "nfk: ", path, ": IDX file declares 0 dimensions");

  std::vector<unsigned char> dim_bytes(4 * static_cast<size_t>(ndim));
  const uint64_t got_dims = in.read(dim_bytes.data(), dim_bytes.size());
  TORCH_CHECK(got_dims == dim_bytes.size(), "nfk: ", path, ": truncated IDX header: expected ",
              dim_bytes.size(), " bytes of dimensions, got ", got_dims);
  std::vector<int64_t> shape(ndim);
  // numel = prod(d); LibTorch's strides are products with 0 taken as 1, so those must fit in
  // int64 too, also for an empty array. 255 uint32 dimensions: overflow-checked products.
  uint64_t numel = 1, span = 1;
  bool overflow = false;
  for (int i = 0; i < ndim; ++i) {
    const unsigned char* b = &dim_bytes[4 * i];
    // IDX dimensions are big-endian uint32.
    const uint64_t d =
        (uint64_t{b[0]} << 24) | (uint64_t{b[1]} << 16) | (uint64_t{b[2]} << 8) | uint64_t{b[3]};
    overflow = overflow || __builtin_mul_overflow(span, d == 0 ? 1 : d, &span);
    numel *= d;  // <= span: cannot overflow when span does not
    shape[i] = static_cast<int64_t>(d);
  }
  TORCH_CHECK(!overflow && span <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              "nfk: ", path, ": IDX shape is too large");

  // The declared size against the file before anything is allocated.
  struct stat st {};
  TORCH_CHECK(::stat(path.c_str(), &st) == 0, "nfk: cannot read IDX file ", path, ": ",
              std::strerror(errno));
  const auto file_size = static_cast<uint64_t>(st.st_size);
  const uint64_t header_bytes = 4 + dim_bytes.size();
  if (in.plain()) {
    const uint64_t available = file_size > header_bytes ? file_size - header_bytes : 0;
    TORCH_CHECK(numel <= available, "nfk: ", path, ": truncated IDX data: expected ", numel,
                " bytes, got ", available);
  } else {
    TORCH_CHECK(numel / kMaxGzipRatio <= file_size, "nfk: ", path,
                ": truncated IDX data: the header declares ", numel,
                " bytes, more than a gzip file of ", file_size, " bytes can hold");
  }

  auto out = torch::empty(shape, torch::TensorOptions().dtype(torch::kUInt8));
  const uint64_t got = numel > 0 ? in.read(out.data_ptr(), numel) : 0;
  TORCH_CHECK(got == numel, "nfk: ", path, ": truncated IDX data: expected ", numel, " bytes, got ",
              got);
  unsigned char extra;
  TORCH_CHECK(in.read(&extra, 1) == 0, "nfk: ", path,
              ": IDX data size mismatch: trailing bytes after the ", numel,
              " bytes the header declares");
  return out;
}

}  // namespace nfk
