// tests/cpu/test_io_npy.cpp — the .npy reader: round trips through the writer, the three format
// versions (built here and written by NumPy), the header dictionaries NumPy writes, and one
// precise error for each malformed file, including a shape far larger than the file.
#include <cstdint>
#include <string>
#include <vector>

#include "io/npy.hpp"
#include "io_files.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// A .npy file of format `major`.0 with `header` verbatim (no padding added) and `data`.
bytes npy_file(int major, std::string_view header, const bytes& data = {}) {
  bytes b = to_bytes("\x93NUMPY");
  b.push_back(static_cast<unsigned char>(major));
  b.push_back(0);
  put_le(b, header.size(), major == 1 ? 2 : 4);
  return concat(concat(b, to_bytes(header)), data);
}

/// The header NumPy writes for a C-order (2, 3) float32 array, without padding.
const std::string plain = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";

std::string parse_error(const bytes& file) {
  io::npy_array a;
  return io::parse_npy(file.data(), file.size(), a, "t.npy");
}

/// The error for header text `h` on an otherwise well-formed file.
std::string header_error(const std::string& h) { return parse_error(npy_file(1, h, bytes(24))); }

std::string at(const std::string& h, const std::string& token) { return std::to_string(h.find(token)); }

}  // namespace

TEST_CASE("npy: write_npy and read_npy round-trip every dtype and shape", "[io][npy]") {
  scratch_dir dir;
  struct sample {
    const char* dtype;
    std::vector<std::int64_t> shape;
    std::size_t item;
  };
  const std::vector<sample> samples = {{"<f4", {2, 3}, 4}, {"<f2", {5}, 2},       {"<i8", {}, 8},
                                       {"<i4", {1, 2, 3, 2}, 4}, {"|b1", {7}, 1}, {"<f4", {0}, 4},
                                       {"<f8", {2, 0, 3}, 8},    {"|u1", {3, 1}, 1}};
  for (const sample& s : samples) {
    std::size_t n = 1;
    for (auto e : s.shape) n *= static_cast<std::size_t>(e);
    bytes data(n * s.item);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 37 + 11);
    const std::string path = dir.path() + "/a.npy";
    REQUIRE(io::write_npy(path, s.dtype, s.shape, data.data(), data.size()).empty());
    io::npy_array a;
    INFO(s.dtype << " " << s.shape.size() << " dims");
    REQUIRE(io::read_npy(path, a).empty());
    CHECK(a.dtype == s.dtype);
    CHECK(a.shape == s.shape);
    CHECK(a.bytes == data);
    CHECK(a.elements() == static_cast<std::int64_t>(n));
    // The same bytes in memory; NumPy's layout puts the data at a multiple of 64.
    const bytes file = read_file(path);
    CHECK((file.size() - data.size()) % 64 == 0);
    io::npy_array m;
    REQUIRE(io::parse_npy(file.data(), file.size(), m, "m.npy").empty());
    CHECK(m.bytes == data);
    CHECK(m.shape == s.shape);
  }
}

TEST_CASE("npy: format versions 1.0, 2.0 and 3.0", "[io][npy]") {
  const std::vector<float> values = {0.f, 0.25f, 0.5f, 0.75f, 1.f, 1.25f};
  for (int major : {1, 2, 3}) {
    INFO("version " << major);
    const bytes file = npy_file(major, plain, raw(values));
    io::npy_array a;
    REQUIRE(io::parse_npy(file.data(), file.size(), a, "t.npy").empty());
    CHECK(a.dtype == "<f4");
    CHECK(a.shape == std::vector<std::int64_t>{2, 3});
    CHECK(a.as<float>() == values);
  }
  // Written by NumPy 1.24 (tests/data/io/make.py).
  io::npy_array v1, v2, v3;
  REQUIRE(io::read_npy(io_data("v1.npy"), v1).empty());
  CHECK(v1.dtype == "<f4");
  CHECK(v1.shape == std::vector<std::int64_t>{2, 3});
  CHECK(v1.as<float>() == values);
  REQUIRE(io::read_npy(io_data("v2.npy"), v2).empty());
  CHECK(v2.dtype == "<f2");
  CHECK(v2.shape == std::vector<std::int64_t>{4});
  CHECK(v2.as<std::uint16_t>() == std::vector<std::uint16_t>{0x3C00, 0xC000, 0x7BFF, 0x0001});
  REQUIRE(io::read_npy(io_data("v3.npy"), v3).empty());
  CHECK(v3.dtype == "<i8");
  CHECK(v3.shape == std::vector<std::int64_t>{2, 2});
  CHECK(v3.as<std::int64_t>() == std::vector<std::int64_t>{-1, 0, 7, std::int64_t{1} << 40});
}

TEST_CASE("npy: every header dictionary NumPy writes or reads is accepted", "[io][npy]") {
  const std::vector<std::string> accepted = {
      plain,
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + std::string(40, ' ') + "\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}\n",
      "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3,)}  \n",
      "{'descr':'<f4','fortran_order':False,'shape':(2,3),}",
      "{ 'descr' :\t'<f4' , 'fortran_order' : False , 'shape' : ( 2 , 3 ) , }\n",
  };
  for (const std::string& h : accepted) {
    INFO(h);
    const bytes file = npy_file(1, h, bytes(24));
    io::npy_array a;
    REQUIRE(io::parse_npy(file.data(), file.size(), a, "t.npy") == "");
    CHECK(a.shape == std::vector<std::int64_t>{2, 3});
  }
  io::npy_header h;
  REQUIRE(io::parse_npy_header("{'descr': '<f2', 'fortran_order': False, 'shape': (6,), }\n", h).empty());
  CHECK(h.shape == std::vector<std::int64_t>{6});
  REQUIRE(io::parse_npy_header("{'descr': '<f2', 'fortran_order': True, 'shape': (), }\n", h).empty());
  CHECK(h.shape.empty());
  CHECK(h.fortran_order);
  // The value texts that tests reading Fortran-ordered files themselves rely on.
  const std::string fortran = "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 5), }   \n";
  CHECK(io::detail::header_value(fortran, "descr") == "<f4");
  CHECK(io::detail::header_value(fortran, "fortran_order") == "True");
  CHECK(io::detail::header_value(fortran, "shape") == "4, 5");
  CHECK(io::detail::header_value("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", "shape") == "4,");
  CHECK(io::detail::header_value("not a header", "descr").empty());
}

TEST_CASE("npy: each malformed header dictionary gets its own message", "[io][npy]") {
  const auto expect = [](const std::string& h, const std::string& what) {
    INFO(h);
    CHECK(header_error(h) == "t.npy: header: " + what);
  };
  expect("", "expected '{' at offset 0");
  expect(" {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", "expected '{' at offset 0");
  std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}\n";
  expect(h, "unknown key 'extra' at offset " + at(h, "'extra'"));
  h = "{'descr': '<f4', 'fortran_order': False, 'descr': '<f4', 'shape': (2, 3)}\n";
  expect(h, "repeated key 'descr' at offset " + at(h, "'descr': '<f4', 's"));
  CHECK(header_error("{'descr': '<f4', 'fortran_order': False}\n") == "t.npy: header: missing key 'shape'");
  CHECK(header_error("{'descr': '<f4', 'shape': (2, 3)}\n") == "t.npy: header: missing key 'fortran_order'");
  CHECK(header_error("{'fortran_order': False, 'shape': (2, 3)}\n") == "t.npy: header: missing key 'descr'");
  h = "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (2, 3)}\n";
  expect(h, "structured dtypes are not supported at offset " + at(h, "["));
  h = "{'descr': f4, 'fortran_order': False, 'shape': (2, 3)}\n";
  expect(h, "'descr' must be a quoted string at offset " + at(h, "f4"));
  h = "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}\n";
  expect(h, "'fortran_order' must be True or False at offset " + at(h, "0"));
  h = "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3)}\n";
  expect(h, "'fortran_order' must be True or False at offset " + at(h, "Falsey"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}\n";
  expect(h, "'shape' must be a tuple at offset " + at(h, "["));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (6)}\n";
  expect(h, "'shape' (n) is a number, not a tuple: write (n,) at offset " + at(h, ")"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (-6,)}\n";
  expect(h, "negative dimension at offset " + at(h, "-"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (06,)}\n";
  expect(h, "dimension with a leading zero at offset " + at(h, "06"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}\n";
  expect(h, "dimension too large at offset " + at(h, "999"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (,)}\n";
  expect(h, "expected a dimension at offset " + at(h, ",)"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}\n";
  expect(h, "expected ',' or ')' in 'shape' at offset " + at(h, "3)"));
  std::string dims;
  for (int i = 0; i < 65; ++i) dims += "1, ";
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + ")}\n";
  expect(h, "more than 64 dimensions at offset " + std::to_string(h.find("(") + 1 + 64 * 3));
  h = "{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3)}\n";
  expect(h, "expected ':' after key 'descr' at offset " + at(h, "'<f4'"));
  h = "{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3)}\n";
  expect(h, "expected ',' or '}' at offset " + at(h, "fortran_order"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape: (2, 3)}";
  expect(h, "unterminated string at offset " + at(h, "'shape"));
  h = "{'descr': '<f\\4', 'fortran_order': False, 'shape': (2, 3)}\n";
  expect(h, "escape sequences are not supported at offset " + at(h, "\\"));
  h = "{'descr': '<f\xc3\xa9" "4', 'fortran_order': False, 'shape': (2, 3)}\n";
  expect(h, "unexpected byte in a string at offset " + at(h, "\xc3"));
  h = "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}\n";
  expect(h, "expected ',' or '}' at offset " + at(h, "'fortran"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), ";
  expect(h, "expected a quoted key or '}' at offset " + std::to_string(h.size()));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x\n";
  expect(h, "unexpected text after the dictionary at offset " + at(h, "x"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}\t\n";
  expect(h, "unexpected text after the dictionary at offset " + at(h, "\t"));
  h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}\n\n";
  expect(h, "unexpected text after the dictionary at offset " + std::to_string(h.size() - 1));
}

TEST_CASE("npy: each malformed prefix, dtype or size gets its own message", "[io][npy]") {
  const bytes data(24);
  CHECK(parse_error({}) == "t.npy: not a .npy file (no \\x93NUMPY magic)");
  CHECK(parse_error(to_bytes("PK\x03\x04 not numpy")) == "t.npy: not a .npy file (no \\x93NUMPY magic)");
  CHECK(parse_error(to_bytes("\x93NUMPY\x01")) == "t.npy: truncated .npy prefix (7 bytes)");
  CHECK(parse_error(to_bytes(std::string("\x93NUMPY\x01\x00\x10", 9))) == "t.npy: truncated .npy prefix (9 bytes)");
  CHECK(parse_error(to_bytes(std::string("\x93NUMPY\x02\x00\x10\x00\x00", 11))) ==
        "t.npy: truncated .npy prefix (11 bytes)");
  bytes v4 = npy_file(1, plain, data);
  v4[6] = 4;
  CHECK(parse_error(v4) == "t.npy: unsupported .npy format version 4.0");
  bytes v11 = npy_file(1, plain, data);
  v11[7] = 1;
  CHECK(parse_error(v11) == "t.npy: unsupported .npy format version 1.1");
  bytes v0 = npy_file(1, plain, data);
  v0[6] = 0;
  CHECK(parse_error(v0) == "t.npy: unsupported .npy format version 0.0");
  const bytes whole = npy_file(1, plain);
  const bytes cut(whole.begin(), whole.begin() + 30);
  CHECK(parse_error(cut) == "t.npy: truncated header (declares " + std::to_string(plain.size()) + " bytes, 20 follow)");
  const std::string huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + std::string(70000, ' ') + "\n";
  CHECK(parse_error(npy_file(2, huge, data)) == "t.npy: header of " + std::to_string(huge.size()) +
                                                   " bytes exceeds the 64 KiB limit");
  CHECK(parse_error(npy_file(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", data)) ==
        "t.npy: Fortran-ordered arrays are not supported");
  CHECK(parse_error(npy_file(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }\n", data)) ==
        "t.npy: big-endian dtype '>f4' is not supported");
  const std::string unsupported = "' (supported: <f2 <f4 <f8 <i2 <i4 <i8 <u2 <u4 <u8 |i1 |u1 |b1)";
  for (const char* d : {"<c8", "|O", "<U3", "=f4", "<f16", "<u1", ""}) {
    INFO(d);
    CHECK(parse_error(npy_file(1, std::string("{'descr': '") + d + "', 'fortran_order': False, 'shape': (2, 3), }\n",
                               data)) == std::string("t.npy: unsupported dtype '") + d + unsupported);
  }
  CHECK(parse_error(npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\n",
                             data)) == "t.npy: shape (4611686018427387904, 4) of <f4 overflows a 64-bit byte count");
  // A zero dimension after an overflowing product is refused too (element counts stay in int64).
  CHECK(parse_error(npy_file(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4611686018427387904, 3, 0), }\n",
                             {})) == "t.npy: shape (4611686018427387904, 3, 0) of |u1 overflows a 64-bit byte count");
  CHECK(parse_error(npy_file(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4611686018427387904, 0, 3), }\n",
                             {})) == "");
  CHECK(parse_error(npy_file(1, plain, bytes(20))) ==
        "t.npy: truncated data: shape (2, 3) of <f4 needs 24 bytes, 20 follow the header");
  CHECK(parse_error(npy_file(1, plain, bytes(28))) == "t.npy: 4 trailing bytes after the data");
}

TEST_CASE("npy: a shape of 2^40 elements in a 200-byte file fails before any allocation", "[io][npy]") {
  const std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }\n";
  bytes file = npy_file(1, h);
  file.resize(200);
  const std::string follow = std::to_string(200 - 10 - h.size());
  const std::string what = "truncated data: shape (1099511627776,) of <f4 needs 4398046511104 bytes, " + follow +
                           " follow the header";
  io::npy_array a;
  a.dtype = "unchanged";
  std::string e;
  REQUIRE_NOTHROW(e = io::parse_npy(file.data(), file.size(), a, "big.npy"));
  CHECK(e == "big.npy: " + what);
  CHECK(a.dtype == "unchanged");  // untouched on failure
  CHECK(a.bytes.empty());
  scratch_dir dir;
  const std::string path = dir.write("big.npy", file);
  REQUIRE_NOTHROW(e = io::read_npy(path, a));
  CHECK(e == path + ": " + what);
  // A header length far beyond the file is refused before the header is read.
  bytes lying = npy_file(2, "");
  poke_le(lying, 8, 0xFFFFFFF0u, 4);
  lying.resize(200);
  REQUIRE_NOTHROW(e = io::parse_npy(lying.data(), lying.size(), a, "big.npy"));
  CHECK(e == "big.npy: truncated header (declares 4294967280 bytes, 188 follow)");
}

TEST_CASE("npy: files that cannot be opened", "[io][npy]") {
  scratch_dir dir;
  io::npy_array a;
  CHECK(io::read_npy(dir.path() + "/missing.npy", a) == dir.path() + "/missing.npy: cannot open (no such file)");
  CHECK(io::read_npy(dir.path(), a) == dir.path() + ": cannot open (not a regular file)");
}

TEST_CASE("npy: every truncation and every single-byte change of a file fails cleanly or parses", "[io][npy]") {
  const bytes file = read_file(io_data("v1.npy"));
  for (std::size_t n = 0; n < file.size(); ++n) {
    io::npy_array a;
    INFO(n << " bytes");
    CHECK_FALSE(io::parse_npy(file.data(), n, a, "t.npy").empty());
  }
  std::size_t parsed = 0;
  for (std::size_t i = 0; i < file.size(); ++i) {
    for (unsigned char v : {0x00, 0x20, 0x29, 0x2C, 0x39, 0x7D, 0xFF}) {
      bytes changed = file;
      changed[i] = v;
      io::npy_array a;
      const std::string e = io::parse_npy(changed.data(), changed.size(), a, "t.npy");
      if (e.empty()) {
        ++parsed;
        std::uint64_t need = 0;
        REQUIRE(io::detail::checked_bytes(a.shape, io::detail::npy_item_size(a.dtype), need));
        CHECK(need == a.bytes.size());
      } else {
        CHECK(e.find('\n') == std::string::npos);  // one line
      }
    }
  }
  CHECK(parsed > 0);  // changes inside the data or the padding still parse
}
