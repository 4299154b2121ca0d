// tools/fuzz/fuzz_npz.cpp — fuzzes the .npz reader (zip directory, zip64 records, local headers,
// inflate, CRC-32, the .npy inside). Any input must give the member names or a one-line error;
// every listed member must read or fail with a one-line error, and a name that is not listed must
// fail.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.hpp"
#include "io/npz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tokred;
  std::vector<std::string> names;
  const std::string e = io::parse_npz_names(data, size, names, "in.npz");
  if (!e.empty()) {
    TOKRED_FUZZ_CHECK(fuzz::well_formed_error(e, "in.npz: "));
    return 0;
  }
  std::size_t tried = 0;
  for (const std::string& name : names) {
    if (++tried > 16) break;
    io::npy_array a;
    const std::string r = io::parse_npz(data, size, name, a, "in.npz");
    if (!r.empty()) {
      TOKRED_FUZZ_CHECK(fuzz::well_formed_error(r, "in.npz"));
      continue;
    }
    std::uint64_t need = 0;
    TOKRED_FUZZ_CHECK(io::detail::checked_bytes(a.shape, io::detail::npy_item_size(a.dtype), need));
    TOKRED_FUZZ_CHECK(need == a.bytes.size());
    TOKRED_FUZZ_CHECK(static_cast<std::uint64_t>(a.elements()) * io::detail::npy_item_size(a.dtype) == need);
  }
  io::npy_array none;
  TOKRED_FUZZ_CHECK(!io::parse_npz(data, size, "\x01not listed", none, "in.npz").empty());
  return 0;
}
