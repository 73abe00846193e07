// The 2×2 stride-2 max-pool kernels (engine/kernels/pool_simd.inl) on every
// instruction set this CPU runs: values and argmax indices against the generic
// scan loop, bit for bit, with ties, NaN and -inf, rows of 1 to 40 windows
// (whole steps, overlapping last steps, rows narrower than a step), odd and
// even sizes, several rows and planes; the dense backward against a plain scatter, and its
// fallback when an index is not in its own window.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/core/parallel.hpp"
#include "engine/kernels/cpu.hpp"
#include "engine/kernels/pool.hpp"
#include "tests/helpers.hpp"

using namespace tg;

namespace {

constexpr int64_t guard = 16;  // elements after each output, which no kernel may write

size_t sz(int64_t n) { return static_cast<size_t>(n); }

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Few distinct values, so that windows tie; some NaN and -inf.
template <class T>
std::vector<T> pool_input(int64_t n, std::mt19937& rng)
{
    std::uniform_int_distribution<int> pick(0, 39);
    std::vector<T> x(sz(n));
    for (T& v : x) {
        const int r = pick(rng);
        v = r == 0 ? std::numeric_limits<T>::quiet_NaN() : r <= 3 ? -std::numeric_limits<T>::infinity() : T(r % 5 - 2);
    }
    return x;
}

kernels::PoolWindows windows_2x2(int64_t planes, int64_t h, int64_t w)
{
    return kernels::pool_windows(planes, h, w, {2, 2, 2, 2, 0, 0}, true);
}

// max_pool_2x2 against window_max_scan on planes of h×w; nothing written past the outputs.
template <class T>
void check_forward(int64_t planes, int64_t h, int64_t w, std::mt19937& rng)
{
    CAPTURE(planes);
    CAPTURE(h);
    CAPTURE(w);
    const std::vector<T> x = pool_input<T>(planes * h * w, rng);
    const int64_t out = planes * (h / 2) * (w / 2);
    std::vector<T> y(sz(out + guard), T(7)), want_y(sz(out));
    std::vector<int64_t> idx(sz(out + guard), -7), want_idx(sz(out));
    kernels::window_max_scan(x.data(), want_y.data(), want_idx.data(), windows_2x2(planes, h, w));
    kernels::max_pool_2x2(x.data(), y.data(), idx.data(), planes, h, w);
    CHECK(same_bits(std::vector<T>(y.begin(), y.begin() + out), want_y));
    CHECK(std::vector<int64_t>(idx.begin(), idx.begin() + out) == want_idx);
    CHECK(same_bits(std::vector<T>(y.begin() + out, y.end()), std::vector<T>(guard, T(7))));
    CHECK(std::vector<int64_t>(idx.begin() + out, idx.end()) == std::vector<int64_t>(guard, -7));
}

// dx = 0 + g at each index: the scatter the dense backward must equal.
std::vector<float> scatter(const std::vector<float>& g, const std::vector<int64_t>& idx, int64_t planes, int64_t plane)
{
    const int64_t out = int64_t(g.size()) / planes;
    std::vector<float> d(sz(planes * plane), 0.0f);
    for (int64_t p = 0; p < planes; ++p)
        for (int64_t o = 0; o < out; ++o) d[sz(p * plane + idx[sz(p * out + o)])] += g[sz(p * out + o)];
    return d;
}

// The dense backward of planes of h×w (h, w even) with the forward's argmax,
// then with indices of other windows in some planes.
void check_backward(int64_t planes, int64_t h, int64_t w, std::mt19937& rng)
{
    CAPTURE(planes);
    CAPTURE(h);
    CAPTURE(w);
    const int64_t ho = h / 2, wo = w / 2, plane = h * w, out = ho * wo;
    const std::vector<float> x = pool_input<float>(planes * plane, rng);
    std::vector<float> y(sz(planes * out)), g(sz(planes * out));
    std::vector<int64_t> idx(sz(planes * out));
    kernels::window_max_scan(x.data(), y.data(), idx.data(), windows_2x2(planes, h, w));
    std::normal_distribution<float> normal;
    for (float& v : g) v = normal(rng);
    g[0] = -0.0f;  // lands as +0, as 0 + g
    auto backward = [&](const std::vector<int64_t>& at) {
        std::vector<float> d(sz(planes * plane + guard), 7.0f);
        CHECK(kernels::max_pool_backward(g.data(), at.data(), d.data(), planes, h, w, ho, wo) == -1);
        CHECK(same_bits(std::vector<float>(d.begin() + planes * plane, d.end()), std::vector<float>(guard, 7.0f)));
        d.resize(sz(planes * plane));
        return d;
    };
    CHECK(same_bits(backward(idx), scatter(g, idx, planes, plane)));
    // One plane at a time: every index is in its own window.
    for (int64_t p = 0; p < planes; ++p) {
        std::vector<float> d(sz(plane + guard), 7.0f);
        CHECK(kernels::max_unpool_2x2_plane(g.data() + p * out, idx.data() + p * out, ho, wo, w, d.data()));
        CHECK(same_bits(std::vector<float>(d.begin() + plane, d.end()), std::vector<float>(guard, 7.0f)));
        d.resize(sz(plane));
        const std::vector<float> gp(g.begin() + p * out, g.begin() + (p + 1) * out);
        const std::vector<int64_t> ip(idx.begin() + p * out, idx.begin() + (p + 1) * out);
        const std::vector<float> want = scatter(gp, ip, 1, plane);
        CHECK(same_bits(d, want));
    }
    if (out < 2) return;
    // An index of another window of its plane (repeats add up), in the first
    // plane at the first output, in the last plane at the last output (the
    // overlapping step, or a scalar last row), and one that only has the right
    // low word: the planes fall back to the scatter.
    for (int64_t at : {int64_t(0), planes * out - 1, (planes / 2) * out + out / 2}) {
        CAPTURE(at);
        std::vector<int64_t> foreign = idx;
        const int64_t o = at % out, oh = o / wo, ow = o % wo;
        // The bottom left of the next window in the row (the one before, for
        // the last), or of the next row's window in rows of one window.
        const int64_t ch = wo > 1 ? oh : oh + 1 < ho ? oh + 1 : oh - 1;
        const int64_t cw = wo == 1 ? ow : ow + 1 < wo ? ow + 1 : ow - 1;
        foreign[sz(at)] = 2 * ch * w + 2 * cw + w;
        CHECK(!kernels::max_unpool_2x2_plane(g.data() + at / out * out, foreign.data() + at / out * out, ho, wo, w,
                                             std::vector<float>(sz(plane)).data()));
        CHECK(same_bits(backward(foreign), scatter(g, foreign, planes, plane)));
    }
    std::vector<int64_t> high = idx;
    high[sz(out - 1)] += int64_t(1) << 32;  // outside the plane, the low word in its window
    std::vector<float> d(sz(planes * plane));
    CHECK(kernels::max_pool_backward(g.data(), high.data(), d.data(), planes, h, w, ho, wo) == out - 1);
    CHECK(!kernels::max_unpool_2x2_plane(g.data(), high.data(), ho, wo, w, d.data()));
}

}  // namespace

TEST_CASE("max pool 2x2 kernels: forward values and argmax equal the scan loop on every instruction set")
{
    std::mt19937 rng(5);
    const int variants = on_every_isa([&] {
        for (int64_t wo = 1; wo <= 40; ++wo)
            for (int64_t w : {2 * wo, 2 * wo + 1})
                for (int64_t h : {2, 3, 6})
                    for (int64_t planes : {1, 3}) {
                        check_forward<float>(planes, h, w, rng);
                        check_forward<double>(planes, h, w, rng);
                    }
    });
    CHECK(variants == int(kernels::supported_isas().size()));
    CHECK(variants >= 1);
}

TEST_CASE("max pool 2x2 kernels: ties go to the first maximum in scan order, the last NaN wins, all -inf keeps the first")
{
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    // 2 × 2·13 input: windows 0..12 in one row (a whole step and an
    // overlapping one on AVX2, three and an overlap on SSE2).
    const int64_t wo = 13, w = 2 * wo;
    std::vector<float> x(sz(2 * w), 1.0f);
    auto at = [&](int64_t r, int64_t c) -> float& { return x[sz(r * w + c)]; };
    std::vector<int64_t> want(sz(wo));
    for (int64_t o = 0; o < wo; ++o) want[sz(o)] = 2 * o;  // all ties: the first
    at(0, 3) = at(1, 2) = 2, want[1] = 3;                       // a tie of the second and the third
    at(1, 4) = at(1, 5) = 4, want[2] = w + 4;                   // a tie in the bottom row
    at(1, 7) = nan, want[3] = w + 7;                            // a NaN last in scan order
    at(0, 8) = nan, at(1, 9) = nan, want[4] = w + 9;            // the last of two NaN (PyTorch)
    at(0, 11) = 5, at(1, 10) = nan, want[5] = w + 10;           // a maximum, then a NaN
    for (int64_t c = 12; c < 14; ++c) at(0, c) = at(1, c) = -inf;
    want[6] = 12;                                               // all -inf: the first
    at(0, 14) = -inf, at(0, 15) = -inf, at(1, 14) = -inf, want[7] = w + 15;  // -inf then a 1
    at(0, 24) = at(0, 25) = at(1, 24) = at(1, 25) = nan, want[12] = w + 25;  // all NaN, in the overlap: the last
    const int variants = on_every_isa([&] {
        std::vector<float> y(sz(wo)), ys(sz(wo));
        std::vector<int64_t> idx(sz(wo)), is(sz(wo));
        kernels::max_pool_2x2(x.data(), y.data(), idx.data(), 1, 2, w);
        kernels::window_max_scan(x.data(), ys.data(), is.data(), windows_2x2(1, 2, w));
        CHECK(idx == want);
        CHECK(is == want);
        CHECK(same_bits(y, ys));
        for (int64_t o = 0; o < wo; ++o)
            CHECK(same_bits(std::vector<float>{y[sz(o)]}, std::vector<float>{x[sz(want[sz(o)])]}));
    });
    CHECK(variants == int(kernels::supported_isas().size()));
}

TEST_CASE("max pool 2x2 kernels: the dense backward equals the scatter, and falls back for foreign indices")
{
    std::mt19937 rng(6);
    const int variants = on_every_isa([&] {
        for (int64_t w = 2; w <= 80; w += 2)
            for (int64_t h : {2, 4, 6})
                for (int64_t planes : {1, 3}) check_backward(planes, h, w, rng);
    });
    CHECK(variants == int(kernels::supported_isas().size()));
}

TEST_CASE("max pool 2x2 kernels: many planes of narrow rows split across threads equal the scan loop")
{
    // Rows narrower than a step read and write into the rows after them, up
    // to the end of each thread's planes.
    const int threads = num_threads();
    set_num_threads(2);
    std::mt19937 rng(7);
    const int variants = on_every_isa([&] {
        for (int64_t w : {2, 6, 14}) {  // 3 to 9 chunks of planes
            check_forward<float>(9001, 4, w, rng);
            check_backward(9001, 4, w, rng);
        }
    });
    set_num_threads(threads);
    CHECK(variants == int(kernels::supported_isas().size()));
}

TEST_CASE("pool windows: 2x2 stride 2 is recognised from the tables, and no other")
{
    CHECK(kernels::is_2x2_stride_2(windows_2x2(2, 4, 5)));
    CHECK(kernels::is_2x2_stride_2(windows_2x2(1, 3, 2)));
    CHECK_FALSE(kernels::is_2x2_stride_2(kernels::pool_windows(1, 4, 4, {2, 2, 1, 1, 0, 0}, true)));
    CHECK_FALSE(kernels::is_2x2_stride_2(kernels::pool_windows(1, 4, 4, {2, 2, 2, 2, 1, 1}, true)));
    CHECK_FALSE(kernels::is_2x2_stride_2(kernels::pool_windows(1, 6, 6, {3, 3, 2, 2, 0, 0}, true)));
    CHECK(kernels::is_2x2_stride_2(kernels::adaptive_windows(1, 4, 6, 2, 3)));  // the same windows
}

TEST_CASE("pool windows: dilation steps the taps from the first one inside the input, and ceil_mode windows divide by their part of the padded input")
{
    // 7 rows, k3 s2 p1 d2: windows start at -1, 1, 3: taps {-1, 1, 3} -> 1, 3;
    // {1, 3, 5}; {3, 5, 7} -> 3, 5.
    kernels::PoolAxis a = kernels::pool_axis(7, 3, 2, 1, 2, false, true);
    REQUIRE(a.size() == 3);
    CHECK(a.step == 2);
    CHECK(a.begin == std::vector<int64_t>{1, 1, 3});
    CHECK(a.end == std::vector<int64_t>{4, 6, 6});
    // 6 rows, k3 s2 p1 ceil_mode: 4 windows from -1, 1, 3, 5; the last covers
    // rows 5 (and 6, padding, and 7, past the padded input): 2 inside [-1, 7).
    kernels::PoolAxis c = kernels::pool_axis(6, 3, 2, 1, 1, true, true);
    REQUIRE(c.size() == 4);
    CHECK(c.begin == std::vector<int64_t>{0, 1, 3, 5});
    CHECK(c.end == std::vector<int64_t>{2, 4, 6, 6});
    CHECK(c.divisor == std::vector<double>{3, 3, 3, 2});
    CHECK(kernels::pool_axis(6, 3, 2, 1, 1, true, false).divisor == std::vector<double>{2, 3, 3, 1});
    // Sizes that overflow int64 on the way give a size, not a wrap.
    const int64_t big = int64_t(1) << 62;
    CHECK(kernels::pool_out_size(5, big, 1, 0, 4) < 0);
    CHECK(kernels::pool_out_size(big, 2, big, 1, 1, true) == 2);
    CHECK(kernels::pool_out_size(INT64_MAX, 2, 1, 1) == INT64_MAX);  // INT64_MAX + 1 windows, clamped
    // Dilation with padding over a 1-element axis: the only window holds padding only.
    CHECK(kernels::has_empty_window(kernels::pool_windows(1, 1, 3, {2, 1, 1, 1, 1, 0, 2, 1, false}, true)));
    CHECK_FALSE(kernels::has_empty_window(kernels::pool_windows(1, 3, 3, {2, 1, 1, 1, 1, 0, 2, 1, false}, true)));
}
