// tools/io/tensor_file.hpp — the one way the command-line program loads a tensor: a spec naming a
// .npy file, an array of a .npz archive or a tensor of a .safetensors file, read into a
// `host_tensor`, and its exact conversion to fp32.
//
// Spec forms:
//   PATH.npy                      the array of a .npy file
//   PATH.npz:NAME                 array NAME of a .npz archive (np.load(PATH)[NAME])
//   PATH.safetensors:NAME         tensor NAME of a .safetensors file
//   PATH.npz, PATH.safetensors    the only array / tensor there is (an error lists the names
//                                 when there are several)
// The spec is split at the first ".npz:" or ".safetensors:", so NAME may itself hold colons. A
// caller that lists the files itself (`tokred bench`) builds a tensor_spec and splits no text, so
// a directory named like "x.npz:y" is no member name there.
// Needs zlib (link ZLIB::ZLIB) for .npz.
#pragma once

#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/bytes.hpp"
#include "io/npy.hpp"
#include "io/npz.hpp"
#include "io/safetensors.hpp"
#include "tokred/core/element.hpp"

namespace tokred::io {

/// A tensor in host memory, as any reader returns it once its dtype is named in the program's
/// terms: "f32", "f16", "bf16", "i64" or "i32" (where an npy_array holds a NumPy descriptor), its
/// shape, and its bytes (little-endian, C order).
using host_tensor = npy_array;

/// Bytes per element of a host_tensor dtype; 0 for anything else.
inline std::size_t host_item_size(std::string_view dtype) {
  if (dtype == "f32" || dtype == "i32") return 4;
  if (dtype == "f16" || dtype == "bf16") return 2;
  if (dtype == "i64") return 8;
  return 0;
}

namespace detail {

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace detail

/// A tensor's file, its kind and the member name (`named` when one was given).
struct tensor_spec {
  std::string path, name;
  enum class kind { npy, npz, safetensors } format = kind::npy;
  bool named = false;

  /// The spec as the user writes it: PATH, or PATH:NAME.
  std::string text() const { return named ? path + ":" + name : path; }
};

/// The kind of tensor file `path` names, by its extension (.npy, .npz, .safetensors): the one
/// place the program tells file types apart. False for any other name.
inline bool file_kind(std::string_view path, tensor_spec::kind& out) {
  if (detail::ends_with(path, ".npy")) return out = tensor_spec::kind::npy, true;
  if (detail::ends_with(path, ".npz")) return out = tensor_spec::kind::npz, true;
  if (detail::ends_with(path, ".safetensors")) return out = tensor_spec::kind::safetensors, true;
  return false;
}

/// Splits a spec (see the file comment) into `out`: at the first ".npz:" or ".safetensors:",
/// else the whole spec is a path of a kind `file_kind` knows. Returns an error message, empty on
/// success (`out` untouched on failure).
inline std::string split_tensor_spec(const std::string& spec, tensor_spec& out) {
  tensor_spec s;
  const std::size_t npz = spec.find(".npz:"), st = spec.find(".safetensors:");
  if (npz != std::string::npos || st != std::string::npos) {
    const bool is_npz = npz != std::string::npos && (st == std::string::npos || npz < st);
    const std::size_t colon = is_npz ? npz + 4 : st + 12;
    s.path = spec.substr(0, colon);
    s.name = spec.substr(colon + 1);
    s.format = is_npz ? tensor_spec::kind::npz : tensor_spec::kind::safetensors;
    s.named = true;
    if (s.name.empty()) return spec + ": empty name after ':'";
  } else if (file_kind(spec, s.format)) {
    s.path = spec;
  } else if (spec.find(".npy:") != std::string::npos) {
    return spec + ": a .npy file holds one array; name a member only of .npz or .safetensors";
  } else {
    return spec + ": unknown file type (expected PATH.npy, PATH.npz[:NAME] or PATH.safetensors[:NAME])";
  }
  out = std::move(s);
  return {};
}

namespace detail {

/// The host dtype of a .npy descriptor, or "".
inline std::string host_dtype_of_npy(std::string_view descr) {
  if (descr == "<f4") return "f32";
  if (descr == "<f2") return "f16";
  if (descr == "<i8") return "i64";
  if (descr == "<i4") return "i32";
  return {};
}

/// The host dtype of a safetensors dtype, or "".
inline std::string host_dtype_of_safetensors(std::string_view dtype) {
  if (dtype == "F32") return "f32";
  if (dtype == "F16") return "f16";
  if (dtype == "BF16") return "bf16";
  if (dtype == "I64") return "i64";
  if (dtype == "I32") return "i32";
  return {};
}

/// The one member of a file that has exactly one, or an error listing what there is.
inline std::string only_member(const std::string& path, const std::vector<std::string>& names, std::string& out) {
  if (names.size() == 1) {
    out = names[0];
    return {};
  }
  if (names.empty()) return path + ": holds no tensors";
  return path + ": holds " + std::to_string(names.size()) + " tensors, name one as " + path +
         ":NAME (" + name_list(names) + ")";
}

}  // namespace detail

/// Loads the tensor `spec` names (see the file comment) into `out` (untouched on failure).
/// Returns an empty string on success, or one line naming the file and the problem. Accepted
/// dtypes: .npy/.npz <f4 <f2 <i8 <i4; .safetensors F32 F16 BF16 I64 I32.
inline std::string load_tensor(const tensor_spec& spec, host_tensor& out) {
  tensor_spec s = spec;
  host_tensor t;
  if (s.format == tensor_spec::kind::safetensors) {
    if (!s.named) {
      std::vector<std::string> names;
      if (std::string e = list_safetensors(s.path, names); !e.empty()) return e;
      if (std::string e = detail::only_member(s.path, names, s.name); !e.empty()) return e;
    }
    safetensors_array a;
    if (std::string e = read_safetensors(s.path, s.name, a); !e.empty()) return e;
    t.dtype = detail::host_dtype_of_safetensors(a.dtype);
    if (t.dtype.empty())
      return s.path + ":" + detail::printable(s.name) + ": dtype " + a.dtype +
             " is not supported (F32, F16, BF16, I64, I32)";
    t.shape = std::move(a.shape);
    t.bytes = std::move(a.bytes);
  } else {
    npy_array a;
    if (s.format == tensor_spec::kind::npy) {
      if (std::string e = read_npy(s.path, a); !e.empty()) return e;
    } else {
      if (!s.named) {
        std::vector<std::string> names;
        if (std::string e = list_npz(s.path, names); !e.empty()) return e;
        if (std::string e = detail::only_member(s.path, names, s.name); !e.empty()) return e;
      }
      if (std::string e = read_npz(s.path, s.name, a); !e.empty()) return e;
    }
    t.dtype = detail::host_dtype_of_npy(a.dtype);
    if (t.dtype.empty()) {
      const std::string label = s.format == tensor_spec::kind::npy ? s.path
                                                                           : s.path + ":" + detail::printable(s.name);
      return label + ": dtype '" + a.dtype + "' is not supported (<f4, <f2, <i8, <i4)";
    }
    t.shape = std::move(a.shape);
    t.bytes = std::move(a.bytes);
  }
  out = std::move(t);
  return {};
}

/// `load_tensor` of the spec written as text (split by `split_tensor_spec`).
inline std::string load_tensor(const std::string& spec, host_tensor& out) {
  tensor_spec s;
  if (std::string e = split_tensor_spec(spec, s); !e.empty()) return e;
  return load_tensor(s, out);
}

/// Converts a float tensor (f32, f16 or bf16) to fp32, exactly, into `out` (untouched on
/// failure). Returns an empty string, or why not: an integer dtype, an unknown one, or bytes that
/// do not match the shape.
inline std::string to_float32(const host_tensor& t, std::vector<float>& out) {
  const std::size_t item = host_item_size(t.dtype);
  if (item == 0) return "unknown dtype '" + detail::printable(t.dtype) + "'";
  if (t.dtype == "i64" || t.dtype == "i32") return "dtype " + t.dtype + " is not a float type";
  std::uint64_t bytes = 0;
  if (!detail::checked_bytes(t.shape, item, bytes) || bytes != t.bytes.size())
    return "shape " + detail::shape_text(t.shape) + " of " + t.dtype + " does not match its " +
           std::to_string(t.bytes.size()) + " bytes";
  const std::size_t n = t.bytes.size() / item;
  std::vector<float> values;
  try {
    values.resize(n);
  } catch (const std::bad_alloc&) {
    return "out of memory for " + std::to_string(n) + " floats";
  }
  if (t.dtype == "f32") {
    if (n) std::memcpy(values.data(), t.bytes.data(), n * sizeof(float));
  } else {
    const bool half = t.dtype == "f16";
    for (std::size_t i = 0; i < n; ++i) {
      const auto bits = static_cast<std::uint16_t>(t.bytes[2 * i] | (t.bytes[2 * i + 1] << 8));
      values[i] = half ? to_float(f16{bits}) : to_float(bf16{bits});
    }
  }
  out = std::move(values);
  return {};
}

}  // namespace tokred::io
