// Projector file: "NFKPROJ\n", uint64 LE header length, uint32 LE crc32 of the header, JSON
// header (each tensor's crc32 in its table entry), raw tensor bytes.
#include <cmath>
#include <cstring>
#include <map>

#include "detail/checksum.h"
#include "detail/input_file.h"
#include "detail/strings.h"
#include "nfk/embed.h"
#include "nfk/output_files.h"

namespace nfk {
namespace {

constexpr char kMagic[8] = {'N', 'F', 'K', 'P', 'R', 'O', 'J', '\n'};

nlohmann::json model_json(const Projector& p) {
  return {{"path", p.model.model_path},
          {"hash", p.model_hash},
          {"generator_path", p.model.generator_path},
          {"generator_hash", p.generator_hash},
          {"latent_dim", p.model.latent_dim},
          {"output", p.model.output},
          {"seed", p.model.seed}};
}

// What is written must read back: finite after the cast to the file's dtype (a float64 value
// beyond float32's range becomes Inf), σ ≥ 0, and I > 0 (a tiny I can underflow to 0).
void check_storable(const std::string& name, const torch::Tensor& before, const torch::Tensor& c) {
  const auto where = [&](const torch::Tensor& bad) {
    const int64_t i = bad.flatten().nonzero().index({0, 0}).item<int64_t>();
    return " at index " + std::to_string(i) + " (value " +
           std::to_string(before.flatten()[i].item<double>()) + " before the cast to " +
           dtype_name(c.scalar_type()) + ")";
  };
  const auto finite = torch::isfinite(c);
  TORCH_CHECK(finite.all().item<bool>(), "nfk: cannot save the projector: ", name, " is not finite",
              where(finite.logical_not()),
              "; fit in float64 (--dtype float64) or rescale the data");
  if (name == "singular_values") {
    TORCH_CHECK((c >= 0).all().item<bool>(), "nfk: cannot save the projector: negative ", name);
  }
  if (name == "fisher_diag") {
    const auto positive = c > 0;
    TORCH_CHECK(positive.all().item<bool>(),
                "nfk: cannot save the projector: the Fisher diagonal underflows to 0",
                where(positive.logical_not()),
                "; fit in float64 (--dtype float64) or rescale the data");
  }
}

}  // namespace

void save_projector(const std::string& path, const Projector& p) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"basis", p.basis},
      {"singular_values", p.singular_values},
      {"mean_score", p.fisher.mean_score},
      {"fisher_diag", p.fisher.fisher_diag}};
  if (p.all_eigenvalues.defined()) tensors.emplace_back("all_eigenvalues", p.all_eigenvalues);
  nlohmann::json table = nlohmann::json::array();
  std::string data;
  for (const auto& [name, t] : tensors) {
    // The whole spectrum stays float64 (tiny, and its tail spans many decades).
    auto dtype = name == "all_eigenvalues" ? torch::kFloat64 : p.model.dtype;
    auto c = t.to(torch::kCPU, dtype).contiguous();
    check_storable(name, t, c);
    const size_t nbytes = c.numel() * c.element_size();
    table.push_back({{"name", name},
                     {"dtype", dtype_name(dtype)},
                     {"shape", c.sizes().vec()},
                     {"offset", data.size()},
                     {"nbytes", nbytes},
                     {"crc32", detail::crc32_of(static_cast<const char*>(c.data_ptr()), nbytes)}});
    data.append(static_cast<const char*>(c.data_ptr()), nbytes);
  }
  // The model files themselves, with --embed-model: raw bytes after the tensors.
  nlohmann::json files = nlohmann::json::array();
  for (const auto& [name, content] :
       {std::pair<std::string, const std::string*>{"model", &p.model_bytes},
        {"generator", &p.generator_bytes}}) {
    if (content->empty()) continue;
    files.push_back({{"name", name},
                     {"offset", data.size()},
                     {"nbytes", content->size()},
                     {"crc32", detail::crc32_of(content->data(), content->size())}});
    data += *content;
  }
  nlohmann::json header = {{"format", "nfk-projector"},
                           {"version", Projector::kFormatVersion},
                           {"kind", to_string(p.kind)},
                           {"model", model_json(p)},
                           {"dtype", dtype_name(p.model.dtype)},
                           {"method", to_string(p.method)},
                           {"svd",
                            {{"rank", p.svd.rank},
                             {"oversample", p.svd.oversample},
                             {"power_iters", p.svd.power_iters},
                             {"seed", p.svd.seed},
                             {"tol", p.svd.tol},
                             {"solver", to_string(p.svd.solver)},
                             {"iterations", p.profile.iterations},
                             {"passes", p.profile.passes},
                             {"estimated_error", p.profile.estimated_error}}},
                           {"fisher",
                            {{"estimator", to_string(p.fisher.estimator)},
                             {"reference", p.fisher.reference},
                             {"n_reference", p.fisher.n_reference},
                             {"floor_value", p.fisher.floor_value},
                             {"n_floored", p.fisher.n_floored}}},
                           {"total_variance", p.total_variance},
                           {"total_variance_exact", p.total_variance_exact},
                           {"n_examples", p.n_examples},
                           {"input_shape", p.input_shape},
                           {"n_params", p.n_params()},
                           {"data_source", p.data_source},
                           {"batch_size", p.batch_size},
                           {"gradient_path", to_string(p.gradient_path)},
                           {"tensors", table},
                           {"files", files}};
  const std::string head = header.dump();
  const uint64_t head_len = head.size();
  std::string bytes(kMagic, sizeof(kMagic));
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((head_len >> (8 * i)) & 0xff));
  const uint32_t head_crc = detail::crc32_of(head.data(), head.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((head_crc >> (8 * i)) & 0xff));
  bytes += head;
  bytes += data;
  write_file_atomic(path, bytes);
}

namespace {

// Reads the JSON header's numbers without undefined behaviour: integers only where integers are
// meant (nlohmann's get<int64_t>() of 1e300 is a float-to-int overflow), within [lo, hi].
int64_t get_int(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi) {
  const auto& v = j.at(key);
  TORCH_CHECK(v.is_number_integer(), "header field ", key, " is not an integer");
  TORCH_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(hi),
              "header field ", key, " is out of range");
  const int64_t x = v.get<int64_t>();
  TORCH_CHECK(x >= lo && x <= hi, "header field ", key, " = ", x, " is out of range [", lo, ", ",
              hi, "]");
  return x;
}

uint64_t get_seed(const nlohmann::json& j, const char* key) {
  const auto& v = j.at(key);
  TORCH_CHECK(v.is_number_integer() && (v.is_number_unsigned() || v.get<int64_t>() >= 0),
              "header field ", key, " is not a non-negative integer");
  return v.get<uint64_t>();
}

double get_finite(const nlohmann::json& j, const char* key) {
  const auto& v = j.at(key);
  TORCH_CHECK(v.is_number(), "header field ", key, " is not a number");
  const double x = v.get<double>();
  TORCH_CHECK(std::isfinite(x), "header field ", key, " is not finite");
  return x;
}

constexpr int64_t kMaxCount = int64_t{1} << 48;  // any count or byte size in a sane projector

// One tensor of the table, checked against the data it claims before anything is allocated.
torch::Tensor read_tensor(const nlohmann::json& t, const std::string& bytes, size_t data_start,
                          torch::Dtype default_dtype) {
  const std::string name = t.at("name");
  const torch::Dtype dtype = t.contains("dtype") ? parse_dtype(t.at("dtype")) : default_dtype;
  const auto& shape_json = t.at("shape");
  TORCH_CHECK(shape_json.is_array() && shape_json.size() <= 4, "tensor ", name,
              " has a malformed shape");
  std::vector<int64_t> shape;
  int64_t numel = 1;
  for (const auto& d : shape_json) {
    TORCH_CHECK(d.is_number_integer() && !(d.is_number_unsigned() && d.get<uint64_t>() > kMaxCount),
                "tensor ", name, " has a malformed shape");
    const int64_t n = d.get<int64_t>();
    TORCH_CHECK(n >= 0 && n <= kMaxCount, "tensor ", name, " has a malformed shape");
    TORCH_CHECK(!__builtin_mul_overflow(numel, n, &numel) && numel <= kMaxCount, "tensor ", name,
                " is impossibly large");
    shape.push_back(n);
  }
  const int64_t offset = get_int(t, "offset", 0, kMaxCount);
  const int64_t nbytes = get_int(t, "nbytes", 0, kMaxCount);
  TORCH_CHECK(nbytes == numel * static_cast<int64_t>(c10::elementSize(dtype)), "tensor ", name,
              " has a wrong byte count");
  const size_t data_len = bytes.size() - data_start;
  TORCH_CHECK(static_cast<size_t>(offset) <= data_len &&
                  static_cast<size_t>(nbytes) <= data_len - static_cast<size_t>(offset),
              "truncated data for tensor ", name);
  const char* data = bytes.data() + data_start + offset;
  TORCH_CHECK(t.contains("crc32") && get_seed(t, "crc32") == detail::crc32_of(data, nbytes),
              "checksum mismatch in tensor ", name, " (the file is corrupt)");
  auto tensor = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  if (nbytes > 0) std::memcpy(tensor.data_ptr(), data, nbytes);
  TORCH_CHECK(torch::isfinite(tensor).all().item<bool>(), "tensor ", name, " holds NaN or Inf");
  return tensor;
}

// An embedded file of the `files` table (v3), checked like a tensor.
std::string read_embedded_file(const nlohmann::json& f, const std::string& bytes, size_t data_start,
                               size_t* end) {
  const std::string name = f.at("name");
  const int64_t offset = get_int(f, "offset", 0, kMaxCount);
  const int64_t nbytes = get_int(f, "nbytes", 1, kMaxCount);
  const size_t data_len = bytes.size() - data_start;
  TORCH_CHECK(static_cast<size_t>(offset) <= data_len &&
                  static_cast<size_t>(nbytes) <= data_len - static_cast<size_t>(offset),
              "truncated data for the embedded ", name, " file");
  const char* data = bytes.data() + data_start + offset;
  TORCH_CHECK(get_seed(f, "crc32") == detail::crc32_of(data, nbytes), "checksum mismatch in the ",
              "embedded ", name, " file (the projector is corrupt)");
  *end = static_cast<size_t>(offset + nbytes);
  return std::string(data, nbytes);
}

}  // namespace

Projector load_projector(const std::string& path) {
  const std::string bytes = detail::read_input_file(path, "projector");
  TORCH_CHECK(bytes.size() >= 20 && std::memcmp(bytes.data(), kMagic, 8) == 0, "nfk: ", path,
              ": not an nfk projector file (bad magic)");
  uint64_t head_len = 0;
  for (int i = 0; i < 8; ++i)
    head_len |= uint64_t(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
  uint32_t head_crc = 0;
  for (int i = 0; i < 4; ++i)
    head_crc |= uint32_t(static_cast<unsigned char>(bytes[16 + i])) << (8 * i);
  TORCH_CHECK(head_len <= bytes.size() - 20, "nfk: ", path, ": truncated projector header");
  const size_t data_start = 20 + head_len;
  TORCH_CHECK(detail::crc32_of(bytes.data() + 20, head_len) == head_crc, "nfk: ", path,
              ": corrupt projector header (checksum mismatch), or a projector written by an "
              "older nfk: fit it again");
  Projector p;
  try {
    auto h = nlohmann::json::parse(bytes.begin() + 20, bytes.begin() + data_start);
    TORCH_CHECK(h.at("format") == "nfk-projector", "not an nfk projector");
    const int64_t version = get_int(h, "version", 0, 1 << 20);
    TORCH_CHECK(version == 2 || version == Projector::kFormatVersion,
                "unsupported projector version ", version, " (this nfk reads 2 and ",
                Projector::kFormatVersion, ")");
    p.kind = parse_model_kind(h.at("kind"));
    const auto& m = h.at("model");
    p.model.model_path = m.at("path");
    p.model_hash = m.at("hash");
    p.model.generator_path = m.at("generator_path");
    p.generator_hash = m.at("generator_hash");
    p.model.latent_dim = get_int(m, "latent_dim", 0, kMaxCount);
    p.model.output = get_int(m, "output", -1, kMaxCount);
    p.model.seed = get_seed(m, "seed");
    p.model.dtype = parse_dtype(h.at("dtype"));
    p.method = parse_fit_method(h.at("method"));
    const auto& s = h.at("svd");
    p.svd = {get_int(s, "rank", 1, kMaxCount), get_int(s, "oversample", 0, kMaxCount),
             get_int(s, "power_iters", 0, kMaxCount), get_seed(s, "seed")};
    if (s.contains("estimated_error")) {  // how the SVD went (nfk after 2026-12: optional)
      p.svd.tol = get_finite(s, "tol");
      p.svd.solver = svd_solver_names().parse(s.at("solver"));
      p.profile.iterations = get_int(s, "iterations", 0, kMaxCount);
      p.profile.passes = get_int(s, "passes", 0, kMaxCount);
      p.profile.estimated_error = get_finite(s, "estimated_error");
    }
    const auto& f = h.at("fisher");
    const std::string est = f.at("estimator");
    p.fisher.estimator = estimator_names().parse(est);
    p.fisher.reference = f.at("reference");
    p.fisher.n_reference = get_int(f, "n_reference", 0, kMaxCount);
    p.fisher.floor_value = get_finite(f, "floor_value");
    p.fisher.n_floored = get_int(f, "n_floored", 0, kMaxCount);
    p.total_variance = get_finite(h, "total_variance");
    TORCH_CHECK(p.total_variance >= 0, "negative total variance");
    p.total_variance_exact = h.at("total_variance_exact");
    p.n_examples = get_int(h, "n_examples", 1, kMaxCount);
    p.data_source = h.at("data_source");
    if (h.contains("input_shape")) {
      const auto& shape = h.at("input_shape");
      TORCH_CHECK(shape.is_array() && shape.size() <= 8, "malformed input_shape");
      for (const auto& d : shape) {
        TORCH_CHECK(
            d.is_number_integer() && (!d.is_number_unsigned() || d.get<uint64_t>() <= kMaxCount),
            "malformed input_shape");
        const int64_t n = d.get<int64_t>();
        TORCH_CHECK(n >= 0 && n <= kMaxCount, "malformed input_shape");
        p.input_shape.push_back(n);
      }
    }
    p.batch_size = get_int(h, "batch_size", 1, kMaxCount);
    const int64_t n_params = get_int(h, "n_params", 1, kMaxCount);
    size_t data_len = 0;
    std::map<std::string, torch::Tensor> tensors;
    const auto& table = h.at("tensors");
    TORCH_CHECK(table.is_array() && table.size() <= 16, "malformed tensor table");
    for (const auto& t : table) {
      const std::string name = t.at("name");
      TORCH_CHECK(!tensors.count(name), "tensor ", name, " appears twice");
      tensors[name] = read_tensor(t, bytes, data_start, p.model.dtype);
      data_len = std::max(data_len, static_cast<size_t>(get_int(t, "offset", 0, kMaxCount) +
                                                        get_int(t, "nbytes", 0, kMaxCount)));
    }
    if (version >= 3) {
      p.gradient_path = gradient_path_names().parse(h.at("gradient_path"));
      const auto& files = h.at("files");
      TORCH_CHECK(files.is_array() && files.size() <= 2, "malformed file table");
      for (const auto& f : files) {
        size_t end = 0;
        const std::string name = f.at("name");
        TORCH_CHECK(name == "model" || name == "generator", "unknown embedded file ", name);
        auto& slot = name == "model" ? p.model_bytes : p.generator_bytes;
        TORCH_CHECK(slot.empty(), "embedded file ", name, " appears twice");
        slot = read_embedded_file(f, bytes, data_start, &end);
        data_len = std::max(data_len, end);
      }
    }
    TORCH_CHECK(data_start + data_len == bytes.size(), "file size does not match its header");
    for (const char* name : {"basis", "singular_values", "mean_score", "fisher_diag"}) {
      TORCH_CHECK(tensors.count(name), "missing tensor ", name);
    }
    p.basis = tensors["basis"];
    p.singular_values = tensors["singular_values"];
    p.fisher.mean_score = tensors["mean_score"];
    p.fisher.fisher_diag = tensors["fisher_diag"];
    if (tensors.count("all_eigenvalues")) p.all_eigenvalues = tensors["all_eigenvalues"];
    const int64_t rank = p.svd.rank;
    TORCH_CHECK(p.basis.dim() == 2 && p.basis.size(0) == n_params && p.basis.size(1) == rank &&
                    p.singular_values.dim() == 1 && p.singular_values.numel() == rank &&
                    p.fisher.mean_score.numel() == n_params &&
                    p.fisher.fisher_diag.numel() == n_params,
                "tensor shapes disagree with rank ", rank, " and ", n_params, " parameters");
    for (const auto& [name, t] : tensors) {
      TORCH_CHECK(t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat64,
                  "tensor ", name, " is not floating point");
    }
    TORCH_CHECK((p.singular_values >= 0).all().item<bool>(), "negative singular value");
    TORCH_CHECK((p.fisher.fisher_diag > 0).all().item<bool>(), "Fisher diagonal is not positive");
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "nfk: ", path, ": corrupt projector header (", e.what(), ")");
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "nfk: ", path, ": ", detail::first_line(e.msg()));
  }
  return p;
}

}  // namespace nfk
