// tapegrad <-> xtensor, without copies where the memory allows it.
//
//   as_xtensor<T>(t)          read-only xtensor view of a tensor's memory
//   as_mutable_xtensor<T>(t)  writable view; counts as an in-place change
//   from_xtensor(e)           a tensor from any xtensor expression: evaluated
//                             once into the tensor's memory, or, for an rvalue
//                             xarray/xtensor, its buffer taken over
//   to_xarray<T>(t)           an independent copy
//
// A view has dynamic rank unless the rank is given, as_xtensor<T, 2>(t):
// fixed-rank views iterate faster in xtensor's own loops.
// Custom ops whose forward and backward are xtensor expressions:
// engine/io/xtensor_op.hpp.
#pragma once

#include <array>
#include <limits>
#include <type_traits>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xtensor.hpp>

#include "../core/tensor.hpp"

namespace tg {

// as_xtensor<T>(t) without a rank: the view's rank follows the tensor's.
inline constexpr size_t any_rank = std::numeric_limits<size_t>::max();

namespace detail {

template <class T>
void check_element_type(const Tensor& t, const char* fn)
{
    TG_CHECK(t.dtype() == dtype_of<T>(), fn, "<", dtype_name(dtype_of<T>()), ">: the tensor is ",
             dtype_name(t.dtype()), " of shape ", t.shape());
}

template <size_t N>
auto xshape_of(const Tensor& t, const char* fn)
{
    if constexpr (N == any_rank) {
        // xarray's own shape type: no allocation up to 4 dimensions, for the
        // view and for the views and expressions made of it.
        return xt::svector<size_t, 4>(t.shape().begin(), t.shape().end());
    } else {
        TG_CHECK(t.dim() == int64_t(N), fn, ": a view of rank ", N, " of a tensor of shape ", t.shape());
        std::array<size_t, N> s{};
        for (size_t d = 0; d < N; ++d) s[d] = size_t(t.shape()[d]);
        return s;
    }
}

template <class T, size_t N>
auto adapt(T* p, const Tensor& t, const char* fn)
{
    return xt::adapt(p, size_t(t.numel()), xt::no_ownership(), xshape_of<N>(t, fn));
}

template <class E>
shape_type shape_of_expression(const E& e)
{
    const auto& s = e.shape();
    return shape_type(s.begin(), s.end());
}

// A row-major xarray or xtensor container with xtensor's own buffer: its
// memory is laid out as a tensor's and can be taken over.
template <class C>
constexpr bool adoptable_container = false;
template <class T, xt::layout_type L, class A, class SA>
constexpr bool adoptable_container<xt::xarray_container<xt::uvector<T, A>, L, SA>> = L == xt::layout_type::row_major;
template <class T, size_t N, xt::layout_type L, class A>
constexpr bool adoptable_container<xt::xtensor_container<xt::uvector<T, A>, N, L>> = L == xt::layout_type::row_major;

}  // namespace detail

// A read-only xtensor view of the tensor's memory (no copy); valid while the
// tensor's storage lives.
template <class T, size_t N = any_rank>
auto as_xtensor(const Tensor& t)
{
    detail::check_element_type<T>(t, "as_xtensor");
    return detail::adapt<const T, N>(t.data<T>(), t, "as_xtensor");
}

// A writable view of the tensor's memory. Taking it is an in-place change:
// it bumps the version, so a tape entry that saved the tensor before refuses
// to run backward on what was written. Take the view right before writing
// (writes through a view taken before the tensor was saved are not seen).
template <class T, size_t N = any_rank>
auto as_mutable_xtensor(Tensor& t)
{
    detail::check_element_type<T>(t, "as_mutable_xtensor");
    detail::check_inplace(t, "as_mutable_xtensor");
    t.bump_version();
    return detail::adapt<T, N>(t.data<T>(), t, "as_mutable_xtensor");
}

// A tensor holding the value of xtensor expression `e` (float, double or
// int64_t; with T given, converted to T). An rvalue row-major xarray or
// xtensor of that type gives up its buffer; anything else is evaluated once,
// straight into the new tensor's memory.
template <class T = void, class E>
Tensor from_xtensor(E&& e)
{
    using D = std::decay_t<E>;
    using value_type = std::conditional_t<std::is_void_v<T>, typename D::value_type, T>;
    static_assert(std::is_same_v<value_type, float> || std::is_same_v<value_type, double> ||
                      std::is_same_v<value_type, int64_t>,
                  "from_xtensor: a tensor holds float, double or int64_t; give the type: from_xtensor<double>(e)");
    const shape_type shape = detail::shape_of_expression(e);
    if constexpr (!std::is_lvalue_reference_v<E> && detail::adoptable_container<D> &&
                  std::is_same_v<typename D::value_type, value_type>) {
        auto holder = std::make_shared<D>(std::move(e));
        return detail::adopt(holder->data(), shape, dtype_of<value_type>(), holder);
    } else {
        Tensor t = Tensor::empty(shape, dtype_of<value_type>());
        auto out = detail::adapt<value_type, any_rank>(t.data<value_type>(), t, "from_xtensor");
        xt::noalias(out) = e;
        return t;
    }
}

// An independent copy as an xarray.
template <class T>
xt::xarray<T> to_xarray(const Tensor& t)
{
    return xt::xarray<T>(as_xtensor<T>(t));
}

}  // namespace tg
