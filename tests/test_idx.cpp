// Tests for the IDX reader (MNIST's format): plain and gzip files, truncated and lying headers.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data_support.h"
#include "nfk/data.h"
#include "support.h"

namespace {

using nfk::test::DataTest;
using nfk::test::error_of;
using nfk::test::idx_bytes;
using nfk::test::read_bytes;
using nfk::test::write_bytes;
using nfk::test::write_gz;

TEST_F(DataTest, IdxPlainAndGzipRoundTrip) {
  std::string data;
  for (int i = 0; i < 2 * 3 * 4; ++i) data.push_back(static_cast<char>(i * 10));
  const std::string bytes = idx_bytes({2, 3, 4}, data);
  write_bytes(path("images-idx3-ubyte"), bytes);
  write_gz(path("images-idx3-ubyte.gz"), bytes);
  const auto expected =
      torch::arange(24, torch::kInt64).mul(10).to(torch::kUInt8).reshape({2, 3, 4});
  for (const char* name : {"images-idx3-ubyte", "images-idx3-ubyte.gz"}) {
    const torch::Tensor t = nfk::read_idx(path(name));
    EXPECT_EQ(t.scalar_type(), torch::kUInt8) << name;
    EXPECT_TRUE(torch::equal(t, expected)) << name;
  }
  write_gz(path("labels.gz"), idx_bytes({3}, std::string("\x01\x02\x09", 3)));
  EXPECT_TRUE(
      torch::equal(nfk::read_idx(path("labels.gz")), torch::tensor({1, 2, 9}, torch::kUInt8)));
}

TEST_F(DataTest, IdxRejectsTruncatedAndBadFiles) {
  const std::string bytes = idx_bytes({2, 28, 28}, std::string(2 * 28 * 28, '\x7f'));
  write_bytes(path("t"), bytes.substr(0, 16 + 1000));
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("t")); }),
                  "nfk: " + path("t") + ": truncated IDX data: expected 1568 bytes, got 1000");
  write_gz(path("t.gz"), bytes.substr(0, 16 + 1000));
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("t.gz")); }),
                  "truncated IDX data: expected 1568 bytes, got 1000");
  // A gzip stream cut in the middle.
  write_gz(path("full.gz"), bytes);
  const std::string gz = read_bytes(path("full.gz"));
  write_bytes(path("cut.gz"), gz.substr(0, gz.size() / 2));
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("cut.gz")); }), "nfk: " + path("cut.gz"));
  write_bytes(path("h"), bytes.substr(0, 9));
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("h")); }), "truncated IDX header");
  write_bytes(path("m"), "\x01\x02\x08\x01\0\0\0\0");
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("m")); }), "not an IDX file");
  write_bytes(path("f"), std::string("\0\0\x0d\x01\0\0\0\x01\0\0\0\0", 12));
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("f")); }),
                  "unsupported IDX element type 0x0D (float32)");
  write_bytes(path("x"), bytes + "junk");
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("x")); }), "trailing bytes");
}

TEST_F(DataTest, IdxRefusesDeclaredSizesBeyondTheFileBeforeAllocating) {
  // 65536 x 65536 x 200 = 859 GB declared by a 16-byte file: refused without allocating it.
  write_bytes(path("big"), idx_bytes({65536, 65536, 200}, ""));
  EXPECT_CONTAINS(
      error_of([&] { nfk::read_idx(path("big")); }),
      "nfk: " + path("big") + ": truncated IDX data: expected 858993459200 bytes, got 0");
  // gzip'd: deflate expands at most 1032:1, which bounds what the file can hold.
  write_gz(path("big.gz"), idx_bytes({65536, 65536, 200}, std::string(1000, '\0')));
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("big.gz")); }),
                  "truncated IDX data: the header declares 858993459200 bytes, more than a gzip "
                  "file of ");
  // Empty, but with strides LibTorch cannot hold: 0 x (2**32 - 1)^3.
  write_bytes(path("zero"), idx_bytes({0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, ""));
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("zero")); }),
                  "nfk: " + path("zero") + ": IDX shape is too large");
  // An empty set of images is a valid IDX file, but no data.
  write_bytes(path("none"), idx_bytes({0, 28, 28}, ""));
  EXPECT_EQ(nfk::read_idx(path("none")).sizes(), (std::vector<int64_t>{0, 28, 28}));
  EXPECT_CONTAINS(error_of([&] { nfk::load_dataset(path("none")); }), "holds no values");
}

}  // namespace
