#pragma once
/// Opening what a user names as an input (data, model, projector): only regular files are read.
/// A FIFO or a character device would block or never end, a directory is not data; each gets one
/// line naming the path and what it is instead.

#include <string>

namespace nfk::detail {

/// "a directory", "a FIFO (named pipe)", "a character device", ... for a stat() mode.
std::string file_type_name(unsigned mode);

/// Throws "nfk: cannot read <what> <path>: <why>" unless `path` is a readable regular file (or a
/// link to one). For inputs that another library opens by name (torch::jit::load).
void check_input_file(const std::string& path, const std::string& what);

/// The whole content of the regular file at `path`, read without ever blocking on a FIFO (the
/// file is opened non-blocking and checked with fstat before any read). Same errors as above.
std::string read_input_file(const std::string& path, const std::string& what);

}  // namespace nfk::detail
