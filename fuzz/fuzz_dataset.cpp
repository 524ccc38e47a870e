// libFuzzer target: nfk::load_dataset and nfk::load_labels on a file of arbitrary bytes: format
// sniffing, the .npy / IDX readers, the conversion to inputs, the finiteness check and the
// "[:n]" slice together. The first input byte is the slice (0: none, else "[:byte]"); the rest
// is the file.
#include <string>

#include "fuzz_input.h"
#include "nfk/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static nfk::fuzz::InputFile file("fuzz_dataset");
  if (size == 0) return 0;
  const int limit = data[0];
  const std::string source =
      file.write(data + 1, size - 1) + (limit > 0 ? "[:" + std::to_string(limit) + "]" : "");
  nfk::Dataset ds;
  if (nfk::fuzz::accepts([&] { ds = nfk::load_dataset(source); })) {
    const torch::Tensor& x = ds.inputs;
    nfk::fuzz::require(x.is_floating_point() && x.dim() >= 1 && x.numel() > 0,
                       "load_dataset: floating inputs [N, ...] holding values");
    nfk::fuzz::require(limit == 0 || x.size(0) <= limit, "load_dataset: the slice is applied");
    nfk::fuzz::require(torch::isfinite(x).all().item<bool>(), "load_dataset: finite inputs");
  }
  torch::Tensor y;
  if (nfk::fuzz::accepts([&] { y = nfk::load_labels(source); })) {
    nfk::fuzz::require(y.scalar_type() == torch::kInt64 && y.dim() == 1,
                       "load_labels: int64 labels [N]");
    nfk::fuzz::require(y.numel() == 0 || y.min().item<int64_t>() >= 0,
                       "load_labels: non-negative labels");
  }
  return 0;
}
