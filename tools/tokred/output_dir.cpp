// tools/tokred/output_dir.cpp — see output_dir.hpp.
#include "tokred/output_dir.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <fmt/format.h>

namespace tokred::cli {

std::string prepare_output_dir(const std::string& dir, const std::vector<std::string>& owned) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (dir.empty()) return "the output directory is empty";
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) {
    fs::create_directories(dir, ec);
    return ec ? fmt::format("cannot create the output directory {}: {}", dir, ec.message()) : std::string{};
  }
  if (!fs::is_directory(st)) return fmt::format("the output path {} exists and is not a directory", dir);
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (std::find(owned.begin(), owned.end(), name) == owned.end())
      return fmt::format("the output directory {} holds other files ('{}'); give a new or empty directory "
                         "(tokred never deletes files it did not write)", dir, name);
    // An owned name must be a file tokred wrote: a symbolic link (whose target a write would
    // overwrite), a directory or anything else of that name is not.
    std::error_code lec;
    const fs::file_status own = fs::symlink_status(it->path(), lec);
    if (lec) return fmt::format("cannot inspect {}: {}", it->path().string(), lec.message());
    if (!fs::is_regular_file(own))
      return fmt::format("the output directory {} holds '{}', which is not a regular file ({}); tokred writes "
                         "only regular files and never through a link",
                         dir, name, fs::is_symlink(own) ? "a symbolic link" : "a directory or special file");
  }
  return ec ? fmt::format("cannot list the output directory {}: {}", dir, ec.message()) : std::string{};
}

std::string remove_owned(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(path, ec);
  if (ec || !fs::exists(st)) return {};
  if (!fs::is_regular_file(st)) return fmt::format("{} is not a regular file; not removed", path);
  fs::remove(path, ec);
  return ec ? fmt::format("cannot remove {}: {}", path, ec.message()) : std::string{};
}

std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) return "cannot create " + path;
  f.write(text.data(), static_cast<std::streamsize>(text.size()));
  return f ? std::string{} : "write failed: " + path;
}

}  // namespace tokred::cli
