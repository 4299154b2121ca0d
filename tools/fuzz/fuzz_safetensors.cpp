// tools/fuzz/fuzz_safetensors.cpp — fuzzes the .safetensors reader (the strict JSON header, the
// dtype, shape and offset checks). Any input must give a header or a one-line error; a header's
// tensors must tile the data region, and each must read with its declared byte count.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.hpp"
#include "io/safetensors.hpp"
#include "io/tensor_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tokred;
  io::safetensors_header h;
  const std::string e = io::parse_safetensors_header(data, size, h, "in.safetensors");
  if (!e.empty()) {
    TOKRED_FUZZ_CHECK(fuzz::well_formed_error(e, "in.safetensors: "));
    return 0;
  }
  TOKRED_FUZZ_CHECK(h.data_offset >= 8 && h.data_offset <= size);
  std::uint64_t covered = 0;
  for (const io::safetensors_info& t : h.tensors) {
    std::uint64_t need = 0;
    TOKRED_FUZZ_CHECK(io::detail::checked_bytes(t.shape, io::detail::safetensors_item_size(t.dtype), need));
    TOKRED_FUZZ_CHECK(t.begin <= t.end && t.end - t.begin == need && t.end <= size - h.data_offset);
    covered += need;
  }
  TOKRED_FUZZ_CHECK(covered == size - h.data_offset);
  std::size_t tried = 0;
  for (const io::safetensors_info& t : h.tensors) {
    if (++tried > 16) break;
    io::safetensors_array a;
    TOKRED_FUZZ_CHECK(io::parse_safetensors(data, size, t.name, a, "in.safetensors").empty());
    TOKRED_FUZZ_CHECK(a.dtype == t.dtype && a.shape == t.shape && a.bytes.size() == t.end - t.begin);
    const std::string host = io::detail::host_dtype_of_safetensors(a.dtype);
    if (host.empty()) continue;
    const io::host_tensor host_view{host, a.shape, a.bytes};
    TOKRED_FUZZ_CHECK(static_cast<std::uint64_t>(host_view.elements()) * io::host_item_size(host) == a.bytes.size());
    if (host == "f32" || host == "f16" || host == "bf16") {
      std::vector<float> values;
      TOKRED_FUZZ_CHECK(io::to_float32(host_view, values).empty());
      TOKRED_FUZZ_CHECK(static_cast<std::int64_t>(values.size()) == host_view.elements());
    }
  }
  return 0;
}
