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

/// Throws "nfk: cannot write <path>: <strerror>" unless a file can be created next to `path`
/// (checked by creating and removing the temp file). Front ends call it for every output before
/// any long work, so that a bad path fails fast and no earlier output is written.
void check_writable(const std::string& path);

}  // namespace nfk::detail
