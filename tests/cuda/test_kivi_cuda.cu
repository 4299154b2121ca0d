// tests/cuda/test_kivi_cuda.cu — the CUDA backends of kivi_append and kivi_read against the CPU
// backend.
//
// Checked, on fp32/fp16/bf16 caches whose new tokens come in the cells, strided and reversed
// layouts of tests/support/kv_cache.hpp, with and without round_each_op:
//   append       streams of a prefill then single decode steps past key flushes, odd chunks
//                (an empty one among them) and a fill to the last token the cache holds: after
//                every append, every byte of the device cache — packed keys and values, both
//                residuals, the sentinels of what is not yet written — equals the CPU cache's
//   read         after every append, keys and values to the cache's type and to fp32 in padded
//                rows, bit for bit the CPU backend's, padding untouched
//   scores       logits from the device cache (kivi_key_scores, packed_key_scores) within 1e-4
//                of the largest of the CPU backend's
//   bad input    the CPU backend's statuses, nothing launched, nothing written
// plus a CUDA-graph capture and replay of a decode step's append and read. The same per-thread
// bodies run on the host in tests/cpu/test_kivi.cpp ("KIVI's CUDA units"). Exits 77 (CTest's
// "skipped") when no CUDA device is present; otherwise prints one line per failure (the first
// 60) and "N passed, M failed".
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "support/kivi_buffers.hpp"
#include "support/kv_cache.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// A KIVI cache on the device, uploaded from (and downloaded into) host kivi_buffers.
template <class E>
struct device_kivi {
  const kivi_buffers<E>& layout;
  device_buffer<std::uint32_t> key_codes, value_codes;
  device_buffer<E> key_scale, key_zero, key_residual, value_scale, value_zero, value_residual;

  explicit device_kivi(const kivi_buffers<E>& host)
      : layout(host), key_codes(host.key_codes), value_codes(host.value_codes), key_scale(host.key_scale),
        key_zero(host.key_zero), key_residual(host.key_residual), value_scale(host.value_scale),
        value_zero(host.value_zero), value_residual(host.value_residual) {}

  kivi_cache<E, device_space> out() const {
    return layout.template views<device_space>(key_codes.get(), value_codes.get(), key_scale.get(), key_zero.get(),
                                               key_residual.get(), value_scale.get(), value_zero.get(),
                                               value_residual.get());
  }
  kivi_cache<const E, device_space> in() const { return read_only(out()); }

  /// The device cache's bytes, in host buffers shaped as `layout`'s.
  kivi_buffers<E> download() const {
    kivi_buffers<E> h = layout;
    h.key_codes = key_codes.download();
    h.value_codes = value_codes.download();
    h.key_scale = key_scale.download();
    h.key_zero = key_zero.download();
    h.key_residual = key_residual.download();
    h.value_scale = value_scale.download();
    h.value_zero = value_zero.download();
    h.value_residual = value_residual.download();
    return h;
  }
};

/// Padded (heads, tokens, dim) rows of stride dim + 3 filled with a sentinel, on host and device.
template <class Eout>
struct read_rows {
  index_t heads, tokens, dim;
  std::vector<Eout> keys, values;  // host
  device_buffer<Eout> dkeys, dvalues;

  read_rows(index_t h, index_t t, index_t d)
      : heads(h), tokens(t), dim(d), keys(static_cast<std::size_t>(h * t * (d + 3)), from_float<Eout>(-9.0f)),
        values(keys), dkeys(keys), dvalues(keys) {}

  template <class Space>
  kivi_read_outputs<Eout, Space> views(Eout* k, Eout* v) const {
    return {view<Eout, 3, Space>(k, {heads, tokens, dim}, {tokens * (dim + 3), dim + 3, 1}),
            view<Eout, 3, Space>(v, {heads, tokens, dim}, {tokens * (dim + 3), dim + 3, 1})};
  }
  kivi_read_outputs<Eout> host() { return views<host_space>(keys.data(), values.data()); }
  kivi_read_outputs<Eout, device_space> device() const { return views<device_space>(dkeys.get(), dvalues.get()); }
};

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// Reads `tokens` on both backends into `Eout` padded rows and compares them bit for bit.
template <class Eout, class E>
void check_read(const kivi_buffers<E>& host, const device_kivi<E>& dev, index_t tokens, const std::string& what) {
  read_rows<Eout> rows(host.storage.heads, tokens, host.storage.head_dim);
  const kivi_read p{host.config};
  if (apply(cpu<>{}, p, kivi_read_inputs<E>{host.in(), tokens}, rows.host()) != status::ok) {
    check(false, what + ": CPU read failed");
    return;
  }
  const status s =
      apply(tokred::cuda{test_stream()}, p, kivi_read_inputs<E, device_space>{dev.in(), tokens}, rows.device());
  check(s == status::ok, what + ": read status " + to_string(s));
  finish(what + " read");
  check(same_bits(rows.dkeys.download(), rows.keys), what + ": keys read (" + element_name<Eout>() + ") differ");
  check(same_bits(rows.dvalues.download(), rows.values), what + ": values read (" + element_name<Eout>() + ") differ");
}

/// Logits of 2 query heads per kv head from both caches: within 1e-4 of the largest.
template <class E>
void check_scores(const kivi_buffers<E>& host, const device_kivi<E>& dev, index_t tokens, const std::string& what) {
  const index_t q_heads = 2 * host.storage.heads, dim = host.storage.head_dim;
  std::vector<E> queries(static_cast<std::size_t>(q_heads * dim));
  for (std::size_t i = 0; i < queries.size(); ++i)
    queries[i] = from_float<E>(static_cast<float>(static_cast<int>(i * 37 % 17) - 8) / 8.0f);
  const device_buffer<E> dq(queries);
  std::vector<float> want(static_cast<std::size_t>(q_heads * tokens), -1.0f);
  const device_buffer<float> dgot(want);
  const packed_key_scores p{kivi_key_format(host.config)};
  const auto in = kivi_key_scores(host.config, host.in(), view<const E, 2>(queries.data(), {q_heads, dim}), tokens);
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, detail::packed_score_problem(p, in)));
  if (apply(cpu<>{}, p, in, packed_score_outputs<>{view<float, 2>(want.data(), {q_heads, tokens})},
            workspace{ws.data(), ws.size()}) != status::ok) {
    check(false, what + ": CPU scores failed");
    return;
  }
  const auto din =
      kivi_key_scores(host.config, dev.in(), view<const E, 2, device_space>(dq.get(), {q_heads, dim}), tokens);
  const status s = apply(tokred::cuda{test_stream()}, p, din,
                         packed_score_outputs<device_space>{view<float, 2, device_space>(dgot.get(), {q_heads, tokens})});
  check(s == status::ok, what + ": scores status " + to_string(s));
  finish(what + " scores");
  const std::vector<float> got = dgot.download();
  double largest = 0.0, worst = 0.0;
  for (float v : want) largest = std::max(largest, std::fabs(static_cast<double>(v)));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    worst = std::max(worst, e == e ? e : 1e30);
  }
  check(worst <= 1e-4 * std::max(largest, 1.0), what + ": logits off by " + std::to_string(worst));
}

/// Appends `all` (keys; values from values_for) in `chunks` on both backends and compares the
/// caches after every append: every byte, the reads, the logits.
template <class E>
void check_stream(const kivi& k, const kv_cache<E>& all, const std::vector<index_t>& chunks, index_t capacity,
                  const std::string& label) {
  const index_t heads = all.cache.extent(0), tokens = all.cache.extent(1), dim = all.cache.extent(2);
  kivi_buffers<E> host(k, heads, capacity, dim);
  const device_kivi<E> dev(host);
  const std::vector<E> values_storage = values_for(all.cache);
  const view<const E, 3> values(values_storage.data(), {heads, tokens, dim});
  const device_mirror<E, 3> dkeys(all.storage, all.cache);
  const device_buffer<E> dvalues(values_storage);
  const view<const E, 3, device_space> dvalues_view(dvalues.get(), {heads, tokens, dim});
  index_t held = 0;
  for (index_t n : chunks) {
    const std::string what = label + " " + element_name<E>() + (k.round_each_op ? " each-op" : "") + " after " +
                             str(held) + "+" + str(n);
    if (host.append(tokens_of(all.cache, held, n), token_range(values, held, n), held) != status::ok) {
      check(false, what + ": CPU append failed");
      return;
    }
    const kivi_append_inputs<E, device_space> in{token_range(view<const E, 3, device_space>(dkeys.v), held, n),
                                                 token_range(dvalues_view, held, n), held};
    const status s = apply(tokred::cuda{test_stream()}, kivi_append{k}, in, dev.out());
    check(s == status::ok, what + ": append status " + to_string(s));
    finish(what + " append");
    held += n;
    check(dev.download().same_bytes(host), what + ": the device cache's bytes differ from the CPU cache's");
    if (held == 0) continue;
    check_read<E>(host, dev, held, what);
    check_read<float>(host, dev, held, what);
    check_scores(host, dev, held, what);
  }
}

void check_streams() {
  for (bool each_op : {false, true})
    for_each_kivi_stream(each_op, [](const kivi& k, const auto& keys, const std::vector<index_t>& chunks,
                                     index_t capacity, const std::string& label) {
      check_stream(k, keys, chunks, capacity, label);
    });
}

/// A decode step's append and read captured into a CUDA graph: replayed twice (an append is
/// idempotent for the same tokens_before), the same bytes as the CPU backend's step.
void check_graph() {
  kivi k;
  k.residual = 32;
  kv_cache<f16> all = make_cache<f16>(2, 64, 64, kv_layout::contiguous);
  fill(all.cache, 7);
  kivi_buffers<f16> host(k, 2, 64, 64);
  const device_kivi<f16> dev(host);
  const device_mirror<f16, 3> dkeys(all.storage, all.cache);
  const view<const f16, 3, device_space> keys(dkeys.v);
  // 31 tokens on both, then token 31 (the step that flushes the first key block) captured.
  if (host.append(tokens_of(all.cache, 0, 31), tokens_of(all.cache, 0, 31), 0) != status::ok ||
      host.append(tokens_of(all.cache, 31, 1), tokens_of(all.cache, 31, 1), 31) != status::ok) {
    check(false, "graph: CPU append failed");
    return;
  }
  check(apply(tokred::cuda{test_stream()}, kivi_append{k},
              kivi_append_inputs<f16, device_space>{token_range(keys, 0, 31), token_range(keys, 0, 31), 0},
              dev.out()) == status::ok,
        "graph: prefill");
  finish("graph prefill");
  read_rows<f16> rows(2, 32, 64);
  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{
        apply(tokred::cuda{test_stream()}, kivi_append{k},
              kivi_append_inputs<f16, device_space>{token_range(keys, 31, 1), token_range(keys, 31, 1), 31}, dev.out()),
        apply(tokred::cuda{test_stream()}, kivi_read{k}, kivi_read_inputs<f16, device_space>{dev.in(), 32},
              rows.device())};
  });
  if (!replayed) return;
  check(dev.download().same_bytes(host), "graph: the device cache differs from the CPU cache");
  check(apply(cpu<>{}, kivi_read{k}, kivi_read_inputs<f16>{host.in(), 32}, rows.host()) == status::ok, "graph: CPU read");
  check(same_bits(rows.dkeys.download(), rows.keys) && same_bits(rows.dvalues.download(), rows.values),
        "graph: the replayed read differs from the CPU read");
}

/// Bad input: the CPU backend's status on each, and the device cache and outputs untouched.
void check_bad_input() {
  kivi k;
  k.residual = 32;
  kv_cache<float> all = make_cache<float>(2, 96, 64, kv_layout::contiguous);
  fill(all.cache, 3);
  const kivi_buffers<float> pristine(k, 2, 64, 64);
  kivi_buffers<float> host = pristine;
  const device_kivi<float> dev(host);
  const device_mirror<float, 3> dkeys(all.storage, all.cache);
  const view<const float, 3, device_space> keys(dkeys.v);
  const auto both = [&](const kivi_append& p, const view<const float, 3, device_space>& dk,
                        const view<const float, 3>& hk, index_t before, const char* what) {
    const status want = apply(cpu<>{}, p, kivi_append_inputs<float>{hk, hk, before}, host.out());
    const status got = apply(tokred::cuda{test_stream()}, p, kivi_append_inputs<float, device_space>{dk, dk, before},
                             dev.out());
    check(want != status::ok && got == want, std::string("bad append (") + what + "): " + to_string(got) +
                                                 ", the CPU backend " + to_string(want));
  };
  const view<const float, 3> hk = tokens_of(all.cache, 0, 10);
  const view<const float, 3, device_space> dk = token_range(keys, 0, 10);
  both(kivi_append{k}, token_range(keys, 0, 96), tokens_of(all.cache, 0, 96), 0, "past the capacity");
  both(kivi_append{k}, dk, hk, 90, "tokens_before past the capacity");
  both(kivi_append{k}, dk, hk, -1, "negative tokens_before");
  kivi odd = k;
  odd.residual = 48;
  both(kivi_append{odd}, dk, hk, 0, "residual not a multiple of the group");
  const kivi_cache<float, device_space> c = dev.out();
  const view<const float, 3, device_space> resident(c.key_residual.data_handle(), {2, 10, 64});
  const status aliased = apply(tokred::cuda{test_stream()}, kivi_append{k},
                               kivi_append_inputs<float, device_space>{dk, resident, 0}, c);
  check(aliased == status::aliasing, std::string("bad append (values in the cache): ") + to_string(aliased));
  read_rows<float> rows(2, 10, 64);
  const status empty = apply(tokred::cuda{test_stream()}, kivi_read{k},
                             kivi_read_inputs<float, device_space>{dev.in(), 0}, rows.device());
  check(empty == status::empty_input, std::string("bad read (no tokens): ") + to_string(empty));
  const status beyond = apply(tokred::cuda{test_stream()}, kivi_read{k},
                              kivi_read_inputs<float, device_space>{dev.in(), 96}, rows.device());
  check(beyond == status::shape_mismatch, std::string("bad read (past the capacity): ") + to_string(beyond));
  finish("bad input");
  check(dev.download().same_bytes(pristine) && host.same_bytes(pristine), "bad input: a cache was written");
  const std::vector<float> untouched = rows.dkeys.download();
  check(std::all_of(untouched.begin(), untouched.end(), [](float v) { return v == -9.0f; }),
        "bad input: a refused read wrote its output");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  check_streams();
  check_graph();
  check_bad_input();
  return summary();
}
