// tests/cpu/test_interop_dlpack.cpp — DLPack tensors as views, checked: dtypes, devices, rank,
// NULL and given strides, negative strides, byte_offset, the managed wrappers and their read-only
// flag; every status with the output untouched; views described as DLTensors; and a topk through
// adapted views against one through direct views.
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <tokred/interop/dlpack.hpp>

#include "interop_topk.hpp"
#include "support/catch.hpp"

// DLPack's C ABI (dlpack.h v1.0), declared here as the specification lays it out: the adapter
// needs no dlpack.h, and neither does this test.
extern "C" {
typedef enum {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,
  kDLOpenCL = 4,
  kDLVulkan = 7,
  kDLMetal = 8,
  kDLVPI = 9,
  kDLROCM = 10,
  kDLROCMHost = 11,
  kDLExtDev = 12,
  kDLCUDAManaged = 13,
  kDLOneAPI = 14,
  kDLWebGPU = 15,
  kDLHexagon = 16,
  kDLMAIA = 17,
} DLDeviceType;

typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;

typedef enum {
  kDLInt = 0U,
  kDLUInt = 1U,
  kDLFloat = 2U,
  kDLOpaqueHandle = 3U,
  kDLBfloat = 4U,
  kDLComplex = 5U,
  kDLBool = 6U,
} DLDataTypeCode;

typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} DLDataType;

typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensor* self);
} DLManagedTensor;

typedef struct {
  uint32_t major;
  uint32_t minor;
} DLPackVersion;

typedef struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
} DLManagedTensorVersioned;
}

#define DLPACK_FLAG_BITMASK_READ_ONLY (1UL << 0UL)
#define DLPACK_FLAG_BITMASK_IS_COPIED (1UL << 1UL)

namespace {

using namespace tokred;
using namespace tokred::testing;

static_assert(sizeof(DLDataType) == 4 && sizeof(DLDevice) == 8);
static_assert(offsetof(DLTensor, byte_offset) == 40 && sizeof(DLTensor) == 48);

/// A float32 CPU tensor over `data` with the given shape and strides (empty: NULL strides).
struct tensor_on {
  std::vector<std::int64_t> shape, strides;
  DLTensor t{};
  tensor_on(void* data, std::vector<std::int64_t> shape_, std::vector<std::int64_t> strides_ = {})
      : shape(std::move(shape_)), strides(std::move(strides_)) {
    t.data = data;
    t.device = {kDLCPU, 0};
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = {kDLFloat, 32, 1};
    t.shape = shape.data();
    t.strides = strides.empty() ? nullptr : strides.data();
    t.byte_offset = 0;
  }
};

std::vector<float> numbered(std::size_t n) {
  std::vector<float> data(n);
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>(i);
  return data;
}

/// A view that a failed call must leave exactly as it was.
template <class T, int Rank, class Space>
bool same_view(const view<T, Rank, Space>& a, const view<T, Rank, Space>& b) {
  if (a.data_handle() != b.data_handle()) return false;
  for (int r = 0; r < Rank; ++r)
    if (a.extent(r) != b.extent(r) || a.stride(r) != b.stride(r)) return false;
  return true;
}

}  // namespace

TEST_CASE("a compact tensor with NULL strides is row-major", "[interop][dlpack]") {
  std::vector<float> data = numbered(60);
  tensor_on x(data.data(), {3, 4, 5});
  view<const float, 3> v;
  REQUIRE(from_dlpack(x.t, v) == status::ok);
  CHECK((v.extent(0) == 3 && v.extent(1) == 4 && v.extent(2) == 5));
  CHECK((v.stride(0) == 20 && v.stride(1) == 5 && v.stride(2) == 1));
  CHECK(v(2, 3, 4) == 59.0f);
  view<float, 3> w;  // a plain DLTensor has no read-only flag: a mutable view is fine
  REQUIRE(from_dlpack(x.t, w) == status::ok);
  w(1, 1, 1) = -1.0f;
  CHECK(data[26] == -1.0f);
}

TEST_CASE("given strides: transposed, strided, negative, with a byte offset", "[interop][dlpack]") {
  std::vector<float> data = numbered(100);
  // The transpose of a (4, 6) row-major block: (6, 4) with strides (1, 6).
  tensor_on t(data.data(), {6, 4}, {1, 6});
  view<const float, 2> v;
  REQUIRE(from_dlpack(t.t, v) == status::ok);
  CHECK((v.stride(0) == 1 && v.stride(1) == 6 && v(5, 3) == 23.0f));
  // Rows 10 apart, every other column, starting at element 7 through byte_offset.
  tensor_on s(data.data(), {5, 3}, {10, 2});
  s.t.byte_offset = 7 * sizeof(float);
  REQUIRE(from_dlpack(s.t, v) == status::ok);
  CHECK((v.data_handle() == data.data() + 7 && v(4, 2) == 7.0f + 40 + 4));
  // torch.flip: the last row first, a negative stride from a pointer at the last row.
  tensor_on f(data.data(), {5, 4}, {-4, 1});
  f.t.byte_offset = 16 * sizeof(float);
  REQUIRE(from_dlpack(f.t, v) == status::ok);
  CHECK((v.stride(0) == -4 && v(0, 0) == 16.0f && v(4, 3) == 3.0f));
  // Zero strides (a broadcast, torch.expand) are kept.
  tensor_on b(data.data() + 50, {3, 4}, {0, 1});
  REQUIRE(from_dlpack(b.t, v) == status::ok);
  CHECK((v(2, 1) == 51.0f && v.stride(0) == 0));
}

TEST_CASE("each element type takes its dtype and no other", "[interop][dlpack]") {
  std::vector<std::uint64_t> storage(8, 0);  // aligned for every type below
  tensor_on x(storage.data(), {2, 2});
  const auto accepts = [&](auto tag, std::uint8_t code, std::uint8_t bits) {
    using T = decltype(tag);
    x.t.dtype = {code, bits, 1};
    view<T, 2> v;
    return from_dlpack(x.t, v) == status::ok;
  };
  CHECK(accepts(float{}, kDLFloat, 32));
  CHECK(accepts(f16{}, kDLFloat, 16));
  CHECK(accepts(bf16{}, kDLBfloat, 16));
  CHECK(accepts(std::int64_t{}, kDLInt, 64));
  CHECK(accepts(std::int32_t{}, kDLInt, 32));
  CHECK(accepts(std::uint8_t{}, kDLUInt, 8));
  CHECK_FALSE(accepts(float{}, kDLFloat, 64));
  CHECK_FALSE(accepts(float{}, kDLInt, 32));
  CHECK_FALSE(accepts(f16{}, kDLBfloat, 16));
  CHECK_FALSE(accepts(bf16{}, kDLFloat, 16));
  CHECK_FALSE(accepts(std::int64_t{}, kDLUInt, 64));
  CHECK_FALSE(accepts(std::int32_t{}, kDLFloat, 32));
  CHECK_FALSE(accepts(std::uint8_t{}, kDLInt, 8));
  CHECK_FALSE(accepts(std::uint8_t{}, kDLBool, 8));
}

TEST_CASE("the device type decides the memory space", "[interop][dlpack]") {
  std::vector<float> data = numbered(8);
  tensor_on x(data.data(), {8});
  const auto host_ok = [&](DLDeviceType d) {
    x.t.device = {d, 0};
    view<const float, 1> v;
    return from_dlpack(x.t, v) == status::ok;
  };
  const auto device_ok = [&](DLDeviceType d) {
    x.t.device = {d, 1};
    view<const float, 1, device_space> v;
    return from_dlpack(x.t, v) == status::ok;
  };
  CHECK(host_ok(kDLCPU));
  CHECK(host_ok(kDLCUDAHost));
  CHECK_FALSE(host_ok(kDLCUDA));
  CHECK_FALSE(host_ok(kDLCUDAManaged));
  CHECK_FALSE(host_ok(kDLROCM));
  CHECK(device_ok(kDLCUDA));
  CHECK(device_ok(kDLCUDAManaged));
  CHECK_FALSE(device_ok(kDLCPU));
  CHECK_FALSE(device_ok(kDLCUDAHost));
  CHECK_FALSE(device_ok(kDLVulkan));
}

TEST_CASE("every mismatch has its status and leaves the output untouched", "[interop][dlpack]") {
  std::vector<float> data = numbered(64);
  std::vector<float> other(4);
  const view<float, 2> sentinel = make_strided_view(other.data(), std::array<index_t, 2>{2, 2},
                                                    std::array<index_t, 2>{-1, 7});  // (2, 2)
  const auto run = [&](const DLTensor& t) {
    view<float, 2> out = sentinel;
    const status s = from_dlpack(t, out);
    CHECK(same_view(out, sentinel));
    return s;
  };
  const auto fresh = [&] { return tensor_on(data.data(), {4, 8}); };
  {
    tensor_on x = fresh();
    x.t.dtype.lanes = 4;  // float32x4
    CHECK(run(x.t) == status::invalid_parameter);
  }
  {
    tensor_on x = fresh();
    x.t.dtype = {kDLFloat, 16, 1};
    CHECK(run(x.t) == status::invalid_parameter);
  }
  {
    tensor_on x = fresh();
    x.t.device = {kDLCUDA, 0};
    CHECK(run(x.t) == status::invalid_parameter);
  }
  {
    tensor_on x(data.data(), {4, 8, 1});
    CHECK(run(x.t) == status::shape_mismatch);  // ndim 3 for a rank-2 view
  }
  {
    tensor_on x(data.data(), {4, -8});
    CHECK(run(x.t) == status::shape_mismatch);
  }
  {
    tensor_on x(data.data(), {std::int64_t{1} << 40, std::int64_t{1} << 40});
    CHECK(run(x.t) == status::shape_mismatch);  // 2^80 elements
  }
  // Strides that reach past what an index can address, so that no span or overlap test
  // overflows later: the most negative stride, and 3 rows 2^62 elements apart (2^65 bytes).
  for (const std::vector<std::int64_t>& strides :
       {std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(), 1},
        std::vector<std::int64_t>{std::int64_t{1} << 62, 1}}) {
    tensor_on x(data.data(), {3, 1}, strides);
    CHECK(run(x.t) == status::shape_mismatch);
  }
  {
    tensor_on x = fresh();
    x.t.shape = nullptr;
    CHECK(run(x.t) == status::null_pointer);
  }
  {
    tensor_on x(nullptr, {4, 8});
    CHECK(run(x.t) == status::null_pointer);
  }
  {
    tensor_on x = fresh();
    x.t.byte_offset = 2;  // half-way into a float
    CHECK(run(x.t) == status::misaligned);
  }
  {
    tensor_on x(reinterpret_cast<unsigned char*>(data.data()) + 1, {4, 8});
    CHECK(run(x.t) == status::misaligned);
  }
  // The first failing check wins: a wrong dtype on a null, misaligned tensor of the wrong rank.
  {
    tensor_on x(nullptr, {4, 8, 2});
    x.t.byte_offset = 3;
    x.t.dtype = {kDLInt, 32, 1};
    CHECK(run(x.t) == status::invalid_parameter);
  }
  // An empty tensor needs no storage; one that has storage keeps its pointer.
  tensor_on empty(nullptr, {0, 8});
  view<float, 2> e = sentinel;
  REQUIRE(from_dlpack(empty.t, e) == status::ok);
  CHECK((e.data_handle() == nullptr && e.extent(0) == 0 && e.extent(1) == 8 && e.empty()));
  tensor_on stored(data.data(), {24, 0});
  stored.t.byte_offset = 2 * sizeof(float);
  REQUIRE(from_dlpack(stored.t, e) == status::ok);
  CHECK((e.data_handle() == data.data() + 2 && e.extent(0) == 24 && e.extent(1) == 0 && e.empty()));
  // Any stride along a dimension of one index, even one no index could negate.
  tensor_on single(data.data(), {1, 4}, {std::numeric_limits<std::int64_t>::min(), 1});
  REQUIRE(from_dlpack(single.t, e) == status::ok);
  CHECK((e.required_span_size() == 4 && &e(0, 3) == data.data() + 3));
}

TEST_CASE("managed tensors unwrap, and the versioned read-only flag is honoured", "[interop][dlpack]") {
  std::vector<float> data = numbered(12);
  tensor_on x(data.data(), {3, 4});
  DLManagedTensor managed{x.t, nullptr, nullptr};
  view<float, 2> v;
  REQUIRE(from_dlpack(managed, v) == status::ok);
  CHECK(v(2, 3) == 11.0f);

  DLManagedTensorVersioned versioned{{1, 0}, nullptr, nullptr, DLPACK_FLAG_BITMASK_IS_COPIED, x.t};
  view<float, 2> w;
  REQUIRE(from_dlpack(versioned, w) == status::ok);
  CHECK(w(1, 2) == 6.0f);
  versioned.flags |= DLPACK_FLAG_BITMASK_READ_ONLY;
  const view<float, 2> before = w;
  CHECK(from_dlpack(versioned, w) == status::invalid_parameter);  // no writable view of it
  CHECK(same_view(w, before));
  view<const float, 2> r;
  REQUIRE(from_dlpack(versioned, r) == status::ok);  // reading is fine
  CHECK(r(2, 0) == 8.0f);
  // Read-only ranks with the dtype and the device (invalid_parameter), before the shape.
  versioned.dl_tensor.ndim = 3;
  CHECK(from_dlpack(versioned, w) == status::invalid_parameter);
  CHECK(from_dlpack(versioned, r) == status::shape_mismatch);
  versioned.dl_tensor.ndim = 2;
  versioned.dl_tensor.dtype.bits = 64;
  CHECK(from_dlpack(versioned, w) == status::invalid_parameter);
  CHECK(from_dlpack(versioned, r) == status::invalid_parameter);
  versioned.flags &= ~DLPACK_FLAG_BITMASK_READ_ONLY;  // writable, and still the wrong dtype
  CHECK(from_dlpack(versioned, w) == status::invalid_parameter);
  CHECK(same_view(w, before));
  // Another major version may lay its fields out otherwise: none is read.
  versioned.dl_tensor.dtype.bits = 32;
  REQUIRE(from_dlpack(versioned, w) == status::ok);
  versioned.version.major = 2;
  view<const float, 2> r2;
  CHECK(from_dlpack(versioned, r2) == status::invalid_parameter);
  CHECK(r2.data_handle() == nullptr);
}

TEST_CASE("views are described as DLTensors and read back", "[interop][dlpack]") {
  std::vector<float> data = numbered(100);
  const view<const float, 2> v = make_strided_view(  // (5, 4)
      static_cast<const float*>(data.data() + 80), std::array<index_t, 2>{5, 4},
      std::array<index_t, 2>{-20, 2});
  std::array<std::int64_t, 2> shape{}, strides{};
  DLTensor t{};
  to_dlpack(v, shape, strides, t);
  CHECK((t.data == data.data() + 80 && t.ndim == 2 && t.byte_offset == 0));
  CHECK((t.device.device_type == kDLCPU && t.device.device_id == 0));
  CHECK((t.dtype.code == kDLFloat && t.dtype.bits == 32 && t.dtype.lanes == 1));
  CHECK((t.shape == shape.data() && shape[0] == 5 && shape[1] == 4));
  CHECK((t.strides == strides.data() && strides[0] == -20 && strides[1] == 2));
  view<const float, 2> back;
  REQUIRE(from_dlpack(t, back) == status::ok);
  CHECK(same_view(back, v));

  std::vector<std::uint16_t> raw(6);
  const view<bf16, 1, device_space> d{reinterpret_cast<bf16*>(raw.data()), {6}};  // (6,)
  std::array<std::int64_t, 1> dshape{}, dstrides{};
  to_dlpack(d, dshape, dstrides, t, 3);
  CHECK((t.device.device_type == kDLCUDA && t.device.device_id == 3));
  CHECK((t.dtype.code == kDLBfloat && t.dtype.bits == 16 && dstrides[0] == 1));
  view<bf16, 1, device_space> dback;
  REQUIRE(from_dlpack(t, dback) == status::ok);
  CHECK(same_view(dback, d));
}

TEST_CASE("topk through DLPack views matches topk through direct views", "[interop][dlpack]") {
  // 31 bf16 tokens of 6 values, stored flipped (torch.flip on dim 0) inside a padded buffer, and
  // fp32 scores taken as every other element with a byte offset.
  const index_t n = 31, dim = 6, pitch = 8;
  std::vector<bf16> rows(static_cast<std::size_t>(n * pitch));
  std::vector<float> scores(static_cast<std::size_t>(2 * n + 1));
  for (index_t i = 0; i < n; ++i) {
    scores[static_cast<std::size_t>(1 + 2 * i)] = static_cast<float>((i * 5) % 9);
    for (index_t c = 0; c < dim; ++c)
      rows[static_cast<std::size_t>((n - 1 - i) * pitch + c)] =
          from_float<bf16>(static_cast<float>(i) + 0.5f * static_cast<float>(c));
  }
  std::vector<std::int64_t> row_shape{n, dim}, row_strides{-pitch, 1};
  DLTensor t_rows{rows.data(), {kDLCPU, 0}, 2, {kDLBfloat, 16, 1}, row_shape.data(), row_strides.data(),
                  static_cast<std::uint64_t>((n - 1) * pitch) * sizeof(bf16)};
  std::vector<std::int64_t> score_shape{n}, score_strides{2};
  DLTensor t_scores{scores.data(), {kDLCUDAHost, 0}, 1, {kDLFloat, 32, 1}, score_shape.data(),
                    score_strides.data(), sizeof(float)};
  view<const bf16, 2> tokens;   // (tokens, dim)
  view<const float, 1> ranks;   // (tokens,)
  REQUIRE(from_dlpack(t_rows, tokens) == status::ok);
  REQUIRE(from_dlpack(t_scores, ranks) == status::ok);
  const view<const bf16, 2> direct_rows = make_strided_view(  // (tokens, dim)
      static_cast<const bf16*>(rows.data() + (n - 1) * pitch), std::array<index_t, 2>{n, dim},
      std::array<index_t, 2>{-pitch, 1});
  const view<const float, 1> direct_scores = make_strided_view(  // (tokens,)
      static_cast<const float*>(scores.data() + 1), std::array<index_t, 1>{n},
      std::array<index_t, 1>{2});
  for (int nth = 1; nth <= 3; ++nth) {
    CAPTURE(nth);
    const topk_run<bf16> want = run_topk<bf16>(direct_rows, direct_scores, 7, nth);
    CHECK(same_run(want, run_topk<bf16>(tokens, ranks, 7, nth)));
    CHECK(want.source.front() >= 0);
  }
}
