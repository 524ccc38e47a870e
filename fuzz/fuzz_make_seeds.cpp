// Writes the seed corpus of every fuzz target: fuzz_make_seeds OUTDIR → OUTDIR/<target>/<case>.
// Valid files come from nfk's own writers (write_npy, save_projector), so the seeds follow the
// current formats; edge cases (empty and absurd shapes, other header variants, truncation) are
// spelled out. scripts/fuzz adds a fresh set to each run; fuzz/corpus/ holds a committed one.
#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "nfk/data.h"
#include "nfk/embed.h"

namespace {

std::string g_out;

void put(const std::string& target, const std::string& name, const std::string& bytes);

// fuzz_dataset's input: one byte for the slice ("[:byte]", 0 for none), then the file.
void put_dataset(const std::string& name, const std::string& file_bytes) {
  put("dataset", name, std::string(1, '\0') + file_bytes);
  put("dataset", name + "_slice3", std::string(1, '\3') + file_bytes);
}

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = g_out + "/" + target;
  ::mkdir(dir.c_str(), 0755);
  std::ofstream f(dir + "/" + name, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "fuzz_make_seeds: cannot write %s/%s\n", dir.c_str(), name.c_str());
    std::exit(1);
  }
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// An .npy file with a hand-written header dict (version 1.0 or 2.0), padded like numpy's.
std::string npy(const std::string& dict, const std::string& data, int major = 1) {
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  const size_t prefix = major == 1 ? 10 : 12;
  const size_t hlen = (prefix + dict.size() + 1 + 63) / 64 * 64 - prefix;
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i)
    out.push_back(static_cast<char>(hlen >> (8 * i)));
  return out + dict + std::string(hlen - dict.size() - 1, ' ') + "\n" + data;
}

// IDX bytes: magic 0 0 0x08 ndim, big-endian uint32 dims, then the data.
std::string idx(const std::vector<uint32_t>& dims, const std::string& data) {
  std::string out{'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (const uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((d >> s) & 0xFF));
  }
  return out + data;
}

std::string gzip(const std::string& bytes) {
  const std::string path = g_out + "/.tmp.gz";
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  std::string out = slurp(path);
  std::remove(path.c_str());
  return out;
}

void npy_seeds() {
  const std::string tmp = g_out + "/.tmp.npy";
  const auto written = [&](const torch::Tensor& t) {
    nfk::write_npy(tmp, t, /*allow_non_finite=*/true);
    std::string bytes = slurp(tmp);
    std::remove(tmp.c_str());
    return bytes;
  };
  torch::manual_seed(0);
  put("npy", "f4_2x1x3x3", written(torch::randn({2, 1, 3, 3})));
  put_dataset("npy_f4_4x1x2x2", written(torch::randn({4, 1, 2, 2})));
  put_dataset("npy_u1_5x3", written(torch::randint(0, 256, {5, 3}, torch::kUInt8)));
  put_dataset("npy_i8_labels_6", written(torch::arange(6)));
  put_dataset("npy_nan", written(torch::tensor({1.0f, NAN})));
  put("npy", "f8_3", written(torch::randn({3}, torch::kFloat64)));
  put("npy", "u1_2x2", written(torch::randint(0, 256, {2, 2}, torch::kUInt8)));
  put("npy", "i8_4", written(torch::arange(4)));
  put("npy", "f4_scalar", written(torch::tensor(1.5f)));
  put("npy", "f4_0x3", written(torch::empty({0, 3})));
  put("npy", "i4_2",
      npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
          std::string("\x01\0\0\0\xff\xff\xff\xff", 8)));
  put("npy", "v2_dquotes",
      npy("{\"shape\":(1,),\"fortran_order\":False,\"descr\":\"<f4\"}", std::string(4, '\0'), 2));
  put("npy", "zero_size_1e12x0",  // issue 11 defect 10
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 0), }", ""));
  put("npy", "huge_shape",
      npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", ""));
  put("npy", "fortran",
      npy("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", std::string(4, '\0')));
  put("npy", "big_endian",
      npy("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')));
  const std::string full = written(torch::ones({4, 4}));
  put("npy", "truncated", full.substr(0, full.size() - 5));
}

void idx_seeds() {
  std::string pixels;
  for (int i = 0; i < 2 * 3 * 3; ++i) pixels.push_back(static_cast<char>(i * 13));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"images_2x3x3", idx({2, 3, 3}, pixels)},
      {"labels_4", idx({4}, std::string("\x00\x01\x09\x05", 4))},
      {"empty_0x28x28", idx({0, 28, 28}, "")},
      {"zero_size_huge", idx({0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, "")},
      {"truncated", idx({2, 3, 3}, pixels.substr(0, 7))},
      {"trailing", idx({2}, "abc")},
  };
  for (const auto& [name, bytes] : cases) {
    put("idx", name, bytes);
    put("idx", name + ".gz", gzip(bytes));
    put("idx_gzip", name, bytes);  // fuzz_idx_gzip compresses its input itself
    put_dataset("idx_" + name, bytes);
    put_dataset("idx_" + name + ".gz", gzip(bytes));
  }
}

void projector_seeds() {
  // A small projector of each shape the format holds: P = 6 parameters, rank 2, with and without
  // the exact method's whole spectrum, float32 and float64.
  for (const bool exact : {false, true}) {
    nfk::Projector p;
    p.kind = exact ? nfk::ModelKind::kClassifier : nfk::ModelKind::kScore;
    p.model.model_path = "/nonexistent/model.pt";
    p.model_hash = "0123456789abcdef";
    p.model.dtype = exact ? torch::kFloat64 : torch::kFloat32;
    p.method = exact ? nfk::FitMethod::kExact : nfk::FitMethod::kMatrixFree;
    p.svd.rank = 2;
    p.fisher.estimator = exact ? nfk::Estimator::kEmpirical : nfk::Estimator::kNone;
    p.fisher.reference = exact ? "data" : "none";
    p.fisher.mean_score = torch::linspace(-1, 1, 6, torch::kFloat64);
    p.fisher.fisher_diag = torch::linspace(0.5, 3, 6, torch::kFloat64);
    p.basis = torch::eye(6, 2, torch::kFloat64);
    p.singular_values = torch::tensor({2.0, 1.0}, torch::kFloat64);
    if (exact) p.all_eigenvalues = torch::tensor({4.0, 1.0, 0.25}, torch::kFloat64);
    p.total_variance = 5.25;
    p.total_variance_exact = exact;
    p.n_examples = 3;
    p.data_source = "x.npy[:3]";
    p.input_shape = {1, 2, 3};
    const std::string path = g_out + "/.tmp.nfk";
    nfk::save_projector(path, p);
    put("projector", exact ? "exact_f64.nfk" : "matrix_free_f32.nfk", slurp(path));
    std::remove(path.c_str());
  }
}

void data_source_seeds() {
  const char* cases[] = {"mnist:train",
                         "mnist:test[:10]",
                         "fashion-mnist:train[:1]",
                         "x.npy[:5]",
                         "data/x.npy",
                         "x.npy[:0]",
                         "x.npy[:abc]",
                         "[:5]",
                         "a[:1][:2]",
                         "x[:999999999999999999]"};
  int i = 0;
  for (const char* c : cases) put("data_source", "case" + std::to_string(i++), c);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_seeds OUTDIR\n");
    return 2;
  }
  g_out = argv[1];
  ::mkdir(g_out.c_str(), 0755);
  npy_seeds();
  idx_seeds();
  projector_seeds();
  data_source_seeds();
  return 0;
}
