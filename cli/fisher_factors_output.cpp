// K-FAC / EK-FAC factors as one .npz: a zip of stored (uncompressed) .npy members plus
// index.json, handed to write_file_atomic in pieces (headers and the tensors' own storage), so
// the archive is never joined in memory and appears in one rename.
#include "fisher_factors_output.h"

#include <array>
#include <cstdint>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "nfk/output_files.h"

namespace nfk::cli {
namespace {

// CRC-32 (IEEE 802.3, reflected 0xEDB88320), as zip stores it.
uint32_t crc32_update(uint32_t crc, std::string_view bytes) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char b : bytes) crc = table[(crc ^ b) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

void put16(std::string& s, uint32_t v) {
  s.push_back(static_cast<char>(v & 0xFF));
  s.push_back(static_cast<char>((v >> 8) & 0xFF));
}

void put32(std::string& s, uint32_t v) {
  put16(s, v & 0xFFFF);
  put16(s, v >> 16);
}

// The .npy 1.0 header of a C-order float64 array of `shape`, padded to 64 bytes as numpy does.
std::string npy_header(const torch::IntArrayRef shape) {
  std::string dims = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
  }
  dims += ")";
  std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': " + dims + ", }";
  const size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  std::string header = "\x93NUMPY";
  header.push_back('\x01');
  header.push_back('\x00');
  put16(header, static_cast<uint32_t>(dict.size()));
  return header + dict;
}

// A zip archive of stored members, built as pieces that stay alive until it is written.
class ZipPieces {
 public:
  explicit ZipPieces(std::string path) : path_(std::move(path)) {}

  // A member made of `header` (owned here) followed by `data` (owned by the caller).
  void add(const std::string& name, std::string header, std::string_view data) {
    owned_.push_back(std::move(header));
    const std::string_view head = owned_.back();
    const uint64_t size = head.size() + data.size();
    check_fits(size, name);
    const uint32_t crc = crc32_update(crc32_update(0, head), data);
    std::string local;
    put32(local, 0x04034b50);
    common_fields(local, crc, static_cast<uint32_t>(size), name);
    local += name;
    put32(central_, 0x02014b50);
    put16(central_, 20);  // version made by
    common_fields(central_, crc, static_cast<uint32_t>(size), name);
    put16(central_, 0);  // comment length
    put16(central_, 0);  // disk number
    put16(central_, 0);  // internal attributes
    put32(central_, 0);  // external attributes
    check_fits(offset_, name);
    put32(central_, static_cast<uint32_t>(offset_));
    central_ += name;
    offset_ += local.size() + size;
    ++entries_;
    owned_.push_back(std::move(local));
    // The local header goes before the member's own header and data.
    pieces_.push_back(owned_.back());
    pieces_.push_back(head);
    if (!data.empty()) pieces_.push_back(data);
  }

  void write() {
    check_fits(offset_ + central_.size(), "the central directory");
    std::string end;
    put32(end, 0x06054b50);
    put16(end, 0);
    put16(end, 0);
    put16(end, entries_);
    put16(end, entries_);
    put32(end, static_cast<uint32_t>(central_.size()));
    put32(end, static_cast<uint32_t>(offset_));
    put16(end, 0);  // comment length
    owned_.push_back(central_ + end);
    pieces_.push_back(owned_.back());
    write_file_atomic(path_, pieces_);
  }

 private:
  // version needed, flags, method (stored), time, date (1980-01-01), crc, sizes, name, extra.
  static void common_fields(std::string& s, uint32_t crc, uint32_t size, const std::string& name) {
    put16(s, 20);
    put16(s, 0);
    put16(s, 0);
    put16(s, 0);
    put16(s, 0x21);
    put32(s, crc);
    put32(s, size);
    put32(s, size);
    put16(s, static_cast<uint32_t>(name.size()));
    put16(s, 0);
  }

  void check_fits(uint64_t bytes, const std::string& what) const {
    TORCH_CHECK(bytes < std::numeric_limits<uint32_t>::max() && entries_ < 0xFFFF,
                "nfk: cannot write ", path_, ": ", what,
                " would pass the 4 GiB / 65535-member limits of a plain .npz");
  }

  std::string path_;
  std::deque<std::string> owned_;  // stable addresses for the string_views below
  std::vector<std::string_view> pieces_;
  std::string central_;
  uint64_t offset_ = 0;
  uint32_t entries_ = 0;
};

std::string_view bytes_of(const torch::Tensor& t) {
  return {static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.nbytes())};
}

nlohmann::json layer_json(const KfacLayer& l, const std::vector<std::string>& members) {
  nlohmann::json j = {{"name", l.name},
                      {"kind", l.kind == TapedLayer::kConv2d ? "conv2d" : "linear"},
                      {"weight_shape", l.weight_shape},
                      {"weight_index", l.weight_index},
                      {"weight_offset", l.weight_offset},
                      {"bias", l.bias_index >= 0},
                      {"group", l.group},
                      {"groups", l.groups},
                      {"positions", l.positions},
                      {"out", l.out()},
                      {"in", l.in()},
                      {"members", members}};
  j["bias_index"] = l.bias_index >= 0 ? nlohmann::json(l.bias_index) : nlohmann::json(nullptr);
  j["bias_offset"] = l.bias_index >= 0 ? nlohmann::json(l.bias_offset) : nlohmann::json(nullptr);
  return j;
}

}  // namespace

void write_kfac_factors(const std::string& out, const KfacFactors& factors) {
  const bool ekfac = factors.form == FisherForm::kEkfac;
  ZipPieces zip(out);
  std::vector<torch::Tensor> keep;  // CPU float64 copies whose storage the pieces point into
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : factors.layers) {
    std::vector<std::pair<std::string, torch::Tensor>> named = {{"A", l.a}, {"G", l.g}};
    if (ekfac) {
      named.insert(named.end(), {{"QA", l.qa}, {"QG", l.qg}, {"scalings", l.scalings}});
    }
    std::vector<std::string> members;
    for (auto& [suffix, t] : named) {
      TORCH_CHECK(t.defined(), "nfk: cannot write ", out, ": ", l.name, " has no ", suffix);
      keep.push_back(t.detach().to(torch::kCPU, torch::kFloat64).contiguous());
      members.push_back(l.name + "." + suffix);
      zip.add(members.back() + ".npy", npy_header(keep.back().sizes()), bytes_of(keep.back()));
    }
    layers.push_back(layer_json(l, members));
  }
  nlohmann::json left_out = nlohmann::json::array();
  for (const auto& lo : factors.left_out) {
    left_out.push_back({{"index", lo.index}, {"shape", lo.shape}, {"reason", lo.reason}});
  }
  nlohmann::json index = {
      {"format", "nfk-kfac-factors"},
      {"version", 1},
      {"form", to_string(factors.form)},
      {"estimator", to_string(factors.estimator)},
      {"n_examples", factors.n_examples},
      {"num_params", factors.num_params},
      {"layout",
       "per layer, M = [weight.reshape(out, -1) | bias] [out, in'] read from θ at weight_offset "
       "(row-major) and bias_offset (a conv with groups > 1: one block per group, its rows "
       "[group·out/groups, (group+1)·out/groups) of M); the block acting on row-major vec(M) "
       "is kron(G, A) (K-FAC) or kron(QG, QA) diag(vec(scalings)) kron(QG, QA)ᵀ (EK-FAC)"},
      {"normalisation",
       "A = mean over examples and positions of [a, 1][a, 1]ᵀ; G = mean over examples of the "
       "sum over positions and Fisher rows of δ δᵀ"},
      {"layers", layers},
      {"left_out", left_out}};
  zip.add("index.json", index.dump(2) + "\n", {});
  zip.write();
}

}  // namespace nfk::cli
