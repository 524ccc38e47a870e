// libFuzzer target: nfk::read_idx through zlib's gzip path. The input is the IDX content; it is
// gzip-compressed here, so mutations reach the header and data behind a valid gzip stream
// (random bytes rarely get past gzip's own checks). Accepted input must give the same tensor as
// the plain file.
#include <zlib.h>

#include <cstring>
#include <string>

#include "fuzz_input.h"
#include "nfk/data.h"

namespace {

std::string gzip(const uint8_t* data, size_t size) {
  z_stream z{};
  // windowBits 15 + 16: a gzip wrapper; level 6 like gzip(1).
  nfk::fuzz::require(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK,
                     "deflateInit2");
  std::string out(deflateBound(&z, size), '\0');
  z.next_in = const_cast<Bytef*>(data);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  nfk::fuzz::require(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static nfk::fuzz::InputFile gz_file("fuzz_idx_gzip");
  static nfk::fuzz::InputFile plain_file("fuzz_idx_plain");
  const std::string gz = gzip(data, size);
  torch::Tensor x;
  const bool gz_ok = nfk::fuzz::accepts([&] {
    x = nfk::read_idx(gz_file.write(reinterpret_cast<const uint8_t*>(gz.data()), gz.size()));
  });
  torch::Tensor y;
  const bool plain_ok =
      nfk::fuzz::accepts([&] { y = nfk::read_idx(plain_file.write(data, size)); });
  nfk::fuzz::require(gz_ok == plain_ok, "read_idx accepts the gzip'd and the plain file alike");
  if (gz_ok) nfk::fuzz::require(torch::equal(x, y), "read_idx: same tensor from gzip and plain");
  return 0;
}
