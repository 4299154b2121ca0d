// vidkv_cache.cpp — VidKV's 1.x-bit KV cache through a prefill and a decode loop: the storage,
// one `update` per step (read what attention sees, then append, which re-quantizes everything
// at a flush), and what 1, 1.5 and 2-bit keys cost in attention. The docs quote the regions
// between the example markers verbatim; the checks around them keep the comments honest.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/cpu/feature_scores.hpp>
#include <tokred/cpu/vidkv.hpp>
#include <tokred/cpu/vidkv_salient.hpp>
#include <tokred/cpu/vidkv_scores.hpp>
#include <tokred/tokred.hpp>

#include "scene_checks.hpp"

namespace {

std::size_t elements(const tokred::kv_extents& e) { return static_cast<std::size_t>(e.heads * e.rows * e.cols); }

template <class T>
tokred::view<T, 3> view_of(std::vector<T>& v, const tokred::kv_extents& e) {
  return tokred::make_view(v.data(), e.heads, e.rows, e.cols);
}

}  // namespace

int main() {
  using scene::check;

  // The model side: 2 kv heads of head_dim 64, 4 query heads, a 100-token prompt and 200 decode
  // steps. Keys have outlier channels (a large range), as real keys do; values do not.
  const tokred::index_t heads = 2, q_heads = 4, head_dim = 64, prompt = 100, steps = 200;
  const tokred::index_t total = prompt + steps;
  std::vector<float> keys(heads * total * head_dim), values(keys.size()), query(q_heads * head_dim);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::size_t c = i % head_dim;
    const float outlier = c % 9 == 2 ? 6.0f : 1.0f;
    keys[i] = outlier * std::sin(0.61f * static_cast<float>(i)) + (c == 7 ? 3.0f : 0.0f);
    values[i] = std::cos(0.37f * static_cast<float>(i));
  }
  for (std::size_t i = 0; i < query.size(); ++i) query[i] = 0.3f * std::sin(1.3f * static_cast<float>(i));
  const auto all_keys = tokred::make_view(keys.data(), heads, total, head_dim);  // (heads, T, head_dim)
  const auto all_values = tokred::make_view(values.data(), heads, total, head_dim);

  // example-begin vidkv-storage
  // VidKV's paper setting: keys at 1.5 bits (the 32 channels of largest range at 2 bits, the
  // other 32 through a DFT at 1 bit per spectral component), values at 1.58 bits (ternary),
  // groups of 32 tokens, a flush when the full-precision residual reaches 128 tokens. The caller
  // owns the storage, sized for a capacity C of packed tokens.
  const tokred::vidkv config;
  const tokred::index_t capacity = 256;
  const tokred::kv_problem storage{heads, capacity, head_dim};
  const tokred::vidkv_key_extents kx = tokred::vidkv_packed_key_extents(tokred::vidkv_keys_of(config), storage);
  const tokred::uniform_format vf = tokred::vidkv_value_format(config);  // {2, 32, tokens, ternary}
  const tokred::kv_extents vc = tokred::uniform_code_extents(vf, storage), vp = tokred::uniform_param_extents(vf, storage);
  std::vector<std::int64_t> channels(head_dim);
  std::vector<std::uint32_t> difficult_codes(elements(kx.difficult_codes));  // (2, 16, 32) words
  std::vector<std::uint32_t> spectral_codes(elements(kx.spectral_codes));    // (2, 8, 64): 2·32 components
  std::vector<std::uint32_t> value_codes(elements(vc));                      // (2, 16, 64)
  std::vector<float> difficult_scale(elements(kx.difficult_params)), difficult_zero(difficult_scale.size());
  std::vector<float> spectral_scale(elements(kx.spectral_params)), value_scale(elements(vp));
  std::vector<float> key_residual(heads * config.residual * head_dim), value_residual(key_residual.size());

  const tokred::vidkv_cache<float> cache{
      {tokred::make_view(channels.data(), head_dim),
       {view_of(difficult_codes, kx.difficult_codes), view_of(difficult_scale, kx.difficult_params),
        view_of(difficult_zero, kx.difficult_params)},
       {view_of(spectral_codes, kx.spectral_codes), view_of(spectral_scale, kx.spectral_params), {}}},
      tokred::make_view(key_residual.data(), heads, config.residual, head_dim),
      {view_of(value_codes, vc), view_of(value_scale, vp), {}},  // ternary: no zero point
      tokred::make_view(value_residual.data(), heads, config.residual, head_dim),
      {},   // no salient-token protection (see the last scene)
      {}};
  // example-end vidkv-storage
  check(kx.difficult_codes.cols == 32 && kx.spectral_codes.cols == 64 && kx.spectral_codes.rows == 8 &&
            vc.rows == 16 && vf.scheme == tokred::kv_scheme::ternary,
        "storage extents");

  // example-begin vidkv-decode
  // One VidKV `update` per call: vidkv_read gives the keys and values attention sees (the packed
  // tokens dequantized, the residual, the incoming tokens), then vidkv_append stores the incoming
  // tokens — and, at a flush, re-quantizes those very outputs, as VidKV re-quantizes what it
  // returned. The engine keeps the state {packed, residual} and the read's outputs, with room
  // for every token: after an append that packed nothing, the next read would be the same rows
  // plus the incoming tokens, so only those are copied in.
  tokred::vidkv_state state;
  std::vector<std::byte> scratch(std::max(tokred::workspace_bytes(tokred::cpu{}, tokred::vidkv_read{config}, storage),
                                          tokred::workspace_bytes(tokred::cpu{}, tokred::vidkv_append{config}, storage)));
  const tokred::workspace ws{scratch.data(), scratch.size()};
  std::vector<float> seen_keys(heads * total * head_dim), seen_values(seen_keys.size());
  const auto all_seen_keys = tokred::make_view(seen_keys.data(), heads, total, head_dim);  // head h at h·total rows
  const auto all_seen_values = tokred::make_view(seen_values.data(), heads, total, head_dim);
  tokred::status s = tokred::status::ok;
  bool packed_changed = true;  // nothing read yet
  tokred::index_t full_reads = 0;
  for (tokred::index_t t = 0; t < total && s == tokred::status::ok;) {
    const tokred::index_t n = t == 0 ? prompt : 1;  // the prompt, then one token per step
    const tokred::index_t held = state.packed + state.residual + n;
    const auto k = tokred::token_range(all_seen_keys, 0, held);  // (heads, held, head_dim)
    const auto v = tokred::token_range(all_seen_values, 0, held);
    const auto new_keys = tokred::token_range(all_keys, t, n), new_values = tokred::token_range(all_values, t, n);
    if (packed_changed) {
      s = tokred::apply(tokred::cpu{}, tokred::vidkv_read{config},
                        tokred::vidkv_read_inputs<float>{tokred::read_only(cache), state, new_keys, new_values},
                        tokred::vidkv_read_outputs<float>{k, v}, ws);
      ++full_reads;
    } else {
      for (tokred::index_t h = 0; h < heads; ++h) {
        std::copy_n(&new_keys(h, 0, 0), n * head_dim, &k(h, held - n, 0));
        std::copy_n(&new_values(h, 0, 0), n * head_dim, &v(h, held - n, 0));
      }
    }
    // ... attention of this step's queries over k and v ...
    if (s == tokred::status::ok)
      s = tokred::apply(tokred::cpu{}, tokred::vidkv_append{config},
                        tokred::vidkv_append_inputs<float>{new_keys, new_values, state, k, v}, cache, ws);
    const tokred::vidkv_state next = tokred::vidkv_after(config, state, n);
    packed_changed = next.packed != state.packed;
    state = next;
    t += n;
  }
  // The prefill packed 96 tokens and kept 4; the residual reached 127 after 123 steps, and the
  // 124th re-quantized all 224 tokens; the last 76 steps are in the residual. Three full reads:
  // the prefill's, the first step's and the step after the flush.
  // example-end vidkv-decode
  check(s == tokred::status::ok, "prefill and decode");
  check(state.packed == 224 && state.residual == 76, "state after 300 tokens");
  check(full_reads == 3, "three full reads");
  {  // What the engine kept is what a full read returns now.
    std::vector<float> read_keys(seen_keys.size()), read_values(seen_values.size());
    const auto none = tokred::token_range(tokred::view<const float, 3>(all_keys), 0, 0);
    s = tokred::apply(tokred::cpu{}, tokred::vidkv_read{config},
                      tokred::vidkv_read_inputs<float>{tokred::read_only(cache), state, none, none},
                      tokred::vidkv_read_outputs<float>{view_of(read_keys, {heads, total, head_dim}),
                                                        view_of(read_values, {heads, total, head_dim})},
                      ws);
    check(s == tokred::status::ok && read_keys == seen_keys && read_values == seen_values,
          "the kept rows equal a full read");
  }

  // example-begin vidkv-scores
  // Attention logits straight from the cache: q·k for its 300 keys without dequantizing one.
  // The difficult channels are read with the query gathered to them, the spectral components
  // with the query's own DFT (no inverse DFT), the residual in full precision.
  const tokred::vidkv_key_scores scorer{tokred::vidkv_keys_of(config), config.vidkv_dequant};
  const auto queries = tokred::make_view<const float>(query.data(), q_heads, head_dim);  // 4 query heads, GQA
  std::vector<float> logits(q_heads * total);                                           // (4, 300), unscaled
  std::vector<std::byte> score_work(tokred::workspace_bytes(tokred::cpu{}, scorer, storage));
  s = tokred::apply(tokred::cpu{}, scorer, tokred::vidkv_key_score_inputs(config, tokred::read_only(cache), queries, state),
                    tokred::packed_score_outputs<>{tokred::make_view(logits.data(), q_heads, total)},
                    {score_work.data(), score_work.size()});
  // example-end vidkv-scores
  check(s == tokred::status::ok, "scores from the packed cache");
  // They are the logits over what vidkv_read returns (seen_keys holds the last step's 300 keys).
  check(scene::worst_logit_error(query, seen_keys, logits, q_heads, heads, total, head_dim) < 1e-4,
        "packed logits equal the logits over the dequantized keys");

  // example-begin vidkv-fidelity
  // What the key bits cost: the prompt's first 96 keys through 1-bit (every channel through the
  // DFT), 1.5-bit (VidKV's mixed precision) and 2-bit per-channel keys, measured as element error
  // and as the KL divergence of each query's attention (kv_error.hpp).
  const auto prompt_keys = tokred::token_range(tokred::view<const float, 3>(all_keys), 0, 96);
  const tokred::kv_problem chunk{heads, 96, head_dim};
  std::vector<float> back(heads * 96 * head_dim);
  const auto back_view = tokred::make_view(back.data(), heads, 96, head_dim);
  const auto round_trip = [&](const tokred::vidkv_keys& kb) {
    const tokred::vidkv_key_extents e = tokred::vidkv_packed_key_extents(kb, chunk);
    std::vector<std::int64_t> order(head_dim);
    std::vector<std::uint32_t> dc(elements(e.difficult_codes)), sc(elements(e.spectral_codes));
    std::vector<float> ds(elements(e.difficult_params)), dz(ds.size()), ss(elements(e.spectral_params));
    const tokred::vidkv_packed_keys<float> packed{tokred::make_view(order.data(), head_dim),
                                                  {view_of(dc, e.difficult_codes), view_of(ds, e.difficult_params),
                                                   view_of(dz, e.difficult_params)},
                                                  {view_of(sc, e.spectral_codes), view_of(ss, e.spectral_params), {}}};
    std::vector<std::byte> work(std::max(tokred::workspace_bytes(tokred::cpu{}, tokred::vidkv_key_quantize{kb}, chunk),
                                         tokred::workspace_bytes(tokred::cpu{}, tokred::vidkv_key_dequantize{kb}, chunk)));
    const tokred::workspace w{work.data(), work.size()};
    tokred::status st = tokred::apply(tokred::cpu{}, tokred::vidkv_key_quantize{kb},
                                      tokred::kv_inputs<float>{prompt_keys}, packed, w);
    if (st == tokred::status::ok)
      st = tokred::apply(tokred::cpu{}, tokred::vidkv_key_dequantize{kb}, tokred::read_only(packed),
                         tokred::kv_outputs<float>{back_view}, w);
    return st;
  };
  double mse[3] = {};
  for (int i = 0; i < 3 && s == tokred::status::ok; ++i) {
    const double bits = 1.0 + 0.5 * i;
    tokred::kv_error_stats error{};
    tokred::attention_kl_stats kl{};
    s = round_trip(tokred::vidkv_keys{bits, /*mixed=*/true, /*group=*/32});
    if (s == tokred::status::ok) s = tokred::kv_error(prompt_keys, back_view, error);
    if (s == tokred::status::ok)
      s = tokred::attention_kl(tokred::make_view(query.data(), q_heads, 1, head_dim), prompt_keys, back_view, kl);
    std::printf("%.1f-bit keys: mse %.4f, attention KL mean %.2e nats\n", bits, error.mse, kl.mean);
    mse[i] = error.mse;
  }
  // example-end vidkv-fidelity
  check(s == tokred::status::ok, "quantize, dequantize and measure");
  check(mse[0] > mse[1] && mse[1] > mse[2], "more key bits, smaller error");

  // example-begin vidkv-salient
  // Salient-token protection (VidKV's QuantizedCacheVLMSTP): a prompt of 14 system tokens, 320
  // visual tokens and 18 text tokens. The visual tokens most relevant to the text — by the mean
  // dot product of their LLM input embeddings with the text's — keep 2-bit values; the others
  // get the configured 1.58 bits.
  const tokred::index_t system = 14, visual = 320, text = 18, width = 16, sequence = system + visual + text;
  std::vector<float> vision_embeds(visual * width), text_embeds(text * width), stp_values(heads * sequence * head_dim);
  for (tokred::index_t i = 0; i < visual; ++i)  // an object the text talks about at tokens 100 … 139
    for (tokred::index_t c = 0; c < width; ++c)
      vision_embeds[i * width + c] = std::sin(0.7f * static_cast<float>(i + 3 * c)) + (i >= 100 && i < 140 && c < 4 ? 2.0f : 0.0f);
  for (tokred::index_t j = 0; j < text; ++j)
    for (tokred::index_t c = 0; c < width; ++c) text_embeds[j * width + c] = c < 4 ? 1.0f : 0.1f * std::cos(static_cast<float>(j + c));
  for (std::size_t i = 0; i < stp_values.size(); ++i) stp_values[i] = std::cos(0.37f * static_cast<float>(i));

  // 1. Saliency: the mean over text tokens of the raw dot product, one score per visual token.
  std::vector<float> saliency(visual);
  const tokred::query_relevance mean_dot{tokred::query_relevance::level::token, tokred::query_relevance::measure::dot};
  s = tokred::apply(tokred::cpu{}, mean_dot,
                    tokred::feature_score_inputs<float>{tokred::sequence_grid(visual),
                                                        tokred::make_view(vision_embeds.data(), visual, width),
                                                        tokred::make_view(text_embeds.data(), text, width)},
                    tokred::score_outputs<>{tokred::make_view(saliency.data(), visual)});

  // 2. VidKV's choice: k = max(32, ⌊320·0.2/32⌋·32) = 64 most salient, 32 of them kept; as cache
  //    positions (visual token i sits at 14 + i).
  const tokred::vidkv_salient_tokens stp{0.2, /*first_position=*/system};
  const tokred::problem visual_tokens{tokred::sequence_grid(visual), width};
  std::vector<std::int64_t> salient(tokred::retained_count(stp, visual_tokens));  // 32
  std::vector<std::byte> choice(tokred::workspace_bytes(tokred::cpu{}, stp, visual_tokens));
  if (s == tokred::status::ok)
    s = tokred::apply(tokred::cpu{}, stp, tokred::vidkv_salient_inputs<>{tokred::make_view(saliency.data(), visual)},
                      tokred::vidkv_salient_outputs<>{tokred::make_view(salient.data(), 32)}, {choice.data(), choice.size()});

  // 3. A cache that protects them: the list, and storage for their values (2-bit, capacity 32).
  const tokred::kv_problem stp_storage{heads, sequence, head_dim}, salient_storage{heads, 32, head_dim};
  const tokred::vidkv_key_extents sx = tokred::vidkv_packed_key_extents(tokred::vidkv_keys_of(config), stp_storage);
  const tokred::uniform_format sf = tokred::vidkv_salient_format(config);  // {2, 32, tokens, asymmetric}
  const tokred::kv_extents pc = tokred::uniform_code_extents(vf, stp_storage), pp = tokred::uniform_param_extents(vf, stp_storage);
  const tokred::kv_extents sc = tokred::uniform_code_extents(sf, salient_storage), sp = tokred::uniform_param_extents(sf, salient_storage);
  std::vector<std::int64_t> order(head_dim);
  std::vector<std::uint32_t> dcodes(elements(sx.difficult_codes)), scodes(elements(sx.spectral_codes));
  std::vector<float> dscale(elements(sx.difficult_params)), dzero(dscale.size()), sscale(elements(sx.spectral_params));
  std::vector<std::uint32_t> value_words(elements(pc)), salient_words(elements(sc));
  std::vector<float> value_scales(elements(pp)), salient_scales(elements(sp)), salient_zeros(elements(sp));
  std::vector<float> kres(heads * config.residual * head_dim), vres(kres.size());
  const tokred::vidkv_cache<float> protected_cache{
      {tokred::make_view(order.data(), head_dim),
       {view_of(dcodes, sx.difficult_codes), view_of(dscale, sx.difficult_params), view_of(dzero, sx.difficult_params)},
       {view_of(scodes, sx.spectral_codes), view_of(sscale, sx.spectral_params), {}}},
      tokred::make_view(kres.data(), heads, config.residual, head_dim),
      {view_of(value_words, pc), view_of(value_scales, pp), {}},
      tokred::make_view(vres.data(), heads, config.residual, head_dim),
      tokred::make_view<const std::int64_t>(salient.data(), 32),
      {view_of(salient_words, sc), view_of(salient_scales, sp), view_of(salient_zeros, sp)}};

  // 4. The prefill packs all 352 tokens (11 groups): 32 salient at 2 bits, 320 others at 1.58.
  const auto prompt_values = tokred::make_view<const float>(stp_values.data(), heads, sequence, head_dim);
  std::vector<std::byte> stp_work(tokred::workspace_bytes(tokred::cpu{}, tokred::vidkv_append{config}, stp_storage));
  if (s == tokred::status::ok)
    s = tokred::apply(tokred::cpu{}, tokred::vidkv_append{config},
                      tokred::vidkv_append_inputs<float>{prompt_values, prompt_values, {}, {}, {}}, protected_cache,
                      {stp_work.data(), stp_work.size()});
  // example-end vidkv-salient
  check(s == tokred::status::ok, "saliency, choice and protected prefill");
  check(salient.front() >= system + 100 && salient.back() < system + 140, "the salient tokens are the object's");

  // Read it back: the protected tokens' values are closer to the input than the others'.
  std::vector<float> back_keys(heads * sequence * head_dim), back_values(back_keys.size());
  std::vector<std::byte> read_work(tokred::workspace_bytes(tokred::cpu{}, tokred::vidkv_read{config}, stp_storage));
  if (s == tokred::status::ok)
    s = tokred::apply(tokred::cpu{}, tokred::vidkv_read{config},
                      tokred::vidkv_read_inputs<float>{tokred::read_only(protected_cache), {sequence, 0}, {}, {}},
                      tokred::vidkv_read_outputs<float>{tokred::make_view(back_keys.data(), heads, sequence, head_dim),
                                                        tokred::make_view(back_values.data(), heads, sequence, head_dim)},
                      {read_work.data(), read_work.size()});
  double salient_error = 0.0, other_error = 0.0;
  for (tokred::index_t h = 0; h < heads; ++h)
    for (tokred::index_t t = 0; t < sequence; ++t) {
      const bool listed = std::binary_search(salient.begin(), salient.end(), t);
      for (tokred::index_t c = 0; c < head_dim; ++c) {
        const std::size_t i = static_cast<std::size_t>((h * sequence + t) * head_dim + c);
        (listed ? salient_error : other_error) += std::pow(back_values[i] - stp_values[i], 2.0);
      }
    }
  salient_error /= static_cast<double>(heads * 32 * head_dim);
  other_error /= static_cast<double>(heads * (sequence - 32) * head_dim);
  std::printf("salient-token protection: value mse %.4f (32 salient tokens, 2 bits) vs %.4f (the others, 1.58 bits)\n",
              salient_error, other_error);
  check(s == tokred::status::ok && salient_error < 0.75 * other_error, "protected values are closer");

  return scene::finish();
}
