#pragma once
/// Atomic whole-file writes shared by every writer in nfk (.npy, projector files, images).

#include <string>
#include <string_view>
#include <vector>

namespace nfk::detail {

/// Writes `bytes` to `path` atomically: the data goes to `<path>.tmp.<pid>` in the same folder,
/// is flushed to disk, then renamed over `path`. On any failure the temp file is removed, `path`
/// is left as it was, and c10::Error is thrown: "nfk: cannot write <path>: <strerror>".
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Same as above for data held in several pieces (e.g. a header and a tensor's storage), written
/// back to back without first joining them in memory.
void write_file_atomic(const std::string& path, const std::vector<std::string_view>& parts);

}  // namespace nfk::detail
