#pragma once
// Small native zoo models in float64 (a LeNet-5 classifier and a DCGAN pair on 12×12 inputs)
// saved as archives, with random inputs: the end-to-end cases of the fit and evaluation tests.
#include <string>

#include "nfk/model.h"
#include "nfk/zoo.h"
#include "support.h"

namespace nfk::test {

// Saves a zoo module to `dir/name.pt` and returns the path.
inline std::string save_zoo(const std::string& dir, const std::string& name,
                            const std::string& arch, const nlohmann::json& options,
                            uint64_t init_seed) {
  seed(init_seed);
  auto zoo = make_zoo_module(arch, options);
  const std::string path = dir + "/" + name + ".zoo";
  save_zoo_module(path, zoo);
  return path;
}

struct Case {
  std::string name;
  ModelKind kind;
  ModelOptions options;
  torch::Tensor x;
};

inline Case small_cnn_classifier(const std::string& dir) {
  Case c{"cnn", ModelKind::kClassifier, {}, {}};
  c.options.model_path =
      save_zoo(dir, "lenet", "lenet5", {{"image_size", 12}, {"num_classes", 4}}, 1);
  c.options.dtype = torch::kFloat64;
  seed(11);
  c.x = torch::rand({96, 1, 12, 12}, torch::kFloat64);
  return c;
}

inline Case small_gan(const std::string& dir) {
  Case c{"gan", ModelKind::kGan, {}, {}};
  c.options.model_path = save_zoo(dir, "d", "dcgan-d", {{"image_size", 12}, {"width", 4}}, 2);
  c.options.generator_path =
      save_zoo(dir, "g", "dcgan-g", {{"image_size", 12}, {"width", 4}, {"latent_dim", 6}}, 3);
  c.options.latent_dim = 6;
  c.options.dtype = torch::kFloat64;
  seed(12);
  c.x = torch::rand({96, 1, 12, 12}, torch::kFloat64);
  return c;
}

}  // namespace nfk::test
