// The CLI's thread count: every CPU the process may run on (include/nfk/run_options.h).
#include <ATen/Parallel.h>
#include <sched.h>

#include <cstdlib>

#include "nfk/run_options.h"

namespace nfk {

int use_available_cpus() {
  if (std::getenv("OMP_NUM_THREADS") == nullptr) {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 0) {
      at::set_num_threads(CPU_COUNT(&cpus));
    }
  }
  return at::get_num_threads();
}

}  // namespace nfk
