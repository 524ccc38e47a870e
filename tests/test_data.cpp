// Tests for the data layer: .npy and IDX readers/writers, load_dataset, the named sets.

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "data/data_source.h"
#include "nfk/output_files.h"
#include "nfk/data.h"
#include "support.h"

namespace {

// Checks that `text` (an error message) contains `part`, printing both when it does not.
::testing::AssertionResult Contains(const char* text_expr, const char*, const std::string& text,
                                    const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << text_expr << " = \"" << text << "\"\n  does not contain \"" << part << "\"";
}
#define EXPECT_CONTAINS(text, part) EXPECT_PRED_FORMAT2(Contains, text, part)

// A fresh, empty folder per test, removed afterwards.
class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string base = ::testing::TempDir();
    if (base.empty() || base.back() != '/') base += '/';
    std::string templ = base + "nfk_data_XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr) << std::strerror(errno);
    dir_ = templ;
  }
  void TearDown() override {
    for (const auto& name : list_dir()) ::unlink((dir_ + "/" + name).c_str());
    ::rmdir(dir_.c_str());
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::vector<std::string> list_dir() const {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) return names;
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    return names;
  }

  std::string dir_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The exact bytes numpy 1.x writes for np.save(f, arr) with a v1.0 header: magic, version,
// little-endian header length, the dict padded with spaces to a 64-byte boundary, '\n'.
std::string npy_file(const std::string& dict, const std::string& data, int major = 1) {
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  const size_t prefix = major == 1 ? 10 : 12;
  const size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  const size_t hlen = total - prefix;
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) {
    out.push_back(static_cast<char>((hlen >> (8 * i)) & 0xFF));
  }
  out += dict;
  out.append(hlen - dict.size() - 1, ' ');
  out.push_back('\n');
  return out + data;
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

using nfk::test::error_of;

bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  if (a.numel() == 0) return true;  // an empty tensor's data pointer may be null (no memcmp)
  const auto ac = a.contiguous();
  const auto bc = b.contiguous();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.numel() * ac.element_size()) == 0;
}

// IDX bytes: magic 0 0 0x08 ndim, big-endian uint32 dims, then the data.
std::string idx_bytes(const std::vector<uint32_t>& dims, const std::string& data) {
  std::string out{'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((d >> s) & 0xFF));
  }
  return out + data;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// ---------------------------------------------------------------------------------------------
// .npy

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

// ---------------------------------------------------------------------------------------------
// IDX

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

// ---------------------------------------------------------------------------------------------
// load_dataset

TEST_F(DataTest, LoadDatasetNpyWithSlice) {
  const torch::Tensor x = torch::rand({10, 1, 4, 4});
  nfk::write_npy(path("x.npy"), x);
  const nfk::Dataset all = nfk::load_dataset(path("x.npy"));
  EXPECT_TRUE(torch::equal(all.inputs, x));
  EXPECT_FALSE(all.labels.defined());
  const nfk::Dataset first = nfk::load_dataset(path("x.npy") + "[:3]");
  EXPECT_EQ(first.inputs.sizes(), (std::vector<int64_t>{3, 1, 4, 4}));
  EXPECT_TRUE(torch::equal(first.inputs, x.narrow(0, 0, 3)));
  // n past the end keeps everything, like Python slicing.
  EXPECT_EQ(nfk::load_dataset(path("x.npy") + "[:100]").inputs.size(0), 10);
  // float64 stays float64; uint8 is scaled to [0, 1] float32.
  nfk::write_npy(path("d.npy"), torch::ones({2, 3}, torch::kFloat64));
  EXPECT_EQ(nfk::load_dataset(path("d.npy")).inputs.scalar_type(), torch::kFloat64);
  nfk::write_npy(path("u.npy"), torch::full({2, 2}, 255, torch::kUInt8));
  const auto u = nfk::load_dataset(path("u.npy")).inputs;
  EXPECT_EQ(u.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(u, torch::ones({2, 2})));
  EXPECT_CONTAINS(error_of([&] { nfk::load_dataset(path("x.npy") + "[:abc]"); }), "bad slice");
  EXPECT_CONTAINS(error_of([&] { nfk::load_dataset(path("x.npy") + "[:0]"); }),
                  "keeps no examples");
}

TEST_F(DataTest, LoadDatasetIdxGetsChannelAxisAndScaling) {
  std::string data(2 * 2 * 3, '\0');
  data[0] = '\xff';
  write_gz(path("imgs.gz"), idx_bytes({2, 2, 3}, data));
  const nfk::Dataset ds = nfk::load_dataset(path("imgs.gz") + "[:1]");
  EXPECT_EQ(ds.inputs.sizes(), (std::vector<int64_t>{1, 1, 2, 3}));
  EXPECT_EQ(ds.inputs.scalar_type(), torch::kFloat32);
  EXPECT_FLOAT_EQ(ds.inputs[0][0][0][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(ds.inputs.sum().item<float>(), 1.0f);
}

TEST_F(DataTest, LoadDatasetRejectsNonFiniteNamingTheFile) {
  nfk::write_npy(path("nan.npy"), torch::tensor({1.0f, NAN, 2.0f, INFINITY}),
                 /*allow_non_finite=*/true);
  const std::string msg = error_of([&] { nfk::load_dataset(path("nan.npy")); });
  EXPECT_CONTAINS(msg, "nfk: " + path("nan.npy") + ": ");
  EXPECT_CONTAINS(msg, "1 NaN and 1 Inf");
  // The slice is applied first: the finite prefix loads fine.
  EXPECT_EQ(nfk::load_dataset(path("nan.npy") + "[:1]").inputs.numel(), 1);
  EXPECT_NO_THROW(nfk::check_finite(torch::ones({3}), "ok"));
  EXPECT_NO_THROW(nfk::check_finite(torch::ones({3}, torch::kInt64), "ints"));
}

TEST_F(DataTest, LoadDatasetErrors) {
  EXPECT_CONTAINS(error_of([&] { nfk::load_dataset("mnist:validation"); }),
                  "valid names: mnist:train, mnist:test, fashion-mnist:train");
  EXPECT_CONTAINS(error_of([&] { nfk::load_named_set("cifar:test"); }), "valid names");
  EXPECT_CONTAINS(error_of([&] { nfk::load_dataset(path("none.npy")); }),
                  "nfk: cannot read " + path("none.npy"));
  write_bytes(path("text.npy"), "hello world");
  EXPECT_CONTAINS(error_of([&] { nfk::load_dataset(path("text.npy")); }), "unrecognized data file");
}

TEST(DataSource, ParsesNamesAndSlices) {
  using nfk::detail::parse_data_source;
  const auto named = parse_data_source("mnist:test[:100]");
  EXPECT_EQ(named.name, "mnist:test");
  EXPECT_EQ(named.limit, 100);
  EXPECT_TRUE(named.named);
  const auto file = parse_data_source("runs/x.npy");
  EXPECT_EQ(file.name, "runs/x.npy");
  EXPECT_EQ(file.limit, -1);
  EXPECT_FALSE(file.named);
  // Only the last "[:n]" is a slice.
  const auto nested = parse_data_source("a[:1][:2]");
  EXPECT_EQ(nested.name, "a[:1]");
  EXPECT_EQ(nested.limit, 2);
  EXPECT_EQ(parse_data_source("x[:999999999999999999]").limit, 999999999999999999);
  EXPECT_CONTAINS(error_of([] { parse_data_source("x[:1000000000000000000]"); }), "bad slice");
  EXPECT_CONTAINS(error_of([] { parse_data_source("x[:-1]"); }), "bad slice");
  EXPECT_CONTAINS(error_of([] { parse_data_source("x[:]"); }), "bad slice");
  EXPECT_CONTAINS(error_of([] { parse_data_source("x[:0]"); }), "keeps no examples");
  EXPECT_CONTAINS(error_of([] { parse_data_source("[:5]"); }), "empty data source");
  EXPECT_CONTAINS(error_of([] { parse_data_source(""); }), "empty data source");
}

TEST_F(DataTest, NamedSetMissingFilesSaysRunSetup) {
  const char* old = std::getenv("NFK_DATA_DIR");
  const std::string saved = old ? old : "";
  ::setenv("NFK_DATA_DIR", dir_.c_str(), 1);
  EXPECT_EQ(nfk::data_dir(), dir_);
  const std::string msg = error_of([&] { nfk::load_dataset("mnist:test[:5]"); });
  if (old)
    ::setenv("NFK_DATA_DIR", saved.c_str(), 1);
  else
    ::unsetenv("NFK_DATA_DIR");
  EXPECT_CONTAINS(msg, "t10k-images-idx3-ubyte[.gz]");
  EXPECT_CONTAINS(msg, "scripts/setup");
}

TEST_F(DataTest, NamedSetFromSyntheticFolder) {
  ASSERT_EQ(::mkdir(path("mnist").c_str(), 0755), 0);
  write_gz(path("mnist/t10k-images-idx3-ubyte.gz"),
           idx_bytes({4, 28, 28}, std::string(4 * 784, '\x33')));
  write_bytes(path("mnist/t10k-labels-idx1-ubyte"),
              idx_bytes({4}, std::string("\x00\x01\x02\x09", 4)));
  const char* old = std::getenv("NFK_DATA_DIR");
  const std::string saved = old ? old : "";
  ::setenv("NFK_DATA_DIR", dir_.c_str(), 1);
  nfk::Dataset ds;
  const std::string msg = error_of([&] { ds = nfk::load_dataset("mnist:test[:3]"); });
  if (old)
    ::setenv("NFK_DATA_DIR", saved.c_str(), 1);
  else
    ::unsetenv("NFK_DATA_DIR");
  ::unlink(path("mnist/t10k-images-idx3-ubyte.gz").c_str());
  ::unlink(path("mnist/t10k-labels-idx1-ubyte").c_str());
  ::rmdir(path("mnist").c_str());
  ASSERT_EQ(msg, "<no error>");
  EXPECT_EQ(ds.inputs.sizes(), (std::vector<int64_t>{3, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(ds.labels, torch::tensor({0, 1, 2}, torch::kInt64)));
  EXPECT_FLOAT_EQ(ds.inputs.max().item<float>(), 0x33 / 255.0f);
}

// ---------------------------------------------------------------------------------------------
// The real sets, when scripts/setup has installed them.

void check_real_set(const std::string& family) {
  const std::string dir = nfk::data_dir() + "/" + family;
  struct stat st;
  if (::stat((dir + "/t10k-images-idx3-ubyte").c_str(), &st) != 0 &&
      ::stat((dir + "/t10k-images-idx3-ubyte.gz").c_str(), &st) != 0) {
    GTEST_SKIP() << family << " is not installed under " << dir << " (run scripts/setup)";
  }
  const nfk::Dataset ds = nfk::load_named_set(family + ":test");
  EXPECT_EQ(ds.inputs.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(ds.inputs.scalar_type(), torch::kFloat32);
  EXPECT_GE(ds.inputs.min().item<float>(), 0.0f);
  EXPECT_LE(ds.inputs.max().item<float>(), 1.0f);
  EXPECT_EQ(ds.labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(ds.labels.sizes(), (std::vector<int64_t>{10000}));
  EXPECT_EQ(std::get<0>(torch::_unique(ds.labels)).numel(), 10);
  EXPECT_EQ(ds.labels.min().item<int64_t>(), 0);
  EXPECT_EQ(ds.labels.max().item<int64_t>(), 9);
}

TEST(RealData, MnistTest) {
  check_real_set("mnist");
}
TEST(RealData, FashionMnistTest) {
  check_real_set("fashion-mnist");
}

}  // namespace
