#include <doctest/doctest.h>
#include <tapegrad/tapegrad.hpp>

TEST_CASE("smoke: backward of a small expression")
{
    tg::Tensor x = tg::from_values({1.0, 2.0, 3.0}, {3}, tg::float64).requires_grad_();
    tg::Tensor y = tg::sum(x * x * 3.0);
    y.backward();
    CHECK(x.grad().at({2}) == doctest::Approx(18.0));
}
