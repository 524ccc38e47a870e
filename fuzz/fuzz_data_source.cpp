// libFuzzer target: the data source parser behind nfk::load_dataset / load_labels
// ("mnist:train[:10]", "x.npy[:5]"), on arbitrary strings; nothing is read from disk.
#include <string>

#include "data/data_source.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  nfk::detail::DataSource parsed;
  if (!nfk::fuzz::accepts([&] { parsed = nfk::detail::parse_data_source(source); })) return 0;
  nfk::fuzz::require(!parsed.name.empty(), "a parsed source names something");
  nfk::fuzz::require(source.compare(0, parsed.name.size(), parsed.name) == 0,
                     "the name is a prefix of the source");
  if (parsed.limit == -1) {
    nfk::fuzz::require(parsed.name == source, "without a slice the name is the whole source");
  } else {
    nfk::fuzz::require(parsed.limit > 0, "a slice keeps at least one example");
    const std::string suffix = source.substr(parsed.name.size());
    nfk::fuzz::require(suffix.rfind("[:", 0) == 0 && suffix.back() == ']',
                       "the rest is the \"[:n]\" suffix");
    nfk::fuzz::require(std::stoll(suffix.substr(2, suffix.size() - 3)) == parsed.limit,
                       "the suffix's count is the limit");
  }
  return 0;
}
