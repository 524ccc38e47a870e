#pragma once
/// Whole-file writes shared by every writer in nfk (.npy, projector files, images, checkpoints),
/// and the checks front ends make on output paths before any work.
///
/// What is at an output path is never destroyed by the way it is written:
/// - a regular file (or a new name) is replaced atomically: the bytes go to an unnamed temp file
///   in the same folder (O_TMPFILE; a short-named temp file where the file system lacks it, with
///   signals held off until it is renamed), are flushed, then take the name in one rename. An
///   interrupted write leaves the old file and no temp file behind; the old file's mode is kept;
/// - a symlink is followed: its target is replaced atomically, the link stays;
/// - a character device (`/dev/null`, a terminal) or a FIFO is written through, never replaced;
/// - a directory, socket or block device is refused.
/// Errors throw c10::Error "nfk: cannot write <path>: <why>".

#include <string>
#include <string_view>
#include <vector>

namespace nfk {

/// Writes `bytes` to `path` as described above.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Same as above for data held in several pieces (e.g. a header and a tensor's storage), written
/// back to back without first joining them in memory.
void write_file_atomic(const std::string& path, const std::vector<std::string_view>& parts);

/// Throws "nfk: cannot write <path>: <why>" unless `path` could be written as described above
/// (for a new or regular file: a temp file can be created in its folder). Front ends call it for
/// every output before any long work, so that a bad path fails fast and nothing is written.
void check_writable(const std::string& path);

/// The file an output path really names: symlinks followed (also a dangling one, to the path it
/// points at), made absolute, "." and ".." resolved in the existing part. Used to tell whether two
/// paths name the same file.
std::string resolved_output_path(const std::string& path);

/// All-or-nothing writes. While an OutputGroup lives on this thread, write_file_atomic only stages
/// each file (written and flushed in full, under no visible name); commit() then gives every
/// staged file its name. Destroyed without commit() (an error, an exception in between), none of
/// them appears. Groups do not nest.
///
///   nfk::OutputGroup outputs;
///   save_projector(out, p);          // staged
///   write_npy(embedding_out, e);     // staged; a full disk here leaves `out` untouched
///   outputs.commit();                // both appear
class OutputGroup {
 public:
  OutputGroup();
  ~OutputGroup();
  OutputGroup(const OutputGroup&) = delete;
  OutputGroup& operator=(const OutputGroup&) = delete;
  void commit();
};

}  // namespace nfk
