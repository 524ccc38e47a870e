// A projector's own methods, its reload of the model, and the provenance of the model files.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "detail/input_file.h"
#include "nfk/embed.h"

namespace nfk {

const Names<FitMethod>& fit_method_names() {
  static const Names<FitMethod> names("method", {{FitMethod::kAuto, "auto"},
                                                 {FitMethod::kExact, "exact"},
                                                 {FitMethod::kPerExample, "per-example"},
                                                 {FitMethod::kMatrixFree, "matrix-free"},
                                                 {FitMethod::kSketch, "sketch"}});
  return names;
}

torch::Tensor Projector::explained_variance_ratio() const {
  auto s2 = singular_values.to(torch::kFloat64).square();
  return total_variance > 0 ? s2 / total_variance : torch::zeros_like(s2);
}

int64_t Projector::components_for(double fraction) const {
  auto eig = all_eigenvalues.defined() ? all_eigenvalues
                                       : singular_values.to(torch::kFloat64).square().cpu();
  if (total_variance <= 0) return -1;
  auto cum = (eig.cumsum(0) / total_variance).contiguous();
  const double* c = cum.data_ptr<double>();
  for (int64_t i = 0; i < cum.numel(); ++i) {
    if (c[i] >= fraction - 1e-12) return i + 1;
  }
  return -1;
}

nlohmann::json Projector::spectrum_json() const {
  auto to_vec = [](const torch::Tensor& t) {
    auto c = t.to(torch::kFloat64).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  return {{"singular_values", to_vec(singular_values)},
          {"eigenvalues", to_vec(singular_values.to(torch::kFloat64).square())},
          {"explained_variance_ratio", to_vec(explained_variance_ratio())},
          {"total_variance", total_variance},
          {"total_variance_exact", total_variance_exact},
          {"components_for",
           {{"0.5", components_for(0.5)},
            {"0.9", components_for(0.9)},
            {"0.99", components_for(0.99)},
            {"0.995", components_for(0.995)}}},
          {"rank", rank()},
          {"method", to_string(method)},
          {"dtype", dtype_name(model.dtype)},
          {"kind", to_string(kind)},
          {"estimator", to_string(fisher.estimator)},
          {"n_examples", n_examples},
          {"n_params", n_params()},
          {"svd",
           {{"solver", to_string(svd.solver)},
            {"tol", svd.tol >= 0 ? nlohmann::json(svd.tol) : nullptr},
            {"iterations", profile.iterations},
            {"passes", profile.passes},
            {"estimated_error",
             profile.estimated_error >= 0 ? nlohmann::json(profile.estimated_error) : nullptr}}}};
}

void check_projector_model(const Projector& projector, ScoreModel& model,
                           const torch::Tensor& inputs) {
  TORCH_CHECK(model.num_parameters() == projector.n_params(), "nfk: the model has ",
              model.num_parameters(), " parameters but the projector was fitted with ",
              projector.n_params());
  if (!inputs.defined() || projector.input_shape.empty() || inputs.dim() == 0 ||
      inputs.size(0) == 0) {
    return;  // no examples: nothing to embed, whatever the shape
  }
  const auto example = inputs.sizes().slice(1).vec();
  TORCH_CHECK(inputs.dim() >= 1 && example == projector.input_shape, "nfk: data of shape ",
              inputs.sizes(), " does not fit the projector: it was fitted on examples of shape ",
              c10::IntArrayRef(projector.input_shape), " (",
              projector.data_source.empty() ? "data" : projector.data_source,
              "), so the model expects [N, ", c10::Join(", ", projector.input_shape), "]");
}

namespace {

// A projector's embedded model file written where load_network can read it, removed on scope
// exit (TorchScript and zoo archives load from a path).
class EmbeddedFile {
 public:
  explicit EmbeddedFile(const std::string& bytes) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/nfk-model-XXXXXX";
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    const int fd = mkstemp(name.data());
    TORCH_CHECK(fd >= 0, "nfk: cannot create a temporary file in ",
                pattern.substr(0, pattern.rfind('/')),
                " for the projector's embedded model (set TMPDIR to a writable folder)");
    path_ = name.data();
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (w <= 0) break;
      done += static_cast<size_t>(w);
    }
    ::close(fd);
    TORCH_CHECK(done == bytes.size(), "nfk: cannot write the projector's embedded model to ", path_,
                " (disk full?)");
  }
  ~EmbeddedFile() { std::remove(path_.c_str()); }
  EmbeddedFile(const EmbeddedFile&) = delete;
  EmbeddedFile& operator=(const EmbeddedFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A stored model file's path for loading: the override, else the embedded copy, else the
// recorded path (its hash checked where one was recorded).
void check_recorded(const std::string& what, const std::string& path, const std::string& hash) {
  TORCH_CHECK(!path.empty(), "nfk: the projector's ", what,
              " was held in memory when it was "
              "fitted and no file was recorded: pass the model file (--model), or fit with "
              "--embed-model");
  if (hash.empty()) return;
  TORCH_CHECK(file_hash(path) == hash, "nfk: ", what, " ", path,
              " differs from the one the projector was fitted with (hash ", hash, ")");
}

}  // namespace

ScoreModel load_projector_model(const Projector& projector, const std::string& override_path) {
  ModelOptions options = projector.model;
  std::unique_ptr<EmbeddedFile> model_copy, generator_copy;
  if (!override_path.empty()) {
    options.model_path = override_path;
    check_recorded("model", options.model_path, projector.model_hash);
  } else if (!projector.model_bytes.empty()) {
    model_copy = std::make_unique<EmbeddedFile>(projector.model_bytes);
    options.model_path = model_copy->path();
  } else {
    check_recorded("model", options.model_path, projector.model_hash);
  }
  if (!projector.generator_bytes.empty()) {
    generator_copy = std::make_unique<EmbeddedFile>(projector.generator_bytes);
    options.generator_path = generator_copy->path();
  } else if (!options.generator_path.empty()) {
    check_recorded("generator", options.generator_path, projector.generator_hash);
  }
  return load_score_model(projector.kind, options);
}

void record_model_files(Projector& projector, bool embed) {
  auto record = [embed](std::string& path, std::string& hash, std::string& bytes) {
    std::error_code ec;
    if (path.empty() || !std::filesystem::is_regular_file(path, ec)) return;
    path = std::filesystem::absolute(path).string();
    hash = file_hash(path);
    if (embed) bytes = detail::read_input_file(path, "model");
  };
  record(projector.model.model_path, projector.model_hash, projector.model_bytes);
  record(projector.model.generator_path, projector.generator_hash, projector.generator_bytes);
}

}  // namespace nfk
