// tests/reference/uniform_quant_ref.hpp — scalar oracle of uniform_quantize and
// uniform_dequantize: one group at a time, one value at a time, codes written bit by bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>

namespace tokred::ref {

/// x rounded to storage type E and widened back.
template <class E>
float rounded_to(float x) {
  return to_float(from_float<E>(x));
}

/// A packed cache as flat vectors in the layout of policy/uniform_quant.hpp (row-major over
/// the extents), and the dequantized cache (heads, tokens, head_dim), rounded to E.
struct uniform_result {
  kv_extents code_extents, param_extents;
  std::vector<std::uint32_t> codes;
  std::vector<float> scale, zero, values;
};

/// fp32 a·b, then + c, each rounded once. The product is kept in a volatile so that no compiler
/// folds the two steps into one fused multiply-add (g++ does with -march=native otherwise).
inline float product_then_sum(float a, float b, float c, const std::function<float(float)>& round_step) {
  volatile float product = round_step(a * b);
  return product + c;
}

/// The oracle: `x(h, t, c)` reads the cache as floats.
template <class E>
uniform_result uniform_roundtrip(const uniform_format& f, bool each_op, bool vidkv, index_t heads,
                                 index_t tokens, index_t dim,
                                 const std::function<float(index_t, index_t, index_t)>& x) {
  const kv_problem prob{heads, tokens, dim};
  uniform_result r;
  r.code_extents = uniform_code_extents(f, prob);
  r.param_extents = uniform_param_extents(f, prob);
  r.codes.assign(static_cast<std::size_t>(r.code_extents.heads * r.code_extents.rows * r.code_extents.cols), 0u);
  const std::size_t params = static_cast<std::size_t>(r.param_extents.heads * r.param_extents.rows * r.param_extents.cols);
  r.scale.assign(params, 0.0f);
  r.zero.assign(params, 0.0f);
  r.values.assign(static_cast<std::size_t>(heads * tokens * dim), 0.0f);
  const auto step = [&](float v) { return each_op ? rounded_to<E>(v) : v; };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int b = f.bits;
  const float top = static_cast<float>((1 << b) - 1);
  const float half_levels = static_cast<float>((1 << (b - 1)) - 1), mid = static_cast<float>(1 << (b - 1));
  const bool along_tokens = f.axis == kv_group_axis::tokens;
  const index_t outer = along_tokens ? tokens / f.group : tokens;
  const index_t inner = along_tokens ? dim : dim / f.group;
  for (index_t h = 0; h < heads; ++h)
    for (index_t o = 0; o < outer; ++o)
      for (index_t i = 0; i < inner; ++i) {
        // Group (o, i): along tokens o is the token group and i the channel; along channels o is
        // the token and i the channel group. Element e of the group lies at (token, channel):
        const auto token_of = [&](index_t e) { return along_tokens ? o * f.group + e : o; };
        const auto channel_of = [&](index_t e) { return along_tokens ? i : i * f.group + e; };
        float lo = std::numeric_limits<float>::infinity(), hi = -lo, abs_sum = 0.0f;
        bool bad = false;
        for (index_t e = 0; e < f.group; ++e) {
          const float v = x(h, token_of(e), channel_of(e));
          bad = bad || !std::isfinite(v);
          lo = v <= lo ? v : lo;  // the last minimal value, as documented (fmin may keep either zero)
          hi = v >= hi ? v : hi;
          abs_sum += std::fabs(v);
        }
        float s = 0.0f, z = 0.0f;
        switch (f.scheme) {
          case kv_scheme::asymmetric: s = rounded_to<E>(step(hi - lo) / top), z = lo; break;
          case kv_scheme::symmetric: s = rounded_to<E>(std::fmax(std::fabs(lo), std::fabs(hi)) / half_levels); break;
          case kv_scheme::sign:
          case kv_scheme::ternary: s = rounded_to<E>(abs_sum / static_cast<float>(f.group)); break;
        }
        if (bad) s = z = nan;
        const std::size_t param_at = static_cast<std::size_t>((h * r.param_extents.rows + o) * r.param_extents.cols + i);
        r.scale[param_at] = s;
        r.zero[param_at] = f.scheme == kv_scheme::asymmetric ? z : 0.0f;
        for (index_t e = 0; e < f.group; ++e) {
          const index_t t = token_of(e), c = channel_of(e);
          const float v = x(h, t, c);
          float q = 0.0f;
          if (!bad) switch (f.scheme) {
              case kv_scheme::asymmetric:
                q = s == 0.0f ? 0.0f : std::fmin(std::fmax(std::nearbyint(step(step(v - z) / s)), 0.0f), top);
                break;
              case kv_scheme::symmetric:
                q = s == 0.0f ? mid
                              : std::fmin(std::fmax(std::nearbyint(step(v / s)), -half_levels), half_levels) + mid;
                break;
              case kv_scheme::sign: q = v >= 0.0f ? 1.0f : 0.0f; break;
              case kv_scheme::ternary: q = v > 0.5f * s ? 2.0f : v < -0.5f * s ? 0.0f : 1.0f; break;
            }
          // The code's bits, one at a time, into the stream of its run.
          const auto code = static_cast<std::uint32_t>(q);
          for (int bit = 0; bit < b; ++bit) {
            const index_t stream_bit = e * b + bit;
            const index_t row = along_tokens ? o * f.group * b / 32 + stream_bit / 32 : o;
            const index_t col = along_tokens ? c : i * f.group * b / 32 + stream_bit / 32;
            const std::size_t at = static_cast<std::size_t>((h * r.code_extents.rows + row) * r.code_extents.cols + col);
            r.codes[at] |= ((code >> bit) & 1u) << (stream_bit % 32);
          }
          float y = 0.0f;
          switch (f.scheme) {
            case kv_scheme::asymmetric: y = product_then_sum(q, s, z, step); break;
            case kv_scheme::symmetric: y = step((q - mid) * s); break;
            case kv_scheme::sign: y = vidkv ? step(q * s) : step((2.0f * q - 1.0f) * s); break;
            case kv_scheme::ternary: y = vidkv ? q - 1.0f : step((q - 1.0f) * s); break;
          }
          r.values[static_cast<std::size_t>((h * tokens + t) * dim + c)] = rounded_to<E>(y);
        }
      }
  return r;
}

}  // namespace tokred::ref
