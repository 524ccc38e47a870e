#pragma once
// Zoo options ↔ JSON from one field list per Options struct (the archive's "nfk_zoo_options"):
//   NFK_ZOO_OPTIONS_JSON(LeNet5Options, in_channels, image_size, num_classes)
// defines, in the enclosing namespace (nfk, where the struct lives, for ADL), from_json (fields
// present override the defaults; other keys are ignored) and to_json (every field written, so
// an archive records its defaults explicitly). A builder then reads `o.get<LeNet5Options>()` and
// stores `nlohmann::json(options)`. Modelled on nlohmann's
// NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT, for TORCH_ARG accessors instead of members.
#include <nlohmann/json.hpp>
#include <type_traits>

namespace nfk {

/// Reads `key` from zoo options JSON if present, else `fallback`, e.g. a loaded archive's
/// `zoo_option<int64_t>(zoo.options, "latent_dim", 0)`. (Builders map whole Options structs.)
template <typename T>
T zoo_option(const nlohmann::json& options, const char* key, T fallback) {
  return options.contains(key) ? options.at(key).get<T>() : fallback;
}

}  // namespace nfk

#define NFK_ZOO_OPTION_TO_JSON(field) json[#field] = options.field();
#define NFK_ZOO_OPTION_FROM_JSON(field) \
  if (json.contains(#field))            \
    options.field(json.at(#field).get<std::decay_t<decltype(options.field())>>());

#define NFK_ZOO_OPTIONS_JSON(Options, ...)                                           \
  inline void to_json(nlohmann::json& json, const Options& options) {                \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(NFK_ZOO_OPTION_TO_JSON, __VA_ARGS__))   \
  }                                                                                  \
  inline void from_json(const nlohmann::json& json, Options& options) {              \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(NFK_ZOO_OPTION_FROM_JSON, __VA_ARGS__)) \
  }
