// tools/io/safetensors.hpp — reads tensors of .safetensors files by name.
//
// The format: an 8-byte little-endian header length N, N bytes of JSON, then the data region.
// The JSON is one object; each key is a tensor name whose value is
//   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// (offsets relative to the data region), plus an optional "__metadata__" object of strings.
//
// The header is read by a small strict parser of exactly that shape, not a general JSON library:
// valid UTF-8, standard escapes, no duplicate keys, no other keys or value types, integers without
// sign, fraction or exponent. Then every tensor's byte count (dtype size times the product of its
// shape, overflow-checked) must equal its offset range, and the ranges, taken in order, must tile
// the data region exactly — no overlap, no gap, nothing left over — as the format requires.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/bytes.hpp"

namespace tokred::io {

/// One tensor entry of a safetensors header.
struct safetensors_info {
  std::string name;
  std::string dtype;  ///< as in the file: "F32", "F16", "BF16", "I64", ...
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  ///< byte range in the data region
};

/// A parsed and validated safetensors header.
struct safetensors_header {
  std::vector<safetensors_info> tensors;  ///< in header order
  std::vector<std::pair<std::string, std::string>> metadata;
  std::uint64_t data_offset = 0;  ///< where the data region begins in the file: 8 + N
};

/// A tensor read from a .safetensors file: its dtype as the file names it, shape and raw bytes
/// (little-endian, C order).
struct safetensors_array {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;
};

/// Largest header accepted (the reference implementation's limit).
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;
/// Most dimensions a tensor may declare.
inline constexpr std::size_t safetensors_max_dims = 64;

namespace detail {

/// Bytes per element of a safetensors dtype; 0 for an unknown one.
inline std::size_t safetensors_item_size(std::string_view dtype) {
  struct entry {
    std::string_view name;
    std::size_t size;
  };
  static constexpr entry known[] = {{"BOOL", 1}, {"U8", 1},   {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                    {"F8_E8M0", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},     {"BF16", 2},
                                    {"I32", 4},  {"U32", 4},  {"F32", 4},  {"F64", 8},     {"I64", 8},
                                    {"U64", 8}};
  for (const entry& e : known)
    if (dtype == e.name) return e.size;
  return 0;
}

/// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0, min = 0;
    if (c < 0x80) {
      n = 1;
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      n = 2;
      cp = c & 0x1Fu;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 3;
      cp = c & 0x0Fu;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 4;
      cp = c & 0x07u;
      min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i < n) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto t = static_cast<unsigned char>(s[i + k]);
      if ((t & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (t & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

/// Appends code point `cp` to `out` as UTF-8.
inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// The strict reader of a safetensors JSON header (see the file comment). Errors name the
/// problem and its byte offset in the header.
class safetensors_json {
 public:
  explicit safetensors_json(std::string_view text) : s_(text) {}

  std::string parse(safetensors_header& out) {
    if (!valid_utf8(s_)) return "header: not valid UTF-8";
    if (!eat('{')) return fail("header: expected '{' at the start");
    bool have_metadata = false;
    space();
    if (!eat('}')) {
      for (;;) {
        const std::size_t key_at = i_;
        std::string key;
        if (!string(key) || !colon()) return error_;
        if (key == "__metadata__") {
          if (have_metadata) return fail_at(key_at, "header: repeated key '__metadata__'");
          have_metadata = true;
          if (!metadata(out.metadata)) return error_;
        } else {
          out.tensors.emplace_back();
          out.tensors.back().name = std::move(key);
          if (!tensor(out.tensors.back())) return error_;
        }
        space();
        if (eat('}')) break;
        if (!eat(',')) return fail("header: expected ',' or '}'");
        space();
      }
    }
    space();
    if (i_ != s_.size()) return fail("header: unexpected text after the object");
    return {};
  }

 private:
  bool at(char c) const { return i_ < s_.size() && s_[i_] == c; }
  bool eat(char c) {
    if (!at(c)) return false;
    ++i_;
    return true;
  }
  void space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  std::string fail(const std::string& what) { return fail_at(i_, what); }
  std::string fail_at(std::size_t where, const std::string& what) {
    error_ = what + " at offset " + std::to_string(where);
    return error_;
  }
  bool reject(const std::string& what) { return reject_at(i_, what); }
  bool reject_at(std::size_t where, const std::string& what) {
    fail_at(where, what);
    return false;
  }
  bool colon() {
    space();
    if (!eat(':')) return reject("header: expected ':'");
    space();
    return true;
  }

  int hex_digit() {
    if (i_ >= s_.size()) return -1;
    const char c = s_[i_++];
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool hex4(std::uint32_t& out) {
    out = 0;
    for (int k = 0; k < 4; ++k) {
      const int d = hex_digit();
      if (d < 0) return false;
      out = out * 16 + static_cast<std::uint32_t>(d);
    }
    return true;
  }

  bool string(std::string& out) {
    if (!eat('"')) return reject("header: expected a string");
    out.clear();
    for (;;) {
      if (i_ >= s_.size()) return reject("header: unterminated string");
      const char c = s_[i_];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) return reject("header: control character in a string");
      ++i_;
      if (c != '\\') {
        out += c;
        continue;
      }
      const std::size_t escape_at = i_ - 1;
      const char e = i_ < s_.size() ? s_[i_++] : '\0';
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = 0, low = 0;
          if (!hex4(cp)) return reject_at(escape_at, "header: bad \\u escape");
          if (cp >= 0xDC00 && cp <= 0xDFFF) return reject_at(escape_at, "header: unpaired surrogate");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!eat('\\') || !eat('u') || !hex4(low) || low < 0xDC00 || low > 0xDFFF)
              return reject_at(escape_at, "header: unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: return reject_at(escape_at, "header: bad escape in a string");
      }
    }
    ++i_;
    return true;
  }

  /// A JSON number that must be an integer in [0, 2^63).
  bool integer(std::uint64_t& out) {
    const std::size_t begin = i_;
    if (at('-')) return reject("header: negative integer");
    std::uint64_t v = 0;
    switch (read_decimal(s_, i_, v)) {
      case decimal::too_large: return reject_at(begin, "header: integer too large");
      case decimal::none: return reject("header: expected an integer");
      case decimal::leading_zero: return reject_at(begin, "header: integer with a leading zero");
      case decimal::ok: break;
    }
    if (at('.') || at('e') || at('E')) return reject_at(begin, "header: expected an integer, not a fraction");
    out = v;
    return true;
  }

  bool integers(std::vector<std::uint64_t>& out, std::size_t most) {
    if (!eat('[')) return reject("header: expected '['");
    out.clear();
    space();
    if (eat(']')) return true;
    for (;;) {
      if (out.size() == most) return reject("header: more than " + std::to_string(most) + " integers");
      std::uint64_t v = 0;
      if (!integer(v)) return false;
      out.push_back(v);
      space();
      if (eat(']')) return true;
      if (!eat(',')) return reject("header: expected ',' or ']'");
      space();
    }
  }

  bool tensor(safetensors_info& t) {
    const std::string who = "header: tensor '" + printable(t.name) + "': ";
    if (!eat('{')) return reject(who + "expected an object");
    bool have_dtype = false, have_shape = false, have_offsets = false;
    space();
    if (!at('}')) {
      for (;;) {
        const std::size_t key_at = i_;
        std::string key;
        if (!string(key) || !colon()) return false;
        bool* seen = key == "dtype" ? &have_dtype : key == "shape" ? &have_shape
                   : key == "data_offsets" ? &have_offsets : nullptr;
        if (!seen) return reject_at(key_at, who + "unknown key '" + printable(key) + "'");
        if (*seen) return reject_at(key_at, who + "repeated key '" + key + "'");
        *seen = true;
        std::vector<std::uint64_t> v;
        if (key == "dtype") {
          if (!at('"')) return reject(who + "'dtype' must be a string");
          if (!string(t.dtype)) return false;
        } else if (key == "shape") {
          if (!integers(v, safetensors_max_dims)) return false;
          t.shape.assign(v.begin(), v.end());
        } else {
          const std::size_t offsets_at = i_;
          if (!integers(v, 2)) return false;
          if (v.size() != 2) return reject_at(offsets_at, who + "'data_offsets' must be [begin, end]");
          t.begin = v[0];
          t.end = v[1];
        }
        space();
        if (at('}')) break;
        if (!eat(',')) return reject("header: expected ',' or '}'");
        space();
      }
    }
    if (!have_dtype || !have_shape || !have_offsets)
      return reject(who + "missing '" + (!have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets") + "'");
    ++i_;  // '}'
    return true;
  }

  bool metadata(std::vector<std::pair<std::string, std::string>>& out) {
    if (!eat('{')) return reject("header: '__metadata__' must be an object");
    space();
    if (eat('}')) return true;
    for (;;) {
      const std::size_t key_at = i_;
      std::string key, value;
      if (!string(key) || !colon()) return false;
      for (const auto& kv : out)
        if (kv.first == key)
          return reject_at(key_at, "header: repeated '__metadata__' key '" + printable(key) + "'");
      if (!at('"')) return reject("header: '__metadata__' values must be strings");
      if (!string(value)) return false;
      out.emplace_back(std::move(key), std::move(value));
      space();
      if (eat('}')) return true;
      if (!eat(',')) return reject("header: expected ',' or '}'");
      space();
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::string error_;
};

/// Checks each tensor's dtype, byte count and offsets, and that the offsets tile `data_size`.
inline std::string check_safetensors(const safetensors_header& h, std::uint64_t data_size) {
  std::vector<std::string_view> names;
  for (const safetensors_info& t : h.tensors) names.push_back(t.name);
  std::sort(names.begin(), names.end());
  const auto twin = std::adjacent_find(names.begin(), names.end());
  if (twin != names.end()) return "duplicate tensor '" + printable(*twin) + "'";
  std::vector<const safetensors_info*> order;
  for (const safetensors_info& t : h.tensors) {
    const std::string who = "tensor '" + printable(t.name) + "': ";
    const std::size_t item = safetensors_item_size(t.dtype);
    if (item == 0) return who + "unknown dtype '" + printable(t.dtype) + "'";
    std::uint64_t bytes = 0;
    if (!checked_bytes(t.shape, item, bytes))
      return who + "shape " + shape_text(t.shape) + " of " + t.dtype + " overflows a 64-bit byte count";
    if (t.end < t.begin)
      return who + "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] are reversed";
    if (t.end - t.begin != bytes)
      return who + "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] hold " +
             std::to_string(t.end - t.begin) + " bytes, shape " + shape_text(t.shape) + " of " + t.dtype +
             " needs " + std::to_string(bytes);
    if (t.end > data_size)
      return who + "data_offsets end at " + std::to_string(t.end) + ", past the " + std::to_string(data_size) +
             "-byte data region";
    order.push_back(&t);
  }
  std::sort(order.begin(), order.end(), [](const safetensors_info* a, const safetensors_info* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t covered = 0;
  const safetensors_info* last = nullptr;
  for (const safetensors_info* t : order) {
    if (t->begin < covered)
      return "tensor '" + printable(t->name) + "' overlaps tensor '" + printable(last->name) + "'";
    if (t->begin > covered)
      return "tensor '" + printable(t->name) + "' begins at " + std::to_string(t->begin) +
             ", leaving a gap after byte " + std::to_string(covered) + " of the data region";
    covered = t->end;
    last = t;
  }
  if (covered != data_size)
    return "the tensors cover " + std::to_string(covered) + " bytes of the " + std::to_string(data_size) +
           "-byte data region";
  return {};
}

/// Reads and validates the header of the safetensors file in `src`.
inline std::string read_safetensors_header(byte_source& src, safetensors_header& out) {
  unsigned char length[8];
  if (!src.read(0, length, 8)) return "not a safetensors file (" + std::to_string(src.size()) + " bytes)";
  const std::uint64_t n = load_le64(length);
  if (n > safetensors_max_header)
    return "header length " + std::to_string(n) + " exceeds the " + std::to_string(safetensors_max_header) +
           "-byte limit";
  if (!src.holds(8, n))
    return "truncated header (declares " + std::to_string(n) + " bytes, " + std::to_string(src.size() - 8) +
           " follow)";
  std::string text(static_cast<std::size_t>(n), '\0');
  if (!src.read(8, text.data(), text.size())) return "read error in the header";
  safetensors_header h;
  if (std::string e = safetensors_json(text).parse(h); !e.empty()) return e;
  h.data_offset = 8 + n;
  if (std::string e = check_safetensors(h, src.size() - h.data_offset); !e.empty()) return e;
  out = std::move(h);
  return {};
}

/// Reads tensor `name` of the file in `src`, labelled `label` in errors.
inline std::string safetensors_tensor(byte_source& src, const std::string& name, safetensors_array& out,
                                      const std::string& label) {
  safetensors_header h;
  if (std::string e = read_safetensors_header(src, h); !e.empty()) return label + ": " + e;
  const auto it = std::find_if(h.tensors.begin(), h.tensors.end(),
                               [&](const safetensors_info& t) { return t.name == name; });
  if (it == h.tensors.end()) {
    if (h.tensors.empty()) return label + ": no tensor '" + printable(name) + "' (the file holds none)";
    std::vector<std::string_view> names;
    for (const safetensors_info& t : h.tensors) names.push_back(t.name);
    return label + ": no tensor '" + printable(name) + "' (tensors: " + name_list(names) + ")";
  }
  const std::uint64_t bytes = it->end - it->begin;
  if (bytes > static_cast<std::uint64_t>(PTRDIFF_MAX)) return label + ": tensor too large for this platform";
  safetensors_array a;
  try {
    a.bytes.resize(static_cast<std::size_t>(bytes));
  } catch (const std::bad_alloc&) {
    return label + ": out of memory for " + std::to_string(bytes) + " bytes";
  }
  if (!src.read(h.data_offset + it->begin, a.bytes.data(), a.bytes.size()))
    return label + ": read error in tensor '" + printable(name) + "'";
  a.dtype = it->dtype;
  a.shape = it->shape;
  out = std::move(a);
  return {};
}

}  // namespace detail

/// Reads and validates the header of the .safetensors file `path` into `out`. Returns an empty
/// string on success, or one line naming the file and the problem.
inline std::string read_safetensors_header(const std::string& path, safetensors_header& out) {
  detail::byte_source src;
  if (std::string e = src.open(path); !e.empty()) return path + ": " + e;
  if (std::string e = detail::read_safetensors_header(src, out); !e.empty()) return path + ": " + e;
  return {};
}

/// The tensor names of the .safetensors file `path`, in header order.
inline std::string list_safetensors(const std::string& path, std::vector<std::string>& names) {
  safetensors_header h;
  if (std::string e = read_safetensors_header(path, h); !e.empty()) return e;
  names.clear();
  for (const safetensors_info& t : h.tensors) names.push_back(t.name);
  return {};
}

/// Reads tensor `name` of the .safetensors file `path` into `out` (untouched on failure). The
/// whole header is validated first; a missing name lists the names there are.
inline std::string read_safetensors(const std::string& path, const std::string& name, safetensors_array& out) {
  detail::byte_source src;
  if (std::string e = src.open(path); !e.empty()) return path + ": " + e;
  return detail::safetensors_tensor(src, name, out, path);
}

/// `read_safetensors_header` of a file held in memory; `label` names it in errors.
inline std::string parse_safetensors_header(const unsigned char* data, std::size_t size, safetensors_header& out,
                                            const std::string& label) {
  detail::byte_source src = detail::byte_source::memory(data, size);
  if (std::string e = detail::read_safetensors_header(src, out); !e.empty()) return label + ": " + e;
  return {};
}

/// `read_safetensors` of a file held in memory; `label` names it in errors.
inline std::string parse_safetensors(const unsigned char* data, std::size_t size, const std::string& name,
                                     safetensors_array& out, const std::string& label) {
  detail::byte_source src = detail::byte_source::memory(data, size);
  return detail::safetensors_tensor(src, name, out, label);
}

}  // namespace tokred::io
