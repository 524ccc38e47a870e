// Zoo archives: a torch::serialize archive holding the architecture name, its options (JSON)
// and the module's weights, so a zoo model loads without its training code.
#include <fstream>
#include <sstream>

#include "detail/atomic_file.h"
#include "nfk/zoo.h"

namespace nfk {
namespace {

constexpr const char* kArchKey = "nfk_zoo_arch";
constexpr const char* kOptionsKey = "nfk_zoo_options";

template <typename T>
T get_or(const nlohmann::json& j, const char* key, T fallback) {
  return j.contains(key) ? j.at(key).get<T>() : fallback;
}

template <typename Holder>
ZooModule wrap(const std::string& arch, const nlohmann::json& options, Holder holder) {
  ZooModule zoo;
  zoo.arch = arch;
  zoo.options = options;
  zoo.module = holder.ptr();
  zoo.forward = [holder](const torch::Tensor& x) mutable { return holder->forward(x); };
  return zoo;
}

}  // namespace

ZooModule make_zoo_module(const std::string& arch, const nlohmann::json& o) {
  if (arch == "lenet5") {
    LeNet5Options d;
    auto opt = LeNet5Options()
                   .in_channels(get_or(o, "in_channels", d.in_channels()))
                   .image_size(get_or(o, "image_size", d.image_size()))
                   .num_classes(get_or(o, "num_classes", d.num_classes()));
    return wrap(arch, {{"in_channels", opt.in_channels()}, {"image_size", opt.image_size()},
                       {"num_classes", opt.num_classes()}}, LeNet5(opt));
  }
  if (arch == "mlp") {
    MlpOptions d;
    auto opt = MlpOptions()
                   .in_features(get_or(o, "in_features", d.in_features()))
                   .hidden(get_or(o, "hidden", d.hidden()))
                   .out_features(get_or(o, "out_features", d.out_features()));
    return wrap(arch, {{"in_features", opt.in_features()}, {"hidden", opt.hidden()},
                       {"out_features", opt.out_features()}}, Mlp(opt));
  }
  if (arch == "dcgan-d") {
    DcganDiscriminatorOptions d;
    auto opt = DcganDiscriminatorOptions()
                   .channels(get_or(o, "channels", d.channels()))
                   .image_size(get_or(o, "image_size", d.image_size()))
                   .width(get_or(o, "width", d.width()));
    return wrap(arch, {{"channels", opt.channels()}, {"image_size", opt.image_size()},
                       {"width", opt.width()}}, DcganDiscriminator(opt));
  }
  if (arch == "dcgan-g") {
    DcganGeneratorOptions d;
    auto opt = DcganGeneratorOptions()
                   .latent_dim(get_or(o, "latent_dim", d.latent_dim()))
                   .channels(get_or(o, "channels", d.channels()))
                   .image_size(get_or(o, "image_size", d.image_size()))
                   .width(get_or(o, "width", d.width()));
    return wrap(arch, {{"latent_dim", opt.latent_dim()}, {"channels", opt.channels()},
                       {"image_size", opt.image_size()}, {"width", opt.width()}},
                DcganGenerator(opt));
  }
  TORCH_CHECK(false, "nfk: unknown zoo architecture `", arch,
              "` (known: lenet5, mlp, dcgan-d, dcgan-g)");
}

void save_zoo_module(const std::string& path, const ZooModule& zoo) {
  torch::serialize::OutputArchive archive;
  archive.write(kArchKey, c10::IValue(zoo.arch));
  archive.write(kOptionsKey, c10::IValue(zoo.options.dump()));
  zoo.module->save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  detail::write_file_atomic(path, bytes.str());
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
  TORCH_CHECK(std::ifstream(path).good(), "nfk: ", path, ": no such file");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "nfk: ", path, ": not a readable model archive (", e.what_without_backtrace(),
                ")");
  }
  c10::IValue arch, options;
  TORCH_CHECK(archive.try_read(kArchKey, arch) && archive.try_read(kOptionsKey, options),
              "nfk: ", path, ": not an nfk zoo archive");
  ZooModule zoo = make_zoo_module(arch.toStringRef(), nlohmann::json::parse(options.toStringRef()));
  zoo.module->load(archive);
  return zoo;
}

}  // namespace nfk
