// tests/cpu/io_files.hpp — what the reader tests share: byte strings built in memory, a
// scratch folder for files, and the real files in tests/data/io/.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "support/catch.hpp"

namespace tokred::testing {

using bytes = std::vector<unsigned char>;

/// The bytes of a string.
inline bytes to_bytes(std::string_view s) { return bytes(s.begin(), s.end()); }

/// `a` followed by `b`.
inline bytes concat(bytes a, const bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// Little-endian integers, appended or overwritten in place.
inline void put_le(bytes& b, std::uint64_t v, int width) {
  for (int i = 0; i < width; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
inline void poke_le(bytes& b, std::size_t at, std::uint64_t v, int width) {
  REQUIRE(at + static_cast<std::size_t>(width) <= b.size());
  for (int i = 0; i < width; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
}

/// The raw bytes of `values`.
template <class T>
bytes raw(const std::vector<T>& values) {
  bytes b(values.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), values.data(), b.size());
  return b;
}

/// A fresh folder for this process's files, removed with everything in it at the end.
class scratch_dir {
 public:
  scratch_dir() {
    path_ = std::filesystem::temp_directory_path() / ("tokred-io-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  /// Writes `content` to file `name` here and returns its path.
  std::string write(const std::string& name, const bytes& content) const {
    const std::string p = (path_ / name).string();
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
    REQUIRE(f.good());
    return p;
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

/// A file of tests/data/io/.
inline std::string io_data(const std::string& name) { return std::string(TOKRED_TEST_DATA_DIR) + "/io/" + name; }

/// The bytes of a file.
inline bytes read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace tokred::testing
