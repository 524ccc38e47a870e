// libFuzzer target: nfk::read_npy on arbitrary bytes. An accepted array must survive
// write_npy → read_npy bit for bit (int32 data comes back widened to int64, as read).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuzz_input.h"
#include "nfk/data.h"

namespace {

std::string g_round_trip_dir;

void remove_round_trip_dir() {
  std::remove((g_round_trip_dir + "/round_trip.npy").c_str());
  ::rmdir(g_round_trip_dir.c_str());
}

// write_npy writes atomically (temp file + rename), so it needs a real folder: one under
// /dev/shm per process, removed at exit.
std::string round_trip_path() {
  char templ[] = "/dev/shm/nfk_fuzz_npy_XXXXXX";
  const char* dir = ::mkdtemp(templ);
  nfk::fuzz::require(dir != nullptr, "mkdtemp under /dev/shm");
  g_round_trip_dir = dir;
  std::atexit(remove_round_trip_dir);
  return g_round_trip_dir + "/round_trip.npy";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static nfk::fuzz::InputFile file("fuzz_npy");
  static const std::string copy = round_trip_path();
  torch::Tensor x;
  if (!nfk::fuzz::accepts([&] { x = nfk::read_npy(file.write(data, size)); })) return 0;
  nfk::fuzz::require(x.is_contiguous() && x.device().is_cpu(), "read_npy: a contiguous CPU tensor");
  nfk::write_npy(copy, x, /*allow_non_finite=*/true);
  const torch::Tensor back = nfk::read_npy(copy);
  nfk::fuzz::require(back.scalar_type() == x.scalar_type() && back.sizes() == x.sizes(),
                     "write_npy → read_npy keeps dtype and shape");
  // (memcmp must not see the null data pointer of an empty tensor.)
  nfk::fuzz::require(x.numel() == 0 || std::memcmp(back.data_ptr(), x.data_ptr(),
                                                   x.numel() * x.element_size()) == 0,
                     "write_npy → read_npy keeps the bytes");
  return 0;
}
