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
  }
  return ec ? fmt::format("cannot list the output directory {}: {}", dir, ec.message()) : std::string{};
}

std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) return "cannot create " + path;
  f.write(text.data(), static_cast<std::streamsize>(text.size()));
  return f ? std::string{} : "write failed: " + path;
}

}  // namespace tokred::cli
