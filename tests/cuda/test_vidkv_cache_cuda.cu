// tests/cuda/test_vidkv_cache_cuda.cu — the CUDA backends of vidkv_append and vidkv_read (VidKV's
// streaming cache) against the CPU backend.
//
// Checked, on the streams of for_each_vidkv_stream (tests/support/vidkv_buffers.hpp): fp32,
// fp16 and bf16 tokens in the contiguous, cells, strided and reversed layouts; mixed, 1-bit and
// uniform keys; ternary, 1-bit and 2-bit values; salient lists scattered, in a block that joins
// at a flush, and covering every packed token, with 2-, 4- and 8-bit salient values;
// round_each_op and vidkv_dequant; prefills, decode steps and flushes:
//   read      at every step, what attention sees (the packed tokens dequantized, the residual,
//             the incoming token) bit for bit the CPU backend's, in the cache's type; at the end
//             the cache read to fp32 into padded rows, padding untouched
//   append    at every step, with the device read's outputs as the seen tokens, every byte of
//             the device cache — packed keys, values and salient values, both residuals, the
//             sentinels of what is not yet written — equal to the CPU cache's
//   bad input the CPU backend's statuses, nothing launched, nothing written
// plus a CUDA-graph capture and replay of a decode step's read and append. The same per-thread
// bodies run on the host in tests/cpu/test_vidkv.cpp ("VidKV's CUDA cache units"). Exits 77
// (CTest's "skipped") when no CUDA device is present; otherwise prints one line per failure (the
// first 60) and "N passed, M failed".
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "cuda/vidkv_device_cache.cuh"
#include "support/kv_cache.hpp"
#include "support/vidkv_buffers.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// A step's read outputs, (heads, total, head_dim) rows of stride head_dim + pad, sentinel-filled,
/// on host and device.
template <class Eout>
struct read_rows {
  index_t heads, total, dim, pad;
  std::vector<Eout> keys, values;
  device_buffer<Eout> dkeys, dvalues;

  read_rows(index_t h, index_t t, index_t d, index_t p)
      : heads(h), total(t), dim(d), pad(p), keys(static_cast<std::size_t>(h * t * (d + p)), from_float<Eout>(-3.0f)),
        values(keys), dkeys(keys), dvalues(keys) {}

  template <class Space>
  vidkv_read_outputs<Eout, Space> views(Eout* k, Eout* v) const {
    const index_t row = dim + pad;
    return {view<Eout, 3, Space>(k, {heads, total, dim}, {total * row, row, 1}),
            view<Eout, 3, Space>(v, {heads, total, dim}, {total * row, row, 1})};
  }
  vidkv_read_outputs<Eout> host() { return views<host_space>(keys.data(), values.data()); }
  vidkv_read_outputs<Eout, device_space> device() const { return views<device_space>(dkeys.get(), dvalues.get()); }
};

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

/// Reads the whole cache on both backends into fp32 padded rows and compares them.
template <class E>
void check_read_to_float(const cache_buffers<E>& host, const device_cache<E>& dev, const std::string& what) {
  const kv_problem& s = host.storage;
  read_rows<float> rows(s.heads, host.state.packed + host.state.residual, s.head_dim, 3);
  const vidkv_read p{host.config};
  host_workspace ws(workspace_bytes(cpu<>{}, p, s));
  if (apply(cpu<>{}, p, vidkv_read_inputs<E>{host.in(), host.state, {}, {}}, rows.host(), ws.get()) != status::ok) {
    check(false, what + ": CPU read failed");
    return;
  }
  const status got = apply(tokred::cuda{test_stream()}, p,
                           vidkv_read_inputs<E, device_space>{dev.in(), host.state, {}, {}}, rows.device());
  check(got == status::ok, what + ": fp32 read status " + to_string(got));
  finish(what + " fp32 read");
  check(same_bits(rows.dkeys.download(), rows.keys) && same_bits(rows.dvalues.download(), rows.values),
        what + ": the fp32 read differs from the CPU backend's");
}

/// One stream on both backends, compared after every step.
template <class E>
void check_stream(const vidkv& c, index_t heads, index_t dim, index_t prefill, index_t steps, index_t capacity,
                  kv_layout how, const std::vector<std::int64_t>& salient, index_t salient_capacity) {
  const std::string label = std::string(element_name<E>()) + " keys " + std::to_string(c.key_bits) + " values " +
                            std::to_string(c.value_bits) + " salient " + str(static_cast<index_t>(salient.size()));
  kv_cache<E> k = make_cache<E>(heads, prefill + steps, dim, how), v = make_cache<E>(heads, prefill + steps, dim, how);
  fill(k.cache, 61);
  fill(v.cache, 62);
  cache_buffers<E> host(c, heads, capacity, dim, salient, salient_capacity);
  const device_cache<E> dev(host);
  const device_mirror<E, 3> dk(k.storage, k.cache), dv(v.storage, v.cache);
  const device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{test_stream()}, vidkv_append{c}, host.storage));
  for (index_t s = 0; s <= steps; ++s) {
    const index_t first = s == 0 ? 0 : prefill + s - 1, n = s == 0 ? prefill : 1;
    const std::string what = label + " step " + str(s);
    const vidkv_state before = host.state;
    const index_t total = before.packed + before.residual + n;
    const view<const E, 3, device_space> nk = token_range(view<const E, 3, device_space>(dk.v), first, n);
    const view<const E, 3, device_space> nv = token_range(view<const E, 3, device_space>(dv.v), first, n);
    read_rows<E> seen(heads, total, dim, 0);
    const status r = apply(tokred::cuda{test_stream()}, vidkv_read{c},
                           vidkv_read_inputs<E, device_space>{dev.in(), before, nk, nv}, seen.device());
    check(r == status::ok, what + ": read status " + to_string(r));
    const vidkv_read_outputs<E, device_space> seen_views = seen.device();
    const status a = apply(tokred::cuda{test_stream()}, vidkv_append{c},
                           vidkv_append_inputs<E, device_space>{nk, nv, before, seen_views.keys, seen_views.values},
                           dev.out(), workspace{ws.get(), ws.size()});
    check(a == status::ok, what + ": append status " + to_string(a));
    finish(what);
    const auto [want_k, want_v] = host.step(tokens_of(k.cache, first, n), tokens_of(v.cache, first, n));
    const bool read_ok = same_bits(seen.dkeys.download(), want_k) && same_bits(seen.dvalues.download(), want_v);
    check(read_ok, what + ": the read differs from the CPU backend's");
    const bool cache_ok = dev.download(host.state) == host;
    check(cache_ok, what + ": the device cache's bytes differ from the CPU cache's");
    if (!read_ok || !cache_ok) return;
  }
  check_read_to_float(host, dev, label);
}

/// A decode step's read and append captured into a CUDA graph and replayed (a step is
/// idempotent for the same state and tokens): the CPU backend's bytes.
void check_graph() {
  vidkv c;
  c.residual = 64;
  const index_t heads = 2, dim = 64;
  kv_cache<f16> k = make_cache<f16>(heads, 71, dim, kv_layout::contiguous), v = make_cache<f16>(heads, 71, dim, kv_layout::cells);
  fill(k.cache, 5);
  fill(v.cache, 6);
  cache_buffers<f16> host(c, heads, 128, dim);
  host.step(tokens_of(k.cache, 0, 70), tokens_of(v.cache, 0, 70));  // (64, 6)
  const device_cache<f16> dev(host);
  const device_mirror<f16, 3> dk(k.storage, k.cache), dv(v.storage, v.cache);
  const vidkv_state before = host.state;
  const view<const f16, 3, device_space> nk = token_range(view<const f16, 3, device_space>(dk.v), 70, 1);
  const view<const f16, 3, device_space> nv = token_range(view<const f16, 3, device_space>(dv.v), 70, 1);
  read_rows<f16> seen(heads, before.packed + before.residual + 1, dim, 0);
  const device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{test_stream()}, vidkv_append{c}, host.storage));
  const bool replayed = capture_and_replay([&] {
    const vidkv_read_outputs<f16, device_space> out = seen.device();
    return std::vector<status>{
        apply(tokred::cuda{test_stream()}, vidkv_read{c}, vidkv_read_inputs<f16, device_space>{dev.in(), before, nk, nv},
              out),
        apply(tokred::cuda{test_stream()}, vidkv_append{c},
              vidkv_append_inputs<f16, device_space>{nk, nv, before, out.keys, out.values}, dev.out(),
              workspace{ws.get(), ws.size()})};
  });
  if (!replayed) return;
  const auto [want_k, want_v] = host.step(tokens_of(k.cache, 70, 1), tokens_of(v.cache, 70, 1));
  check(same_bits(seen.dkeys.download(), want_k) && same_bits(seen.dvalues.download(), want_v),
        "graph: the read differs from the CPU backend's");
  check(dev.download(host.state) == host, "graph: the device cache's bytes differ from the CPU cache's");
}

/// Refused calls: the CPU backend's status, nothing written.
void check_bad_input() {
  vidkv c;
  c.residual = 64;
  const index_t heads = 2, dim = 64;
  kv_cache<float> k = make_cache<float>(heads, 300, dim, kv_layout::contiguous);
  fill(k.cache, 9);
  const cache_buffers<float> pristine(c, heads, 128, dim);
  cache_buffers<float> host = pristine;
  const device_cache<float> dev(host);
  const device_mirror<float, 3> dk(k.storage, k.cache);
  const view<const float, 3, device_space> all(dk.v);
  const device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{test_stream()}, vidkv_append{c}, host.storage));
  host_workspace hws(workspace_bytes(cpu<>{}, vidkv_append{c}, host.storage));
  const auto append = [&](const vidkv& config, index_t first, index_t n, vidkv_state state, const char* what) {
    const view<const float, 3> hk = tokens_of(k.cache, first, n);
    const status want =
        apply(cpu<>{}, vidkv_append{config}, vidkv_append_inputs<float>{hk, hk, state, {}, {}}, host.out(), hws.get());
    const view<const float, 3, device_space> nk = token_range(all, first, n);
    const status got = apply(tokred::cuda{test_stream()}, vidkv_append{config},
                             vidkv_append_inputs<float, device_space>{nk, nk, state, {}, {}}, dev.out(),
                             workspace{ws.get(), ws.size()});
    check(want != status::ok && got == want,
          std::string("bad append (") + what + "): " + to_string(got) + ", the CPU backend " + to_string(want));
  };
  append(c, 0, 0, {}, "no tokens");
  append(c, 0, 200, {}, "a prefill past the capacity");
  append(c, 0, 10, {32, 70}, "a residual past R");
  append(c, 0, 10, {30, 0}, "packed not a multiple of G");
  vidkv bad = c;
  bad.residual = 48;
  append(bad, 0, 10, {}, "R not a multiple of G");
  bad = c;
  bad.value_bits = 3.0;
  append(bad, 0, 10, {}, "3-bit values");
  const view<const float, 3, device_space> prefill = token_range(all, 0, 64);
  const status short_ws = apply(tokred::cuda{test_stream()}, vidkv_append{c},
                                vidkv_append_inputs<float, device_space>{prefill, prefill, {}, {}, {}}, dev.out(),
                                workspace{ws.get(), ws.size() - 1});
  check(ws.size() > 0 && short_ws == status::workspace_too_small,
        std::string("bad append (a workspace one byte short): ") + to_string(short_ws));
  // A workspace over the tokens a prefill quantizes (addresses only: nothing is written).
  const status scratch_over_tokens =
      apply(tokred::cuda{test_stream()}, vidkv_append{c}, vidkv_append_inputs<float, device_space>{prefill, prefill, {}, {}, {}},
            dev.out(), workspace{const_cast<float*>(prefill.data_handle()), ws.size()});
  check(scratch_over_tokens == status::aliasing,
        std::string("bad append (a workspace over the tokens): ") + to_string(scratch_over_tokens));
  // A flush without the seen tokens.
  append(c, 70, 1, {64, 63}, "a flush without the seen tokens");
  read_rows<float> rows(heads, 10, dim, 0);
  const status empty = apply(tokred::cuda{test_stream()}, vidkv_read{c},
                             vidkv_read_inputs<float, device_space>{dev.in(), {}, {}, {}}, rows.device());
  check(empty == status::empty_input, std::string("bad read (nothing held): ") + to_string(empty));
  const status outside = apply(tokred::cuda{test_stream()}, vidkv_read{c},
                               vidkv_read_inputs<float, device_space>{dev.in(), {256, 0}, {}, {}}, rows.device());
  check(outside == status::shape_mismatch, std::string("bad read (a state past the capacity): ") + to_string(outside));
  const vidkv_cache<float, device_space> cache = dev.out();
  const view<float, 3, device_space> resident(cache.key_residual.data_handle(), {heads, 10, dim});
  const status aliased = apply(tokred::cuda{test_stream()}, vidkv_read{c},
                               vidkv_read_inputs<float, device_space>{dev.in(), {0, 10}, {}, {}},
                               vidkv_read_outputs<float, device_space>{resident, rows.device().values});
  check(aliased == status::aliasing, std::string("bad read (output in the cache): ") + to_string(aliased));
  finish("bad input");
  check(dev.download(pristine.state) == pristine && host == pristine, "bad input: a cache was written");
  const std::vector<float> untouched = rows.dvalues.download();
  check(std::all_of(untouched.begin(), untouched.end(), [](float x) { return x == -3.0f; }),
        "bad input: a refused read wrote its output");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  for_each_vidkv_stream([](auto element, const vidkv& c, index_t heads, index_t dim, index_t prefill, index_t steps,
                           index_t capacity, kv_layout how, const std::vector<std::int64_t>& salient,
                           index_t salient_capacity) {
    using E = typename decltype(element)::type;
    check_stream<E>(c, heads, dim, prefill, steps, capacity, how, salient, salient_capacity);
  });
  check_graph();
  check_bad_input();
  return summary();
}
