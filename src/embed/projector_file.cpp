// Projector file: "NFKPROJ\n", uint64 LE header length, JSON header, raw tensor bytes.
#include <cstring>
#include <fstream>
#include <sstream>

#include "detail/atomic_file.h"
#include "detail/strings.h"
#include "nfk/embed.h"

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
    const size_t nbytes = c.numel() * c.element_size();
    table.push_back({{"name", name},
                     {"dtype", dtype_name(dtype)},
                     {"shape", c.sizes().vec()},
                     {"offset", data.size()},
                     {"nbytes", nbytes}});
    data.append(static_cast<const char*>(c.data_ptr()), nbytes);
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
                             {"seed", p.svd.seed}}},
                           {"fisher",
                            {{"estimator", to_string(p.fisher.estimator)},
                             {"reference", p.fisher.reference},
                             {"n_reference", p.fisher.n_reference},
                             {"floor_value", p.fisher.floor_value},
                             {"n_floored", p.fisher.n_floored}}},
                           {"total_variance", p.total_variance},
                           {"total_variance_exact", p.total_variance_exact},
                           {"n_examples", p.n_examples},
                           {"n_params", p.n_params()},
                           {"data_source", p.data_source},
                           {"batch_size", p.batch_size},
                           {"tensors", table}};
  const std::string head = header.dump();
  const uint64_t head_len = head.size();
  std::string bytes(kMagic, sizeof(kMagic));
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((head_len >> (8 * i)) & 0xff));
  bytes += head;
  bytes += data;
  detail::write_file_atomic(path, bytes);
}

Projector load_projector(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), "nfk: ", path, ": cannot open projector file");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TORCH_CHECK(bytes.size() >= 16 && std::memcmp(bytes.data(), kMagic, 8) == 0, "nfk: ", path,
              ": not an nfk projector file (bad magic)");
  uint64_t head_len = 0;
  for (int i = 0; i < 8; ++i)
    head_len |= uint64_t(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
  TORCH_CHECK(head_len <= bytes.size() - 16, "nfk: ", path, ": truncated projector header");
  const size_t data_start = 16 + head_len;
  Projector p;
  try {
    auto h = nlohmann::json::parse(bytes.substr(16, head_len));
    TORCH_CHECK(h.at("format") == "nfk-projector", "not an nfk projector");
    TORCH_CHECK(h.at("version").get<int>() == Projector::kFormatVersion,
                "unsupported projector version ", h.at("version").get<int>(), " (this nfk reads ",
                Projector::kFormatVersion, ")");
    p.kind = parse_model_kind(h.at("kind"));
    const auto& m = h.at("model");
    p.model.model_path = m.at("path");
    p.model_hash = m.at("hash");
    p.model.generator_path = m.at("generator_path");
    p.generator_hash = m.at("generator_hash");
    p.model.latent_dim = m.at("latent_dim");
    p.model.output = m.at("output");
    p.model.seed = m.at("seed");
    p.model.dtype = parse_dtype(h.at("dtype"));
    p.method = parse_fit_method(h.at("method"));
    const auto& s = h.at("svd");
    p.svd = {s.at("rank"), s.at("oversample"), s.at("power_iters"), s.at("seed")};
    const auto& f = h.at("fisher");
    const std::string est = f.at("estimator");
    p.fisher.estimator = est == "none" ? Estimator::kNone : parse_estimator(est);
    p.fisher.reference = f.at("reference");
    p.fisher.n_reference = f.at("n_reference");
    p.fisher.floor_value = f.at("floor_value");
    p.fisher.n_floored = f.at("n_floored");
    p.total_variance = h.at("total_variance");
    p.total_variance_exact = h.at("total_variance_exact");
    p.n_examples = h.at("n_examples");
    p.data_source = h.at("data_source");
    p.batch_size = h.at("batch_size");
    const int64_t n_params = h.at("n_params");
    size_t data_len = 0;
    std::map<std::string, torch::Tensor> tensors;
    for (const auto& t : h.at("tensors")) {
      const std::vector<int64_t> shape = t.at("shape");
      const size_t offset = t.at("offset"), nbytes = t.at("nbytes");
      auto opts = torch::TensorOptions().dtype(t.contains("dtype") ? parse_dtype(t.at("dtype"))
                                                                   : p.model.dtype);
      auto tensor = torch::empty(shape, opts);
      TORCH_CHECK(nbytes == tensor.numel() * tensor.element_size(), "tensor ",
                  t.at("name").get<std::string>(), " has a wrong byte count");
      TORCH_CHECK(data_start + offset + nbytes <= bytes.size(), "truncated data for tensor ",
                  t.at("name").get<std::string>());
      std::memcpy(tensor.data_ptr(), bytes.data() + data_start + offset, nbytes);
      TORCH_CHECK(torch::isfinite(tensor).all().item<bool>(), "tensor ",
                  t.at("name").get<std::string>(), " holds NaN or Inf");
      tensors[t.at("name")] = tensor;
      data_len = std::max(data_len, offset + nbytes);
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
                    p.singular_values.numel() == rank && p.fisher.mean_score.numel() == n_params &&
                    p.fisher.fisher_diag.numel() == n_params,
                "tensor shapes disagree with rank ", rank, " and ", n_params, " parameters");
    TORCH_CHECK((p.fisher.fisher_diag > 0).all().item<bool>(), "Fisher diagonal is not positive");
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "nfk: ", path, ": corrupt projector header (", e.what(), ")");
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "nfk: ", path, ": ", detail::first_line(e.msg()));
  }
  return p;
}

}  // namespace nfk
