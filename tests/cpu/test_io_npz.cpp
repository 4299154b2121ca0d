// tests/cpu/test_io_npz.cpp — the .npz reader: stored and deflated members (archives built here
// and written by NumPy), zip64 records, data descriptors, and one precise error for each malformed
// archive, including sizes far larger than the file.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <zlib.h>

#include "io/npy.hpp"
#include "io/npz.hpp"
#include "io_files.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// A .npy file of `values` shaped `shape`.
template <class T>
bytes npy_of(const char* dtype, const std::vector<std::int64_t>& shape, const std::vector<T>& values) {
  return concat(to_bytes(io::npy_prefix(dtype, shape)), raw(values));
}

/// Raw deflate (no zlib header), as zip stores it.
bytes deflate_raw(const bytes& in) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  bytes out(deflateBound(&z, static_cast<uLong>(in.size())));
  z.next_in = const_cast<unsigned char*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::uint32_t crc_of(const bytes& b) {
  return static_cast<std::uint32_t>(crc32(0L, b.data(), static_cast<uInt>(b.size())));
}

struct member {
  std::string name;
  bytes data;
  bool deflate = false;
};

/// An archive and where its parts are, for the tests to damage one field at a time.
struct archive {
  bytes b;
  std::vector<std::size_t> local, central;  // offsets of each member's headers
  std::size_t directory = 0, end = 0, zip64_end = 0, locator = 0;
};

/// Offsets of fields inside a local header and a central record.
namespace local_field {
constexpr std::size_t flags = 6, method = 8, crc = 14, compressed = 18, size = 22, extra_length = 28;
}
namespace central_field {
constexpr std::size_t flags = 8, method = 10, crc = 16, compressed = 20, size = 24, name_length = 28,
                      disk = 34, offset = 42;
}

/// A zip archive of `members`. With `zip64`, every central record saturates its sizes and offset
/// and carries the first `zip64_fields` of them in a zip64 extra field, and zip64 end records
/// follow. Local headers carry a zip64 extra field as NumPy writes them.
archive make_zip(const std::vector<member>& members, bool zip64 = false, int zip64_fields = 3) {
  archive a;
  struct record {
    std::uint32_t crc;
    std::uint64_t compressed, size;
  };
  std::vector<record> records;
  for (const member& m : members) {
    const bytes stored = m.deflate ? deflate_raw(m.data) : m.data;
    records.push_back({crc_of(m.data), stored.size(), m.data.size()});
    a.local.push_back(a.b.size());
    put_le(a.b, 0x04034b50, 4);
    put_le(a.b, 20, 2);
    put_le(a.b, 0, 2);
    put_le(a.b, m.deflate ? 8 : 0, 2);
    put_le(a.b, 0, 4);  // time, date
    put_le(a.b, records.back().crc, 4);
    put_le(a.b, stored.size(), 4);
    put_le(a.b, m.data.size(), 4);
    put_le(a.b, m.name.size(), 2);
    put_le(a.b, 20, 2);
    a.b = concat(a.b, to_bytes(m.name));
    put_le(a.b, 0x0001, 2);
    put_le(a.b, 16, 2);
    put_le(a.b, m.data.size(), 8);
    put_le(a.b, stored.size(), 8);
    a.b = concat(a.b, stored);
  }
  a.directory = a.b.size();
  for (std::size_t i = 0; i < members.size(); ++i) {
    const member& m = members[i];
    a.central.push_back(a.b.size());
    put_le(a.b, 0x02014b50, 4);
    put_le(a.b, 20, 2);
    put_le(a.b, zip64 ? 45 : 20, 2);
    put_le(a.b, 0, 2);
    put_le(a.b, m.deflate ? 8 : 0, 2);
    put_le(a.b, 0, 4);
    put_le(a.b, records[i].crc, 4);
    put_le(a.b, zip64 ? 0xFFFFFFFF : records[i].compressed, 4);
    put_le(a.b, zip64 ? 0xFFFFFFFF : records[i].size, 4);
    put_le(a.b, m.name.size(), 2);
    put_le(a.b, zip64 ? 4 + 8 * zip64_fields : 0, 2);
    put_le(a.b, 0, 2);  // comment
    put_le(a.b, 0, 2);  // disk
    put_le(a.b, 0, 2);
    put_le(a.b, 0, 4);
    put_le(a.b, zip64 ? 0xFFFFFFFF : a.local[i], 4);
    a.b = concat(a.b, to_bytes(m.name));
    if (zip64) {
      put_le(a.b, 0x0001, 2);
      put_le(a.b, 8 * zip64_fields, 2);
      const std::uint64_t values[3] = {records[i].size, records[i].compressed, a.local[i]};
      for (int f = 0; f < zip64_fields; ++f) put_le(a.b, values[f], 8);
    }
  }
  const std::size_t directory_size = a.b.size() - a.directory;
  if (zip64) {
    a.zip64_end = a.b.size();
    put_le(a.b, 0x06064b50, 4);
    put_le(a.b, 44, 8);
    put_le(a.b, 45, 2);
    put_le(a.b, 45, 2);
    put_le(a.b, 0, 4);
    put_le(a.b, 0, 4);
    put_le(a.b, members.size(), 8);
    put_le(a.b, members.size(), 8);
    put_le(a.b, directory_size, 8);
    put_le(a.b, a.directory, 8);
    a.locator = a.b.size();
    put_le(a.b, 0x07064b50, 4);
    put_le(a.b, 0, 4);
    put_le(a.b, a.zip64_end, 8);
    put_le(a.b, 1, 4);
  }
  a.end = a.b.size();
  put_le(a.b, 0x06054b50, 4);
  put_le(a.b, 0, 2);
  put_le(a.b, 0, 2);
  put_le(a.b, zip64 ? 0xFFFF : members.size(), 2);
  put_le(a.b, zip64 ? 0xFFFF : members.size(), 2);
  put_le(a.b, zip64 ? 0xFFFFFFFF : directory_size, 4);
  put_le(a.b, zip64 ? 0xFFFFFFFF : a.directory, 4);
  put_le(a.b, 0, 2);
  return a;
}

const std::vector<float> a_values = {0.f, 0.25f, 0.5f, 0.75f, 1.f, 1.25f};
const std::vector<std::int64_t> b_values = {-1, 0, 7, std::int64_t{1} << 40};

/// Members a (float32 (2, 3)) and b (int64 (4,)), deflated or not.
std::vector<member> two(bool deflate) {
  return {{"a.npy", npy_of("<f4", {2, 3}, a_values), deflate}, {"b.npy", npy_of("<i8", {4}, b_values), deflate}};
}

std::string read_error(const bytes& zip, const std::string& name = "a") {
  io::npy_array a;
  return io::parse_npz(zip.data(), zip.size(), name, a, "t.npz");
}

std::string list_error(const bytes& zip) {
  std::vector<std::string> names;
  return io::parse_npz_names(zip.data(), zip.size(), names, "t.npz");
}

void check_two(const bytes& zip) {
  std::vector<std::string> names;
  REQUIRE(io::parse_npz_names(zip.data(), zip.size(), names, "t.npz") == "");
  CHECK(names == std::vector<std::string>{"a", "b"});
  io::npy_array a, b;
  REQUIRE(io::parse_npz(zip.data(), zip.size(), "a", a, "t.npz") == "");
  REQUIRE(io::parse_npz(zip.data(), zip.size(), "b", b, "t.npz") == "");
  CHECK(a.dtype == "<f4");
  CHECK(a.shape == std::vector<std::int64_t>{2, 3});
  CHECK(a.as<float>() == a_values);
  CHECK(b.dtype == "<i8");
  CHECK(b.as<std::int64_t>() == b_values);
}

}  // namespace

TEST_CASE("npz: stored and deflated members, in memory and from files", "[io][npz]") {
  scratch_dir dir;
  for (bool deflate : {false, true}) {
    INFO((deflate ? "deflated" : "stored"));
    const archive z = make_zip(two(deflate));
    check_two(z.b);
    const std::string path = dir.write("t.npz", z.b);
    std::vector<std::string> names;
    REQUIRE(io::list_npz(path, names) == "");
    CHECK(names == std::vector<std::string>{"a", "b"});
    io::npy_array b;
    REQUIRE(io::read_npz(path, "b", b) == "");
    CHECK(b.as<std::int64_t>() == b_values);
  }
  // A larger deflated member, read through the file in several chunks.
  std::vector<float> ramp(100000);
  for (std::size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<float>(i % 977) * 0.5f;
  const std::string path = dir.write("big.npz", make_zip({{"ramp.npy", npy_of("<f4", {100000}, ramp), true}}).b);
  io::npy_array r;
  REQUIRE(io::read_npz(path, "ramp", r) == "");
  CHECK(r.as<float>() == ramp);
}

TEST_CASE("npz: archives written by np.savez and np.savez_compressed", "[io][npz]") {
  for (const char* file : {"stored.npz", "deflated.npz"}) {
    INFO(file);
    const std::string path = io_data(file);
    std::vector<std::string> names;
    REQUIRE(io::list_npz(path, names) == "");
    CHECK(names == std::vector<std::string>{"a", "h", "i"});
    for (const char* name : {"a", "h", "i"}) {
      io::npy_array from_npz, from_npy;
      REQUIRE(io::read_npz(path, name, from_npz) == "");
      const char* npy = *name == 'a' ? "v1.npy" : *name == 'h' ? "v2.npy" : "v3.npy";
      REQUIRE(io::read_npy(io_data(npy), from_npy) == "");
      CHECK(from_npz.dtype == from_npy.dtype);
      CHECK(from_npz.shape == from_npy.shape);
      CHECK(from_npz.bytes == from_npy.bytes);
    }
  }
}

TEST_CASE("npz: zip64 records, data descriptors, other members and names", "[io][npz]") {
  check_two(make_zip(two(true), true).b);
  check_two(make_zip(two(false), true).b);

  // A member written with a data descriptor: flag bit 3, zero CRC and sizes in its local header.
  archive d = make_zip(two(true));
  for (std::size_t i = 0; i < 2; ++i) {
    poke_le(d.b, d.local[i] + local_field::flags, 0x0008, 2);
    poke_le(d.b, d.central[i] + central_field::flags, 0x0008, 2);
    for (std::size_t f : {local_field::crc, local_field::compressed, local_field::size}) poke_le(d.b, d.local[i] + f, 0, 4);
  }
  check_two(d.b);

  const archive empty = make_zip({});
  std::vector<std::string> names{"stale"};
  REQUIRE(io::parse_npz_names(empty.b.data(), empty.b.size(), names, "t.npz") == "");
  CHECK(names.empty());
  CHECK(read_error(empty.b, "x") == "t.npz: no array 'x' (the archive is empty)");
  CHECK(read_error(make_zip(two(false)).b, "z") == "t.npz: no array 'z' (arrays: 'a', 'b')");

  const archive mixed = make_zip({{"a.npy", npy_of("<f4", {2, 3}, a_values)}, {"notes.txt", to_bytes("hello")}});
  CHECK(read_error(mixed.b, "notes.txt") == "t.npz: member 'notes.txt': not a .npy array");
  CHECK(read_error(mixed.b, "a") == "");
  CHECK(list_error(make_zip({{"a.npy", {}}, {"a.npy", {}}}).b) == "t.npz: duplicate member 'a'");
  CHECK(list_error(make_zip({{"a", {}}, {"b.npy", {}}, {"a.npy", {}}}).b) == "t.npz: duplicate member 'a'");
  CHECK(list_error(make_zip({{"", {}}}).b) == "t.npz: a member has an empty name");
  CHECK(read_error(make_zip({{"a.npy", to_bytes("hello")}}).b) == "t.npz:a: not a .npy file (no \\x93NUMPY magic)");
}

TEST_CASE("npz: each malformed end record or central directory gets its own message", "[io][npz]") {
  const archive z = make_zip(two(false));
  const std::string size = std::to_string(z.end - z.directory);
  CHECK(list_error(bytes(10)) == "t.npz: not a zip archive (10 bytes)");
  CHECK(list_error(bytes(100)) == "t.npz: not a zip archive (no end-of-central-directory record)");
  bytes b = z.b;
  poke_le(b, z.end + 20, 1, 2);  // a comment longer than what follows
  CHECK(list_error(b) == "t.npz: not a zip archive (no end-of-central-directory record)");
  b = z.b;
  poke_le(b, z.end + 4, 1, 2);
  CHECK(list_error(b) == "t.npz: multi-disk archives are not supported");
  b = z.b;
  poke_le(b, z.end + 16, z.directory + 1, 4);
  CHECK(list_error(b) == "t.npz: central directory (" + size + " bytes at " + std::to_string(z.directory + 1) +
                             ") does not end where the end record begins (" + std::to_string(z.end) + ")");
  b = z.b;
  poke_le(b, z.end + 8, 1000, 2);
  poke_le(b, z.end + 10, 1000, 2);
  CHECK(list_error(b) == "t.npz: 1000 members cannot fit in a central directory of " + size + " bytes");
  b = z.b;
  poke_le(b, z.end + 8, 1, 2);
  poke_le(b, z.end + 10, 1, 2);
  CHECK(list_error(b) == "t.npz: central directory holds " + std::to_string(z.end - z.central[1]) +
                             " bytes after its 1 declared members");
  b = z.b;
  b[z.central[1]] = 'X';
  CHECK(list_error(b) == "t.npz: malformed central directory");
  b = z.b;
  poke_le(b, z.central[1] + central_field::name_length, 500, 2);
  CHECK(list_error(b) == "t.npz: malformed central directory (record overruns it)");
  b = z.b;
  poke_le(b, z.central[0] + central_field::flags, 1, 2);
  CHECK(list_error(b) == "t.npz: member 'a.npy': encrypted members are not supported");
  b = z.b;
  poke_le(b, z.central[0] + central_field::method, 12, 2);
  CHECK(list_error(b) == "t.npz: member 'a.npy': compression method 12 is not supported (only stored and deflate)");
  b = z.b;
  poke_le(b, z.central[0] + central_field::size, 7, 4);
  CHECK(list_error(b) == "t.npz: member 'a.npy': stored member with different sizes");
  b = z.b;
  poke_le(b, z.central[0] + central_field::disk, 1, 2);
  CHECK(list_error(b) == "t.npz: member 'a.npy': multi-disk archives are not supported");
  b = z.b;
  poke_le(b, z.central[0] + central_field::size, 0xFFFFFFFF, 4);
  CHECK(list_error(b) == "t.npz: member 'a.npy': zip64 extra field missing");
}

TEST_CASE("npz: each malformed zip64 record gets its own message", "[io][npz]") {
  const archive z = make_zip(two(false), true);
  bytes b = z.b;
  poke_le(b, z.locator + 8, z.zip64_end + 1, 8);
  CHECK(list_error(b) == "t.npz: zip64 locator does not point at a zip64 end record");
  b = z.b;
  poke_le(b, z.zip64_end + 4, 43, 8);
  CHECK(list_error(b) == "t.npz: zip64 end record has a bad size");
  b = z.b;
  poke_le(b, z.locator + 16, 2, 4);
  CHECK(list_error(b) == "t.npz: multi-disk archives are not supported");
  b = z.b;
  poke_le(b, z.end + 8, 3, 2);
  poke_le(b, z.end + 10, 3, 2);
  CHECK(list_error(b) == "t.npz: zip64 end record disagrees with the end-of-central-directory record");
  CHECK(list_error(make_zip(two(false), true, 2).b) == "t.npz: member 'a.npy': zip64 extra field too short");
  b = z.b;
  poke_le(b, z.central[0] + 46 + 5 + 2, 100, 2);  // the extra record's length, past its field
  CHECK(list_error(b) == "t.npz: member 'a.npy': malformed extra field");
}

TEST_CASE("npz: each malformed member gets its own message", "[io][npz]") {
  const archive z = make_zip(two(false));
  const archive zd = make_zip(two(true));
  const std::string a = "t.npz: member 'a.npy': ";
  bytes b = z.b;
  poke_le(b, z.central[0] + central_field::offset, z.directory - 10, 4);
  CHECK(read_error(b) == a + "local header offset " + std::to_string(z.directory - 10) + " is outside the member data");
  b = z.b;
  b[0] = 'X';
  CHECK(read_error(b) == a + "no local header at offset 0");
  b = z.b;
  b[z.local[0] + 30] = 'b';
  CHECK(read_error(b) == a + "local header names 'b.npy'");
  b = z.b;
  poke_le(b, z.local[0] + local_field::method, 8, 2);
  CHECK(read_error(b) == a + "local header disagrees with the central directory (method)");
  b = z.b;
  poke_le(b, z.local[0] + local_field::crc, 1, 4);
  CHECK(read_error(b) == a + "local header disagrees with the central directory (CRC-32 or sizes)");
  b = z.b;
  poke_le(b, z.local[0] + local_field::compressed, 1, 4);
  CHECK(read_error(b) == a + "local header disagrees with the central directory (CRC-32 or sizes)");
  b = z.b;
  poke_le(b, z.local[0] + local_field::size, 0xFFFFFFFF, 4);
  poke_le(b, z.local[0] + local_field::extra_length, 0, 2);
  CHECK(read_error(b) == a + "local header: zip64 extra field missing");
  b = z.b;
  poke_le(b, z.local[1] + local_field::extra_length, 0xFFFF, 2);
  CHECK(read_error(b, "b") == "t.npz: member 'b.npy': local header overruns the member data");
  // Sizes that agree everywhere but reach into the central directory.
  b = z.b;
  const std::uint64_t past = z.directory - z.local[1] - 30 - 5 - 20 + 1;
  for (std::size_t f : {local_field::compressed, local_field::size}) poke_le(b, z.local[1] + f, past, 4);
  for (std::size_t f : {central_field::compressed, central_field::size}) poke_le(b, z.central[1] + f, past, 4);
  CHECK(read_error(b, "b") == "t.npz: member 'b.npy': data (" + std::to_string(past) + " bytes at " +
                                  std::to_string(z.local[1] + 55) + ") runs past the member data");
  b = z.b;
  poke_le(b, z.local[0] + local_field::crc, 0x12345678, 4);
  poke_le(b, z.central[0] + central_field::crc, 0x12345678, 4);
  char computed[16];
  std::snprintf(computed, sizeof computed, "%08x", static_cast<unsigned>(crc_of(npy_of("<f4", {2, 3}, a_values))));
  CHECK(read_error(b) == a + "CRC-32 mismatch (stored 12345678, computed " + computed + ")");

  // Deflated members: the declared size against the stream.
  const auto both = [&](bytes& x, std::size_t member, std::size_t local, std::size_t central, std::uint64_t v) {
    poke_le(x, zd.local[member] + local, v, 4);
    poke_le(x, zd.central[member] + central, v, 4);
  };
  const std::uint64_t packed = zd.b[zd.central[0] + central_field::compressed] |
                               (zd.b[zd.central[0] + central_field::compressed + 1] << 8);
  const std::uint64_t plain = npy_of("<f4", {2, 3}, a_values).size();
  b = zd.b;
  both(b, 0, local_field::size, central_field::size, plain - 1);
  CHECK(read_error(b) == a + "inflates to more than the declared " + std::to_string(plain - 1) + " bytes");
  b = zd.b;
  both(b, 0, local_field::size, central_field::size, plain + 1);
  CHECK(read_error(b) == a + "inflates to " + std::to_string(plain) + " bytes, the directory declares " +
                             std::to_string(plain + 1));
  b = zd.b;
  both(b, 0, local_field::compressed, central_field::compressed, packed - 3);
  CHECK(read_error(b) == a + "compressed data ends inside the deflate stream");
  b = zd.b;
  both(b, 0, local_field::compressed, central_field::compressed, packed + 2);
  CHECK(read_error(b) == a + "2 trailing bytes after the deflate stream");
  b = zd.b;
  b[zd.local[0] + 55] = 0xFF;  // final block of the reserved type 3
  CHECK(read_error(b) == a + "corrupt deflate data (invalid block type)");
  b = zd.b;
  both(b, 0, local_field::size, central_field::size, 1032 * packed + 1032);
  CHECK(read_error(b) == a + "declares " + std::to_string(1032 * packed + 1032) +
                             " bytes, more than deflate can produce from " + std::to_string(packed));
}

TEST_CASE("npz: sizes of 2^40 in a small archive fail before any allocation", "[io][npz]") {
  // A deflated member declaring 2^40 bytes (zip64 fields agree everywhere).
  archive z = make_zip({{"a.npy", npy_of("<f4", {2, 3}, a_values), true}}, true);
  const std::uint64_t huge = std::uint64_t{1} << 40;
  poke_le(z.b, z.local[0] + 30 + 5 + 4, huge, 8);  // local zip64 extra: uncompressed size
  poke_le(z.b, z.local[0] + local_field::size, 0xFFFFFFFF, 4);
  poke_le(z.b, z.local[0] + local_field::compressed, 0xFFFFFFFF, 4);
  poke_le(z.b, z.central[0] + 46 + 5 + 4, huge, 8);  // central zip64 extra: uncompressed size
  REQUIRE(z.b.size() < 400);
  std::string e;
  REQUIRE_NOTHROW(e = read_error(z.b));
  CHECK(e.find("t.npz: member 'a.npy': declares 1099511627776 bytes, more than deflate can produce from ") == 0);
  // A stored .npy member whose header declares 2^40 floats.
  const bytes inner = concat(to_bytes(io::npy_prefix("<f4", {huge})), bytes(8));
  REQUIRE_NOTHROW(e = read_error(make_zip({{"a.npy", inner}}).b));
  CHECK(e == "t.npz:a: truncated data: shape (1099511627776,) of <f4 needs 4398046511104 bytes, 8 follow the header");
  // A central directory claiming 2^32 members.
  archive many = make_zip(two(false), true);
  poke_le(many.b, many.zip64_end + 24, std::uint64_t{1} << 32, 8);
  poke_le(many.b, many.zip64_end + 32, std::uint64_t{1} << 32, 8);
  REQUIRE_NOTHROW(e = list_error(many.b));
  CHECK(e == "t.npz: 4294967296 members cannot fit in a central directory of " +
                 std::to_string(many.zip64_end - many.directory) + " bytes");
}

TEST_CASE("npz: every truncation of an archive fails cleanly", "[io][npz]") {
  for (const char* file : {"stored.npz", "deflated.npz"}) {
    const bytes b = read_file(io_data(file));
    for (std::size_t n = 0; n < b.size(); ++n) {
      INFO(file << " cut to " << n);
      io::npy_array a;
      const std::string e = io::parse_npz(b.data(), n, "h", a, "t.npz");
      CHECK_FALSE(e.empty());
      CHECK(e.find('\n') == std::string::npos);
    }
  }
}
