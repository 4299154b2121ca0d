// tests/cuda/test_kv_blocks_cuda.cu — the CUDA backends of ggml_quantize, ggml_dequantize and
// hadamard against the CPU backend, whose blocks are byte-identical to ggml's reference
// quantizers (tests/cpu/test_kv_blocks.cpp checks that against ggml's own outputs).
//
// Over every ggml type, rotations 0, 32 and 128 (and head_dim 192's default, 64), fp32/fp16/bf16
// caches in the four layouts of tests/support/kv_cache.hpp, packed rows contiguous and in
// llama.cpp's cell order:
//   quantize     the CPU backend's bytes, a non-finite block included; bytes outside the
//                packed view untouched
//   dequantize   the CPU backend's values (NaN where it has NaN), to the cache's type and fp32
//   hadamard     the CPU backend's values, out of place and in place
//   bad input    the CPU backend's statuses, nothing written
// plus a CUDA-graph capture and replay. The per-thread unit functions are the CPU backend's own
// (tests/cpu/test_kv_blocks.cpp runs them on every machine). Exits 77 (CTest's "skipped")
// without a CUDA device; otherwise prints one line per failure (the first 60) and
// "N passed, M failed".
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "support/buffers.hpp"
#include "support/kv_cache.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr ggml_type all_types[] = {ggml_type::q8_0, ggml_type::q4_0, ggml_type::q4_1,
                                   ggml_type::q5_0, ggml_type::q5_1, ggml_type::iq4_nl};

/// Packed rows (heads, tokens, row_bytes) in a buffer with 7 sentinel bytes past them:
/// contiguous, or llama.cpp's cells (one token's heads side by side).
struct packed_rows {
  index_t heads, tokens, row_bytes;
  bool cells;
  std::vector<std::uint8_t> host;
  device_buffer<std::uint8_t> device;

  packed_rows(index_t h, index_t t, index_t rb, bool cells_)
      : heads(h), tokens(t), row_bytes(rb), cells(cells_), host(static_cast<std::size_t>(h * t * rb + 7), 0xA5),
        device(host) {}
  std::array<index_t, 3> strides() const {
    return cells ? std::array<index_t, 3>{row_bytes, heads * row_bytes, 1} : std::array<index_t, 3>{tokens * row_bytes, row_bytes, 1};
  }
  view<std::uint8_t, 3> host_view() { return {host.data(), {heads, tokens, row_bytes}, strides()}; }
  view<std::uint8_t, 3, device_space> device_view() const { return {device.get(), {heads, tokens, row_bytes}, strides()}; }
};

template <class E>
bool same_or_both_nan(const std::vector<E>& a, const std::vector<E>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(bits_of(a[i]) == bits_of(b[i]) || (std::isnan(to_float(a[i])) && std::isnan(to_float(b[i]))))) return false;
  return true;
}

template <class E, class Eout>
void check_dequantize(ggml_type type, index_t rot, const packed_rows& packed, const view<const std::uint8_t, 3>& host_blocks,
                      index_t heads, index_t tokens, index_t dim, const std::string& what) {
  std::vector<Eout> want(static_cast<std::size_t>(heads * tokens * dim), from_float<Eout>(-9.0f));
  const ggml_dequantize p{type, rot};
  check(apply(cpu<>{}, p, kv_block_inputs<>{host_blocks}, kv_outputs<Eout>{view<Eout, 3>(want.data(), {heads, tokens, dim})}) ==
            status::ok,
        what + ": CPU dequantize");
  device_buffer<Eout> got(std::vector<Eout>(want.size(), from_float<Eout>(-9.0f)));
  const view<const std::uint8_t, 3, device_space> blocks = packed.device_view();
  const status s = apply(tokred::cuda{test_stream()}, p, kv_block_inputs<device_space>{blocks},
                         kv_outputs<Eout, device_space>{view<Eout, 3, device_space>(got.get(), {heads, tokens, dim})});
  check(s == status::ok, what + ": dequantize status " + to_string(s));
  finish(what + " dequantize");
  check(same_or_both_nan(got.download(), want), what + ": dequantized " + element_name<Eout>() + " differs from the CPU's");
}

template <class E>
void check_type(ggml_type type, index_t rot, kv_layout how, bool cells, index_t heads, index_t tokens, index_t dim) {
  const std::string what = std::string(ggml_type_name(type)) + " " + element_name<E>() + " rotation " + str(rot) + " layout " +
                           str(static_cast<index_t>(how)) + (cells ? " cells" : "") + " dim " + str(dim);
  kv_cache<E> host = make_cache<E>(heads, tokens, dim, how);
  fill(host.cache, static_cast<std::uint64_t>(dim + tokens));
  if (how == kv_layout::contiguous) host.cache(0, 1, 3) = from_float<E>(std::numeric_limits<float>::quiet_NaN());
  const index_t row_bytes = ggml_row_bytes(type, dim);
  packed_rows want(heads, tokens, row_bytes, cells), got(heads, tokens, row_bytes, cells);
  const ggml_quantize p{type, rot};
  check(apply(cpu<>{}, p, kv_inputs<E>{view<const E, 3>(host.cache)}, kv_block_outputs<>{want.host_view()}) == status::ok,
        what + ": CPU quantize");
  const device_mirror<E, 3> cache(host.storage, host.cache);
  const status s = apply(tokred::cuda{test_stream()}, p, kv_inputs<E, device_space>{cache.v},
                         kv_block_outputs<device_space>{got.device_view()});
  check(s == status::ok, what + ": quantize status " + to_string(s));
  finish(what + " quantize");
  check(got.device.download() == want.host, what + ": blocks differ from the CPU backend's (or bytes past them were written)");
  const view<const std::uint8_t, 3> host_blocks = want.host_view();
  check_dequantize<E, E>(type, rot, want, host_blocks, heads, tokens, dim, what);
  check_dequantize<E, float>(type, rot, want, host_blocks, heads, tokens, dim, what);
}

template <class Ein, class Eout>
void check_hadamard(index_t block, kv_layout how, index_t heads, index_t tokens, index_t dim) {
  const std::string what = std::string("hadamard ") + element_name<Ein>() + " to " + element_name<Eout>() + " block " +
                           str(block) + " layout " + str(static_cast<index_t>(how));
  kv_cache<Ein> host = make_cache<Ein>(heads, tokens, dim, how);
  fill(host.cache, 3);
  std::vector<Eout> want(static_cast<std::size_t>(heads * tokens * dim));
  check(apply(cpu<>{}, hadamard{block}, kv_inputs<Ein>{view<const Ein, 3>(host.cache)},
              kv_outputs<Eout>{view<Eout, 3>(want.data(), {heads, tokens, dim})}) == status::ok,
        what + ": CPU rotation");
  const device_mirror<Ein, 3> cache(host.storage, host.cache);
  device_buffer<Eout> got(want.size());
  const status s = apply(tokred::cuda{test_stream()}, hadamard{block}, kv_inputs<Ein, device_space>{cache.v},
                         kv_outputs<Eout, device_space>{view<Eout, 3, device_space>(got.get(), {heads, tokens, dim})});
  check(s == status::ok, what + ": status " + to_string(s));
  finish(what);
  check(same_or_both_nan(got.download(), want), what + ": rotated values differ from the CPU's");
  if constexpr (std::is_same_v<Ein, Eout>) {  // in place
    std::vector<Ein> in_place(host.storage);
    kv_cache<Ein> copy{in_place, view<Ein, 3>(in_place.data() + (host.cache.data_handle() - host.storage.data()),
                                              {heads, tokens, dim}, {host.cache.stride(0), host.cache.stride(1), host.cache.stride(2)})};
    check(apply(cpu<>{}, hadamard{block}, kv_inputs<Ein>{view<const Ein, 3>(copy.cache)}, kv_outputs<Ein>{copy.cache}) ==
              status::ok,
          what + ": CPU in place");
    const device_mirror<Ein, 3> dev(host.storage, host.cache);
    const status st = apply(tokred::cuda{test_stream()}, hadamard{block}, kv_inputs<Ein, device_space>{dev.v},
                            kv_outputs<Ein, device_space>{dev.v});
    check(st == status::ok, what + ": in place status " + to_string(st));
    finish(what + " in place");
    check(same_or_both_nan(dev.download(), copy.storage), what + ": in place differs from the CPU's");
  }
}

void check_bad_input() {
  kv_cache<float> host = make_cache<float>(2, 4, 64, kv_layout::contiguous);
  fill(host.cache, 1);
  const device_mirror<float, 3> cache(host.storage, host.cache);
  packed_rows out(2, 4, ggml_row_bytes(ggml_type::q4_0, 64), false);
  const std::vector<std::uint8_t> before = out.device.download();
  const tokred::cuda exec{test_stream()};
  const kv_inputs<float, device_space> in{cache.v};
  const auto expect = [&](status got, status want, const std::string& what) {
    check(got == want, what + ": " + to_string(got) + ", expected " + to_string(want));
    finish(what);
    check(out.device.download() == before, what + ": blocks written");
  };
  expect(apply(exec, ggml_quantize{ggml_type::q8_0}, in, kv_block_outputs<device_space>{out.device_view()}),
         status::shape_mismatch, "q8_0 into q4_0 rows");
  expect(apply(exec, ggml_quantize{ggml_type::q4_0, 48}, in, kv_block_outputs<device_space>{out.device_view()}),
         status::invalid_parameter, "rotation 48");
  expect(apply(exec, ggml_quantize{static_cast<ggml_type>(5)}, in, kv_block_outputs<device_space>{out.device_view()}),
         status::invalid_parameter, "type 5");
  const view<std::uint8_t, 3, device_space> over(reinterpret_cast<std::uint8_t*>(cache.v.data_handle()), {2, 4, 36});
  expect(apply(exec, ggml_quantize{ggml_type::q4_0}, in, kv_block_outputs<device_space>{over}), status::aliasing,
         "blocks over the cache");
  kv_cache<float> narrow = make_cache<float>(1, 2, 48, kv_layout::contiguous);
  const device_mirror<float, 3> dn(narrow.storage, narrow.cache);
  check(apply(exec, hadamard{}, kv_inputs<float, device_space>{dn.v}, kv_outputs<float, device_space>{dn.v}) ==
            status::invalid_parameter,
        "hadamard on head_dim 48: no power-of-two block of 32 or more divides it");
}

void check_graph_capture() {
  kv_cache<f16> host = make_cache<f16>(8, 64, 128, kv_layout::cells);
  fill(host.cache, 4);
  const device_mirror<f16, 3> cache(host.storage, host.cache);
  packed_rows blocks(8, 64, ggml_row_bytes(ggml_type::q4_1, 128), true), want(8, 64, ggml_row_bytes(ggml_type::q4_1, 128), true);
  device_buffer<f16> back(static_cast<std::size_t>(8 * 64 * 128));
  const tokred::cuda exec{test_stream()};
  const ggml_quantize q{ggml_type::q4_1, 128};
  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{
        apply(exec, q, kv_inputs<f16, device_space>{cache.v}, kv_block_outputs<device_space>{blocks.device_view()}),
        apply(exec, ggml_dequantize{ggml_type::q4_1, 128}, kv_block_inputs<device_space>{blocks.device_view()},
              kv_outputs<f16, device_space>{view<f16, 3, device_space>(back.get(), {8, 64, 128})})};
  });
  if (!replayed) return;
  check(apply(cpu<>{}, q, kv_inputs<f16>{view<const f16, 3>(host.cache)}, kv_block_outputs<>{want.host_view()}) == status::ok,
        "graph: CPU quantize");
  check(blocks.device.download() == want.host, "graph: the replayed blocks differ from the CPU's");
  std::vector<f16> values(static_cast<std::size_t>(8 * 64 * 128));
  const view<const std::uint8_t, 3> host_blocks = want.host_view();
  check(apply(cpu<>{}, ggml_dequantize{ggml_type::q4_1, 128}, kv_block_inputs<>{host_blocks},
              kv_outputs<f16>{view<f16, 3>(values.data(), {8, 64, 128})}) == status::ok,
        "graph: CPU dequantize");
  check(same_or_both_nan(back.download(), values), "graph: the replayed values differ from the CPU's");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  for (const ggml_type type : all_types)
    for (const index_t rot : {index_t{0}, index_t{32}, index_t{128}}) {
      for (const kv_layout how : {kv_layout::contiguous, kv_layout::cells, kv_layout::strided, kv_layout::reversed})
        check_type<float>(type, rot, how, how == kv_layout::cells, 2, 33, 128);
      check_type<f16>(type, rot, kv_layout::cells, true, 4, 17, 256);
      check_type<bf16>(type, rot, kv_layout::contiguous, false, 1, 9, 128);
    }
  for (const ggml_type type : all_types) check_type<float>(type, 64, kv_layout::contiguous, false, 2, 5, 192);
  for (const kv_layout how : {kv_layout::contiguous, kv_layout::strided, kv_layout::reversed}) {
    check_hadamard<float, float>(128, how, 2, 9, 128);
    check_hadamard<bf16, float>(64, how, 1, 5, 192);
    check_hadamard<f16, f16>(256, how, 3, 4, 256);
  }
  check_bad_input();
  check_graph_capture();
  return summary();
}
