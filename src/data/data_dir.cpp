// nfk::data_dir(). Compiled apart from the rest of the library, once per default: CMake builds it
// into nfk_data_dir (the build tree: NFK_DATA_DIR, <repo>/data by default) and into
// nfk_data_dir_install (the installed library and CLI: NFK_INSTALL_DATA_DIR), so the installed
// library never points into a source tree and the library itself is compiled only once.
#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

#include "nfk/data.h"

#ifndef NFK_DEFAULT_DATA_DIR
#define NFK_DEFAULT_DATA_DIR ""
#endif

namespace nfk {

std::string data_dir() {
  const char* env = std::getenv("NFK_DATA_DIR");
  if (env != nullptr && env[0] != '\0') return env;
  const std::string fallback = NFK_DEFAULT_DATA_DIR;
  TORCH_CHECK(!fallback.empty(),
              "nfk: no data folder: set the environment variable NFK_DATA_DIR (this nfk was built "
              "with NFK_INSTALL_DATA_DIR=NONE, i.e. without a default)");
  return fallback;
}

}  // namespace nfk
