// Compile-time checks of tokred's vocabulary types. Nothing here runs: the test is that this
// file compiles. It includes core/ and policy/ only, which need nothing but the standard library.
#include <tokred/core/config.hpp>
#include <tokred/core/contract.hpp>
#include <tokred/core/element.hpp>
#include <tokred/core/exec.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/status.hpp>
#include <tokred/core/view.hpp>
#include <tokred/core/workspace.hpp>
#include <tokred/policy/budget.hpp>
#include <tokred/policy/selection.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#if defined(XSIMD_VERSION_MAJOR) || defined(EIGEN_WORLD_VERSION)
#error "tokred/core and tokred/policy must not include xsimd or Eigen"
#endif

namespace {

using tokred::bf16;
using tokred::device_space;
using tokred::f16;
using tokred::host_space;
using tokred::index_t;
using tokred::status;
using tokred::view;

// --- view: a value type ------------------------------------------------------------------------

// Pointer plus Rank extents and Rank strides, nothing else; copyable by memcpy (kernel arguments,
// struct members) and default-constructible as the empty "not requested" view.
template <class T, int Rank, class Space>
constexpr bool is_plain_view() {
  using V = view<T, Rank, Space>;
  return std::is_trivially_copyable_v<V> && std::is_standard_layout_v<V> &&
         std::is_nothrow_default_constructible_v<V> &&
         sizeof(V) == sizeof(T*) + 2 * Rank * sizeof(index_t) &&
         std::is_same_v<typename V::element_type, T> &&
         std::is_same_v<typename V::value_type, std::remove_cv_t<T>> &&
         std::is_same_v<typename V::space_type, Space> && V::rank() == Rank;
}
static_assert(is_plain_view<float, 1, host_space>());
static_assert(is_plain_view<const float, 2, host_space>());
static_assert(is_plain_view<f16, 2, device_space>());
static_assert(is_plain_view<const bf16, 3, device_space>());
static_assert(is_plain_view<std::int64_t, 1, host_space>());
static_assert(is_plain_view<const std::int32_t, 2, device_space>());

// Mutable converts to const, implicitly; nothing converts the other way, nor across element
// types, ranks or memory spaces.
static_assert(std::is_convertible_v<view<float, 2>, view<const float, 2>>);
static_assert(std::is_convertible_v<view<f16, 1, device_space>, view<const f16, 1, device_space>>);
static_assert(std::is_nothrow_constructible_v<view<const bf16, 2>, view<bf16, 2>>);
static_assert(!std::is_convertible_v<view<const float, 2>, view<float, 2>>);
static_assert(!std::is_constructible_v<view<float, 2>, view<const float, 2>>);
static_assert(!std::is_constructible_v<view<const float, 2>, view<float, 1>>);
static_assert(!std::is_constructible_v<view<const float, 1>, view<f16, 1>>);
static_assert(!std::is_constructible_v<view<const float, 1>, view<const bf16, 1>>);
static_assert(!std::is_constructible_v<view<float, 1, device_space>, view<float, 1, host_space>>);
static_assert(
    !std::is_constructible_v<view<const float, 1, host_space>, view<float, 1, device_space>>);

// Element access yields T&: a const element type is not assignable through the view.
static_assert(std::is_same_v<decltype(std::declval<const view<float, 2>&>()(0, 0)), float&>);
static_assert(std::is_same_v<decltype(std::declval<view<const float, 2>&>()(0, 0)), const float&>);
static_assert(!std::is_assignable_v<decltype(std::declval<view<const float, 2>&>()(0, 0)), float>);

// make_view / make_device_view pick rank, space and const-ness from their arguments.
static_assert(std::is_same_v<decltype(tokred::make_view(std::declval<const float*>(), 3, 4)),
                             view<const float, 2>>);
static_assert(std::is_same_v<decltype(tokred::make_device_view(std::declval<f16*>(), 8)),
                             view<f16, 1, device_space>>);

// Layout queries are constant expressions.
constexpr float grid_values[6] = {0, 1, 2, 3, 4, 5};
constexpr view<const float, 2> row_major = tokred::make_view(grid_values, 2, 3);  // (2, 3)
static_assert(view<const float, 2>::rank() == 2);
static_assert(row_major.extent(0) == 2 && row_major.extent(1) == 3);
static_assert(row_major.stride(0) == 3 && row_major.stride(1) == 1);
static_assert(row_major.size() == 6 && !row_major.empty());
static_assert(row_major.required_span_size() == 6 && row_major.has_unit_inner_stride());
static_assert(row_major.data_handle() == grid_values);
static_assert(row_major(1, 2) == 5.0f);

// Rows walked backwards (negative stride): data_handle() points at element (0, 0).
constexpr view<const float, 2> reversed{grid_values + 3, {2, 3}, {-3, 1}};  // (2, 3)
static_assert(reversed(0, 0) == 3.0f && reversed(1, 0) == 0.0f);
static_assert(reversed.required_span_size() == 6);

// A column: inner stride 3, not unit.
constexpr view<const float, 1> column{grid_values + 1, {2}, {3}};  // (2,)
static_assert(!column.has_unit_inner_stride() && column(1) == 4.0f &&
              column.required_span_size() == 4);

constexpr view<float, 3> none{};
static_assert(none.empty() && none.required_span_size() == 0 && none.data_handle() == nullptr);

// --- element types -----------------------------------------------------------------------------

template <class T>
constexpr bool is_half_storage() {
  return std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T> && sizeof(T) == 2 &&
         alignof(T) == 2 && tokred::is_element_v<T> && tokred::is_element_v<const T>;
}
static_assert(is_half_storage<f16>() && is_half_storage<bf16>());
static_assert(tokred::is_element_v<float> && !tokred::is_element_v<double> &&
              !tokred::is_element_v<std::uint16_t> && !tokred::is_element_v<int>);
static_assert(tokred::element_name<float>()[2] == '3' &&
              tokred::element_name<const f16>()[0] == 'f' &&
              tokred::element_name<bf16>()[0] == 'b');

// The bf16 narrowing is a constant expression. The fp16 one is not (its subnormal case is an
// fp32 addition on the value's bits); test_element checks it at run time on the same edges.
static_assert(tokred::detail::f32_bits_to_bf16_bits(0x3F808000u) == 0x3F80u);  // tie -> even
static_assert(tokred::detail::f32_bits_to_bf16_bits(0x3F818000u) == 0x3F82u);  // tie -> even
static_assert(tokred::detail::f32_bits_to_bf16_bits(0x7F800001u) == 0x7FC0u);  // NaN stays NaN

// --- exec tags, status, grid, workspace
// ------------------------------------------------------------

static_assert(std::is_same_v<decltype(tokred::cpu{}), tokred::cpu<tokred::compile_time_arch>>);
static_assert(std::is_same_v<tokred::cpu<>::space, host_space>);
static_assert(std::is_same_v<tokred::cuda::space, device_space>);
static_assert(std::is_trivially_copyable_v<tokred::cpu<>> &&
              std::is_trivially_copyable_v<tokred::cuda>);
constexpr tokred::cpu<> third_of_four{2, 4};
static_assert(third_of_four.ith == 2 && third_of_four.nth == 4);
static_assert(tokred::check_exec(third_of_four) == status::ok);
static_assert(tokred::check_exec(tokred::cpu<>{4, 4}) == status::invalid_exec);
static_assert(tokred::check_exec(tokred::cpu<>{0, 0}) == status::invalid_exec);
static_assert(tokred::cuda{}.stream == nullptr && tokred::check_exec(tokred::cuda{}) == status::ok);

static_assert(std::is_same_v<std::underlying_type_t<status>, int> &&
              static_cast<int>(status::ok) == 0);
static_assert(tokred::to_string(status::ok)[0] == 'o' &&
              tokred::to_string(status::aliasing)[0] == 'a');

constexpr tokred::token_grid video{2, 3, 4};  // (T, H, W)
static_assert(video.tokens() == 24 && video.frame_tokens() == 12 && video.valid());
static_assert(video.position(17).t == 1 && video.position(17).h == 1 && video.position(17).w == 1);
static_assert(tokred::image_grid(24, 24).tokens() == 576);
static_assert(tokred::sequence_grid(7).position(6).w == 6);
static_assert(!tokred::token_grid{1, -1, 4}.valid());
static_assert(std::is_trivially_copyable_v<tokred::token_position> &&
              sizeof(tokred::token_position) == 12);

static_assert(std::is_trivially_copyable_v<tokred::workspace> &&
              std::is_trivially_copyable_v<tokred::problem>);
static_assert(tokred::detail::arena::alignment % alignof(std::max_align_t) == 0);

// --- policies ------------------------------------------------------------------------------------

// The two questions every policy answers before any data exists (found by argument-dependent
// lookup, as a generic caller would find them).
template <class P>
using can_implement_t =
    decltype(can_implement(std::declval<const P&>(), std::declval<const tokred::problem&>()));
template <class P>
using retained_count_t =
    decltype(retained_count(std::declval<const P&>(), std::declval<const tokred::problem&>()));

// can_implement(policy, problem) -> status, noexcept.
template <class P>
constexpr bool can_implement_is_noexcept =
    noexcept(can_implement(std::declval<const P&>(), std::declval<const tokred::problem&>()));
template <class P, class = void>
struct has_can_implement : std::false_type {};
template <class P>
struct has_can_implement<P, std::void_t<can_implement_t<P>>>
    : std::bool_constant<std::is_same_v<can_implement_t<P>, status> &&
                         can_implement_is_noexcept<P>> {};

// retained_count(policy, problem) -> index_t, for policies whose output size the problem fixes.
template <class P, class = void>
struct has_retained_count : std::false_type {};
template <class P>
struct has_retained_count<P, std::void_t<retained_count_t<P>>>
    : std::bool_constant<std::is_same_v<retained_count_t<P>, index_t>> {};

// A policy is a small trivially copyable value.
template <class P>
constexpr bool is_policy_value() {
  return std::is_trivially_copyable_v<P> && std::is_default_constructible_v<P> &&
         has_can_implement<P>::value;
}
static_assert(is_policy_value<tokred::topk>() && has_retained_count<tokred::topk>::value);
static_assert(is_policy_value<tokred::uniform>() && has_retained_count<tokred::uniform>::value);
static_assert(is_policy_value<tokred::random_subset>() &&
              has_retained_count<tokred::random_subset>::value);
// gather keeps as many tokens as its index list names, which the problem alone does not tell.
static_assert(is_policy_value<tokred::gather>());
// The detectors themselves: they reject a type that is no policy.
static_assert(!has_can_implement<int>::value && !has_retained_count<tokred::problem>::value);

// Policies and budgets are literal types, usable as constants.
constexpr tokred::topk fastv_half{tokred::keep_budget::ratio(0.5, tokred::rounding::half_even)};
static_assert(fastv_half.keep.by == tokred::keep_budget::kind::ratio &&
              fastv_half.keep.mode == tokred::rounding::half_even &&
              fastv_half.within == tokred::scope::global);
constexpr tokred::random_subset per_frame{tokred::keep_budget::count(64), 42,
                                          tokred::scope::per_frame};
static_assert(per_frame.keep.k == 64 && per_frame.seed == 42);

// Inputs and outputs carry their memory space, which apply() matches against the exec.
static_assert(std::is_same_v<tokred::selection_inputs<f16>::space, host_space>);
static_assert(std::is_same_v<tokred::selection_outputs<float, device_space>::space, device_space>);
static_assert(std::is_same_v<tokred::gather_inputs<bf16, device_space>::space, device_space>);
static_assert(
    std::is_same_v<decltype(tokred::selection_inputs<bf16>{}.tokens), view<const bf16, 2>>);

// The ranking keys the backends share are constant expressions.
static_assert(tokred::detail::score_key(0x80000000u) == tokred::detail::score_key(0u));  // -0 == +0
static_assert(tokred::detail::score_key(0x7FC00000u) == 0u);                             // NaN last
static_assert(tokred::detail::score_key(0xFF800000u) > tokred::detail::score_key(0x7FC00000u));
static_assert(tokred::detail::score_key(0x3F800000u) > tokred::detail::score_key(0xBF800000u));
static_assert(tokred::detail::uniform_pick(0, 4, 16) == 2 &&
              tokred::detail::uniform_pick(3, 4, 16) == 14);
static_assert(tokred::detail::random_key(7, 3) == tokred::detail::random_key(7, 3));

}  // namespace
