// kivi_cache.cpp — a KIVI 2-bit KV cache through a prefill and a decode loop: append, attention
// logits straight from the packed keys, reading the cache back, and what quantization costs in
// attention (KL divergence against the full-precision keys). The docs quote the regions between
// the example markers verbatim; the checks around them keep the comments honest.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>

#include "scene_checks.hpp"

int main() {
  using scene::check;

  // The model side: 2 kv heads of head_dim 64, 4 query heads (grouped-query attention), a
  // 100-token prompt and 40 decode steps. Keys have a few outlier channels, as real keys do.
  const tokred::index_t heads = 2, q_heads = 4, head_dim = 64, prompt = 100, steps = 40;
  const tokred::index_t total = prompt + steps;
  std::vector<float> keys(heads * total * head_dim), values(keys.size()), query(q_heads * head_dim);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const float outlier = i % head_dim < 4 ? 6.0f : 1.0f;
    keys[i] = outlier * std::sin(0.61f * static_cast<float>(i)) + (i % head_dim == 7 ? 3.0f : 0.0f);
    values[i] = std::cos(0.37f * static_cast<float>(i));
  }
  for (std::size_t i = 0; i < query.size(); ++i) query[i] = 0.3f * std::sin(1.3f * static_cast<float>(i));
  const auto all_keys = tokred::make_view(keys.data(), heads, total, head_dim);  // (heads, T, head_dim)
  const auto all_values = tokred::make_view(values.data(), heads, total, head_dim);

  // example-begin kivi-storage
  // KIVI's paper setting: 2-bit keys per channel and values per token, groups of 32, the last
  // 128 tokens in full precision. The caller owns the storage, sized for a capacity C.
  const tokred::kivi config{/*key_bits=*/2, /*value_bits=*/2, /*group=*/32, /*residual=*/128};
  const tokred::index_t capacity = 128;  // packed tokens; holds up to kivi_max_tokens = 255
  const tokred::kv_problem storage{heads, capacity, head_dim};
  const tokred::uniform_format kf = tokred::kivi_key_format(config), vf = tokred::kivi_value_format(config);
  const tokred::kv_extents kc = tokred::uniform_code_extents(kf, storage);   // (2, 8, 64) words
  const tokred::kv_extents kp = tokred::uniform_param_extents(kf, storage);  // (2, 4, 64)
  const tokred::kv_extents vc = tokred::uniform_code_extents(vf, storage);   // (2, 128, 4) words
  const tokred::kv_extents vp = tokred::uniform_param_extents(vf, storage);  // (2, 128, 2)
  std::vector<std::uint32_t> key_codes(kc.heads * kc.rows * kc.cols), value_codes(vc.heads * vc.rows * vc.cols);
  std::vector<float> key_scale(kp.heads * kp.rows * kp.cols), key_zero(key_scale.size());
  std::vector<float> value_scale(vp.heads * vp.rows * vp.cols), value_zero(value_scale.size());
  std::vector<float> key_residual(heads * config.residual * head_dim), value_residual(key_residual.size());

  const tokred::kivi_cache<float> cache{
      {tokred::make_view(key_codes.data(), kc.heads, kc.rows, kc.cols),
       tokred::make_view(key_scale.data(), kp.heads, kp.rows, kp.cols),
       tokred::make_view(key_zero.data(), kp.heads, kp.rows, kp.cols)},
      tokred::make_view(key_residual.data(), heads, config.residual, head_dim),
      {tokred::make_view(value_codes.data(), vc.heads, vc.rows, vc.cols),
       tokred::make_view(value_scale.data(), vp.heads, vp.rows, vp.cols),
       tokred::make_view(value_zero.data(), vp.heads, vp.rows, vp.cols)},
      tokred::make_view(value_residual.data(), heads, config.residual, head_dim)};
  // example-end kivi-storage
  check(kc.rows == 8 && vc.cols == 4 && tokred::kivi_max_tokens(config, capacity) == 255, "storage extents");

  // example-begin kivi-decode
  // Prefill appends the prompt to an empty cache; each decode step appends one token. The cache's
  // state is the token count T, which the engine tracks anyway.
  tokred::status s = tokred::apply(tokred::cpu{}, tokred::kivi_append{config},
                                   tokred::kivi_append_inputs<float>{tokred::token_range(all_keys, 0, prompt),
                                                                     tokred::token_range(all_values, 0, prompt),
                                                                     /*tokens_before=*/0},
                                   cache);
  // T = 100 < R: every key and value is still in the residual (kivi_counts_at says where).
  const tokred::packed_key_scores scorer{kf};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, scorer, storage));
  std::vector<float> logits(q_heads * total);
  const tokred::kivi_cache<const float> held = tokred::read_only(cache);
  for (tokred::index_t t = prompt; t < total && s == tokred::status::ok; ++t) {
    s = tokred::apply(tokred::cpu{}, tokred::kivi_append{config},
                      tokred::kivi_append_inputs<float>{tokred::token_range(all_keys, t, 1),
                                                        tokred::token_range(all_values, t, 1), t},
                      cache);
    // Logits of this step's queries against all t + 1 keys: packed groups straight from their
    // 2-bit codes, then the full-precision residual. Scale by 1/sqrt(head_dim) before softmax.
    const auto inputs = tokred::kivi_key_scores(config, held, tokred::view<const float, 2>(query.data(), {q_heads, head_dim}), t + 1);
    if (s == tokred::status::ok)
      s = tokred::apply(tokred::cpu{}, scorer, inputs,
                        tokred::packed_score_outputs<>{tokred::make_view(logits.data(), q_heads, t + 1)},
                        tokred::workspace{scratch.data(), scratch.size()});
  }
  // At T = 140: keys 128 packed (the first block of R flushed at T = 128) + 12 in the residual;
  // values 12 packed (the oldest ones, one at a time) + the last 128.
  // example-end kivi-decode
  const tokred::kivi_counts at_end = tokred::kivi_counts_at(config, total);
  check(s == tokred::status::ok, "prefill and decode");
  check(at_end.keys_packed == 128 && at_end.keys_residual == 12 && at_end.values_packed == 12 &&
            at_end.values_residual == 128,
        "counts after 140 tokens");

  // example-begin kivi-fidelity
  // Read the cache back as attention sees it, and measure what 2 bits cost: element error and
  // the KL divergence of each query's attention over the quantized keys (kv_error.hpp).
  std::vector<float> seen_keys(heads * total * head_dim), seen_values(seen_keys.size());
  s = tokred::apply(tokred::cpu{}, tokred::kivi_read{config}, tokred::kivi_read_inputs<float>{held, total},
                    tokred::kivi_read_outputs<float>{tokred::make_view(seen_keys.data(), heads, total, head_dim),
                                                     tokred::make_view(seen_values.data(), heads, total, head_dim)});
  tokred::kv_error_stats key_error{};
  tokred::attention_kl_stats kl{};
  if (s == tokred::status::ok)
    s = tokred::kv_error(all_keys, tokred::make_view(seen_keys.data(), heads, total, head_dim), key_error);
  if (s == tokred::status::ok)
    s = tokred::attention_kl(tokred::make_view(query.data(), q_heads, 1, head_dim), all_keys,
                             tokred::make_view(seen_keys.data(), heads, total, head_dim), kl);
  std::printf("keys: mse %.4f, max |error| %.3f; attention KL: mean %.2e, max %.2e nats\n", key_error.mse,
              key_error.max_abs, kl.mean, kl.max);
  // example-end kivi-fidelity
  check(s == tokred::status::ok, "read back and measure");
  check(key_error.mse > 0.0 && kl.mean >= 0.0 && kl.max < 0.1, "2-bit keys move attention, but not far");

  // The last step's logits equal the query's dot products with the keys read back.
  check(scene::worst_logit_error(query, seen_keys, logits, q_heads, heads, total, head_dim) < 1e-3,
        "logits from packed keys = dot products with the dequantized keys");

  return scene::finish();
}
