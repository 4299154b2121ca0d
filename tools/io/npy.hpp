// tools/io/npy.hpp — reads and writes NumPy .npy files (format 1.0, 2.0 and 3.0; little-endian;
// C order).
//
// Used by the tests (golden cases), the examples and the command-line program. Not part of the
// library headers: it allocates and does file I/O, which the policies never do.
//
// The reader trusts nothing in the file: the header dictionary is parsed strictly (exactly the
// keys 'descr', 'fortran_order' and 'shape', in any order, as NumPy writes them), the byte count
// of the declared shape is computed without overflow and checked against the bytes that follow the
// header before anything is allocated, and every error is one line naming the file.
#pragma once

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/bytes.hpp"

namespace tokred::io {

/// An array read from a .npy file: its dtype descriptor (e.g. "<f4", "<f2", "<i8", "|b1"), its
/// shape and its raw bytes in C order.
struct npy_array {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;

  /// Elements in `shape` (1 for a 0-d array).
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

/// The header dictionary of a .npy file.
struct npy_header {
  std::string descr;  ///< dtype descriptor, e.g. "<f4"
  bool fortran_order = false;
  std::vector<std::int64_t> shape;  ///< () for a 0-d array
};

/// Most dimensions a header may declare (NumPy 2's limit).
inline constexpr std::size_t npy_max_dims = 64;
/// Largest header read. NumPy writes a few hundred bytes for any array this reader accepts.
inline constexpr std::uint32_t npy_max_header = 65536;

namespace detail {

/// A strict reader of the Python dict literal NumPy writes, e.g.
///   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
/// followed by space padding and a newline. Spaces and tabs may separate tokens; strings are
/// quoted with ' or " and have no escapes; dimensions are decimal integers without sign or
/// leading zeros; a one-element shape needs its trailing comma, as in Python.
class npy_dict_parser {
 public:
  explicit npy_dict_parser(std::string_view text) : s_(text) {}

  std::string parse(npy_header& out) {
    bool have_descr = false, have_order = false, have_shape = false;
    if (!eat('{')) return fail("expected '{'");
    skip_space();
    while (!at('}')) {
      const std::size_t key_at = i_;
      std::string key;
      if (!string_literal(key)) return error_.empty() ? fail("expected a quoted key or '}'") : error_;
      skip_space();
      if (!eat(':')) return fail("expected ':' after key '" + printable(key) + "'");
      skip_space();
      bool* seen = key == "descr" ? &have_descr : key == "fortran_order" ? &have_order
                 : key == "shape" ? &have_shape : nullptr;
      if (!seen) return fail_at(key_at, "unknown key '" + printable(key) + "'");
      if (*seen) return fail_at(key_at, "repeated key '" + key + "'");
      *seen = true;
      if (key == "descr") {
        if (at('[')) return fail("structured dtypes are not supported");
        if (!string_literal(out.descr)) return error_.empty() ? fail("'descr' must be a quoted string") : error_;
      } else if (key == "fortran_order") {
        if (word("True")) out.fortran_order = true;
        else if (word("False")) out.fortran_order = false;
        else return fail("'fortran_order' must be True or False");
      } else if (!shape_tuple(out.shape)) {
        return error_;
      }
      skip_space();
      if (eat(',')) skip_space();
      else if (!at('}')) return fail("expected ',' or '}'");
    }
    ++i_;  // '}'
    while (i_ < s_.size() && s_[i_] == ' ') ++i_;
    if (i_ < s_.size() && s_[i_] == '\n') ++i_;
    if (i_ != s_.size()) return fail("unexpected text after the dictionary");
    if (!have_descr) return "header: missing key 'descr'";
    if (!have_order) return "header: missing key 'fortran_order'";
    if (!have_shape) return "header: missing key 'shape'";
    return {};
  }

 private:
  bool at(char c) const { return i_ < s_.size() && s_[i_] == c; }
  bool eat(char c) {
    if (!at(c)) return false;
    ++i_;
    return true;
  }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    const std::size_t end = i_ + w.size();
    if (end < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[end])) || s_[end] == '_')) return false;
    i_ = end;
    return true;
  }
  std::string fail(const std::string& what) { return fail_at(i_, what); }
  bool reject(const std::string& what) { return reject_at(i_, what); }
  bool reject_at(std::size_t where, const std::string& what) {
    fail_at(where, what);
    return false;
  }
  std::string fail_at(std::size_t where, const std::string& what) {
    error_ = "header: " + what + " at offset " + std::to_string(where);
    return error_;
  }

  bool string_literal(std::string& out) {
    if (!at('\'') && !at('"')) return false;
    const char quote = s_[i_++];
    const std::size_t begin = i_;
    while (i_ < s_.size() && s_[i_] != quote) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '\\') return reject("escape sequences are not supported");
      if (c < 0x20 || c >= 0x7F) return reject("unexpected byte in a string");
      ++i_;
    }
    if (i_ == s_.size()) return reject_at(begin - 1, "unterminated string");
    out.assign(s_.substr(begin, i_ - begin));
    ++i_;
    return true;
  }

  bool dimension(std::int64_t& out) {
    const std::size_t begin = i_;
    if (at('-')) return reject("negative dimension");
    std::uint64_t v = 0;
    switch (read_decimal(s_, i_, v)) {
      case decimal::too_large: return reject_at(begin, "dimension too large");
      case decimal::none: return reject("expected a dimension");
      case decimal::leading_zero: return reject_at(begin, "dimension with a leading zero");
      case decimal::ok: break;
    }
    out = static_cast<std::int64_t>(v);
    return true;
  }

  bool shape_tuple(std::vector<std::int64_t>& out) {
    if (!eat('(')) return reject("'shape' must be a tuple");
    out.clear();
    bool comma = false;  // a comma followed the last dimension
    skip_space();
    while (!at(')')) {
      if (!out.empty() && !comma) return reject("expected ',' or ')' in 'shape'");
      if (out.size() == npy_max_dims) return reject("more than 64 dimensions");
      std::int64_t d = 0;
      if (!dimension(d)) return false;
      out.push_back(d);
      skip_space();
      comma = eat(',');
      skip_space();
    }
    if (out.size() == 1 && !comma) return reject("'shape' (n) is a number, not a tuple: write (n,)");
    if (out.empty() && comma) return reject("expected a dimension");
    ++i_;
    return true;
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::string error_;
};

/// Bytes per element of a descriptor this reader accepts — the little-endian numbers NumPy writes:
/// <f2 <f4 <f8, <i2 <i4 <i8, <u2 <u4 <u8, and the one-byte |i1 |u1 |b1. 0 for anything else.
inline std::size_t npy_item_size(std::string_view descr) {
  static constexpr std::string_view accepted[] = {"<f2", "<f4", "<f8", "<i2", "<i4", "<i8",
                                                  "<u2", "<u4", "<u8", "|i1", "|u1", "|b1"};
  for (std::string_view a : accepted)
    if (descr == a) return static_cast<std::size_t>(a[2] - '0');
  return 0;
}

/// Where a validated array's data lies in its source.
struct npy_layout {
  npy_header header;
  std::uint64_t data_offset = 0;
  std::uint64_t data_bytes = 0;
};

/// Reads and checks the prefix and header of the .npy held by `src` and checks that exactly the
/// declared shape's bytes follow. Returns "" or the problem (without the file name).
inline std::string read_npy_layout(byte_source& src, npy_layout& out) {
  unsigned char prefix[12] = {};
  const std::uint64_t size = src.size();
  if (!src.read(0, prefix, static_cast<std::size_t>(size < 12 ? size : 12)) || size < 6 ||
      std::memcmp(prefix, "\x93NUMPY", 6) != 0)
    return "not a .npy file (no \\x93NUMPY magic)";
  if (size < 8) return "truncated .npy prefix (" + std::to_string(size) + " bytes)";
  const unsigned major = prefix[6], minor = prefix[7];
  if (major < 1 || major > 3 || minor != 0)
    return "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor);
  const std::uint64_t length_bytes = major == 1 ? 2 : 4;
  if (size < 8 + length_bytes) return "truncated .npy prefix (" + std::to_string(size) + " bytes)";
  const std::uint32_t header_length = major == 1 ? load_le16(prefix + 8) : load_le32(prefix + 8);
  const std::uint64_t header_at = 8 + length_bytes;
  if (!src.holds(header_at, header_length))
    return "truncated header (declares " + std::to_string(header_length) + " bytes, " +
           std::to_string(size - header_at) + " follow)";
  if (header_length > npy_max_header)
    return "header of " + std::to_string(header_length) + " bytes exceeds the 64 KiB limit";
  std::string text(header_length, '\0');
  if (!src.read(header_at, text.data(), text.size())) return "read error in the header";
  npy_header h;
  if (std::string e = npy_dict_parser(text).parse(h); !e.empty()) return e;
  if (h.fortran_order) return "Fortran-ordered arrays are not supported";
  const std::size_t item = npy_item_size(h.descr);
  if (item == 0) {
    if (!h.descr.empty() && h.descr[0] == '>') return "big-endian dtype '" + printable(h.descr) + "' is not supported";
    return "unsupported dtype '" + printable(h.descr) + "' (supported: <f2 <f4 <f8 <i2 <i4 <i8 <u2 <u4 <u8 |i1 |u1 |b1)";
  }
  std::uint64_t bytes = 0;
  if (!checked_bytes(h.shape, item, bytes))
    return "shape " + shape_text(h.shape) + " of " + h.descr + " overflows a 64-bit byte count";
  const std::uint64_t data_at = header_at + header_length;
  const std::uint64_t present = size - data_at;
  if (present < bytes)
    return "truncated data: shape " + shape_text(h.shape) + " of " + h.descr + " needs " + std::to_string(bytes) +
           " bytes, " + std::to_string(present) + " follow the header";
  if (present > bytes) return std::to_string(present - bytes) + " trailing bytes after the data";
  if (bytes > std::numeric_limits<std::size_t>::max()) return "array too large for this platform";
  out.header = std::move(h);
  out.data_offset = data_at;
  out.data_bytes = bytes;
  return {};
}

/// Reads the whole array held by `src` into `out` (untouched on failure).
inline std::string read_npy_source(byte_source& src, npy_array& out) {
  npy_layout layout;
  if (std::string e = read_npy_layout(src, layout); !e.empty()) return e;
  std::vector<unsigned char> bytes;
  try {
    bytes.resize(static_cast<std::size_t>(layout.data_bytes));
  } catch (const std::bad_alloc&) {
    return "out of memory for " + std::to_string(layout.data_bytes) + " bytes of data";
  }
  if (!src.read(layout.data_offset, bytes.data(), bytes.size())) return "read error in the data";
  out.dtype = std::move(layout.header.descr);
  out.shape = std::move(layout.header.shape);
  out.bytes = std::move(bytes);
  return {};
}

/// Takes over `buffer`, a whole .npy file in memory, as `out`'s data without a second copy.
inline std::string adopt_npy(std::vector<unsigned char>&& buffer, npy_array& out) {
  byte_source src = byte_source::memory(buffer.data(), buffer.size());
  npy_layout layout;
  if (std::string e = read_npy_layout(src, layout); !e.empty()) return e;
  buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(layout.data_offset));
  out.dtype = std::move(layout.header.descr);
  out.shape = std::move(layout.header.shape);
  out.bytes = std::move(buffer);
  return {};
}

/// The text of one key's value in a raw header, as the first version of this reader returned it:
/// the descriptor without quotes, True or False, or the dimensions without parentheses ("3, 4").
/// "" when the header does not parse. Kept for tests that read Fortran-ordered files themselves;
/// new code uses `parse_npy_header`.
inline std::string header_value(const std::string& header, const std::string& key) {
  npy_header h;
  if (!npy_dict_parser(header).parse(h).empty()) return {};
  if (key == "descr") return h.descr;
  if (key == "fortran_order") return h.fortran_order ? "True" : "False";
  if (key != "shape") return {};
  const std::string s = shape_text(h.shape);
  return s.substr(1, s.size() - 2);
}

}  // namespace detail

/// Parses a header dictionary (the text after the length field, padding included) into `out`.
/// Returns an empty string on success, or what is wrong. Accepts Fortran order and any dtype
/// string; `read_npy` / `parse_npy` check those.
inline std::string parse_npy_header(std::string_view text, npy_header& out) {
  npy_header h;
  if (std::string e = detail::npy_dict_parser(text).parse(h); !e.empty()) return e;
  out = std::move(h);
  return {};
}

/// Parses the `size` bytes at `data`, a whole .npy file, into `out`. `name` labels the errors.
/// Returns an empty string on success, or one line naming what went wrong; `out` is untouched
/// on failure.
inline std::string parse_npy(const unsigned char* data, std::size_t size, npy_array& out, const std::string& name) {
  detail::byte_source src = detail::byte_source::memory(data, size);
  if (std::string e = detail::read_npy_source(src, out); !e.empty()) return name + ": " + e;
  return {};
}

/// Reads `path` into `out`. Returns an empty string on success, or one line naming the file and
/// what went wrong; `out` is untouched on failure. The header is validated against the file's
/// size before the data is allocated.
inline std::string read_npy(const std::string& path, npy_array& out) {
  detail::byte_source src;
  if (std::string e = src.open(path); !e.empty()) return path + ": " + e;
  if (std::string e = detail::read_npy_source(src, out); !e.empty()) return path + ": " + e;
  return {};
}

/// The prefix and header of a .npy file holding `shape` of `dtype`: version 1.0, or 2.0 when the
/// header needs more than 65535 bytes; padded so the data starts at a multiple of 64.
inline std::string npy_prefix(const std::string& dtype, const std::vector<std::int64_t>& shape) {
  std::string header = "{'descr': '" + dtype + "', 'fortran_order': False, 'shape': " +
                       detail::shape_text(shape) + ", }";
  const bool v2 = header.size() + 10 + 64 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  for (std::size_t i = 0; i < prefix - 8; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return out + header;
}

/// Writes `data` (C order, `dtype` such as "<f4", "<f2", "<i8", "<i4") to `path` as .npy.
inline std::string write_npy(const std::string& path, const std::string& dtype,
                             const std::vector<std::int64_t>& shape, const void* data,
                             std::size_t bytes) {
  const std::string prefix = npy_prefix(dtype, shape);
  std::ofstream f(path, std::ios::binary);
  if (!f) return "cannot create " + path;
  f.write(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  return f ? std::string{} : "write failed: " + path;
}

}  // namespace tokred::io
