// Tests for load_dataset: .npy and IDX sources with slices, the data-source syntax, the named sets
// (a synthetic folder, and the real sets when scripts/setup has installed them).

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "data/data_source.h"
#include "data_support.h"
#include "nfk/data.h"
#include "support.h"

namespace {

using nfk::test::DataTest;
using nfk::test::error_of;
using nfk::test::idx_bytes;
using nfk::test::write_bytes;
using nfk::test::write_gz;

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
  EXPECT_NO_THROW(nfk::check_finite(torch::tensor(1.0), "a scalar"));
  EXPECT_CONTAINS(error_of([&] { nfk::check_finite(torch::tensor(NAN), "nan"); }), "1 NaN");
  // check_finite reads row blocks of about 2^22 values: an Inf in a later block is found and
  // counted, at its flat index in the whole tensor.
  auto big = torch::zeros({5, int64_t{1} << 21});
  big[4][7] = std::numeric_limits<float>::infinity();
  EXPECT_CONTAINS(error_of([&] { nfk::check_finite(big, "big"); }),
                  "nfk: big: data holds 0 NaN and 1 Inf values (first at flat index " +
                      std::to_string((int64_t{4} << 21) + 7) + ")");
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
