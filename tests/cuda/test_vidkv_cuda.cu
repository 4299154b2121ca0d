// tests/cuda/test_vidkv_cuda.cu — the CUDA backends of vidkv_key_quantize, vidkv_key_dequantize
// and vidkv_key_scores against the CPU backend.
//
// Checked, for every key setting (mixed 1, 1.01, 1.25, 1.5, 1.75, 2 bits; uniform 1.58, 2, 4)
// on fp32/fp16/bf16 chunks in the cells, strided and reversed layouts of
// tests/support/kv_cache.hpp, with and without round_each_op, odd and even easy counts, a NaN
// and an infinite channel, ranges that tie only once rounded to fp16, and chunks of several
// hundred (head, token) rows (several extremes blocks):
//   quantize     the channel list, codes, scales and zero points, byte for byte the CPU
//                backend's, the sentinels of what is not written included
//   dequantize   keys to the chunk's type and to fp32, with and without vidkv_dequant, into
//                padded rows: bit for bit the CPU backend's, padding untouched
//   scores       every key setting, both dequantization modes, grouped-query heads, a residual,
//                two key tiles, residual only: within 1e-4 of the CPU backend's largest logit
//   bad input    the CPU backend's statuses, nothing launched, nothing written; more easy
//                channels than vidkv_max_easy, or a head_dim above max_head_dim, is
//                invalid_parameter on CUDA
// plus a CUDA-graph capture and replay of a quantize and a dequantize. The same per-thread bodies
// run on the host in tests/cpu/test_vidkv.cpp ("VidKV's CUDA key units"). Exits 77 (CTest's
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
#include "cuda/vidkv_device_cache.cuh"
#include "support/kv_cache.hpp"
#include "support/vidkv_buffers.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// The key settings every chunk runs (key_settings, groups of 32), with or without round_each_op.
std::vector<vidkv_keys> settings_with(bool each_op) {
  std::vector<vidkv_keys> out = key_settings(32);
  for (vidkv_keys& k : out) k.round_each_op = each_op;
  return out;
}

/// Dequantizes `host` packed keys on both backends into padded rows (stride D + 3) of Eout.
template <class Eout, class E>
void check_dequantize(const vidkv_keys& k, bool vidkv_dequant, const key_buffers<E>& host, const device_keys<E>& dev,
                      const kv_problem& p, const std::string& what) {
  const index_t row = p.head_dim + 3;
  const std::vector<Eout> sentinel(static_cast<std::size_t>(p.heads * p.tokens * row), from_float<Eout>(-9.0f));
  std::vector<Eout> want = sentinel;
  const view<Eout, 3> host_out(want.data(), {p.heads, p.tokens, p.head_dim}, {p.tokens * row, row, 1});
  const vidkv_key_dequantize policy{k, vidkv_dequant};
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, policy, p));
  if (apply(cpu<>{}, policy, host.in(), kv_outputs<Eout>{host_out}, workspace{ws.data(), ws.size()}) != status::ok) {
    check(false, what + ": CPU dequantize failed");
    return;
  }
  device_buffer<Eout> storage(sentinel);
  const view<Eout, 3, device_space> out(storage.get(), {p.heads, p.tokens, p.head_dim}, {p.tokens * row, row, 1});
  const status s = apply(tokred::cuda{test_stream()}, policy, dev.in(), kv_outputs<Eout, device_space>{out});
  check(s == status::ok, what + ": dequantize status " + to_string(s));
  finish(what + " dequantize");
  check(same_bits(storage.download(), want), what + (vidkv_dequant ? " vidkv_dequant" : "") + ": keys (" +
                                                 element_name<Eout>() + ") differ from the CPU backend's");
}

/// Every key setting on `host`: quantize on both backends, compare, then dequantize.
template <class E>
void check_chunk(const kv_cache<E>& host, bool each_op, const std::string& label) {
  const kv_problem p{host.cache.extent(0), host.cache.extent(1), host.cache.extent(2)};
  const device_mirror<E, 3> chunk(host.storage, host.cache);
  for (const vidkv_keys& k : settings_with(each_op)) {
    if (can_implement(vidkv_key_quantize{k}, p) != status::ok) continue;
    const std::string what = label + " " + element_name<E>() + " " + describe(k);
    key_buffers<E> want(k, p), got(k, p);
    std::vector<std::byte> ws(workspace_bytes(cpu<>{}, vidkv_key_quantize{k}, p));
    if (apply(cpu<>{}, vidkv_key_quantize{k}, kv_inputs<E>{view<const E, 3>(host.cache)}, want.out(),
              workspace{ws.data(), ws.size()}) != status::ok) {
      check(false, what + ": CPU quantize failed");
      continue;
    }
    const device_keys<E> dev(got);
    const tokred::cuda exec{test_stream()};
    device_buffer<std::byte> dws(workspace_bytes(exec, vidkv_key_quantize{k}, p));
    const status s = apply(exec, vidkv_key_quantize{k}, kv_inputs<E, device_space>{chunk.v}, dev.out(),
                           workspace{dws.get(), dws.size()});
    check(s == status::ok, what + ": quantize status " + to_string(s));
    finish(what + " quantize");
    check(dev.download() == want, what + ": packed keys differ from the CPU backend's");
    const device_keys<E> packed(want);
    for (const bool vidkv_dequant : {false, true}) {
      check_dequantize<E>(k, vidkv_dequant, want, packed, p, what);
      check_dequantize<float>(k, vidkv_dequant, want, packed, p, what);
    }
  }
}

void check_chunks() {
  kv_cache<float> a = make_cache<float>(2, 96, 64, kv_layout::cells);
  fill(a.cache, 51);
  a.cache(0, 5, 3) = NAN;  // a NaN range ranks last, though the channel's values span the widest
  a.cache(1, 50, 3) = 1000.0f;
  a.cache(1, 40, 10) = INFINITY;  // an infinite one first
  check_chunk(a, false, "cells");
  kv_cache<f16> b = make_cache<f16>(1, 64, 45, kv_layout::strided);  // odd easy counts
  fill(b.cache, 52);
  check_chunk(b, true, "strided");
  kv_cache<bf16> c = make_cache<bf16>(2, 64, 128, kv_layout::reversed);
  fill(c.cache, 53);
  check_chunk(c, false, "reversed");
  kv_cache<f16> d = make_cache<f16>(1, 64, 64, kv_layout::contiguous);  // ties only in fp16
  for (index_t t = 0; t < 64; ++t)
    for (index_t ch = 0; ch < 64; ++ch) {
      const float top = ch < 31 ? 4000.0f : ch == 31 ? 0.5f : 1.0f;
      const float bottom = ch < 31 ? -4000.0f : ch <= 32 ? -2048.0f : -1.0f;
      d.cache(0, t, ch) = from_float<f16>(t % 2 ? top : bottom);
    }
  check_chunk(d, true, "fp16 ties");
  kv_cache<float> e = make_cache<float>(4, 512, 128, kv_layout::contiguous);  // 2048 rows: 32 extremes blocks
  fill(e.cache, 54);
  check_chunk(e, false, "many rows");
}

/// Logits of `q_heads` query heads over P packed keys (quantized by the CPU backend) and R
/// residual keys, on both backends: within 1e-4 of the largest (the sums' order differs).
template <class E>
void check_scores(const vidkv_keys& k, bool vidkv_dequant, index_t q_heads, index_t kv_heads, index_t packed,
                  index_t residual, index_t dim) {
  const std::string what = "scores " + describe(k) + (vidkv_dequant ? " vidkv_dequant " : " ") + element_name<E>() +
                           " P " + str(packed) + " R " + str(residual) + " Q " + str(q_heads) + "/" + str(kv_heads);
  const index_t tokens = packed + residual;
  kv_cache<E> keys = make_cache<E>(kv_heads, tokens, dim, kv_layout::contiguous);
  fill(keys.cache, static_cast<std::uint64_t>(packed * 13 + dim));
  const kv_problem prob{kv_heads, packed, dim};
  key_buffers<E> host(k, prob);
  if (packed > 0) {
    std::vector<std::byte> ws(workspace_bytes(cpu<>{}, vidkv_key_quantize{k}, prob));
    if (apply(cpu<>{}, vidkv_key_quantize{k}, kv_inputs<E>{tokens_of(keys.cache, 0, packed)}, host.out(),
              workspace{ws.data(), ws.size()}) != status::ok) {
      check(false, what + ": CPU quantize failed");
      return;
    }
  }
  std::vector<E> queries(static_cast<std::size_t>(q_heads * dim));
  for (std::size_t i = 0; i < queries.size(); ++i)
    queries[i] = from_float<E>(static_cast<float>(static_cast<int>(i * 37 % 17) - 8) / 8.0f);
  const vidkv_key_scores p{k, vidkv_dequant};
  const vidkv_score_inputs<E> in{view<const E, 2>(queries.data(), {q_heads, dim}), host.in(),
                                 tokens_of(keys.cache, packed, residual)};
  std::vector<float> want(static_cast<std::size_t>(q_heads * tokens), -1.0f);
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, prob));
  if (apply(cpu<>{}, p, in, packed_score_outputs<>{view<float, 2>(want.data(), {q_heads, tokens})},
            workspace{ws.data(), ws.size()}) != status::ok) {
    check(false, what + ": CPU scores failed");
    return;
  }
  const device_keys<E> dev(host);
  const device_buffer<E> dq(queries);
  const device_mirror<E, 3> dkeys(keys.storage, keys.cache);
  device_buffer<float> dscores(std::vector<float>(want.size(), -1.0f));
  const vidkv_score_inputs<E, device_space> din{
      view<const E, 2, device_space>(dq.get(), {q_heads, dim}), dev.in(),
      token_range(view<const E, 3, device_space>(dkeys.v), packed, residual)};
  const status s = apply(tokred::cuda{test_stream()}, p, din,
                         packed_score_outputs<device_space>{view<float, 2, device_space>(dscores.get(), {q_heads, tokens})});
  check(s == status::ok, what + ": status " + to_string(s));
  finish(what);
  const std::vector<float> got = dscores.download();
  double largest = 1.0, worst = 0.0;
  for (float v : want) largest = std::max(largest, std::fabs(static_cast<double>(v)));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    worst = std::max(worst, e == e ? e : 1e30);
  }
  check(worst <= 1e-4 * largest, what + ": logits off by " + std::to_string(worst));
}

void check_all_scores() {
  for (const vidkv_keys& k : settings_with(false))
    for (const bool vidkv_dequant : {false, true}) {
      check_scores<float>(k, vidkv_dequant, 4, 2, 64, 5, 64);
      check_scores<f16>(k, vidkv_dequant, 8, 1, 300 / 32 * 32, 0, 128);  // two key tiles
    }
  check_scores<bf16>({1.5, true, 32, false}, false, 6, 3, 32, 3, 48);
  check_scores<float>({1.5, true, 32, false}, false, 2, 1, 0, 9, 64);  // residual only
}

/// A quantize and a dequantize captured into a CUDA graph and replayed twice.
void check_graph() {
  const vidkv_keys k{1.5, true, 32, false};
  kv_cache<f16> host = make_cache<f16>(2, 64, 128, kv_layout::contiguous);
  fill(host.cache, 9);
  const kv_problem p{2, 64, 128};
  key_buffers<f16> want(k, p);
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, vidkv_key_quantize{k}, p));
  if (apply(cpu<>{}, vidkv_key_quantize{k}, kv_inputs<f16>{view<const f16, 3>(host.cache)}, want.out(),
            workspace{ws.data(), ws.size()}) != status::ok) {
    check(false, "graph: CPU quantize failed");
    return;
  }
  std::vector<f16> keys(static_cast<std::size_t>(2 * 64 * 128));
  std::vector<std::byte> dws_host(workspace_bytes(cpu<>{}, vidkv_key_dequantize{k}, p));
  if (apply(cpu<>{}, vidkv_key_dequantize{k}, want.in(), kv_outputs<f16>{view<f16, 3>(keys.data(), {2, 64, 128})},
            workspace{dws_host.data(), dws_host.size()}) != status::ok) {
    check(false, "graph: CPU dequantize failed");
    return;
  }
  const device_mirror<f16, 3> chunk(host.storage, host.cache);
  key_buffers<f16> sentinels(k, p);
  const device_keys<f16> dev(sentinels);
  const tokred::cuda exec{test_stream()};
  device_buffer<std::byte> dws(workspace_bytes(exec, vidkv_key_quantize{k}, p));
  device_buffer<f16> out(keys.size());
  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{
        apply(exec, vidkv_key_quantize{k}, kv_inputs<f16, device_space>{chunk.v}, dev.out(),
              workspace{dws.get(), dws.size()}),
        apply(exec, vidkv_key_dequantize{k}, dev.in(),
              kv_outputs<f16, device_space>{view<f16, 3, device_space>(out.get(), {2, 64, 128})})};
  });
  if (!replayed) return;
  check(dev.download() == want, "graph: the packed keys differ from the CPU backend's");
  check(same_bits(out.download(), keys), "graph: the keys differ from the CPU backend's");
}

/// Bad input: the CPU backend's status, nothing written.
void check_bad_input() {
  const kv_problem p{2, 64, 64};
  kv_cache<float> host = make_cache<float>(2, 64, 64, kv_layout::contiguous);
  fill(host.cache, 3);
  const device_mirror<float, 3> chunk(host.storage, host.cache);
  const tokred::cuda exec{test_stream()};
  const vidkv_keys k{1.5, true, 32, false};
  key_buffers<float> sentinels(k, p);
  const device_keys<float> dev(sentinels);
  device_buffer<std::byte> dws(workspace_bytes(exec, vidkv_key_quantize{k}, p) + 1);
  const auto quantize = [&](const vidkv_keys& keys, const view<const float, 3, device_space>& x, std::size_t bytes) {
    return apply(exec, vidkv_key_quantize{keys}, kv_inputs<float, device_space>{x}, dev.out(),
                 workspace{dws.get(), bytes});
  };
  const std::size_t bytes = workspace_bytes(exec, vidkv_key_quantize{k}, p);
  check(bytes > 0, "bad input: a ranked chunk needs workspace");
  const status small = quantize(k, chunk.v, bytes - 1);
  check(small == status::workspace_too_small, std::string("bad quantize (workspace): ") + to_string(small));
  const status group = quantize(vidkv_keys{1.5, true, 48, false}, chunk.v, bytes);
  check(group == status::invalid_parameter, std::string("bad quantize (group 48): ") + to_string(group));
  const status tokens = quantize(k, token_range(view<const float, 3, device_space>(chunk.v), 0, 40), bytes);
  check(tokens == status::invalid_parameter, std::string("bad quantize (40 tokens): ") + to_string(tokens));
  // Wider than the CUDA kernels take (within_device_limits): 257 easy channels, more than the
  // twiddle table; head_dim 6176, more than the ranking's shared memory holds.
  const auto refused = [&](const vidkv_keys& keys, index_t dim) {
    const kv_problem wide{1, 32, dim};
    kv_cache<float> w = make_cache<float>(1, 32, dim, kv_layout::contiguous);
    const device_mirror<float, 3> wide_chunk(w.storage, w.cache);
    key_buffers<float> wide_keys(keys, wide);
    const device_keys<float> wide_dev(wide_keys);
    device_buffer<std::byte> wide_ws(workspace_bytes(exec, vidkv_key_quantize{keys}, wide));
    const status s = apply(exec, vidkv_key_quantize{keys}, kv_inputs<float, device_space>{wide_chunk.v},
                           wide_dev.out(), workspace{wide_ws.get(), wide_ws.size()});
    check(s == status::invalid_parameter, "bad quantize (head_dim " + str(dim) + "): " + to_string(s));
    finish("bad input, wide keys");
    check(wide_dev.download() == wide_keys, "bad input: wide packed keys were written");
  };
  refused(vidkv_keys{1.0, true, 32, false}, 257);
  refused(vidkv_keys{2.0, false, 32, false}, 6176);
  device_buffer<float> out(std::vector<float>(static_cast<std::size_t>(2 * 64 * 64), -9.0f));
  const status dequantized = apply(exec, vidkv_key_dequantize{vidkv_keys{1.5, true, 32, false}}, dev.in(),
                                   kv_outputs<float, device_space>{view<float, 3, device_space>(out.get(), {2, 40, 64})});
  check(dequantized == status::invalid_parameter, std::string("bad dequantize (40 tokens): ") + to_string(dequantized));
  finish("bad input");
  check(dev.download() == sentinels, "bad input: packed keys were written");
  const std::vector<float> untouched = out.download();
  bool all = true;
  for (float v : untouched) all = all && v == -9.0f;
  check(all, "bad input: a refused dequantize wrote its output");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  check_chunks();
  check_all_scores();
  check_graph();
  check_bad_input();
  return summary();
}
