#pragma once
/// Data source strings, as the CLI and the Python bindings take them: a named set or a file path,
/// with an optional "[:n]" suffix that keeps the first n examples. Parsing only: nothing is read.

#include <cstdint>
#include <string>

namespace nfk::detail {

/// A parsed data source. Example: "mnist:test[:100]" → {"mnist:test", 100, true}.
struct DataSource {
  std::string name;    // a named set ("mnist:test") or a file path, without the slice
  int64_t limit = -1;  // keep the first `limit` examples (> 0); -1 keeps all
  bool named = false;  // `name` is one of the named sets
};

/// Splits `source` into its name and slice; throws "nfk: <source>: ..." on a malformed slice
/// ("[:abc]", "[:0]") or an empty name.
DataSource parse_data_source(const std::string& source);

}  // namespace nfk::detail
