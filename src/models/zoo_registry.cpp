// The zoo's architecture table: one builder per name. Builders live next to their modules.
#include "nfk/zoo.h"

namespace nfk {

ZooModule make_lenet5(const nlohmann::json& options);
ZooModule make_mlp(const nlohmann::json& options);
ZooModule make_dcgan_discriminator(const nlohmann::json& options);
ZooModule make_dcgan_generator(const nlohmann::json& options);
ZooModule make_vae(const nlohmann::json& options);          // zoo_generative.cpp
ZooModule make_made(const nlohmann::json& options);         // zoo_generative.cpp
ZooModule make_wide_resnet(const nlohmann::json& options);  // zoo_wrn.cpp

const std::map<std::string, ZooBuilder>& zoo_registry() {
  static const std::map<std::string, ZooBuilder> registry = {
      {"lenet5", make_lenet5},           {"mlp", make_mlp}, {"dcgan-d", make_dcgan_discriminator},
      {"dcgan-g", make_dcgan_generator}, {"vae", make_vae}, {"made", make_made},
      {"wrn", make_wide_resnet},
  };
  return registry;
}

}  // namespace nfk
