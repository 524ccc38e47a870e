#pragma once
/// Progress reporting hook. The library never prints: long loops call this, front ends draw it.

#include <cstdint>
#include <functional>
#include <string>

namespace nfk {

/// Called as work advances: `stage` names the loop ("JVP", "VJP", "gradients", "svd"),
/// `done` of `total` units (examples, or steps for "svd") are finished. May be empty.
using ProgressFn = std::function<void(const std::string& stage, int64_t done, int64_t total)>;

}  // namespace nfk
