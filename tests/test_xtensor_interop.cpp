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

TEST_CASE("xtensor: from_xtensor copies an lvalue")
{
    xt::xarray<double> a = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
    tg::Tensor t = tg::from_xtensor(a);
    CHECK(t.shape() == tg::shape_type{2, 3});
    CHECK(t.dtype() == tg::float64);
    CHECK(t.to_vector() == Values{1, 2, 3, 4, 5, 6});
    CHECK(t.raw_data() != static_cast<const void*>(a.data()));
    a(0, 0) = 100;
    CHECK(t.at({0, 0}) == 1);  // independent of the array

    xt::xarray<float> f = {1.5f, 2.5f};
    CHECK(tg::from_xtensor(f).dtype() == tg::float32);
    auto i = xt::xarray<int64_t>::from_shape({2, 1});
    i(0, 0) = 7;
    i(1, 0) = 8;
    tg::Tensor ti = tg::from_xtensor(i);
    CHECK(ti.dtype() == tg::int64);
    CHECK(ti.shape() == tg::shape_type{2, 1});
    CHECK(ti.to_vector() == Values{7, 8});

    xt::xarray<double> zero_d = 4.5;
    tg::Tensor t0 = tg::from_xtensor(zero_d);
    CHECK(t0.dim() == 0);
    CHECK(t0.item() == 4.5);
}

TEST_CASE("xtensor: from_xtensor(std::move(a)) adopts the buffer without copying")
{
    xt::xarray<float> a = random_array<float>({64, 33}, 1);
    const float* old_data = a.data();
    const Values values(a.begin(), a.end());
    int64_t allocations = tg::memory_stats().allocations;
    tg::Tensor t = tg::from_xtensor(std::move(a));
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

TEST_CASE("xtensor: as_xtensor is a read-only view, as_mutable_xtensor a writable one, to_xarray a copy")
{
    tg::Tensor t = tg::from_values({1, 2, 3, 4, 5, 6}, {2, 3}, tg::float64);
    auto view = tg::as_xtensor<double>(t);
    static_assert(!std::is_assignable_v<decltype(view(0, 0)), double>, "as_xtensor must not give write access");
    CHECK(view.shape()[0] == 2);
    CHECK(view.shape()[1] == 3);
    CHECK(view(1, 2) == 6);
    CHECK(static_cast<const void*>(view.data()) == t.raw_data());

    const uint64_t version = t.version();
    {
        auto writable = tg::as_mutable_xtensor<double>(t);
        CHECK(t.version() == version + 1);  // taking it is an in-place change
        writable(0, 1) = 20;
    }
    CHECK(t.at({0, 1}) == 20);  // a write through the view is a write to the tensor
    CHECK(view(0, 1) == 20);
    {
        tg::NoGradGuard no_grad;
        t.mul_(2);
    }
    CHECK(view(1, 0) == 8);  // and the other way round

    auto fixed = tg::as_xtensor<double, 2>(t);  // fixed rank
    static_assert(std::tuple_size_v<std::decay_t<decltype(fixed.shape())>> == 2);
    CHECK(fixed(1, 2) == 12);
    CHECK(xt::sum(fixed)() == doctest::Approx(2 * (1 + 20 + 3 + 4 + 5 + 6)));

    xt::xarray<double> copy = tg::to_xarray<double>(t);
    CHECK(copy.shape() == std::vector<size_t>{2, 3});
    CHECK(copy(0, 1) == 40);
    CHECK(static_cast<const void*>(copy.data()) != t.raw_data());
    copy(0, 0) = -1;
    CHECK(t.at({0, 0}) == 2);

    tg::Tensor s = tg::scalar(3, tg::int64);
    CHECK(tg::to_xarray<int64_t>(s)() == 3);
    tg::Tensor empty = tg::zeros({0, 4}, tg::float32);
    CHECK(tg::as_xtensor<float>(empty).size() == 0);
    CHECK(tg::from_xtensor(tg::as_xtensor<float>(empty)).shape() == tg::shape_type{0, 4});
}

TEST_CASE("xtensor: a view of the wrong element type or rank is an error naming both")
{
    tg::Tensor t = tg::zeros({2, 3}, tg::float64);
    CHECK_THROWS_WITH_AS(tg::as_xtensor<float>(t), "tapegrad: as_xtensor<float32>: the tensor is float64 of shape [2, 3]",
                         tg::Error);
    CHECK_THROWS_WITH_AS(tg::as_mutable_xtensor<int64_t>(t),
                         "tapegrad: as_mutable_xtensor<int64>: the tensor is float64 of shape [2, 3]", tg::Error);
    CHECK_THROWS_WITH_AS((tg::as_xtensor<double, 3>(t)), "tapegrad: as_xtensor: a view of rank 3 of a tensor of shape [2, 3]",
                         tg::Error);
}

TEST_CASE("xtensor: a mutable view of a saved tensor, written, then backward, is the in-place error")
{
    tg::Tensor w = tg::from_values({0.5, -1.0, 2.0}, {3}, tg::float64).requires_grad_();
    tg::Tensor x = tg::from_values({1.0, 2.0, 3.0}, {3}, tg::float64);
    tg::Tensor loss = tg::sum(w * x);  // saves x for w's gradient
    tg::as_mutable_xtensor<double>(x)(1) = 7.0;
    CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("modified in place after the forward"), tg::Error);

    // Writing a leaf that requires grad, with grad mode on, is refused as fill_ refuses it.
    CHECK_THROWS_WITH_AS(tg::as_mutable_xtensor<double>(w), doctest::Contains("in-place change of a leaf that requires grad"),
                         tg::Error);
    tg::NoGradGuard no_grad;
    tg::as_mutable_xtensor<double>(w)(0) = 1.5;
    CHECK(w.at({0}) == 1.5);
}

TEST_CASE("xtensor: from_xtensor evaluates an expression once, into the tensor's memory")
{
    xt::xarray<double> a = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
    xt::xarray<double> b = {10.0, 20.0, 30.0};
    const int64_t allocations = tg::memory_stats().allocations;
    tg::Tensor t = tg::from_xtensor(a * b + 1.0);  // broadcast [2, 3] x [3]
    CHECK(tg::memory_stats().allocations == allocations + 1);  // the tensor's own buffer, no temporary
    CHECK(t.shape() == tg::shape_type{2, 3});
    CHECK(t.to_vector() == Values{11, 41, 91, 41, 101, 181});

    // Converted on request; views of tensors are expressions too.
    tg::Tensor f = tg::from_xtensor<float>(xt::sqrt(tg::as_xtensor<double>(t)));
    CHECK(f.dtype() == tg::float32);
    CHECK(f.at({1, 2}) == doctest::Approx(std::sqrt(181.0)));
    tg::Tensor i = tg::from_xtensor<int64_t>(a > 2.5);
    CHECK(i.to_vector() == Values{0, 0, 1, 1, 1, 1});

    // A fixed-rank rvalue container is adopted like an xarray; a column-major
    // one is not (its memory is in the other order) and is copied in row-major order.
    xt::xtensor<float, 2> fixed = {{1.f, 2.f}, {3.f, 4.f}};
    const float* fixed_data = fixed.data();
    tg::Tensor adopted = tg::from_xtensor(std::move(fixed));
    CHECK(adopted.raw_data() == static_cast<const void*>(fixed_data));
    xt::xarray<double, xt::layout_type::column_major> cm = {{1.0, 2.0}, {3.0, 4.0}};
    const double* cm_data = cm.data();
    tg::Tensor copied = tg::from_xtensor(std::move(cm));
    CHECK(copied.raw_data() != static_cast<const void*>(cm_data));
    CHECK(copied.to_vector() == Values{1, 2, 3, 4});
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
        tg::Tensor got = tg::matmul(tg::from_xtensor(a), tg::from_xtensor(b));
        CHECK(got.dtype() == dtype);
        CHECK(relative_difference(tg::to_xarray<T>(got), expected) < tol);
    }

    // Batched: [B, m, k] x [B, k, n] and [B, m, k] x [k, n], one dot per batch.
    const size_t batch = 3, m = 5, k = 6, n = 4;
    xt::xarray<T> a = random_array<T>({batch, m, k}, 3);
    xt::xarray<T> b = random_array<T>({batch, k, n}, 4);
    xt::xarray<T> w = random_array<T>({k, n}, 5);
    tg::Tensor ab = tg::matmul(tg::from_xtensor(a), tg::from_xtensor(b));
    tg::Tensor aw = tg::matmul(tg::from_xtensor(a), tg::from_xtensor(w));
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
    tg::Tensor av = tg::matmul(tg::from_xtensor(a0), tg::from_xtensor(v));
    CHECK(av.shape() == tg::shape_type{5});
    CHECK(relative_difference(tg::to_xarray<T>(av), xt::xarray<T>(xt::linalg::dot(a0, v))) < tol);
    tg::Tensor at = tg::matmul(tg::transpose(tg::from_xtensor(a0)), tg::from_xtensor(a0));
    xt::xarray<T> a0t = xt::transpose(a0);
    CHECK(relative_difference(tg::to_xarray<T>(at), xt::xarray<T>(xt::linalg::dot(a0t, a0))) < tol);
}
