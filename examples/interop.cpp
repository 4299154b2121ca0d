// interop.cpp — other libraries' tensors as tokred views, one scene per adapter: Eigen, mdspan,
// DLPack and ggml. The docs quote the regions between the example markers verbatim; the checks
// around them make sure the comments in those regions tell the truth.
//
// DLPack and ggml are seldom installed, so the two structs their headers declare are written out
// below (as their headers lay them out); an engine includes dlpack.h or ggml.h instead. The mdspan
// scene runs where an mdspan exists: C++23's <mdspan>, or libcu++'s <cuda/std/mdspan>, which also
// compiles as host C++17 (add CUDA's include/cccl directory to the include path).
#include <array>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <Eigen/Core>
#include <tokred/interop/dlpack.hpp>
#include <tokred/interop/eigen.hpp>
#include <tokred/interop/ggml.hpp>
#include <tokred/interop/mdspan.hpp>
#include <tokred/tokred.hpp>

#if __has_include(<mdspan>) && __cplusplus > 202002L
#include <mdspan>
namespace md = std;
#define TOKRED_EXAMPLE_MDSPAN 1
#elif __has_include(<cuda/std/mdspan>)
#include <cuda/std/mdspan>
namespace md = cuda::std;
#define TOKRED_EXAMPLE_MDSPAN 1
#endif

#include "scene_checks.hpp"

// From dlpack.h (v1.0): the parts the DLPack scene uses.
extern "C" {
typedef enum { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 } DLDeviceType;
typedef struct { DLDeviceType device_type; int32_t device_id; } DLDevice;
typedef enum { kDLInt = 0U, kDLUInt = 1U, kDLFloat = 2U, kDLBfloat = 4U } DLDataTypeCode;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} DLTensor;
}

// From ggml.h: the members of struct ggml_tensor the ggml scene uses (ggml's has more).
enum ggml_type { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q8_0 = 8, GGML_TYPE_BF16 = 30 };
struct ggml_tensor {
  enum ggml_type type;
  int64_t ne[4];
  size_t nb[4];
  void* data;
};

namespace {

/// topk keeping `k` of `tokens` by `scores`, writing the kept indices to `source`.
template <class E>
tokred::status keep_top(const tokred::view<const E, 2>& tokens, const tokred::view<const float, 1>& scores,
                        tokred::index_t k, std::vector<std::int64_t>& source) {
  source.assign(static_cast<std::size_t>(k), -1);
  const tokred::topk policy{tokred::keep_budget::count(k)};
  const tokred::problem prob{tokred::sequence_grid(tokens.extent(0)), tokens.extent(1)};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  const tokred::selection_outputs<E> out{{}, tokred::make_view(source.data(), k), {}};
  return tokred::apply(tokred::cpu{}, policy, tokred::selection_inputs<E>{prob.grid, scores, tokens},
                       out, {scratch.data(), scratch.size()});
}

void eigen_scene() {
  std::printf("eigen\n");
  Eigen::MatrixXf features(8, 24);  // column-major (dim, tokens): one token per column
  for (int t = 0; t < 24; ++t)
    for (int d = 0; d < 8; ++d) features(d, t) = static_cast<float>(100 * t + d);
  Eigen::VectorXf scores = Eigen::VectorXf::LinSpaced(24, 0.0f, 23.0f);
  std::vector<std::int64_t> source;
  // example-begin eigen
  // Eigen's storage order and strides become the view's strides: nothing is copied.
  const tokred::view<const float, 2> tokens =  // (tokens, dim) = (24, 8), strides (8, 1)
      tokred::from_eigen(features.transpose());
  const tokred::view<const float, 1> ranks = tokred::from_eigen_vector(scores);  // (tokens,)
  const tokred::status s = keep_top(tokens, ranks, 6, source);  // source == {18, …, 23}

  // And back: the kept rows as an Eigen map, to use Eigen's arithmetic on them.
  Eigen::Matrix<float, 6, 8, Eigen::RowMajor> kept;
  const tokred::view<float, 2> kept_rows = tokred::from_eigen(kept);  // (kept, dim)
  for (tokred::index_t k = 0; k < 6; ++k)
    for (tokred::index_t d = 0; d < 8; ++d) kept_rows(k, d) = tokens(source[static_cast<std::size_t>(k)], d);
  const auto mean = tokred::to_eigen(kept_rows).colwise().mean();  // (1, dim): mean kept token
  // mean(0) == 2050: the mean of 100·t over t = 18 … 23
  // example-end eigen
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(tokens.stride(0) == 8 && tokens.stride(1) == 1);
  SCENE_CHECK(source.front() == 18 && source.back() == 23);
  SCENE_CHECK(mean(0) == 2050.0f);
}

void mdspan_scene() {
  std::printf("mdspan\n");
#if defined(TOKRED_EXAMPLE_MDSPAN)
  std::vector<float> storage(24 * 8);
  for (std::size_t i = 0; i < storage.size(); ++i) storage[i] = static_cast<float>(i % 97);
  // example-begin mdspan
  // A column-major (tokens, dim) mdspan, as a Fortran-ordered array would be.
  md::mdspan<float, md::dextents<std::size_t, 2>, md::layout_left> m(storage.data(), 24, 8);
  const tokred::view<float, 2> tokens = tokred::from_mdspan(m);  // (24, 8), strides (1, 24)
  // Data the mdspan describes in device memory: say so, the mdspan cannot.
  //   auto on_gpu = tokred::from_mdspan<tokred::device_space>(device_mdspan);

  // Back to an mdspan: layout_stride holds any view with positive, non-overlapping strides.
  md::mdspan<float, md::dextents<std::size_t, 2>, md::layout_stride> back;
  const tokred::status s = tokred::to_mdspan(tokens, back);  // ok: strides (1, 24)
  md::mdspan<float, md::dextents<std::size_t, 2>> right;     // layout_right: strides (8, 1) only
  const tokred::status t = tokred::to_mdspan(tokens, right);  // shape_mismatch, `right` unchanged
  // example-end mdspan
  SCENE_CHECK(tokens.stride(0) == 1 && tokens.stride(1) == 24);
  SCENE_CHECK(s == tokred::status::ok && back.stride(1) == 24 && &back(3, 2) == &tokens(3, 2));
  SCENE_CHECK(t == tokred::status::shape_mismatch && right.data_handle() == nullptr);
#else
  std::printf("  (no mdspan on the include path: scene skipped)\n");
#endif
}

void dlpack_scene() {
  std::printf("dlpack\n");
  // A bf16 tensor of 24 tokens of 8 values handed over through `__dlpack__`, flipped along
  // the tokens (torch.flip): stride -8, with the data pointer at the buffer's start and the first
  // token's element reached through byte_offset.
  std::vector<tokred::bf16> buffer(24 * 8);
  for (std::size_t i = 0; i < buffer.size(); ++i)
    buffer[i] = tokred::from_float<tokred::bf16>(static_cast<float>(i / 8));
  std::int64_t shape[2] = {24, 8};
  std::int64_t strides[2] = {-8, 1};
  DLTensor tensor{buffer.data(), {kDLCPU, 0}, 2, {kDLBfloat, 16, 1}, shape, strides, 23 * 8 * 2};
  std::array<std::int64_t, 2> out_shape{}, out_strides{};
  // example-begin dlpack
  tokred::view<const tokred::bf16, 2> tokens;  // (tokens, dim)
  const tokred::status s = tokred::from_dlpack(tensor, tokens);  // ok: dtype, device, rank match
  // tokens(0, 0) is the last row of the buffer: 23

  tokred::view<const float, 2> as_float;  // (tokens, dim)
  const tokred::status wrong = tokred::from_dlpack(tensor, as_float);  // invalid_parameter: bf16
  tensor.device.device_type = kDLCUDA;  // device memory, for a host view:
  const tokred::status elsewhere = tokred::from_dlpack(tensor, tokens);  // invalid_parameter
  // On any failure the view is left as it was.

  // A view described as a DLTensor, e.g. to hand the kept rows back to Python; the shape and
  // stride arrays are the caller's and must outlive the DLTensor.
  DLTensor exported{};
  tokred::to_dlpack(tokens, out_shape, out_strides, exported);  // kDLCPU, (kDLBfloat, 16, 1)
  // example-end dlpack
  SCENE_CHECK(s == tokred::status::ok && tokred::to_float(tokens(0, 0)) == 23.0f);
  SCENE_CHECK(tokens.stride(0) == -8);
  SCENE_CHECK(wrong == tokred::status::invalid_parameter);
  SCENE_CHECK(elsewhere == tokred::status::invalid_parameter && tokens.stride(0) == -8);
  SCENE_CHECK(exported.device.device_type == kDLCPU && exported.dtype.code == kDLBfloat);
  SCENE_CHECK(exported.strides[0] == -8 && exported.shape[0] == 24);
}

void ggml_scene() {
  std::printf("ggml\n");
  // An f16 image embedding of 24 tokens of 8 values, as ggml_new_tensor_2d(ctx, GGML_TYPE_F16,
  // 8, 24) lays it out; a layer's K cache of 2 heads × 24 tokens × 4, as llama.cpp views it.
  std::vector<tokred::f16> embd(24 * 8);
  for (std::size_t i = 0; i < embd.size(); ++i)
    embd[i] = tokred::from_float<tokred::f16>(static_cast<float>(i / 8));
  ggml_tensor image{GGML_TYPE_F16, {8, 24, 1, 1}, {2, 16, 16 * 24, 16 * 24}, embd.data()};
  std::vector<float> cache(24 * 2 * 4);
  ggml_tensor k_cache{GGML_TYPE_F32, {4, 2, 24, 1}, {4, 16, 32, 32 * 24}, cache.data()};
  // example-begin ggml
  // ggml lists dimensions innermost first with byte strides: ne = {dim, tokens} is (tokens, dim).
  tokred::view<const tokred::f16, 2> tokens;  // (tokens, dim) = (24, 8), strides (8, 1)
  const tokred::status s = tokred::from_ggml(image, tokens);

  // llama.cpp's K cache view: ne = {head_dim, n_head_kv, n_kv}, one row of all heads per token.
  tokred::view<float, 3> keys;  // (heads, tokens, head_dim) = (2, 24, 4), strides (4, 8, 1)
  const tokred::status k = tokred::from_ggml_kv(k_cache, keys, tokred::ggml_kv_order::head_dim_heads_tokens);

  k_cache.type = GGML_TYPE_Q8_0;  // a quantized cache has no per-element view
  const tokred::status q = tokred::from_ggml_kv(k_cache, keys, tokred::ggml_kv_order::head_dim_heads_tokens);
  // q == invalid_parameter, `keys` unchanged
  // example-end ggml
  SCENE_CHECK(s == tokred::status::ok && tokens.extent(0) == 24 && tokens.stride(0) == 8);
  SCENE_CHECK(tokred::to_float(tokens(23, 0)) == 23.0f);
  SCENE_CHECK(k == tokred::status::ok && keys.extent(0) == 2 && keys.extent(1) == 24);
  SCENE_CHECK(keys.stride(0) == 4 && keys.stride(1) == 8 && keys.stride(2) == 1);
  SCENE_CHECK(q == tokred::status::invalid_parameter && keys.data_handle() == cache.data());
}

}  // namespace

int main() {
  eigen_scene();
  mdspan_scene();
  dlpack_scene();
  ggml_scene();
  return scene::finish();
}
