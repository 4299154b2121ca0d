// tools/tokred/output_dir.hpp — the directory the program writes into. It never deletes or
// overwrites a file it does not own: a directory holding anything but the program's own output
// names is refused.
#pragma once

#include <string>
#include <vector>

namespace tokred::cli {

/// Makes `dir` ready for the files named in `owned` (plain names, no paths): creates it (and its
/// parents) when absent; accepts an existing directory only when every entry in it is one of
/// `owned` (a previous run's output, overwritten). Returns an error message, empty on success.
std::string prepare_output_dir(const std::string& dir, const std::vector<std::string>& owned);

/// Writes `text` to `path` whole; an error message, empty on success.
std::string write_text(const std::string& path, const std::string& text);

}  // namespace tokred::cli
