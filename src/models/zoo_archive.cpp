// Zoo archives: a torch::serialize archive holding the architecture name, its options (JSON)
// and the module's weights, so a zoo model loads without its training code.
#include <fstream>
#include <sstream>

#include "nfk/output_files.h"
#include "detail/input_file.h"
#include "nfk/zoo.h"

namespace nfk {
namespace {

constexpr const char* kArchKey = "nfk_zoo_arch";
constexpr const char* kOptionsKey = "nfk_zoo_options";

}  // namespace

torch::Tensor ZooModule::call(const std::string& method, const torch::Tensor& x) const {
  auto it = methods.find(method);
  TORCH_CHECK(it != methods.end(), "nfk: zoo model ", arch, " has no method ", method);
  return it->second(x);
}

bool ZooModule::has_method(const std::string& method) const {
  return methods.count(method) > 0 || (method == "sample" && sample);
}

ZooModule make_zoo_module(const std::string& arch, const nlohmann::json& options) {
  const auto& registry = zoo_registry();
  auto it = registry.find(arch);
  if (it == registry.end()) {
    std::string known;
    for (const auto& [name, builder] : registry) known += (known.empty() ? "" : ", ") + name;
    TORCH_CHECK(false, "nfk: unknown zoo architecture `", arch, "` (known: ", known, ")");
  }
  ZooModule zoo = it->second(options);
  zoo.arch = arch;
  return zoo;
}

void save_zoo_module(const std::string& path, const ZooModule& zoo) {
  torch::serialize::OutputArchive archive;
  archive.write(kArchKey, c10::IValue(zoo.arch));
  archive.write(kOptionsKey, c10::IValue(zoo.options.dump()));
  zoo.module->save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, bytes.str());
}

bool is_zoo_archive(const std::string& path) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    c10::IValue arch;
    return archive.try_read(kArchKey, arch);
  } catch (const c10::Error&) {
    return false;
  }
}

ZooModule load_zoo_module(const std::string& path) {
  detail::check_input_file(path, "model");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "nfk: ", path, ": not a readable model archive (",
                e.what_without_backtrace(), ")");
  }
  c10::IValue arch, options;
  TORCH_CHECK(archive.try_read(kArchKey, arch) && archive.try_read(kOptionsKey, options),
              "nfk: ", path, ": not an nfk zoo archive");
  ZooModule zoo = make_zoo_module(arch.toStringRef(), nlohmann::json::parse(options.toStringRef()));
  zoo.module->load(archive);
  return zoo;
}

}  // namespace nfk
