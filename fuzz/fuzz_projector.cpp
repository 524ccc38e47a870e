// libFuzzer target: nfk::load_projector on arbitrary bytes (seeds from fuzz_make_seeds, which
// writes projectors with nfk::save_projector, so they follow the current file format).
#include "fuzz_input.h"
#include "nfk/embed.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static nfk::fuzz::InputFile file("fuzz_projector");
  nfk::Projector p;
  if (!nfk::fuzz::accepts([&] { p = nfk::load_projector(file.write(data, size)); })) return 0;
  nfk::fuzz::require(p.basis.dim() == 2 && p.singular_values.numel() == p.rank(),
                     "load_projector: a basis [P, k] and k singular values");
  return 0;
}
