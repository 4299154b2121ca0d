// tokred/interop/dlpack.hpp — DLPack tensors (PyTorch, JAX, CuPy, NumPy through `__dlpack__`) as
// tokred views, checked, and views as DLPack tensors. Optional: include it where both meet;
// <tokred/tokred.hpp> does not.
//
// Written against DLPack's C ABI by member name, so it needs no dlpack.h: any struct laid out as
// `DLTensor` (`data`, `device.device_type`, `ndim`, `dtype.{code, bits, lanes}`, `shape`,
// `strides`, `byte_offset`) works, and so do `DLManagedTensor` and `DLManagedTensorVersioned`
// (anything with a `dl_tensor` member), whose read-only flag is then honoured. The numbers below
// are DLPack's, stable in its ABI since v0.6.
//
//   from_dlpack(tensor, out)  -> status   checks dtype, device, rank, shape, pointer; fills `out`
//   to_dlpack(v, shape, strides, tensor)  describes a view as a DLTensor (no allocation)
//
// DLPack strides are in elements and signed, as tokred's are; NULL strides mean compact
// row-major. The memory space follows the device: kDLCPU and kDLCUDAHost (pinned) are host
// memory, kDLCUDA and kDLCUDAManaged are device memory. The device id is not checked: the caller
// makes that device current.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "tokred/core/config.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

namespace detail {

// DLDeviceType values.
inline constexpr int dl_cpu = 1;
inline constexpr int dl_cuda = 2;
inline constexpr int dl_cuda_host = 3;
inline constexpr int dl_cuda_managed = 13;
// DLDataTypeCode values.
inline constexpr int dl_int = 0;
inline constexpr int dl_uint = 1;
inline constexpr int dl_float = 2;
inline constexpr int dl_bfloat = 4;
// DLManagedTensorVersioned::flags: the consumer must not write the data.
inline constexpr std::uint64_t dl_flag_read_only = 1;

/// DLPack's (code, bits) of a view element type; `bits == 0` for a type it has no code for.
template <class T>
struct dl_dtype {
  static constexpr int code = 0;
  static constexpr int bits = 0;
};
template <int Code, int Bits>
struct dl_dtype_is {
  static constexpr int code = Code;
  static constexpr int bits = Bits;
};
template <> struct dl_dtype<float> : dl_dtype_is<dl_float, 32> {};
template <> struct dl_dtype<f16> : dl_dtype_is<dl_float, 16> {};
template <> struct dl_dtype<bf16> : dl_dtype_is<dl_bfloat, 16> {};
template <> struct dl_dtype<std::int64_t> : dl_dtype_is<dl_int, 64> {};
template <> struct dl_dtype<std::int32_t> : dl_dtype_is<dl_int, 32> {};
template <> struct dl_dtype<std::uint8_t> : dl_dtype_is<dl_uint, 8> {};

template <class T>
inline constexpr bool has_dl_dtype = dl_dtype<std::remove_cv_t<T>>::bits != 0;

/// True for the DLPack device types whose memory a view in `Space` may address.
template <class Space>
constexpr bool dl_device_in(int device_type) noexcept {
  if constexpr (std::is_same_v<Space, device_space>) {
    return device_type == dl_cuda || device_type == dl_cuda_managed;
  } else {
    return device_type == dl_cpu || device_type == dl_cuda_host;
  }
}

template <class M, class = void>
struct has_dl_tensor : std::false_type {};
template <class M>
struct has_dl_tensor<M, std::void_t<decltype(std::declval<const M&>().dl_tensor)>>
    : std::true_type {};

template <class M, class = void>
struct has_dl_version : std::false_type {};
template <class M>
struct has_dl_version<M, std::void_t<decltype(std::declval<const M&>().version.major)>> : std::true_type {};

/// The DLPack major version whose DLManagedTensorVersioned layout this header reads; a tensor of
/// another major version may lay out its other fields differently.
inline constexpr std::uint32_t dl_major_version = 1;

template <class M, class = void>
struct has_dl_flags : std::false_type {};
template <class M>
struct has_dl_flags<M, std::void_t<decltype(std::declval<const M&>().flags)>> : std::true_type {};

/// `invalid_parameter` unless the DLTensor `t` holds `T`s (one lane) in memory of `Space`.
template <class T, class Space, class Tensor>
status check_dl_kind(const Tensor& t) noexcept {
  using E = std::remove_cv_t<T>;
  if (static_cast<int>(t.dtype.code) != dl_dtype<E>::code ||
      static_cast<int>(t.dtype.bits) != dl_dtype<E>::bits || static_cast<int>(t.dtype.lanes) != 1)
    return status::invalid_parameter;
  if (!dl_device_in<Space>(static_cast<int>(t.device.device_type)))
    return status::invalid_parameter;
  return status::ok;
}

template <class T, int Rank, class Space, class Tensor>
status view_dl_tensor(const Tensor& t, view<T, Rank, Space>& out) noexcept {
  using E = std::remove_cv_t<T>;
  if (const status s = check_dl_kind<T, Space>(t); s != status::ok) return s;
  if (static_cast<int>(t.ndim) != Rank) return status::shape_mismatch;
  if (t.shape == nullptr) return status::null_pointer;

  std::array<index_t, static_cast<std::size_t>(Rank)> extents{};
  std::array<index_t, static_cast<std::size_t>(Rank)> strides{};
  index_t size = 1;
  for (int r = Rank; r-- > 0;) {
    const std::size_t ur = static_cast<std::size_t>(r);
    if (t.shape[r] < 0) return status::shape_mismatch;
    extents[ur] = static_cast<index_t>(t.shape[r]);
    if (extents[ur] != 0 && size > std::numeric_limits<index_t>::max() / extents[ur])
      return status::shape_mismatch;  // more elements than an index can count
    strides[ur] = t.strides != nullptr ? static_cast<index_t>(t.strides[r]) : size;  // compact
    size *= extents[ur];
  }
  if (!detail::span_fits(extents, strides, static_cast<index_t>(sizeof(E))))
    return status::shape_mismatch;  // strides that reach past what an index can address
  if (t.data == nullptr) {
    if (size != 0) return status::null_pointer;
    out = view<T, Rank, Space>{nullptr, extents, strides};  // an empty tensor without storage
    return status::ok;
  }
  unsigned char* const first = static_cast<unsigned char*>(t.data) + t.byte_offset;
  if (reinterpret_cast<std::uintptr_t>(first) % alignof(E) != 0) return status::misaligned;
  out = view<T, Rank, Space>{reinterpret_cast<T*>(first), extents, strides};
  return status::ok;
}

}  // namespace detail

/// Makes `out` a view of the DLPack tensor `tensor`; on failure `out` is left as it was.
///
/// `tensor` is a `DLTensor`, a `DLManagedTensor` or a `DLManagedTensorVersioned` (or any struct
/// with their members). The view's element type `T` fixes the dtype it accepts: float is
/// (kDLFloat, 32), f16 (kDLFloat, 16), bf16 (kDLBfloat, 16), std::int64_t (kDLInt, 64),
/// std::int32_t (kDLInt, 32), std::uint8_t (kDLUInt, 8), each with one lane. Its `Space` fixes the
/// devices: host_space takes kDLCPU and kDLCUDAHost, device_space kDLCUDA and kDLCUDAManaged.
/// The view's data pointer is `data + byte_offset`; NULL strides mean compact row-major.
///
/// Returns, in this order of checks:
///   invalid_parameter  a versioned tensor of a major version other than 1 (its other fields are
///                      not read); the dtype is not `T`'s (code, bits, or lanes != 1); the device
///                      type is not one of `Space`'s; a versioned tensor flagged read-only, for a
///                      view of non-const `T`
///   shape_mismatch     `ndim != Rank`, a negative extent, more elements than `index_t` counts,
///                      or strides that reach further than `index_t` counts in bytes
///   null_pointer       `shape` is NULL, or `data` is NULL while the tensor has elements
///   misaligned         `data + byte_offset` is not aligned for `T`
///   ok                 `out` views the tensor (a tensor with no elements and NULL `data` gives a
///                      null view with its extents; one with storage keeps `data + byte_offset`)
template <class Tensor, class T, int Rank, class Space>
status from_dlpack(const Tensor& tensor, view<T, Rank, Space>& out) noexcept {
  static_assert(detail::has_dl_dtype<T>,
                "tokred::from_dlpack: the view element must be float, f16, bf16, std::int64_t, "
                "std::int32_t or std::uint8_t");
  if constexpr (detail::has_dl_tensor<Tensor>::value) {
    if constexpr (detail::has_dl_version<Tensor>::value) {
      if (static_cast<std::uint32_t>(tensor.version.major) != detail::dl_major_version) return status::invalid_parameter;
    }
    // Read-only is an invalid_parameter as a wrong dtype or device is, so checking it first
    // keeps the documented order of statuses.
    if constexpr (detail::has_dl_flags<Tensor>::value && !std::is_const_v<T>) {
      if ((static_cast<std::uint64_t>(tensor.flags) & detail::dl_flag_read_only) != 0)
        return status::invalid_parameter;
    }
    return detail::view_dl_tensor(tensor.dl_tensor, out);
  } else {
    return detail::view_dl_tensor(tensor, out);
  }
}

/// Describes view `v` as the DLTensor `tensor` (any struct with DLTensor's members), with `shape`
/// and `strides` — caller-owned, they must outlive `tensor` — holding its extents and element
/// strides. The device is kDLCPU for host views and kDLCUDA (`device_id`) for device views;
/// `byte_offset` is 0. DLTensor has no const: for a view of const, the consumer must not write
/// (a producer of DLManagedTensorVersioned sets its read-only flag).
template <class Tensor, class T, int Rank, class Space>
void to_dlpack(const view<T, Rank, Space>& v,
               std::array<std::int64_t, static_cast<std::size_t>(Rank)>& shape,
               std::array<std::int64_t, static_cast<std::size_t>(Rank)>& strides, Tensor& tensor,
               std::int32_t device_id = 0) noexcept {
  static_assert(detail::has_dl_dtype<T>,
                "tokred::to_dlpack: the view element must be float, f16, bf16, std::int64_t, "
                "std::int32_t or std::uint8_t");
  using E = std::remove_cv_t<T>;
  for (int r = 0; r < Rank; ++r) {
    shape[static_cast<std::size_t>(r)] = static_cast<std::int64_t>(v.extent(r));
    strides[static_cast<std::size_t>(r)] = static_cast<std::int64_t>(v.stride(r));
  }
  tensor.data = const_cast<E*>(v.data_handle());
  tensor.device.device_type = static_cast<decltype(tensor.device.device_type)>(
      std::is_same_v<Space, device_space> ? detail::dl_cuda : detail::dl_cpu);
  tensor.device.device_id = std::is_same_v<Space, device_space> ? device_id : 0;
  tensor.ndim = Rank;
  tensor.dtype.code = static_cast<decltype(tensor.dtype.code)>(detail::dl_dtype<E>::code);
  tensor.dtype.bits = static_cast<decltype(tensor.dtype.bits)>(detail::dl_dtype<E>::bits);
  tensor.dtype.lanes = 1;
  tensor.shape = shape.data();
  tensor.strides = strides.data();
  tensor.byte_offset = 0;
}

}  // namespace tokred
