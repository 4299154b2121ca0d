// tools/tokred/output_dir.hpp — the directory the program writes into. It never deletes or
// overwrites a file it does not own: a directory holding anything but the program's own output
// names is refused.
#pragma once

#include <string>
#include <vector>

namespace tokred::cli {

/// Makes `dir` ready for the files named in `owned` (plain names, no paths): creates it (and its
/// parents) when absent; accepts an existing directory only when every entry in it is one of
/// `owned` and a regular file (a previous run's output, overwritten; a symbolic link of an owned
/// name is refused, as writing through it would overwrite its target). Returns an error
/// message, empty on success.
std::string prepare_output_dir(const std::string& dir, const std::vector<std::string>& owned);

/// Removes `path` when it is a regular file (an owned output a run did not write again, such as
/// a previous run's plots); nothing when it is absent. An error message, empty on success.
std::string remove_owned(const std::string& path);

/// Writes `text` to `path` whole; an error message, empty on success.
std::string write_text(const std::string& path, const std::string& text);

}  // namespace tokred::cli
