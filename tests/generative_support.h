#pragma once
// Helpers of the generative zoo tests (test_vae.cpp, test_made.cpp, test_generative_protocol.cpp,
// test_train_generative.cpp): tiny seeded VAE and MADE modules, and exact parameter comparison.
#include <cstdint>
#include <string>
#include <vector>

#include "nfk/zoo_generative.h"
#include "support.h"

namespace nfk::test {

/// A seeded VAE for images [B, 1, image_size, image_size].
inline ZooModule tiny_vae(const std::string& likelihood = "bernoulli", int64_t image_size = 8,
                          int64_t width = 4, int64_t latent = 3) {
  seed(0);
  return make_zoo_module("vae", {{"image_size", image_size},
                                 {"width", width},
                                 {"latent_dim", latent},
                                 {"likelihood", likelihood}});
}

/// A seeded MADE for images [B, channels, image_size, image_size].
inline ZooModule tiny_made(int64_t channels, int64_t image_size, std::vector<int64_t> hidden,
                           const std::string& likelihood = "gaussian", double alpha = 1e-6) {
  seed(0);
  return make_zoo_module("made", {{"channels", channels},
                                  {"image_size", image_size},
                                  {"hidden", hidden},
                                  {"likelihood", likelihood},
                                  {"logit_alpha", alpha}});
}

// Whether `a` and `b` hold exactly the same parameters and buffers.
inline bool same_parameters(const ZooModule& a, const ZooModule& b) {
  auto pa = a.module->named_parameters(), pb = b.module->named_parameters();
  if (pa.size() != pb.size()) return false;
  for (const auto& item : pa) {
    if (!torch::equal(item.value(), pb[item.key()])) return false;
  }
  auto ba = a.module->named_buffers(), bb = b.module->named_buffers();
  if (ba.size() != bb.size()) return false;
  for (const auto& item : ba) {
    if (!torch::equal(item.value(), bb[item.key()])) return false;
  }
  return true;
}

}  // namespace nfk::test
