// tests/cpu/test_io_tensor_file.cpp — the command-line program's one entry point for tensors:
// every spec form, the choice of the only member, the dtypes it maps, and the exact fp32
// conversion of every f16 and bf16 bit pattern.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <zlib.h>

#include <tokred/core/element.hpp>

#include "io/npy.hpp"
#include "io/tensor_file.hpp"
#include "io_files.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

const std::vector<float> a_values = {0.f, 0.25f, 0.5f, 0.75f, 1.f, 1.25f};

/// A stored zip archive holding each (file name, bytes) of `members`, as np.savez writes it.
bytes stored_zip(const std::vector<std::pair<std::string, bytes>>& members) {
  bytes out, directory;
  for (const auto& [name, data] : members) {
    const auto crc = static_cast<std::uint32_t>(crc32(0L, data.data(), static_cast<uInt>(data.size())));
    const std::size_t local = out.size();
    for (bytes* b : {&out, &directory}) {
      const bool central = b == &directory;
      put_le(*b, central ? 0x02014b50 : 0x04034b50, 4);
      if (central) put_le(*b, 20, 2);
      put_le(*b, 20, 2);
      put_le(*b, 0, 2);
      put_le(*b, 0, 2);
      put_le(*b, 0, 4);
      put_le(*b, crc, 4);
      put_le(*b, data.size(), 4);
      put_le(*b, data.size(), 4);
      put_le(*b, name.size(), 2);
      put_le(*b, 0, 2);
      if (central) {
        put_le(*b, 0, 6);  // comment length, disk, internal attributes
        put_le(*b, 0, 4);  // external attributes
        put_le(*b, local, 4);
      }
      *b = concat(*b, to_bytes(name));
      if (!central) *b = concat(*b, data);
    }
  }
  const std::size_t at = out.size();
  out = concat(out, directory);
  put_le(out, 0x06054b50, 4);
  put_le(out, 0, 4);
  put_le(out, members.size(), 2);
  put_le(out, members.size(), 2);
  put_le(out, directory.size(), 4);
  put_le(out, at, 4);
  put_le(out, 0, 2);
  return out;
}

bytes npy_of(const char* dtype, const std::vector<std::int64_t>& shape, const bytes& data) {
  return concat(to_bytes(io::npy_prefix(dtype, shape)), data);
}

bytes safetensors_of(const std::string& json, const bytes& data) {
  bytes b;
  put_le(b, json.size(), 8);
  return concat(concat(b, to_bytes(json)), data);
}

}  // namespace

TEST_CASE("tensor_file: every spec form loads its tensor", "[io][tensor_file]") {
  io::host_tensor t;
  REQUIRE(io::load_tensor(io_data("v1.npy"), t) == "");
  CHECK(t.dtype == "f32");
  CHECK(t.shape == std::vector<std::int64_t>{2, 3});
  CHECK(t.bytes == raw(a_values));
  CHECK(t.elements() == 6);
  REQUIRE(io::load_tensor(io_data("v2.npy"), t) == "");
  CHECK(t.dtype == "f16");
  REQUIRE(io::load_tensor(io_data("v3.npy"), t) == "");
  CHECK(t.dtype == "i64");
  for (const char* npz : {"stored.npz", "deflated.npz"}) {
    REQUIRE(io::load_tensor(io_data(npz) + ":a", t) == "");
    CHECK(t.dtype == "f32");
    CHECK(t.bytes == raw(a_values));
    REQUIRE(io::load_tensor(io_data(npz) + ":h", t) == "");
    CHECK(t.dtype == "f16");
    CHECK(t.shape == std::vector<std::int64_t>{4});
  }
  REQUIRE(io::load_tensor(io_data("tensors.safetensors") + ":b", t) == "");
  CHECK(t.dtype == "bf16");
  CHECK(t.shape == std::vector<std::int64_t>{2, 2});
  std::vector<float> f;
  REQUIRE(io::to_float32(t, f) == "");
  CHECK(f == std::vector<float>{1.5f, -3.f, 0.0078125f, 256.f});
  REQUIRE(io::load_tensor(io_data("tensors.safetensors") + ":h", t) == "");
  REQUIRE(io::to_float32(t, f) == "");
  CHECK(f == std::vector<float>{1.f, -2.f, 65504.f, 0x1p-24f});
  REQUIRE(io::load_tensor(io_data("tensors.safetensors") + ":a", t) == "");
  REQUIRE(io::to_float32(t, f) == "");
  CHECK(f == a_values);

  // The only member is taken without a name; a name may hold colons; i32 maps too.
  scratch_dir dir;
  const std::string single = dir.write("one.npz", stored_zip({{"x:y.npy", npy_of("<i4", {2}, raw(std::vector<std::int32_t>{3, -4}))}}));
  REQUIRE(io::load_tensor(single, t) == "");
  CHECK(t.dtype == "i32");
  CHECK(t.bytes == raw(std::vector<std::int32_t>{3, -4}));
  REQUIRE(io::load_tensor(single + ":x:y", t) == "");
  CHECK(t.dtype == "i32");
  const std::string nested = dir.write("nested.npz", stored_zip({{"in.npz:x.npy", npy_of("<f4", {1}, raw(std::vector<float>{2.f}))},
                                                                 {"y.npy", npy_of("<i8", {1}, bytes(8))}}));
  REQUIRE(io::load_tensor(nested + ":in.npz:x", t) == "");  // split at the first ".npz:"
  CHECK(t.dtype == "f32");
  const std::string st = dir.write(
      "one.safetensors", safetensors_of(R"({"w:1":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", bytes(8, 1)));
  REQUIRE(io::load_tensor(st, t) == "");
  CHECK(t.dtype == "i64");
  REQUIRE(io::load_tensor(st + ":w:1", t) == "");
  CHECK(t.shape == std::vector<std::int64_t>{1});
}

TEST_CASE("tensor_file: each bad spec or unsupported tensor gets its own message", "[io][tensor_file]") {
  scratch_dir dir;
  io::host_tensor t;
  t.dtype = "unchanged";
  const std::string npz = io_data("stored.npz"), st = io_data("tensors.safetensors");
  CHECK(io::load_tensor(npz, t) == npz + ": holds 3 tensors, name one as " + npz + ":NAME ('a', 'h', 'i')");
  CHECK(io::load_tensor(st, t) == st + ": holds 3 tensors, name one as " + st + ":NAME ('a', 'h', 'b')");
  CHECK(io::load_tensor(npz + ":zz", t) == npz + ": no array 'zz' (arrays: 'a', 'h', 'i')");
  CHECK(io::load_tensor(st + ":zz", t) == st + ": no tensor 'zz' (tensors: 'a', 'h', 'b')");
  CHECK(io::load_tensor(npz + ":", t) == npz + ":: empty name after ':'");
  CHECK(io::load_tensor("x.npy:a", t) == "x.npy:a: a .npy file holds one array; name a member only of .npz or .safetensors");
  CHECK(io::load_tensor("x.bin", t) ==
        "x.bin: unknown file type (expected PATH.npy, PATH.npz[:NAME] or PATH.safetensors[:NAME])");
  CHECK(io::load_tensor(dir.path() + "/none.npy", t) == dir.path() + "/none.npy: cannot open (no such file)");
  const std::string empty = dir.write("empty.npz", stored_zip({}));
  CHECK(io::load_tensor(empty, t) == empty + ": holds no tensors");
  const std::string nothing = dir.write("empty.safetensors", safetensors_of("{}", {}));
  CHECK(io::load_tensor(nothing, t) == nothing + ": holds no tensors");
  const std::string f8 = dir.write("f8.npy", npy_of("<f8", {1}, bytes(8)));
  CHECK(io::load_tensor(f8, t) == f8 + ": dtype '<f8' is not supported (<f4, <f2, <i8, <i4)");
  const std::string z8 = dir.write("f8.npz", stored_zip({{"d.npy", npy_of("<f8", {1}, bytes(8))}}));
  CHECK(io::load_tensor(z8 + ":d", t) == z8 + ":d: dtype '<f8' is not supported (<f4, <f2, <i8, <i4)");
  const std::string s8 = dir.write(
      "f8.safetensors", safetensors_of(R"({"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", bytes(8)));
  CHECK(io::load_tensor(s8 + ":d", t) == s8 + ":d: dtype F64 is not supported (F32, F16, BF16, I64, I32)");
  CHECK(t.dtype == "unchanged");
}

TEST_CASE("tensor_file: to_float32 widens every f16 and bf16 bit pattern exactly", "[io][tensor_file]") {
  for (const char* dtype : {"f16", "bf16"}) {
    io::host_tensor t{dtype, {65536}, {}};
    for (std::uint32_t bits = 0; bits < 65536; ++bits) {
      t.bytes.push_back(static_cast<unsigned char>(bits & 0xFF));
      t.bytes.push_back(static_cast<unsigned char>(bits >> 8));
    }
    std::vector<float> f;
    REQUIRE(io::to_float32(t, f) == "");
    REQUIRE(f.size() == 65536);
    const bool half = std::string(dtype) == "f16";
    std::size_t mismatches = 0;
    for (std::uint32_t bits = 0; bits < 65536; ++bits) {
      const auto b = static_cast<std::uint16_t>(bits);
      const float want = half ? to_float(f16{b}) : to_float(bf16{b});
      mismatches += std::memcmp(&want, &f[bits], sizeof(float)) != 0;
    }
    CHECK(mismatches == 0);
    std::uint32_t one = 0;
    std::memcpy(&one, &f[half ? 0x3C00 : 0x3F80], 4);
    CHECK(one == 0x3F800000u);  // 1.0 in both
  }
  const io::host_tensor f32{"f32", {3}, raw(std::vector<float>{-0.f, 1e-45f, 3.5f})};
  std::vector<float> f;
  REQUIRE(io::to_float32(f32, f) == "");
  CHECK(raw(f) == f32.bytes);
}

TEST_CASE("tensor_file: to_float32 refuses integers, unknown dtypes and bytes that do not match", "[io][tensor_file]") {
  std::vector<float> f = {42.f};
  CHECK(io::to_float32({"i64", {1}, bytes(8)}, f) == "dtype i64 is not a float type");
  CHECK(io::to_float32({"i32", {1}, bytes(4)}, f) == "dtype i32 is not a float type");
  CHECK(io::to_float32({"f8", {1}, bytes(8)}, f) == "unknown dtype 'f8'");
  CHECK(io::to_float32({"f32", {2, 3}, bytes(20)}, f) == "shape (2, 3) of f32 does not match its 20 bytes");
  CHECK(io::to_float32({"bf16", {std::int64_t{1} << 40}, bytes(200)}, f) ==
        "shape (1099511627776,) of bf16 does not match its 200 bytes");
  CHECK(io::to_float32({"f16", {std::int64_t{1} << 62, 8}, bytes(2)}, f) ==
        "shape (4611686018427387904, 8) of f16 does not match its 2 bytes");
  CHECK(f == std::vector<float>{42.f});  // untouched
}
