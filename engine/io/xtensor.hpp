// Moving data between tapegrad tensors and xtensor arrays.
#pragma once

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>

#include "engine/core/tensor.hpp"

namespace tg {


// Copies an xarray (float, double or int64_t) into a new tensor.
template <class T>
Tensor from_xarray(const xt::xarray<T>& a)
{
    shape_type shape(a.shape().begin(), a.shape().end());
    Tensor t = Tensor::empty(shape, dtype_of<T>());
    std::copy(a.begin(), a.end(), t.data<T>());
    return t;
}

// Takes over an xarray's buffer without copying it.
template <class T>
Tensor from_xarray(xt::xarray<T>&& a)
{
    shape_type shape(a.shape().begin(), a.shape().end());
    auto holder = std::make_shared<xt::xarray<T>>(std::move(a));
    return detail::adopt(holder->data(), shape, dtype_of<T>(), holder);
}

// An xtensor view of the tensor's own memory (no copy); valid while the tensor lives.
template <class T>
auto as_xarray(const Tensor& t)
{
    std::vector<size_t> shape(t.shape().begin(), t.shape().end());
    return xt::adapt(const_cast<T*>(t.data<T>()), size_t(t.numel()), xt::no_ownership(), shape);
}

// A copy as an independent xarray.
template <class T>
xt::xarray<T> to_xarray(const Tensor& t)
{
    return xt::xarray<T>(as_xarray<T>(t));
}

}  // namespace tg
