// Moving data between tensors and xtensor arrays, and matmul against
// xtensor-blas. (xtensor-blas must not share a translation unit with
// <cblas.h>; this file does not include it.)
#include <doctest/doctest.h>
#include <tapegrad/xtensor.hpp>

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xrandom.hpp>
#include <xtensor/xview.hpp>

#include <cmath>

namespace {

using Values = std::vector<double>;

template <class T>
xt::xarray<T> random_array(const std::vector<size_t>& shape, unsigned seed)
{
    xt::random::seed(seed);
    return xt::cast<T>(xt::random::randn<double>(shape));
}

// Largest |a - b| relative to the largest |b|.
template <class T>
double relative_difference(const xt::xarray<T>& a, const xt::xarray<T>& b)
{
    REQUIRE(a.shape() == b.shape());
    double worst = 0, scale = 1e-30;
    for (size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])));
        scale = std::max(scale, std::abs(double(b.data()[i])));
    }
    return worst / scale;
}

}  // namespace

TEST_CASE("xtensor: from_xarray copies")
{
    xt::xarray<double> a = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
    tg::Tensor t = tg::from_xarray(a);
    CHECK(t.shape() == tg::shape_type{2, 3});
    CHECK(t.dtype() == tg::float64);
    CHECK(t.to_vector() == Values{1, 2, 3, 4, 5, 6});
    CHECK(t.raw_data() != static_cast<const void*>(a.data()));
    a(0, 0) = 100;
    CHECK(t.at({0, 0}) == 1);  // independent of the array

    xt::xarray<float> f = {1.5f, 2.5f};
    CHECK(tg::from_xarray(f).dtype() == tg::float32);
    auto i = xt::xarray<int64_t>::from_shape({2, 1});
    i(0, 0) = 7;
    i(1, 0) = 8;
    tg::Tensor ti = tg::from_xarray(i);
    CHECK(ti.dtype() == tg::int64);
    CHECK(ti.shape() == tg::shape_type{2, 1});
    CHECK(ti.to_vector() == Values{7, 8});

    xt::xarray<double> zero_d = 4.5;
    tg::Tensor t0 = tg::from_xarray(zero_d);
    CHECK(t0.dim() == 0);
    CHECK(t0.item() == 4.5);
}

TEST_CASE("xtensor: from_xarray(std::move(a)) adopts the buffer without copying")
{
    xt::xarray<float> a = random_array<float>({64, 33}, 1);
    const float* old_data = a.data();
    const Values values(a.begin(), a.end());
    int64_t allocations = tg::memory_stats().allocations;
    tg::Tensor t = tg::from_xarray(std::move(a));
    CHECK(t.raw_data() == static_cast<const void*>(old_data));
    CHECK(tg::memory_stats().allocations == allocations);  // tapegrad allocated nothing
    CHECK(t.shape() == tg::shape_type{64, 33});
    CHECK(t.to_vector() == values);

    // The adopted buffer lives as long as the tensor and its aliases, and
    // works with ops and autodiff like any other.
    tg::Tensor alias = tg::reshape(t, {33, 64});
    t = tg::Tensor();
    CHECK(alias.raw_data() == static_cast<const void*>(old_data));
    alias.requires_grad_();
    tg::sum(alias * alias).backward();
    Values g = alias.grad().to_vector();
    for (size_t k = 0; k < g.size(); ++k) CHECK(g[k] == 2 * float(values[k]));
}

TEST_CASE("xtensor: as_xarray shares memory, to_xarray copies")
{
    tg::Tensor t = tg::from_values({1, 2, 3, 4, 5, 6}, {2, 3}, tg::float64);
    auto view = tg::as_xarray<double>(t);
    CHECK(view.shape()[0] == 2);
    CHECK(view.shape()[1] == 3);
    CHECK(view(1, 2) == 6);
    CHECK(static_cast<const void*>(view.data()) == t.raw_data());
    view(0, 1) = 20;
    CHECK(t.at({0, 1}) == 20);  // a write through the view is a write to the tensor
    {
        tg::NoGradGuard no_grad;
        t.mul_(2);
    }
    CHECK(view(1, 0) == 8);     // and the other way round

    xt::xarray<double> copy = tg::to_xarray<double>(t);
    CHECK(copy.shape() == std::vector<size_t>{2, 3});
    CHECK(copy(0, 1) == 40);
    CHECK(static_cast<const void*>(copy.data()) != t.raw_data());
    copy(0, 0) = -1;
    CHECK(t.at({0, 0}) == 2);

    CHECK_THROWS_AS(tg::as_xarray<float>(t), tg::Error);  // wrong element type
    tg::Tensor s = tg::scalar(3, tg::int64);
    CHECK(tg::to_xarray<int64_t>(s)() == 3);
}

TEST_CASE_TEMPLATE("xtensor: matmul agrees with xt::linalg::dot", T, float, double)
{
    const tg::Dtype dtype = tg::dtype_of<T>();
    const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    struct Case {
        size_t m, k, n;
    };
    // Small ones, one with a long inner dimension, and ones large enough for
    // tapegrad to split the GEMM across its threads.
    for (Case c : {Case{1, 1, 1}, Case{3, 4, 5}, Case{1, 7, 1}, Case{17, 33, 9}, Case{8, 3000, 6},
                   Case{130, 70, 90}, Case{40, 200, 300}}) {
        INFO("[", c.m, ", ", c.k, "] x [", c.k, ", ", c.n, "]");
        xt::xarray<T> a = random_array<T>({c.m, c.k}, unsigned(c.m + c.k));
        xt::xarray<T> b = random_array<T>({c.k, c.n}, unsigned(c.k * 7 + c.n));
        xt::xarray<T> expected = xt::linalg::dot(a, b);
        tg::Tensor got = tg::matmul(tg::from_xarray(a), tg::from_xarray(b));
        CHECK(got.dtype() == dtype);
        CHECK(relative_difference(tg::to_xarray<T>(got), expected) < tol);
    }

    // Batched: [B, m, k] x [B, k, n] and [B, m, k] x [k, n], one dot per batch.
    const size_t batch = 3, m = 5, k = 6, n = 4;
    xt::xarray<T> a = random_array<T>({batch, m, k}, 3);
    xt::xarray<T> b = random_array<T>({batch, k, n}, 4);
    xt::xarray<T> w = random_array<T>({k, n}, 5);
    tg::Tensor ab = tg::matmul(tg::from_xarray(a), tg::from_xarray(b));
    tg::Tensor aw = tg::matmul(tg::from_xarray(a), tg::from_xarray(w));
    REQUIRE(ab.shape() == tg::shape_type{3, 5, 4});
    REQUIRE(aw.shape() == tg::shape_type{3, 5, 4});
    xt::xarray<T> ab_x = tg::to_xarray<T>(ab), aw_x = tg::to_xarray<T>(aw);
    for (size_t i = 0; i < batch; ++i) {
        xt::xarray<T> ai = xt::view(a, i, xt::all(), xt::all());
        xt::xarray<T> bi = xt::view(b, i, xt::all(), xt::all());
        xt::xarray<T> got_ab = xt::view(ab_x, i, xt::all(), xt::all());
        xt::xarray<T> got_aw = xt::view(aw_x, i, xt::all(), xt::all());
        CHECK(relative_difference(got_ab, xt::xarray<T>(xt::linalg::dot(ai, bi))) < tol);
        CHECK(relative_difference(got_aw, xt::xarray<T>(xt::linalg::dot(ai, w))) < tol);
    }

    // Matrix-vector and a transposed operand.
    xt::xarray<T> v = random_array<T>({k}, 6);
    xt::xarray<T> a0 = xt::view(a, 0, xt::all(), xt::all());
    tg::Tensor av = tg::matmul(tg::from_xarray(a0), tg::from_xarray(v));
    CHECK(av.shape() == tg::shape_type{5});
    CHECK(relative_difference(tg::to_xarray<T>(av), xt::xarray<T>(xt::linalg::dot(a0, v))) < tol);
    tg::Tensor at = tg::matmul(tg::transpose(tg::from_xarray(a0)), tg::from_xarray(a0));
    xt::xarray<T> a0t = xt::transpose(a0);
    CHECK(relative_difference(tg::to_xarray<T>(at), xt::xarray<T>(xt::linalg::dot(a0t, a0))) < tol);
}
