// tools/fuzz/fuzz_npy.cpp — fuzzes the .npy reader. Any input must give an array or a one-line
// error; an array's bytes must match its dtype and shape, write back out to a file that reads
// back identically, and convert to fp32 when it is a float type the program accepts.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.hpp"
#include "io/npy.hpp"
#include "io/tensor_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tokred;
  io::npy_array a;
  const std::string e = io::parse_npy(data, size, a, "in.npy");
  if (!e.empty()) {
    TOKRED_FUZZ_CHECK(fuzz::well_formed_error(e, "in.npy: "));
    TOKRED_FUZZ_CHECK(a.dtype.empty() && a.shape.empty() && a.bytes.empty());  // untouched
    return 0;
  }
  std::uint64_t need = 0;
  TOKRED_FUZZ_CHECK(io::detail::checked_bytes(a.shape, io::detail::npy_item_size(a.dtype), need));
  TOKRED_FUZZ_CHECK(need == a.bytes.size());
  TOKRED_FUZZ_CHECK(static_cast<std::uint64_t>(a.elements()) * io::detail::npy_item_size(a.dtype) == need);

  // Written back with our own header, the array reads back the same.
  const std::string prefix = io::npy_prefix(a.dtype, a.shape);
  std::vector<unsigned char> again(prefix.begin(), prefix.end());
  again.insert(again.end(), a.bytes.begin(), a.bytes.end());
  io::npy_array b;
  TOKRED_FUZZ_CHECK(io::parse_npy(again.data(), again.size(), b, "again.npy").empty());
  TOKRED_FUZZ_CHECK(b.dtype == a.dtype && b.shape == a.shape && b.bytes == a.bytes);

  const std::string host = io::detail::host_dtype_of_npy(a.dtype);
  if (host == "f32" || host == "f16") {
    std::vector<float> values;
    TOKRED_FUZZ_CHECK(io::to_float32(io::host_tensor{host, a.shape, a.bytes}, values).empty());
    TOKRED_FUZZ_CHECK(values.size() * (host == "f32" ? 4 : 2) == a.bytes.size());
  }
  return 0;
}
