// tests/cpu/test_io_safetensors.cpp — the .safetensors reader: F32, F16 and BF16 tensors (files
// built here and one written by hand in Python), names with escapes, metadata, and one precise
// error for each malformed header or offset table, including a tensor far larger than the file.
#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "io_files.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// A .safetensors file: the header length, `json`, then `data`.
bytes safetensors_file(const std::string& json, const bytes& data) {
  bytes b;
  put_le(b, json.size(), 8);
  return concat(concat(b, to_bytes(json)), data);
}

const std::vector<float> a_values = {0.f, 0.25f, 0.5f, 0.75f, 1.f, 1.25f};
const std::vector<std::uint16_t> h_bits = {0x3C00, 0xC000, 0x7BFF, 0x0001};  // 1, -2, 65504, 2^-24
const std::vector<std::uint16_t> b_bits = {0x3FC0, 0xC040, 0x3C00, 0x4380};  // 1.5, -3, 2^-7, 256

const std::string three = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                          R"("h":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},)"
                          R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[32,40]}})";
const bytes three_data = concat(concat(raw(a_values), raw(h_bits)), raw(b_bits));

std::string header_error(const std::string& json, const bytes& data = {}) {
  const bytes file = safetensors_file(json, data);
  io::safetensors_header h;
  return io::parse_safetensors_header(file.data(), file.size(), h, "t.safetensors");
}

std::string at(const std::string& s, const std::string& token) { return std::to_string(s.find(token)); }

/// The header of one tensor `a` with `body` as its object.
std::string one(const std::string& body) { return R"({"a":)" + body + "}"; }

}  // namespace

TEST_CASE("safetensors: F32, F16 and BF16 tensors by name, with metadata", "[io][safetensors]") {
  const bytes file = safetensors_file(three + "    ", three_data);  // padded as the reference writer pads
  io::safetensors_header h;
  REQUIRE(io::parse_safetensors_header(file.data(), file.size(), h, "t.safetensors") == "");
  REQUIRE(h.tensors.size() == 3);
  CHECK(h.tensors[0].name == "a");
  CHECK(h.tensors[2].name == "b");
  CHECK(h.data_offset == 8 + three.size() + 4);
  REQUIRE(h.metadata.size() == 1);
  CHECK(h.metadata[0] == std::pair<std::string, std::string>{"format", "pt"});
  io::safetensors_array a, f16, bf16;
  REQUIRE(io::parse_safetensors(file.data(), file.size(), "a", a, "t.safetensors") == "");
  CHECK(a.dtype == "F32");
  CHECK(a.shape == std::vector<std::int64_t>{2, 3});
  CHECK(a.bytes == raw(a_values));
  REQUIRE(io::parse_safetensors(file.data(), file.size(), "h", f16, "t.safetensors") == "");
  CHECK(f16.dtype == "F16");
  CHECK(f16.bytes == raw(h_bits));
  REQUIRE(io::parse_safetensors(file.data(), file.size(), "b", bf16, "t.safetensors") == "");
  CHECK(bf16.dtype == "BF16");
  CHECK(bf16.shape == std::vector<std::int64_t>{2, 2});
  CHECK(bf16.bytes == raw(b_bits));

  // The same from files: one built here, one written in Python (tests/data/io/make.py).
  scratch_dir dir;
  for (const std::string& path : {dir.write("t.safetensors", file), io_data("tensors.safetensors")}) {
    INFO(path);
    std::vector<std::string> names;
    REQUIRE(io::list_safetensors(path, names) == "");
    CHECK(names == std::vector<std::string>{"a", "h", "b"});
    io::safetensors_array x;
    REQUIRE(io::read_safetensors(path, "b", x) == "");
    CHECK(x.bytes == raw(b_bits));
    REQUIRE(io::read_safetensors(path, "a", x) == "");
    CHECK(x.bytes == raw(a_values));
  }
  CHECK(io::read_safetensors(dir.path() + "/none.safetensors", "a", a) ==
        dir.path() + "/none.safetensors: cannot open (no such file)");
}

TEST_CASE("safetensors: escapes, empty and 0-d tensors, every integer dtype size", "[io][safetensors]") {
  const std::string json = R"({"\u00e9\ud83d\ude00\n\"\\\/":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                           R"( "e" : { "shape" : [ 0, 3 ] , "dtype" : "F32", "data_offsets" : [ 16 , 16 ] } ,)"
                           "\n\t\"s\":{\"data_offsets\":[16,20],\"dtype\":\"I32\",\"shape\":[]}}\r\n";
  const bytes data = concat(raw(std::vector<std::int64_t>{-5, 1LL << 40}), raw(std::vector<std::int32_t>{7}));
  const bytes file = safetensors_file(json, data);
  io::safetensors_header h;
  REQUIRE(io::parse_safetensors_header(file.data(), file.size(), h, "t.safetensors") == "");
  REQUIRE(h.tensors.size() == 3);
  CHECK(h.tensors[0].name == "\xc3\xa9\xf0\x9f\x98\x80\n\"\\/");
  io::safetensors_array x;
  REQUIRE(io::parse_safetensors(file.data(), file.size(), h.tensors[0].name, x, "t.safetensors") == "");
  CHECK(x.bytes == raw(std::vector<std::int64_t>{-5, 1LL << 40}));
  REQUIRE(io::parse_safetensors(file.data(), file.size(), "e", x, "t.safetensors") == "");
  CHECK(x.shape == std::vector<std::int64_t>{0, 3});
  CHECK(x.bytes.empty());
  REQUIRE(io::parse_safetensors(file.data(), file.size(), "s", x, "t.safetensors") == "");
  CHECK(x.shape.empty());
  CHECK(x.bytes == raw(std::vector<std::int32_t>{7}));
  CHECK(header_error("{}") == "");
  CHECK(header_error(R"({"__metadata__":{}})") == "");

  const std::vector<std::pair<const char*, int>> sizes = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"I16", 2}, {"U16", 2},
      {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"F64", 8}, {"I64", 8}, {"U64", 8}};
  for (const auto& [dtype, size] : sizes) {
    INFO(dtype);
    const std::string end = std::to_string(3 * size);
    CHECK(header_error(one(std::string(R"({"dtype":")") + dtype + R"(","shape":[3],"data_offsets":[0,)" + end + "]}"),
                       bytes(static_cast<std::size_t>(3 * size))) == "");
  }
}

TEST_CASE("safetensors: each malformed file or JSON header gets its own message", "[io][safetensors]") {
  const std::string p = "t.safetensors: ";
  io::safetensors_header h;
  CHECK(io::parse_safetensors_header(bytes(5).data(), 5, h, "t.safetensors") == p + "not a safetensors file (5 bytes)");
  bytes big;
  put_le(big, 200000000, 8);
  CHECK(io::parse_safetensors_header(big.data(), big.size(), h, "t.safetensors") ==
        p + "header length 200000000 exceeds the 100000000-byte limit");
  bytes cut;
  put_le(cut, 100, 8);
  cut.resize(28);
  CHECK(io::parse_safetensors_header(cut.data(), cut.size(), h, "t.safetensors") ==
        p + "truncated header (declares 100 bytes, 20 follow)");

  const auto expect = [&](const std::string& json, const std::string& what) {
    INFO(json);
    CHECK(header_error(json) == p + "header: " + what);
  };
  const std::string t = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  expect("{\"a\xff\":1}", "not valid UTF-8");
  expect("{\"a\xc0\x80\":1}", "not valid UTF-8");             // overlong
  expect("{\"a\xed\xa0\x80\":1}", "not valid UTF-8");         // a surrogate
  expect("{\"a\xf4\x90\x80\x80\":1}", "not valid UTF-8");     // past U+10FFFF
  expect("[]", "expected '{' at the start at offset 0");
  expect(" {}", "expected '{' at the start at offset 0");
  expect("{} x", "unexpected text after the object at offset 3");
  expect("{}{}", "unexpected text after the object at offset 2");
  std::string j = R"({"a":)" + t + ",}";
  expect(j, "expected a string at offset " + std::to_string(j.size() - 1));
  j = R"({"a" )" + t + "}";
  expect(j, "expected ':' at offset " + std::to_string(j.find("{", 1)));
  j = R"({"a":)" + t + " \"b\":1}";
  expect(j, "expected ',' or '}' at offset " + at(j, "\"b\""));
  expect("{\"ab", "unterminated string at offset 4");
  j = R"({"a\x":1})";
  expect(j, "bad escape in a string at offset " + at(j, "\\"));
  j = R"({"a\u12G4":1})";
  expect(j, "bad \\u escape at offset " + at(j, "\\"));
  j = R"({"a\ud800x":1})";
  expect(j, "unpaired surrogate at offset " + at(j, "\\"));
  j = R"({"a\udc00":1})";
  expect(j, "unpaired surrogate at offset " + at(j, "\\"));
  j = "{\"a\tb\":1}";
  expect(j, "control character in a string at offset " + at(j, "\t"));
  j = one("5");
  expect(j, "tensor 'a': expected an object at offset " + at(j, "5"));
  j = one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1})");
  expect(j, "tensor 'a': unknown key 'x' at offset " + at(j, "\"x\""));
  j = one(R"({"dtype":"F32","shape":[1],"dtype":"F32","data_offsets":[0,4]})");
  expect(j, "tensor 'a': repeated key 'dtype' at offset " + std::to_string(j.rfind("\"dtype\"")));
  j = one(R"({"dtype":"F32","shape":[1]})");
  expect(j, "tensor 'a': missing 'data_offsets' at offset " + std::to_string(j.size() - 2));
  j = one(R"({"shape":[1],"data_offsets":[0,4]})");
  expect(j, "tensor 'a': missing 'dtype' at offset " + std::to_string(j.size() - 2));
  j = one(R"({"dtype":"F32","data_offsets":[0,4]})");
  expect(j, "tensor 'a': missing 'shape' at offset " + std::to_string(j.size() - 2));
  j = one(R"({"dtype":5,"shape":[1],"data_offsets":[0,4]})");
  expect(j, "tensor 'a': 'dtype' must be a string at offset " + at(j, "5"));
  j = one(R"({"dtype":"F32","shape":5,"data_offsets":[0,4]})");
  expect(j, "expected '[' at offset " + at(j, "5"));
  j = one(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})");
  expect(j, "expected an integer, not a fraction at offset " + at(j, "1.5"));
  j = one(R"({"dtype":"F32","shape":[1e3],"data_offsets":[0,4]})");
  expect(j, "expected an integer, not a fraction at offset " + at(j, "1e3"));
  j = one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})");
  expect(j, "negative integer at offset " + at(j, "-"));
  j = one(R"({"dtype":"F32","shape":[01],"data_offsets":[0,4]})");
  expect(j, "integer with a leading zero at offset " + at(j, "01"));
  j = one(R"({"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]})");
  expect(j, "integer too large at offset " + at(j, "999"));
  j = one(R"({"dtype":"F32","shape":["1"],"data_offsets":[0,4]})");
  expect(j, "expected an integer at offset " + at(j, "\"1\""));
  j = one(R"({"dtype":"F32","shape":[1 2],"data_offsets":[0,4]})");
  expect(j, "expected ',' or ']' at offset " + at(j, "2]"));
  std::string dims = "1";
  for (int i = 0; i < 64; ++i) dims += ",1";
  j = one(R"({"dtype":"F32","shape":[)" + dims + R"(],"data_offsets":[0,4]})");
  expect(j, "more than 64 integers at offset " + std::to_string(j.find('[') + 1 + 64 * 2));
  j = one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})");
  expect(j, "tensor 'a': 'data_offsets' must be [begin, end] at offset " + at(j, "[0]"));
  j = one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,4]})");
  expect(j, "more than 2 integers at offset " + at(j, "4]"));
  j = R"({"__metadata__":[]})";
  expect(j, "'__metadata__' must be an object at offset " + at(j, "["));
  j = R"({"__metadata__":{"k":1}})";
  expect(j, "'__metadata__' values must be strings at offset " + at(j, "1"));
  j = R"({"__metadata__":{"k":"v","k":"w"}})";
  expect(j, "repeated '__metadata__' key 'k' at offset " + std::to_string(j.rfind("\"k\"")));
  j = R"({"__metadata__":{},"__metadata__":{}})";
  expect(j, "repeated key '__metadata__' at offset " + std::to_string(j.rfind("\"__")));
}

TEST_CASE("safetensors: each inconsistent dtype, shape or offset gets its own message", "[io][safetensors]") {
  const std::string p = "t.safetensors: ";
  const auto tensor = [](const char* name, const char* dtype, const char* shape, const char* offsets) {
    return std::string("\"") + name + R"(":{"dtype":")" + dtype + R"(","shape":)" + shape +
           R"(,"data_offsets":)" + offsets + "}";
  };
  CHECK(header_error("{" + tensor("a", "F32", "[1]", "[0,4]") + "," + tensor("a", "F32", "[1]", "[4,8]") + "}",
                     bytes(8)) == p + "duplicate tensor 'a'");
  CHECK(header_error("{" + tensor("a", "F4", "[2]", "[0,1]") + "}", bytes(1)) == p + "tensor 'a': unknown dtype 'F4'");
  CHECK(header_error("{" + tensor("a", "F32", "[4611686018427387904,4]", "[0,4]") + "}", bytes(4)) ==
        p + "tensor 'a': shape (4611686018427387904, 4) of F32 overflows a 64-bit byte count");
  CHECK(header_error("{" + tensor("a", "F32", "[1]", "[8,4]") + "}", bytes(8)) ==
        p + "tensor 'a': data_offsets [8, 4] are reversed");
  CHECK(header_error("{" + tensor("a", "F32", "[2,3]", "[0,20]") + "}", bytes(20)) ==
        p + "tensor 'a': data_offsets [0, 20] hold 20 bytes, shape (2, 3) of F32 needs 24");
  CHECK(header_error("{" + tensor("a", "F32", "[2,3]", "[0,24]") + "}", bytes(16)) ==
        p + "tensor 'a': data_offsets end at 24, past the 16-byte data region");
  CHECK(header_error("{" + tensor("a", "F32", "[2,3]", "[0,24]") + "," + tensor("h", "F16", "[4]", "[16,24]") + "}",
                     bytes(24)) == p + "tensor 'h' overlaps tensor 'a'");
  CHECK(header_error("{" + tensor("h", "F16", "[4]", "[28,36]") + "," + tensor("a", "F32", "[2,3]", "[0,24]") + "}",
                     bytes(36)) == p + "tensor 'h' begins at 28, leaving a gap after byte 24 of the data region");
  CHECK(header_error("{" + tensor("h", "F16", "[4]", "[2,10]") + "}", bytes(10)) ==
        p + "tensor 'h' begins at 2, leaving a gap after byte 0 of the data region");
  CHECK(header_error(three, concat(three_data, bytes(4))) == p + "the tensors cover 40 bytes of the 44-byte data region");
  CHECK(header_error("{}", bytes(1)) == p + "the tensors cover 0 bytes of the 1-byte data region");

  const bytes file = safetensors_file(three, three_data);
  io::safetensors_array x;
  CHECK(io::parse_safetensors(file.data(), file.size(), "z", x, "t.safetensors") ==
        p + "no tensor 'z' (tensors: 'a', 'h', 'b')");
  const bytes none = safetensors_file("{}", {});
  CHECK(io::parse_safetensors(none.data(), none.size(), "z", x, "t.safetensors") ==
        p + "no tensor 'z' (the file holds none)");
}

TEST_CASE("safetensors: a tensor of 2^40 elements in a 200-byte file fails before any allocation", "[io][safetensors]") {
  const std::string json = R"({"x":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}})";
  const bytes file = safetensors_file(json, bytes(200 - 8 - json.size()));
  REQUIRE(file.size() == 200);
  io::safetensors_array x;
  x.dtype = "unchanged";
  std::string e;
  REQUIRE_NOTHROW(e = io::parse_safetensors(file.data(), file.size(), "x", x, "big.safetensors"));
  CHECK(e == "big.safetensors: tensor 'x': data_offsets end at 4398046511104, past the " +
                 std::to_string(200 - 8 - json.size()) + "-byte data region");
  CHECK(x.dtype == "unchanged");
  scratch_dir dir;
  const std::string path = dir.write("big.safetensors", file);
  REQUIRE_NOTHROW(e = io::read_safetensors(path, "x", x));
  CHECK(e == path + ": tensor 'x': data_offsets end at 4398046511104, past the " +
                 std::to_string(200 - 8 - json.size()) + "-byte data region");
  // A header length of 2^40 in the same 200 bytes.
  bytes lying = file;
  poke_le(lying, 0, std::uint64_t{1} << 40, 8);
  REQUIRE_NOTHROW(e = io::parse_safetensors(lying.data(), lying.size(), "x", x, "big.safetensors"));
  CHECK(e == "big.safetensors: header length 1099511627776 exceeds the 100000000-byte limit");
}

TEST_CASE("safetensors: every truncation and every single-byte change fails cleanly or parses", "[io][safetensors]") {
  const bytes file = read_file(io_data("tensors.safetensors"));
  for (std::size_t n = 0; n < file.size(); ++n) {
    io::safetensors_header h;
    INFO(n << " bytes");
    CHECK_FALSE(io::parse_safetensors_header(file.data(), n, h, "t.safetensors").empty());
  }
  std::size_t parsed = 0;
  for (std::size_t i = 0; i < file.size(); ++i) {
    for (unsigned char v : {0x00, 0x20, 0x22, 0x2C, 0x31, 0x5D, 0x7D, 0xFF}) {
      bytes changed = file;
      changed[i] = v;
      io::safetensors_header h;
      const std::string e = io::parse_safetensors_header(changed.data(), changed.size(), h, "t.safetensors");
      if (!e.empty()) {
        CHECK(e.find('\n') == std::string::npos);
        continue;
      }
      ++parsed;
      std::uint64_t covered = 0;
      for (const io::safetensors_info& t : h.tensors) covered += t.end - t.begin;
      CHECK(covered == changed.size() - h.data_offset);
    }
  }
  CHECK(parsed > 0);
}
