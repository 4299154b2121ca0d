// tools/io/npy.hpp — reads and writes NumPy .npy files (format 1.0–3.0, little-endian, C order).
//
// Used by the tests (golden cases), the examples and the command-line program. Not part of the
// library headers: it allocates and does file I/O, which the policies never do.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace tokred::io {

/// An array read from a .npy file: its dtype descriptor (e.g. "<f4", "<f2", "<i8", "|b1"), its
/// shape and its raw bytes in C order.
struct npy_array {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;

  std::int64_t elements() const {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
  /// The data reinterpreted as `T` (the caller checks `dtype`).
  template <class T>
  std::vector<T> as() const {
    std::vector<T> out(bytes.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
    return out;
  }
};

namespace detail {

inline std::string header_value(const std::string& header, const std::string& key) {
  const auto at = header.find("'" + key + "'");
  if (at == std::string::npos) return {};
  auto colon = header.find(':', at);
  if (colon == std::string::npos) return {};
  auto begin = header.find_first_not_of(' ', colon + 1);
  if (begin == std::string::npos) return {};
  char open = header[begin];
  if (open == '\'') {
    const auto end = header.find('\'', begin + 1);
    return header.substr(begin + 1, end - begin - 1);
  }
  if (open == '(') {
    const auto end = header.find(')', begin);
    return header.substr(begin + 1, end - begin - 1);
  }
  const auto end = header.find_first_of(",}", begin);
  return header.substr(begin, end - begin);
}

inline std::size_t dtype_size(const std::string& dtype) {
  if (dtype.size() < 3) return 0;
  return static_cast<std::size_t>(std::stoul(dtype.substr(2)));
}

}  // namespace detail

/// Reads `path` into `out`. Returns an empty string on success, or what went wrong.
inline std::string read_npy(const std::string& path, npy_array& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "cannot open " + path;
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) return "not a .npy file: " + path;
  std::uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char len[2];
    if (!f.read(reinterpret_cast<char*>(len), 2)) return "truncated header: " + path;
    header_len = len[0] | (len[1] << 8);
  } else {
    unsigned char len[4];
    if (!f.read(reinterpret_cast<char*>(len), 4)) return "truncated header: " + path;
    header_len = len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<std::uint32_t>(len[3]) << 24);
  }
  std::string header(header_len, '\0');
  if (!f.read(header.data(), header_len)) return "truncated header: " + path;
  if (detail::header_value(header, "fortran_order") != "False") return "fortran order is not supported: " + path;
  out.dtype = detail::header_value(header, "descr");
  if (out.dtype.empty() || out.dtype[0] == '>') return "unsupported dtype '" + out.dtype + "': " + path;
  out.shape.clear();
  const std::string shape = detail::header_value(header, "shape");
  for (std::size_t pos = 0; pos < shape.size();) {
    const auto next = shape.find(',', pos);
    const std::string item = shape.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (item.find_first_of("0123456789") != std::string::npos) out.shape.push_back(std::stoll(item));
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  const std::size_t bytes = static_cast<std::size_t>(out.elements()) * detail::dtype_size(out.dtype);
  out.bytes.resize(bytes);
  if (bytes && !f.read(reinterpret_cast<char*>(out.bytes.data()), static_cast<std::streamsize>(bytes)))
    return "truncated data: " + path;
  return {};
}

/// Writes `data` (C order, `dtype` such as "<f4", "<f2", "<i8", "<i4") to `path` as .npy 1.0.
inline std::string write_npy(const std::string& path, const std::string& dtype,
                             const std::vector<std::int64_t>& shape, const void* data,
                             std::size_t bytes) {
  std::string dims;
  for (auto e : shape) dims += std::to_string(e) + ",";
  if (shape.size() > 1) dims.pop_back();
  std::string header = "{'descr': '" + dtype + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) return "cannot create " + path;
  const unsigned char prefix[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                    static_cast<unsigned char>(header.size() & 0xFF),
                                    static_cast<unsigned char>(header.size() >> 8)};
  f.write(reinterpret_cast<const char*>(prefix), 10);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  return f ? std::string{} : "write failed: " + path;
}

}  // namespace tokred::io
