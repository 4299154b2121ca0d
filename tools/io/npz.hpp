// tools/io/npz.hpp — reads the arrays of NumPy .npz archives: `np.savez` (zip, members stored)
// and `np.savez_compressed` (members deflated), zip64 records included (NumPy writes a zip64
// extra field in every member's local header).
//
// A member is named as `np.load(path)[name]` names it: its file name without ".npy". The central
// directory is the authority for each member's sizes, method and CRC-32; the local header must
// agree with it, the data must lie before the directory, a deflated member must inflate to exactly
// the declared size (the output is allocated only after that size is checked against what deflate
// can produce from the compressed bytes present), and the CRC-32 must match. Multi-disk and
// encrypted archives and methods other than stored and deflate are refused with a message.
//
// Needs zlib (link ZLIB::ZLIB).
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <zlib.h>

#include "io/bytes.hpp"
#include "io/npy.hpp"

namespace tokred::io {

namespace detail {

/// One central-directory record, zip64 fields resolved.
struct zip_entry {
  std::string name;  ///< the stored file name, e.g. "features.npy"
  std::uint16_t flags = 0;
  std::uint16_t method = 0;  ///< 0 stored, 8 deflate
  std::uint32_t crc = 0;
  std::uint64_t compressed = 0;
  std::uint64_t size = 0;
  std::uint64_t local_offset = 0;
};

/// The members of an archive and where its central directory begins (member data lies before).
struct zip_directory {
  std::vector<zip_entry> entries;
  std::uint64_t offset = 0;
};

inline constexpr std::uint32_t zip_local_signature = 0x04034b50;
inline constexpr std::uint32_t zip_central_signature = 0x02014b50;
inline constexpr std::uint32_t zip_end_signature = 0x06054b50;
inline constexpr std::uint32_t zip64_end_signature = 0x06064b50;
inline constexpr std::uint32_t zip64_locator_signature = 0x07064b50;
/// Deflate emits at least 2 bits per 258-byte match, so no stream inflates beyond 1032:1.
inline constexpr std::uint64_t deflate_max_ratio = 1032;

/// The data of extra field `id` in `extra` (a sequence of id, length, data records) into `out`.
/// Returns "" (found or not: `found` says), or why the records are malformed.
inline std::string find_extra(std::string_view extra, std::uint16_t id, std::string_view& out, bool& found) {
  found = false;
  std::size_t at = 0;
  while (at < extra.size()) {
    if (extra.size() - at < 4) return "malformed extra field";
    const auto* p = reinterpret_cast<const unsigned char*>(extra.data() + at);
    const std::uint16_t tag = load_le16(p), length = load_le16(p + 2);
    if (extra.size() - at - 4 < length) return "malformed extra field";
    if (tag == id && !found) {
      out = extra.substr(at + 4, length);
      found = true;
    }
    at += 4 + std::size_t{length};
  }
  return {};
}

/// Replaces the saturated 32-bit fields `fields` (in the zip64 extra's order) by their 64-bit
/// values from `extra`'s zip64 record.
inline std::string resolve_zip64(std::string_view extra, std::uint64_t* const* fields, std::size_t count) {
  std::string_view z;
  bool found = false;
  if (std::string e = find_extra(extra, 0x0001, z, found); !e.empty()) return e;
  if (!found) return "zip64 extra field missing";
  if (z.size() < 8 * count) return "zip64 extra field too short";
  for (std::size_t i = 0; i < count; ++i)
    *fields[i] = load_le64(reinterpret_cast<const unsigned char*>(z.data()) + 8 * i);
  return {};
}

/// Finds the end-of-central-directory record at the very end of `src` (after at most a 64 KiB
/// comment) and reads the directory's place and entry count, from the zip64 record if present.
inline std::string read_zip_end(byte_source& src, std::uint64_t& offset, std::uint64_t& size,
                                std::uint64_t& count, std::uint64_t& end_at) {
  const std::uint64_t file = src.size();
  if (file < 22) return "not a zip archive (" + std::to_string(file) + " bytes)";
  const std::uint64_t tail_size = std::min<std::uint64_t>(file, 22 + 0xFFFF);
  std::vector<unsigned char> tail(static_cast<std::size_t>(tail_size));
  if (!src.read(file - tail_size, tail.data(), tail.size())) return "read error";
  std::size_t at = tail.size() - 22;
  while (load_le32(&tail[at]) != zip_end_signature || 22u + load_le16(&tail[at + 20]) != tail.size() - at) {
    if (at-- == 0) return "not a zip archive (no end-of-central-directory record)";
  }
  const unsigned char* e = &tail[at];
  end_at = file - tail_size + at;
  if (load_le16(e + 4) != 0 || load_le16(e + 6) != 0 || load_le16(e + 8) != load_le16(e + 10))
    return "multi-disk archives are not supported";
  count = load_le16(e + 10);
  size = load_le32(e + 12);
  offset = load_le32(e + 16);
  unsigned char locator[20];
  if (end_at < 20 || !src.read(end_at - 20, locator, 20) || load_le32(locator) != zip64_locator_signature)
    return {};
  // zip64: the locator points at the zip64 end record, whose fields replace the saturated ones.
  const std::uint64_t record_at = load_le64(locator + 8);
  if (load_le32(locator + 4) != 0 || load_le32(locator + 16) > 1) return "multi-disk archives are not supported";
  unsigned char r[56];
  if (record_at > end_at - 20 || end_at - 20 - record_at < 56 || !src.read(record_at, r, 56) ||
      load_le32(r) != zip64_end_signature)
    return "zip64 locator does not point at a zip64 end record";
  if (load_le64(r + 4) < 44 || load_le64(r + 4) > end_at - 20 - record_at - 12)
    return "zip64 end record has a bad size";
  if (load_le32(r + 16) != 0 || load_le32(r + 20) != 0 || load_le64(r + 24) != load_le64(r + 32))
    return "multi-disk archives are not supported";
  const std::uint64_t count64 = load_le64(r + 32), size64 = load_le64(r + 40), offset64 = load_le64(r + 48);
  if ((count != 0xFFFF && count != count64) || (size != 0xFFFFFFFF && size != size64) ||
      (offset != 0xFFFFFFFF && offset != offset64))
    return "zip64 end record disagrees with the end-of-central-directory record";
  count = count64;
  size = size64;
  offset = offset64;
  end_at = record_at;
  return {};
}

/// Parses one central-directory record at `p` (`left` bytes remain) into `out`; `used` is its
/// length.
inline std::string read_zip_central(const unsigned char* p, std::size_t left, zip_entry& out, std::size_t& used) {
  if (left < 46 || load_le32(p) != zip_central_signature) return "malformed central directory";
  const std::size_t name_length = load_le16(p + 28), extra_length = load_le16(p + 30);
  used = 46 + name_length + extra_length + load_le16(p + 32);
  if (used > left) return "malformed central directory (record overruns it)";
  out.name.assign(reinterpret_cast<const char*>(p + 46), name_length);
  const std::string where = "member '" + printable(out.name) + "': ";
  out.flags = load_le16(p + 8);
  out.method = load_le16(p + 10);
  out.crc = load_le32(p + 16);
  out.compressed = load_le32(p + 20);
  out.size = load_le32(p + 24);
  out.local_offset = load_le32(p + 42);
  const std::uint16_t disk = load_le16(p + 34);
  std::uint64_t* fields[3];
  std::size_t count = 0;
  if (out.size == 0xFFFFFFFF) fields[count++] = &out.size;
  if (out.compressed == 0xFFFFFFFF) fields[count++] = &out.compressed;
  if (out.local_offset == 0xFFFFFFFF) fields[count++] = &out.local_offset;
  if (count > 0) {
    const std::string_view extra(reinterpret_cast<const char*>(p + 46 + name_length), extra_length);
    if (std::string e = resolve_zip64(extra, fields, count); !e.empty()) return where + e;
  }
  if (disk != 0) return where + "multi-disk archives are not supported";
  if (out.name.empty()) return "a member has an empty name";
  if (out.flags & 0x0041) return where + "encrypted members are not supported";
  if (out.method != 0 && out.method != 8)
    return where + "compression method " + std::to_string(out.method) + " is not supported (only stored and deflate)";
  if (out.method == 0 && out.compressed != out.size) return where + "stored member with different sizes";
  return {};
}

/// Reads and checks the central directory of the archive in `src`.
inline std::string read_zip_directory(byte_source& src, zip_directory& out) {
  std::uint64_t offset = 0, size = 0, count = 0, end_at = 0;
  if (std::string e = read_zip_end(src, offset, size, count, end_at); !e.empty()) return e;
  if (offset > end_at || size != end_at - offset)
    return "central directory (" + std::to_string(size) + " bytes at " + std::to_string(offset) +
           ") does not end where the end record begins (" + std::to_string(end_at) + ")";
  if (count > size / 46)
    return std::to_string(count) + " members cannot fit in a central directory of " + std::to_string(size) + " bytes";
  std::vector<unsigned char> bytes(static_cast<std::size_t>(size));
  if (!src.read(offset, bytes.data(), bytes.size())) return "read error in the central directory";
  zip_directory d;
  d.offset = offset;
  d.entries.resize(static_cast<std::size_t>(count));
  std::size_t at = 0;
  for (zip_entry& entry : d.entries) {
    std::size_t used = 0;
    if (std::string e = read_zip_central(bytes.data() + at, bytes.size() - at, entry, used); !e.empty()) return e;
    at += used;
  }
  if (at != bytes.size())
    return "central directory holds " + std::to_string(bytes.size() - at) + " bytes after its " +
           std::to_string(count) + " declared members";
  out = std::move(d);
  return {};
}

/// `np.load`'s name of a member: its file name without ".npy".
inline std::string npz_key(const std::string& file_name) {
  const std::size_t n = file_name.size();
  return n >= 4 && file_name.compare(n - 4, 4, ".npy") == 0 ? file_name.substr(0, n - 4) : file_name;
}

/// The member names (keys) of a directory, in archive order; an error when two are the same.
inline std::string npz_keys(const zip_directory& d, std::vector<std::string>& out) {
  std::vector<std::string> keys;
  for (const zip_entry& entry : d.entries) keys.push_back(npz_key(entry.name));
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  const auto twin = std::adjacent_find(sorted.begin(), sorted.end());
  if (twin != sorted.end()) return "duplicate member '" + printable(*twin) + "'";
  out = std::move(keys);
  return {};
}

/// Checks `entry`'s local header against its directory record; `data_at` is where its data begins.
inline std::string read_zip_local(byte_source& src, const zip_directory& d, const zip_entry& entry,
                                  std::uint64_t& data_at) {
  unsigned char h[30];
  if (entry.local_offset > d.offset || d.offset - entry.local_offset < 30 || !src.read(entry.local_offset, h, 30))
    return "local header offset " + std::to_string(entry.local_offset) + " is outside the member data";
  if (load_le32(h) != zip_local_signature) return "no local header at offset " + std::to_string(entry.local_offset);
  const std::size_t name_length = load_le16(h + 26), extra_length = load_le16(h + 28);
  data_at = entry.local_offset + 30 + name_length + extra_length;
  if (data_at > d.offset) return "local header overruns the member data";
  std::string names(name_length + extra_length, '\0');
  if (!src.read(entry.local_offset + 30, names.data(), names.size())) return "read error in the local header";
  if (std::string_view(names).substr(0, name_length) != entry.name)
    return "local header names '" + printable(std::string_view(names).substr(0, name_length)) + "'";
  if (load_le16(h + 8) != entry.method) return "local header disagrees with the central directory (method)";
  std::uint64_t compressed = load_le32(h + 18), size = load_le32(h + 22);
  const std::uint32_t crc = load_le32(h + 14);
  if (compressed == 0xFFFFFFFF || size == 0xFFFFFFFF) {
    std::uint64_t* fields[2] = {&size, &compressed};  // a local zip64 record holds both
    if (std::string e = resolve_zip64(std::string_view(names).substr(name_length), fields, 2); !e.empty())
      return "local header: " + e;
  }
  // With a data descriptor (flag bit 3) the local header may leave all three fields zero.
  const bool deferred = (entry.flags & 0x0008) != 0 && crc == 0 && compressed == 0 && size == 0;
  if (!deferred && (crc != entry.crc || compressed != entry.compressed || size != entry.size))
    return "local header disagrees with the central directory (CRC-32 or sizes)";
  if (d.offset - data_at < entry.compressed)
    return "data (" + std::to_string(entry.compressed) + " bytes at " + std::to_string(data_at) +
           ") runs past the member data";
  return {};
}

/// Inflates the `entry.compressed` raw-deflate bytes at `data_at` into `out` (sized to
/// `entry.size`), requiring the stream to end exactly at both ends.
inline std::string inflate_member(byte_source& src, const zip_entry& entry, std::uint64_t data_at,
                                  std::vector<unsigned char>& out) {
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return "zlib could not start";
  struct end_guard {
    z_stream* z;
    ~end_guard() { inflateEnd(z); }
  } guard{&z};
  std::vector<unsigned char> chunk(static_cast<std::size_t>(std::min<std::uint64_t>(entry.compressed, 1u << 16)) + 1);
  unsigned char spill = 0;  // where output beyond the declared size would go
  std::uint64_t in_left = entry.compressed, in_at = data_at, out_at = 0;
  for (;;) {
    if (z.avail_in == 0 && in_left > 0) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(in_left, chunk.size()));
      if (!src.read(in_at, chunk.data(), n)) return "read error in the data";
      z.next_in = chunk.data();
      z.avail_in = static_cast<uInt>(n);
      in_left -= n;
      in_at += n;
    }
    const bool full = out_at == out.size();
    z.next_out = full ? &spill : out.data() + out_at;
    z.avail_out = full ? 1 : static_cast<uInt>(std::min<std::uint64_t>(out.size() - out_at, UINT_MAX));
    const uInt room = z.avail_out;
    const int rc = inflate(&z, Z_NO_FLUSH);
    if (full && z.avail_out != room)
      return "inflates to more than the declared " + std::to_string(entry.size) + " bytes";
    out_at += room - z.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && z.avail_in == 0 && in_left == 0)
      return "compressed data ends inside the deflate stream";
    if (rc != Z_OK) return std::string("corrupt deflate data (") + (z.msg ? z.msg : "zlib error") + ")";
  }
  if (z.avail_in != 0 || in_left != 0)
    return std::to_string(z.avail_in + in_left) + " trailing bytes after the deflate stream";
  if (out_at != out.size())
    return "inflates to " + std::to_string(out_at) + " bytes, the directory declares " + std::to_string(entry.size);
  return {};
}

/// The uncompressed bytes of `entry`, checked against its CRC-32.
inline std::string read_zip_member(byte_source& src, const zip_directory& d, const zip_entry& entry,
                                   std::vector<unsigned char>& out) {
  std::uint64_t data_at = 0;
  if (std::string e = read_zip_local(src, d, entry, data_at); !e.empty()) return e;
  if (entry.method == 8 && entry.size / deflate_max_ratio > entry.compressed)
    return "declares " + std::to_string(entry.size) + " bytes, more than deflate can produce from " +
           std::to_string(entry.compressed);
  if (entry.size > static_cast<std::uint64_t>(PTRDIFF_MAX)) return "member too large for this platform";
  std::vector<unsigned char> bytes;
  try {
    bytes.resize(static_cast<std::size_t>(entry.size));
  } catch (const std::bad_alloc&) {
    return "out of memory for " + std::to_string(entry.size) + " bytes";
  }
  if (entry.method == 0) {
    if (!src.read(data_at, bytes.data(), bytes.size())) return "read error in the data";
  } else if (std::string e = inflate_member(src, entry, data_at, bytes); !e.empty()) {
    return e;
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  for (std::size_t at = 0; at < bytes.size();) {
    const std::size_t n = std::min<std::size_t>(bytes.size() - at, UINT_MAX);
    crc = crc32(crc, bytes.data() + at, static_cast<uInt>(n));
    at += n;
  }
  if (crc != entry.crc) {
    char text[64];
    std::snprintf(text, sizeof text, "CRC-32 mismatch (stored %08x, computed %08lx)",
                  static_cast<unsigned>(entry.crc), static_cast<unsigned long>(crc));
    return text;
  }
  out = std::move(bytes);
  return {};
}

/// The member names of the archive in `src`.
inline std::string npz_names(byte_source& src, std::vector<std::string>& names) {
  zip_directory d;
  if (std::string e = read_zip_directory(src, d); !e.empty()) return e;
  return npz_keys(d, names);
}

/// Reads member `name` of the archive in `src`, labelled `label` in errors.
inline std::string npz_member(byte_source& src, const std::string& name, npy_array& out, const std::string& label) {
  zip_directory d;
  if (std::string e = read_zip_directory(src, d); !e.empty()) return label + ": " + e;
  std::vector<std::string> keys;
  if (std::string e = npz_keys(d, keys); !e.empty()) return label + ": " + e;
  const auto it = std::find(keys.begin(), keys.end(), name);
  if (it == keys.end()) {
    if (keys.empty()) return label + ": no array '" + printable(name) + "' (the archive is empty)";
    return label + ": no array '" + printable(name) + "' (arrays: " + name_list(keys) + ")";
  }
  const zip_entry& entry = d.entries[static_cast<std::size_t>(it - keys.begin())];
  const std::string where = label + ": member '" + printable(entry.name) + "': ";
  if (entry.name == *it) return where + "not a .npy array";
  std::vector<unsigned char> bytes;
  if (std::string e = read_zip_member(src, d, entry, bytes); !e.empty()) return where + e;
  npy_array a;
  if (std::string e = adopt_npy(std::move(bytes), a); !e.empty()) return label + ":" + printable(name) + ": " + e;
  out = std::move(a);
  return {};
}

}  // namespace detail

/// The names of the arrays in the .npz archive `path` (as `np.load(path).files` lists them), in
/// archive order. Returns an empty string on success, or one line naming the file and the problem.
inline std::string list_npz(const std::string& path, std::vector<std::string>& names) {
  detail::byte_source src;
  if (std::string e = src.open(path); !e.empty()) return path + ": " + e;
  if (std::string e = detail::npz_names(src, names); !e.empty()) return path + ": " + e;
  return {};
}

/// Reads array `name` (`np.load(path)[name]`) of the .npz archive `path` into `out` (untouched on
/// failure). Returns an empty string on success, or one line naming the file and the problem; a
/// missing name lists the names there are.
inline std::string read_npz(const std::string& path, const std::string& name, npy_array& out) {
  detail::byte_source src;
  if (std::string e = src.open(path); !e.empty()) return path + ": " + e;
  return detail::npz_member(src, name, out, path);
}

/// `list_npz` of an archive held in memory; `label` names it in errors.
inline std::string parse_npz_names(const unsigned char* data, std::size_t size, std::vector<std::string>& names,
                                   const std::string& label) {
  detail::byte_source src = detail::byte_source::memory(data, size);
  if (std::string e = detail::npz_names(src, names); !e.empty()) return label + ": " + e;
  return {};
}

/// `read_npz` of an archive held in memory; `label` names it in errors.
inline std::string parse_npz(const unsigned char* data, std::size_t size, const std::string& name, npy_array& out,
                             const std::string& label) {
  detail::byte_source src = detail::byte_source::memory(data, size);
  return detail::npz_member(src, name, out, label);
}

}  // namespace tokred::io
