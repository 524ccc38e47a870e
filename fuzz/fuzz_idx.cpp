// libFuzzer target: nfk::read_idx on arbitrary bytes, plain or gzip'd as they come (the seed
// corpus holds both). fuzz_idx_gzip reaches the IDX header through the gzip path.
#include "fuzz_input.h"
#include "nfk/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static nfk::fuzz::InputFile file("fuzz_idx");
  torch::Tensor x;
  if (!nfk::fuzz::accepts([&] { x = nfk::read_idx(file.write(data, size)); })) return 0;
  nfk::fuzz::require(x.scalar_type() == torch::kUInt8 && x.dim() >= 1,
                     "read_idx: a uint8 tensor of at least one dimension");
  return 0;
}
