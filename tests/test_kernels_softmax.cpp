// The row kernels of softmax and cross-entropy (engine/kernels/softmax.cpp,
// softmax_simd.inl) on every instruction set this CPU runs: log-sum-exp of
// rows shorter than a 128-bit vector, shorter than a native one, and longer
// (with a partial last vector), finite, all -inf, holding +inf, holding NaN;
// in float32 against float64 and in float64 against plain loops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/softmax.hpp"

using namespace tg;

namespace {

const double inf = std::numeric_limits<double>::infinity();
const double nan_value = std::numeric_limits<double>::quiet_NaN();

// A row of n values: finite (k·0.37 − 1), all -inf, or finite with one +inf or NaN at k = n / 2.
std::vector<double> row(int64_t n, const std::string& kind)
{
    std::vector<double> x(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) x[size_t(k)] = kind == "-inf" ? -inf : double(k) * 0.37 - 1;
    if (kind == "+inf") x[size_t(n / 2)] = inf;
    if (kind == "nan") x[size_t(n / 2)] = nan_value;
    return x;
}

template <class T>
void check_row(const std::vector<double>& x, const std::string& kind)
{
    const std::vector<T> xt(x.begin(), x.end());
    const int64_t n = int64_t(x.size());
    const kernels::RowLse<T> got = kernels::logsumexp_row(xt.data(), n);
    if (kind == "-inf" || kind == "+inf") {
        // No finite maximum to shift by: the maximum itself, and log n (every term alike).
        CHECK(double(got.max) == (kind == "-inf" ? -inf : inf));
        CHECK(double(got.log_sum) == doctest::Approx(std::log(double(n))).epsilon(1e-6));
    } else if (kind == "nan") {
        CHECK(std::isnan(double(got.max) + double(got.log_sum)));
    } else {
        double m = -inf, s = 0;
        for (double v : x) m = std::max(m, v);
        for (double v : x) s += std::exp(v - m);
        CHECK(double(got.max) == doctest::Approx(m).epsilon(1e-6));
        CHECK(double(got.log_sum) == doctest::Approx(std::log(s)).epsilon(std::is_same_v<T, float> ? 1e-6 : 1e-14));
    }
}

}  // namespace

TEST_CASE("softmax kernels: log-sum-exp of finite, -inf, +inf and NaN rows of every length class on every ISA")
{
    const kernels::Isa chosen = kernels::isa();
    int variants = 0;
    for (kernels::Isa isa : kernels::supported_isas()) {
        CAPTURE(kernels::isa_name(isa));
        kernels::set_isa(isa);
        ++variants;
        for (int64_t n : {1, 3, 5, 8, 12, 19})
            for (const char* kind : {"finite", "-inf", "+inf", "nan"}) {
                CAPTURE(n);
                CAPTURE(kind);
                // A lone NaN is no maximum (max -inf, log 1): the callers' x − max carries it.
                if (n == 1 && std::string(kind) == "nan") continue;
                const std::vector<double> x = row(n, kind);
                check_row<float>(x, kind);
                check_row<double>(x, kind);
            }
    }
    kernels::set_isa(chosen);
    CHECK(variants == int(kernels::supported_isas().size()));
}

TEST_CASE("kernels: SSE2 is always there, and TG_ISA pins the instruction set the kernels use")
{
    // The suite runs again under TG_ISA=sse2 (.ci/run): if the pin were
    // ignored, that run would test the AVX2 kernels twice and say nothing.
    using tg::kernels::Isa;
    CHECK(tg::kernels::cpu_supports(Isa::sse2));
    const std::vector<Isa> isas = tg::kernels::supported_isas();
    REQUIRE(!isas.empty());
    CHECK(isas.front() == Isa::sse2);
    if (const char* pin = std::getenv("TG_ISA")) {
        bool known = false;
        for (Isa i : isas) known = known || std::string(pin) == tg::kernels::isa_name(i);
        if (known) CHECK(std::string(tg::kernels::isa_name(tg::kernels::isa())) == pin);
    }
}
