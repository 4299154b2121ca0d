// tools/io/bytes.hpp — what the file readers share: bounded random access to the bytes of a file
// or of a buffer, little-endian loads, overflow-checked sizes and printable excerpts of untrusted
// text for error messages.
//
// The readers never trust a size they read: every count is checked against the bytes that are
// actually there before anything is allocated, and every product is checked for overflow.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace tokred::io::detail {

/// Random access to a file's or a buffer's bytes. `read` refuses any range that is not wholly
/// inside `size()`, so a reader can pass offsets it has not validated yet.
class byte_source {
 public:
  /// A view of `size` bytes at `data` (not copied; they must outlive the source).
  static byte_source memory(const unsigned char* data, std::size_t size) {
    byte_source s;
    s.data_ = data;
    s.size_ = size;
    return s;
  }

  /// Opens `path`; returns an empty string, or why not (without the file name).
  std::string open(const std::string& path) {
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(st)) return "cannot open (no such file)";
    if (!std::filesystem::is_regular_file(st)) return "cannot open (not a regular file)";
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) return "cannot open (" + ec.message() + ")";
    file_ = std::make_unique<std::ifstream>(path, std::ios::binary);
    if (!*file_) return std::string("cannot open (") + std::strerror(errno) + ")";
    size_ = static_cast<std::uint64_t>(size);
    return {};
  }

  std::uint64_t size() const noexcept { return size_; }

  /// True when [offset, offset + n) lies inside the source.
  bool holds(std::uint64_t offset, std::uint64_t n) const noexcept {
    return offset <= size_ && n <= size_ - offset;
  }

  /// Copies bytes [offset, offset + n) to `out`; false when the range is outside the source or
  /// the file cannot be read (it shrank, or an I/O error).
  bool read(std::uint64_t offset, void* out, std::size_t n) {
    if (!holds(offset, n)) return false;
    if (n == 0) return true;
    if (!file_) {
      std::memcpy(out, data_ + offset, n);
      return true;
    }
    if (offset > static_cast<std::uint64_t>(std::numeric_limits<std::streamoff>::max()) ||
        n > static_cast<std::size_t>(std::numeric_limits<std::streamsize>::max()))
      return false;
    file_->clear();
    file_->seekg(static_cast<std::streamoff>(offset));
    file_->read(static_cast<char*>(out), static_cast<std::streamsize>(n));
    return static_cast<std::size_t>(file_->gcount()) == n;
  }

 private:
  const unsigned char* data_ = nullptr;
  std::unique_ptr<std::ifstream> file_;
  std::uint64_t size_ = 0;
};

inline std::uint16_t load_le16(const unsigned char* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
inline std::uint32_t load_le32(const unsigned char* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
inline std::uint64_t load_le64(const unsigned char* p) noexcept {
  return static_cast<std::uint64_t>(load_le32(p)) | (static_cast<std::uint64_t>(load_le32(p + 4)) << 32);
}

/// How a run of decimal digits read (see read_decimal).
enum class decimal { ok, none, too_large, leading_zero };

/// Reads the decimal digits of `s` from `i` on, advancing `i` past them, as a value in
/// [0, 2^63) into `out`. In order: `too_large` as soon as the value would pass 2^63 - 1, `none`
/// when there is no digit, `leading_zero` for a zero followed by more digits, else `ok`.
inline decimal read_decimal(std::string_view s, std::size_t& i, std::uint64_t& out) noexcept {
  const std::size_t begin = i;
  constexpr auto most = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    const auto digit = static_cast<std::uint64_t>(s[i] - '0');
    if (v > (most - digit) / 10) return decimal::too_large;
    v = v * 10 + digit;
    ++i;
  }
  if (i == begin) return decimal::none;
  if (s[begin] == '0' && i - begin > 1) return decimal::leading_zero;
  out = v;
  return decimal::ok;
}

/// `a * b` into `out`; false on overflow of 64 bits.
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

/// The byte count of an array of `shape` with `item` bytes per element into `out`; false when a
/// dimension is negative or a partial product exceeds 2^63 - 1 (no file can hold that much). Every
/// partial product fitting, even before a zero dimension, keeps later element counts in int64.
template <class Shape>
bool checked_bytes(const Shape& shape, std::uint64_t item, std::uint64_t& out) noexcept {
  constexpr auto most = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t n = item;
  for (const auto e : shape) {
    if (e < 0 || !checked_mul(n, static_cast<std::uint64_t>(e), n) || n > most) return false;
  }
  if (n > most) return false;
  out = n;
  return true;
}

/// Untrusted text made safe for a one-line message: printable ASCII kept, every other byte as
/// \xNN, cut after `limit` bytes with "...".
inline std::string printable(std::string_view s, std::size_t limit = 48) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > limit) out += "...";
  return out;
}

/// A shape written as NumPy prints it: (3, 4), (5,), ().
template <class Shape>
std::string shape_text(const Shape& shape) {
  std::string s = "(";
  std::size_t i = 0;
  for (const auto e : shape) s += (i++ ? ", " : "") + std::to_string(e);
  return s + (i == 1 ? ",)" : ")");
}

/// Names for a message: 'a', 'b', 'c' — printable, at most `limit` of them, then how many more.
template <class Names>
std::string name_list(const Names& names, std::size_t limit = 16) {
  std::string out;
  std::size_t i = 0;
  for (const auto& n : names) {
    if (i == limit) return out + ", ... (" + std::to_string(names.size()) + " in all)";
    out += (i++ ? ", '" : "'") + printable(n) + "'";
  }
  return out;
}

}  // namespace tokred::io::detail
