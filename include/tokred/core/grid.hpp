// tokred/core/grid.hpp — how a flat token sequence maps to frames and patches.
#pragma once

#include <cstdint>
#include <limits>

#include "tokred/core/config.hpp"

namespace tokred {

/// The original `(t, h, w)` coordinates of a token: frame, patch row, patch column. Engines
/// rebuild M-RoPE / 2-D RoPE position ids from these.
struct token_position {
  std::int32_t t;
  std::int32_t h;
  std::int32_t w;
};

/// A `(T, H, W)` token grid: T frames of H × W patches, flattened frame-major then row-major,
/// so token `i` sits at `t = i / (H·W)`, `h = (i mod H·W) / W`, `w = i mod W`. An image is T = 1.
struct token_grid {
  index_t frames = 1;  ///< T
  index_t height = 0;  ///< H, patch rows per frame
  index_t width = 0;   ///< W, patch columns per frame

  /// Tokens per frame, H·W.
  TOKRED_HOST_DEVICE constexpr index_t frame_tokens() const noexcept { return height * width; }
  /// All tokens, T·H·W (for a `valid()` grid).
  TOKRED_HOST_DEVICE constexpr index_t tokens() const noexcept { return frames * height * width; }
  /// False for a negative extent or for more tokens than `index_t` counts (H·W or T·H·W would
  /// overflow); a zero extent is valid, an empty problem.
  TOKRED_HOST_DEVICE constexpr bool valid() const noexcept {
    if (frames < 0 || height < 0 || width < 0) return false;
    if (height == 0 || width == 0) return true;  // every product is 0
    constexpr index_t most = PTRDIFF_MAX;
    return height <= most / width && frames <= most / (height * width);
  }

  /// The `(t, h, w)` of flat token index `i`; `0 <= i < tokens()`.
  TOKRED_HOST_DEVICE constexpr token_position position(index_t i) const noexcept {
    const index_t per_frame = frame_tokens();
    const index_t t = i / per_frame;
    const index_t in_frame = i - t * per_frame;
    const index_t h = in_frame / width;
    return {static_cast<std::int32_t>(t), static_cast<std::int32_t>(h),
            static_cast<std::int32_t>(in_frame - h * width)};
  }
};

/// A grid for a single image of H × W patches.
constexpr token_grid image_grid(index_t height, index_t width) noexcept {
  return {1, height, width};
}

/// A grid for a flat sequence of N tokens with no spatial structure (1 × 1 × N).
constexpr token_grid sequence_grid(index_t tokens) noexcept { return {1, 1, tokens}; }

namespace detail {

/// Whether frames [first_frame, first_frame + T) of a stream of `chunk`'s (H, W) frames have flat
/// token indices that fit index_t and frame indices that fit a position's int32 t: first_frame ≥
/// 0, (first_frame + T)·H·W ≤ max index_t and first_frame + T − 1 ≤ 2³¹ − 1. `chunk` holds tokens.
constexpr bool stream_frames_fit(const token_grid& chunk, index_t first_frame) noexcept {
  const index_t frames_most = std::numeric_limits<index_t>::max() / chunk.frame_tokens();
  const index_t last_most = std::numeric_limits<std::int32_t>::max();
  return first_frame >= 0 && first_frame <= frames_most - chunk.frames && first_frame + chunk.frames - 1 <= last_most;
}

}  // namespace detail

}  // namespace tokred
