#include <filesystem>
#include <fstream>
#include <sstream>

#include "nfk/output_files.h"
#include "nfk/trainer.h"

namespace nfk {

void save_checkpoint(const std::string& dir, int64_t epoch,
                     const std::map<std::string, const ZooModule*>& modules,
                     const std::map<std::string, torch::optim::Optimizer*>& optimizers,
                     const nlohmann::json& log) {
  std::filesystem::create_directories(dir);
  for (const auto& [name, zoo] : modules) save_zoo_module(dir + "/" + name + ".zoo", *zoo);
  for (const auto& [name, opt] : optimizers) {
    torch::serialize::OutputArchive archive;
    opt->save(archive);
    std::ostringstream bytes;
    archive.save_to(bytes);
    write_file_atomic(dir + "/" + name + ".optim", bytes.str());
  }
  nlohmann::json state = {{"epoch", epoch}, {"log", log}};
  write_file_atomic(dir + "/state.json", state.dump(1) + "\n");
}

int64_t load_checkpoint(const std::string& dir, const std::map<std::string, ZooModule*>& modules,
                        const std::map<std::string, torch::optim::Optimizer*>& optimizers,
                        nlohmann::json* log) {
  std::ifstream in(dir + "/state.json");
  if (!in.good()) return 0;
  nlohmann::json state;
  try {
    in >> state;
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "nfk: ", dir, "/state.json: corrupt checkpoint state (", e.what(), ")");
  }
  for (const auto& [name, zoo] : modules) {
    // Checkpoints written before zoo archives were named .zoo hold name.pt.
    std::string file = dir + "/" + name + ".zoo";
    if (!std::filesystem::exists(file) && std::filesystem::exists(dir + "/" + name + ".pt")) {
      file = dir + "/" + name + ".pt";
    }
    ZooModule saved = load_zoo_module(file);
    TORCH_CHECK(saved.arch == zoo->arch && saved.options == zoo->options, "nfk: ", file,
                ": checkpoint holds ", saved.arch, " ", saved.options.dump(),
                ", but this run builds ", zoo->arch, " ", zoo->options.dump());
    torch::NoGradGuard no_grad;
    auto dst = zoo->module->named_parameters(), src = saved.module->named_parameters();
    for (auto& item : dst) item.value().copy_(src[item.key()]);
    auto dst_b = zoo->module->named_buffers(), src_b = saved.module->named_buffers();
    for (auto& item : dst_b) item.value().copy_(src_b[item.key()]);
  }
  for (const auto& [name, opt] : optimizers) {
    torch::serialize::InputArchive archive;
    archive.load_from(dir + "/" + name + ".optim");
    opt->load(archive);
  }
  if (log) *log = state.at("log");
  return state.at("epoch").get<int64_t>();
}

at::Generator epoch_generator(uint64_t seed, uint64_t stream, int64_t epoch) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + stream * 0xBF58476D1CE4E5B9ULL +
               static_cast<uint64_t>(epoch) * 0x94D049BB133111EBULL + 1;
  z = (z ^ (z >> 31)) * 0xD6E8FEB86659FD93ULL;
  return at::detail::createCPUGenerator(z ^ (z >> 32));
}

}  // namespace nfk
