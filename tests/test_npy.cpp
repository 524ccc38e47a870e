// Tests for the .npy reader and writer (numpy's bytes, every dtype, bad and hostile files) and
// the atomic file writes behind every output.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "data_support.h"
#include "nfk/output_files.h"
#include "nfk/data.h"
#include "support.h"

namespace {

using nfk::test::bitwise_equal;
using nfk::test::DataTest;
using nfk::test::error_of;
using nfk::test::npy_file;
using nfk::test::raw;
using nfk::test::read_bytes;
using nfk::test::write_bytes;

TEST_F(DataTest, NpyRoundTripEveryDtypeBitwise) {
  torch::manual_seed(0);
  std::vector<torch::Tensor> cases = {
      torch::randn({3, 1, 4, 5}, torch::kFloat32),
      torch::randn({7}, torch::kFloat64),
      torch::randint(0, 256, {2, 3, 4}, torch::kUInt8),
      torch::randint(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                     {5, 2}, torch::kInt64),
      torch::tensor(3.5f),                    // 0-d
      torch::empty({0, 3}, torch::kFloat32),  // empty
      torch::randn({4, 6}).t(),               // non-contiguous input
  };
  // Special float values survive bit for bit.
  cases.push_back(torch::tensor({std::nanf(""), INFINITY, -0.0f, 1e-45f}));
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string p = path("t" + std::to_string(i) + ".npy");
    nfk::write_npy(p, cases[i], /*allow_non_finite=*/true);
    const torch::Tensor back = nfk::read_npy(p);
    EXPECT_TRUE(bitwise_equal(back, cases[i].contiguous()))
        << "case " << i << " dtype " << cases[i].scalar_type();
    // Data starts on a 64-byte boundary, as numpy writes it.
    const std::string bytes = read_bytes(p);
    EXPECT_EQ((bytes.size() - cases[i].numel() * cases[i].element_size()) % 64, 0u);
  }
  EXPECT_EQ(list_dir().size(), cases.size());  // no temp files left behind
}

TEST_F(DataTest, NpyWriteHeaderMatchesNumpy) {
  nfk::write_npy(path("a.npy"), torch::zeros({2, 3}, torch::kFloat64));
  nfk::write_npy(path("b.npy"), torch::zeros({3}, torch::kUInt8));
  const std::string a = read_bytes(path("a.npy"));
  const std::string b = read_bytes(path("b.npy"));
  EXPECT_EQ(a, npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
                        std::string(48, '\0')));
  EXPECT_EQ(b, npy_file("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }",
                        std::string(3, '\0')));
}

TEST_F(DataTest, NpyReadsNumpyWrittenFile) {
  // Bytes of np.save(f, np.arange(6, dtype='<f8').reshape(2, 3) / 2).
  const std::vector<double> v = {0.0, 0.5, 1.0, 1.5, 2.0, 2.5};
  const std::string bytes =
      npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", raw(v));
  ASSERT_EQ(bytes.size(), 128u + 48u);
  write_bytes(path("np.npy"), bytes);
  const torch::Tensor t = nfk::read_npy(path("np.npy"));
  ASSERT_EQ(t.scalar_type(), torch::kFloat64);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(torch::equal(t, torch::arange(6, torch::kFloat64).reshape({2, 3}) / 2));
}

TEST_F(DataTest, NpyParsesHeaderVariants) {
  const std::vector<float> f = {1, 2, 3};
  // Other key order, double quotes, no trailing comma, format version 2.0.
  write_bytes(path("a.npy"),
              npy_file("{\"shape\":(3,),\"fortran_order\":False,\"descr\":\"<f4\"}", raw(f), 2));
  EXPECT_TRUE(torch::equal(nfk::read_npy(path("a.npy")), torch::tensor({1.f, 2.f, 3.f})));
  // int32 is widened to int64.
  const std::vector<int32_t> i = {-1, 7};
  write_bytes(path("b.npy"),
              npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", raw(i)));
  const torch::Tensor b = nfk::read_npy(path("b.npy"));
  EXPECT_EQ(b.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(b, torch::tensor({-1, 7}, torch::kInt64)));
}

TEST_F(DataTest, NpyRejectsBadMagic) {
  write_bytes(path("x.npy"), "PK\x03\x04 this is a zip file, not npy at all........");
  const std::string msg = error_of([&] { nfk::read_npy(path("x.npy")); });
  EXPECT_CONTAINS(msg, "nfk: " + path("x.npy"));
  EXPECT_CONTAINS(msg, "bad magic");
}

TEST_F(DataTest, NpyRejectsTruncatedData) {
  const std::string full =
      npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 28, 28), }",
               std::string(3136, 'a'));
  write_bytes(path("x.npy"), full.substr(0, full.size() - 3036));
  const std::string msg = error_of([&] { nfk::read_npy(path("x.npy")); });
  EXPECT_CONTAINS(msg,
                  "nfk: " + path("x.npy") + ": truncated .npy data: expected 3136 bytes, got 100");
  // A header cut short is rejected too.
  write_bytes(path("y.npy"), full.substr(0, 40));
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(path("y.npy")); }), "truncated .npy header");
}

TEST_F(DataTest, NpyRejectsTrailingBytes) {
  write_bytes(path("x.npy"),
              npy_file("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", "abcdEXTRA"));
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(path("x.npy")); }),
                  "size mismatch: expected 4 bytes, got 9");
}

TEST_F(DataTest, NpyRejectsFortranOrder) {
  write_bytes(path("x.npy"), npy_file("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                                      std::string(48, '\0')));
  const std::string msg = error_of([&] { nfk::read_npy(path("x.npy")); });
  EXPECT_CONTAINS(msg, "nfk: " + path("x.npy"));
  EXPECT_CONTAINS(msg, "Fortran-order");
}

TEST_F(DataTest, NpyRejectsUnsupportedAndBigEndianDtypes) {
  write_bytes(path("c.npy"), npy_file("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }",
                                      std::string(16, '\0')));
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(path("c.npy")); }),
                  "nfk: " + path("c.npy") + ": unsupported .npy dtype '<c16'");
  write_bytes(path("b.npy"), npy_file("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }",
                                      std::string(8, '\0')));
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(path("b.npy")); }), "big-endian");
  write_bytes(path("m.npy"), npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1, }",
                                      std::string(4, '\0')));
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(path("m.npy")); }), "malformed .npy header");
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(path("missing.npy")); }),
                  "nfk: cannot read .npy file " + path("missing.npy") + ": No such file");
}

TEST_F(DataTest, NpyZeroSizeArrayWithHugeDimsIsBoundedAndRefusedAsData) {
  // Issue 11 defect 10: a 128-byte file of shape (10**12, 0) made every command walk through
  // 10**12 empty examples. The reader accepts it (as numpy does) at once; as data it is refused.
  write_bytes(
      path("z.npy"),
      npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 0), }", ""));
  ASSERT_EQ(read_bytes(path("z.npy")).size(), 128u);
  const torch::Tensor z = nfk::read_npy(path("z.npy"));
  EXPECT_EQ(z.sizes(), (std::vector<int64_t>{1000000000000, 0}));
  EXPECT_CONTAINS(
      error_of([&] { nfk::load_dataset(path("z.npy")); }),
      "nfk: " + path("z.npy") + ": the array holds no values (shape [1000000000000, 0])");
  // Zero examples are no data either, from a file or from memory.
  nfk::write_npy(path("e.npy"), torch::empty({0, 3}));
  EXPECT_CONTAINS(error_of([&] { nfk::load_dataset(path("e.npy")); }), "holds no values");
  EXPECT_CONTAINS(error_of([&] {
                    nfk::dataset_from_array(torch::empty({4, 0}), "x");
                  }),
                  "nfk: x: the array holds no values (shape [4, 0])");
}

TEST_F(DataTest, NpyRefusesShapesLibTorchCannotDescribe) {
  // Empty, but the strides of (0, 2**40, 2**40) float64 overflow int64.
  write_bytes(path("s.npy"), npy_file("{'descr': '<f8', 'fortran_order': False, "
                                      "'shape': (0, 1099511627776, 1099511627776), }",
                                      ""));
  EXPECT_CONTAINS(
      error_of([&] { nfk::read_npy(path("s.npy")); }),
      "nfk: " + path("s.npy") + ": .npy shape (0, 1099511627776, 1099511627776) is too large");
  // The byte count wraps around uint64: refused, never a small allocation.
  write_bytes(path("w.npy"), npy_file("{'descr': '<f8', 'fortran_order': False, "
                                      "'shape': (2305843009213693952, 8), }",
                                      std::string(8, '\0')));
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(path("w.npy")); }), "is too large");
  // A size that fits int64 but not the file: refused before allocating 8 TB.
  write_bytes(path("t.npy"), npy_file("{'descr': '<f8', 'fortran_order': False, "
                                      "'shape': (1000000000000,), }",
                                      std::string(8, '\0')));
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(path("t.npy")); }),
                  "truncated .npy data: expected 8000000000000 bytes, got 8");
}

TEST_F(DataTest, ReadersRefuseFifosWithoutBlocking) {
  // A FIFO with no writer blocked open() forever; each reader now names what the path is.
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0) << std::strerror(errno);
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(path("fifo")); }),
                  "nfk: cannot read .npy file " + path("fifo") + ": it is a FIFO (named pipe)");
  EXPECT_CONTAINS(error_of([&] { nfk::read_idx(path("fifo")); }),
                  "nfk: cannot read IDX file " + path("fifo") + ": it is a FIFO (named pipe)");
  EXPECT_CONTAINS(error_of([&] { nfk::load_dataset(path("fifo") + "[:3]"); }),
                  "nfk: cannot read data " + path("fifo") + ": it is a FIFO (named pipe)");
  EXPECT_CONTAINS(error_of([&] { nfk::load_labels(path("fifo")); }),
                  "nfk: cannot read labels " + path("fifo") + ": it is a FIFO (named pipe)");
  EXPECT_CONTAINS(error_of([&] { nfk::read_npy(dir_); }), "it is a directory");
}

TEST_F(DataTest, NpyWriteFailureLeavesNothing) {
  const std::string bad = "/nonexistent_dir_nfk/x.npy";
  EXPECT_CONTAINS(error_of([&] { nfk::write_npy(bad, torch::ones({2})); }),
                  "nfk: cannot write " + bad + ": No such file or directory");
  struct stat st;
  EXPECT_NE(::stat(bad.c_str(), &st), 0);
  // Unsupported dtype: refused before anything is written.
  EXPECT_CONTAINS(error_of([&] { nfk::write_npy(path("i.npy"), torch::ones({2}, torch::kInt32)); }),
                  "unsupported dtype");
  // A target that cannot be replaced (a folder) keeps the old state and leaves no temp file.
  ASSERT_EQ(::mkdir(path("d.npy").c_str(), 0755), 0);
  EXPECT_CONTAINS(error_of([&] { nfk::write_npy(path("d.npy"), torch::ones({2})); }),
                  "nfk: cannot write " + path("d.npy") + ": ");
  EXPECT_EQ(list_dir(), std::vector<std::string>{"d.npy"});
  ::rmdir(path("d.npy").c_str());
}

TEST_F(DataTest, AtomicWriteReplacesExistingFile) {
  write_bytes(path("f"), "old contents");
  nfk::write_file_atomic(path("f"), "new");
  EXPECT_EQ(read_bytes(path("f")), "new");
  EXPECT_EQ(list_dir(), std::vector<std::string>{"f"});
}

}  // namespace
