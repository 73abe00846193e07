// The convolution kernels on every instruction set the CPU runs: the
// short-side GEMMs (every row remainder of the 6-row tile, column ends by an
// overlapping tile or partial vectors, the 4x3 dot tiles and their edges) and
// the conv forward and first-order backward drivers, each against a plain
// loop, and the variants against each other.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "engine/core/parallel.hpp"
#include "engine/kernels/conv.hpp"
#include "engine/kernels/cpu.hpp"
#include "engine/kernels/gemm.hpp"

using namespace tg;

namespace {

// Runs every variant, restoring the chosen one even when a check throws.
struct IsaGuard {
    kernels::Isa chosen = kernels::isa();
    ~IsaGuard() { kernels::set_isa(chosen); }
};

std::vector<float> random_floats(size_t n, uint64_t seed)
{
    Generator gen(seed);
    Tensor t = randn({int64_t(n)}, float32, &gen);
    return {t.data<float>(), t.data<float>() + n};
}

// The largest |got − want| relative to the largest |want| (1 when that is below 1).
template <class T>
double worst_error(const std::vector<T>& got, const std::vector<double>& want)
{
    REQUIRE(got.size() == want.size());
    double scale = 1, worst = 0;
    for (double w : want) scale = std::max(scale, std::abs(w));
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - want[i]) / scale);
    return worst;
}

double worst_error(const std::vector<float>& got, const std::vector<float>& want)
{
    return worst_error(got, std::vector<double>(want.begin(), want.end()));
}

}  // namespace

TEST_CASE("short-side GEMM kernels match a plain loop on every instruction set, partial tiles included")
{
    IsaGuard guard;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    // Results per shape and variant, to compare the variants with each other.
    std::map<std::string, std::vector<float>> first;
    int variants = 0, shapes = 0;
    for (kernels::Isa isa : kernels::supported_isas()) {
        CAPTURE(kernels::isa_name(isa));
        kernels::set_isa(isa);
        ++variants;
        // short_k_gemm: rows 1..13 (each remainder after 6-row tiles), columns
        // around 1, 2 and 3 vectors of either width, A read plain and transposed.
        for (int64_t m : {1, 2, 3, 4, 5, 6, 7, 11, 12, 13})
            for (int64_t n : {1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 20, 24, 31, 33, 40})
                for (int64_t k : {1, 5, 9, 16})
                    for (bool transposed : {false, true})
                        for (bool with_bias : {false, true}) {
                            const int64_t ldb = n + 3, ldc = n + 5;  // C's padding must stay untouched
                            const int64_t ars = transposed ? 1 : k, acs = transposed ? m : 1;
                            std::vector<float> a = random_floats(size_t(m * k), uint64_t(m * 100 + k));
                            std::vector<float> b = random_floats(size_t(k * ldb), uint64_t(n * 7 + k));
                            std::vector<float> bias = random_floats(size_t(m), 3);
                            std::vector<float> c(size_t(m * ldc), nan);
                            kernels::short_k_gemm(m, n, k, a.data(), ars, acs, b.data(), ldb, c.data(), ldc,
                                                  with_bias ? bias.data() : nullptr);
                            std::vector<double> want(size_t(m * n));
                            std::vector<float> got(size_t(m * n));
                            bool padding_kept = true;
                            for (int64_t i = 0; i < m; ++i) {
                                for (int64_t j = 0; j < n; ++j) {
                                    double s = with_bias ? bias[size_t(i)] : 0.0;
                                    for (int64_t p = 0; p < k; ++p)
                                        s += double(a[size_t(i * ars + p * acs)]) * b[size_t(p * ldb + j)];
                                    want[size_t(i * n + j)] = s;
                                    got[size_t(i * n + j)] = c[size_t(i * ldc + j)];
                                }
                                for (int64_t j = n; j < ldc; ++j) padding_kept &= std::isnan(c[size_t(i * ldc + j)]);
                            }
                            const std::string key = "short_k " + std::to_string(m) + "x" + std::to_string(n) +
                                                    "x" + std::to_string(k) + (transposed ? " t" : "") +
                                                    (with_bias ? " b" : "");
                            CAPTURE(key);
                            CHECK(padding_kept);
                            CHECK(worst_error(got, want) <= 1e-5);
                            auto [it, fresh] = first.emplace(key, got);
                            if (!fresh) CHECK(worst_error(got, it->second) <= 1e-5);
                            ++shapes;
                        }
        // dot_gemm: rows 1..9 and columns 1..7 around the 4x3 tiles, lengths
        // around one and two vectors of either width; C is accumulated into.
        for (int64_t m : {1, 3, 4, 5, 8, 9})
            for (int64_t n : {1, 2, 3, 4, 6, 7})
                for (int64_t len : {1, 3, 4, 7, 8, 9, 15, 16, 17, 33, 40}) {
                    const int64_t lda = len + 1, ldb = len + 2, ldc = n + 1;
                    std::vector<float> a = random_floats(size_t(m * lda), uint64_t(m * 13 + len));
                    std::vector<float> b = random_floats(size_t(n * ldb), uint64_t(n * 17 + len));
                    std::vector<float> c = random_floats(size_t(m * ldc), 5);
                    const std::vector<float> c0 = c;
                    kernels::dot_gemm(m, n, len, a.data(), lda, b.data(), ldb, c.data(), ldc);
                    std::vector<double> want(c.size());
                    for (size_t i = 0; i < c.size(); ++i) want[i] = c0[i];  // the padding column stays
                    for (int64_t i = 0; i < m; ++i)
                        for (int64_t j = 0; j < n; ++j)
                            for (int64_t p = 0; p < len; ++p)
                                want[size_t(i * ldc + j)] += double(a[size_t(i * lda + p)]) * b[size_t(j * ldb + p)];
                    const std::string key =
                        "dot " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(len);
                    CAPTURE(key);
                    CHECK(worst_error(c, want) <= 1e-5);
                    auto [it, fresh] = first.emplace(key, c);
                    if (!fresh) CHECK(worst_error(c, it->second) <= 1e-5);
                    ++shapes;
                }
    }
    CHECK(variants == int(kernels::supported_isas().size()));
    CHECK(shapes == variants * (10 * 16 * 4 * 4 + 6 * 6 * 11));
}

namespace {

struct KernelConv {
    const char* label;
    int64_t n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, groups;
    int64_t block_bytes = kernels::default_block_bytes;
};

struct ConvResult {
    std::vector<float> y, dx, dw, db;
};

ConvResult run_kernels(const kernels::ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                       const std::vector<float>& b, const std::vector<float>& gy)
{
    ConvResult r;
    r.y.assign(gy.size(), 0.0f);
    r.dx.assign(x.size(), 0.0f);
    r.dw.assign(w.size(), 0.0f);
    r.db.assign(b.size(), 0.0f);
    kernels::conv_forward(s, x.data(), w.data(), b.data(), r.y.data());
    std::vector<float> workspace(size_t(kernels::conv_backward_workspace(s, true, true, true)));
    kernels::conv_backward(s, x.data(), w.data(), gy.data(), r.dx.data(), r.dw.data(), r.db.data(), workspace.data());
    return r;
}

// y[n,o,oh,ow] = b[o] + Σ w[o,c,i,j]·x[n, grp·Cg + c, oh·sh − ph + i·dh, ow·sw − pw + j·dw],
// and its gradients.
struct ConvReference {
    std::vector<double> y, dx, dw, db;
};

template <class T>
ConvReference reference(const kernels::ConvShape& s, const std::vector<T>& x, const std::vector<T>& w,
                        const std::vector<T>& b, const std::vector<T>& gy)
{
    const kernels::Geometry& g = s.g;
    const int64_t cg = s.cg(), og = s.og();
    ConvReference r;
    r.y.assign(gy.size(), 0.0);
    r.dx.assign(x.size(), 0.0);
    r.dw.assign(w.size(), 0.0);
    r.db.assign(b.size(), 0.0);
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t o = 0; o < s.out_channels; ++o)
            for (int64_t oh = 0; oh < g.ho; ++oh)
                for (int64_t ow = 0; ow < g.wo; ++ow) {
                    const size_t yi = size_t(((n * s.out_channels + o) * g.ho + oh) * g.wo + ow);
                    double acc = b[size_t(o)];
                    r.db[size_t(o)] += gy[yi];
                    for (int64_t c = 0; c < cg; ++c)
                        for (int64_t i = 0; i < g.kh; ++i)
                            for (int64_t j = 0; j < g.kw; ++j) {
                                const int64_t ih = oh * g.sh - g.ph + i * g.dh, iw = ow * g.sw - g.pw + j * g.dw;
                                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                                const size_t xi = size_t(((n * g.c + o / og * cg + c) * g.h + ih) * g.w + iw);
                                const size_t wi = size_t(((o * cg + c) * g.kh + i) * g.kw + j);
                                acc += double(w[wi]) * x[xi];
                                r.dx[xi] += double(w[wi]) * gy[yi];
                                r.dw[wi] += double(x[xi]) * gy[yi];
                            }
                    r.y[yi] = acc;
                }
    return r;
}

}  // namespace

TEST_CASE("conv2d kernels: forward and first-order backward match direct loops on every instruction set")
{
    // Shapes for the kernels' paths in float32: short sides of 9 (one channel,
    // depthwise) with row and column remainders, BLAS, pointwise, the
    // transposed input gradient with short and long sides, strides 2 and 3,
    // and blocks of channels and of columns (small block_bytes).
    const std::vector<KernelConv> cases = {
        {"Cin 1, 11 outputs, 7x9, padding 1", 2, 1, 7, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"Cin 1, 32 outputs, 28x28, padding 1", 2, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"depthwise 3 -> 6, stride 2", 2, 3, 9, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1, 3},
        {"kernel 2x3, stride (2,1)", 2, 2, 6, 7, 5, 2, 3, 2, 1, 1, 0, 1, 1, 1},
        {"stride 3, kernel 2", 2, 2, 8, 7, 3, 2, 2, 3, 3, 0, 0, 1, 1, 1},
        {"pointwise 3 -> 7", 2, 3, 5, 7, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1},
        {"pointwise 20 -> 4 (BLAS)", 2, 20, 3, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1},
        {"transposed dx, 9 -> 1, no padding", 2, 9, 6, 5, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1},
        {"transposed dx, 16 -> 8, padding 1, dilation 2", 2, 16, 9, 8, 8, 3, 3, 1, 1, 1, 2, 2, 2, 1},
        {"transposed dx, groups 2", 1, 16, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},
        {"32 -> 48, 14x14 (BLAS, col2im)", 1, 32, 14, 14, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"blocks: 4 channels, 1000 bytes", 2, 4, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1000},
        {"blocks: transposed, 1000 bytes", 1, 8, 6, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1000},
        {"blocks: columns of 16, stride 2", 1, 2, 11, 13, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 200},
    };
    IsaGuard guard;
    std::map<std::string, ConvResult> first;
    int variants = 0;
    for (kernels::Isa isa : kernels::supported_isas()) {
        CAPTURE(kernels::isa_name(isa));
        kernels::set_isa(isa);
        ++variants;
        for (const KernelConv& c : cases) {
            CAPTURE(c.label);
            const kernels::Geometry g = kernels::make_geometry("conv2d", {c.n, c.c, c.h, c.w}, {c.kh, c.kw},
                                                               {c.sh, c.sw}, {c.ph, c.pw}, {c.dh, c.dw});
            const kernels::ConvShape s{g, c.groups, c.o, c.block_bytes};
            const std::vector<float> x = random_floats(size_t(g.n * g.c * g.h * g.w), 1);
            const std::vector<float> w = random_floats(size_t(c.o * s.k()), 2);
            const std::vector<float> b = random_floats(size_t(c.o), 3);
            const std::vector<float> gy = random_floats(size_t(g.n * c.o * g.columns()), 4);
            const ConvResult r = run_kernels(s, x, w, b, gy);
            const ConvReference want = reference(s, x, w, b, gy);
            CHECK(worst_error(r.y, want.y) <= 2e-6 * double(s.k()));
            CHECK(worst_error(r.dx, want.dx) <= 2e-6 * double(s.og() * g.kk()));
            CHECK(worst_error(r.dw, want.dw) <= 2e-6 * double(g.n * g.columns()));
            CHECK(worst_error(r.db, want.db) <= 2e-6 * double(g.n * g.columns()));
            auto [it, fresh] = first.emplace(c.label, r);
            if (!fresh) {
                CHECK(worst_error(r.y, it->second.y) <= 2e-6 * double(s.k()));
                CHECK(worst_error(r.dx, it->second.dx) <= 2e-6 * double(s.og() * g.kk()));
                CHECK(worst_error(r.dw, it->second.dw) <= 2e-6 * double(g.n * g.columns()));
                CHECK(worst_error(r.db, it->second.db) <= 2e-6 * double(g.n * g.columns()));
            }
        }
    }
    CHECK(variants == int(kernels::supported_isas().size()));
}

namespace {

// Restores the thread count even when a check throws.
struct ThreadsGuard {
    int chosen = num_threads();
    ~ThreadsGuard() { set_num_threads(chosen); }
};

template <class T>
std::vector<T> random_values(size_t n, uint64_t seed)
{
    const std::vector<float> f = random_floats(n, seed);
    return {f.begin(), f.end()};
}

template <class T>
void each_gradient_alone()
{
    // conv_backward skips dx, dw or db when its pointer is null: the workspace
    // and the per-part buffers then shrink, and the parts (one on one thread
    // or inside a parallel region, several otherwise) sum only what is there.
    // Shapes: col2im (2 -> 3 channels) and the transposed input gradient (8 -> 4).
    const std::vector<KernelConv> cases = {
        {"col2im, 2 -> 3, padding 1", 3, 2, 5, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"transposed dx, 8 -> 4", 3, 8, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    };
    const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-14;
    ThreadsGuard threads;
    for (const KernelConv& c : cases) {
        CAPTURE(c.label);
        const kernels::Geometry g = kernels::make_geometry("conv2d", {c.n, c.c, c.h, c.w}, {c.kh, c.kw},
                                                           {c.sh, c.sw}, {c.ph, c.pw}, {c.dh, c.dw});
        const kernels::ConvShape s{g, c.groups, c.o, c.block_bytes};
        const std::vector<T> x = random_values<T>(size_t(g.n * g.c * g.h * g.w), 11);
        const std::vector<T> w = random_values<T>(size_t(c.o * s.k()), 12);
        const std::vector<T> b = random_values<T>(size_t(c.o), 13);
        const std::vector<T> gy = random_values<T>(size_t(g.n * c.o * g.columns()), 14);
        const ConvReference want = reference(s, x, w, b, gy);
        for (int nthreads : {1, 2}) {
            CAPTURE(nthreads);
            set_num_threads(nthreads);
            for (bool nested : {false, true}) {
                CAPTURE(nested);
                for (int mask = 1; mask < 8; ++mask) {  // which of dx, dw, db to compute
                    CAPTURE(mask);
                    const bool want_dx = mask & 1, want_dw = mask & 2, want_db = mask & 4;
                    std::vector<T> dx(x.size(), T(-7)), dw(w.size(), T(-7)), db(b.size(), T(-7));
                    auto run = [&] {
                        std::vector<T> workspace(
                            size_t(kernels::conv_backward_workspace(s, want_dx, want_dw, want_db)));
                        kernels::conv_backward(s, x.data(), w.data(), gy.data(), want_dx ? dx.data() : nullptr,
                                               want_dw ? dw.data() : nullptr, want_db ? db.data() : nullptr,
                                               workspace.data());
                    };
                    if (nested)
                        parallel_for(2, 1, [&](int64_t b0, int64_t) {
                            if (b0 == 0) run();
                        });
                    else
                        run();
                    // What is skipped stays untouched; what is computed matches the loops.
                    if (want_dx) CHECK(worst_error(dx, want.dx) <= tol * double(s.og() * g.kk()));
                    else CHECK(std::all_of(dx.begin(), dx.end(), [](T v) { return v == T(-7); }));
                    if (want_dw) CHECK(worst_error(dw, want.dw) <= tol * double(g.n * g.columns()));
                    else CHECK(std::all_of(dw.begin(), dw.end(), [](T v) { return v == T(-7); }));
                    if (want_db) CHECK(worst_error(db, want.db) <= tol * double(g.n * g.columns()));
                    else CHECK(std::all_of(db.begin(), db.end(), [](T v) { return v == T(-7); }));
                }
            }
        }
    }
}

}  // namespace

TEST_CASE("conv2d kernels: each gradient alone equals the full backward, on one thread, many, and nested")
{
    // In both dtypes: the op asks the float64 kernel for every gradient its
    // inputs need, so only here does float64 skip one.
    each_gradient_alone<float>();
    each_gradient_alone<double>();
}

namespace {

// C = alpha·op(A)·op(B) + beta·C in float64 loops, row-major as detail::gemm.
template <class T>
std::vector<double> gemm_reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                                   const std::vector<T>& a, const std::vector<T>& b, double beta,
                                   const std::vector<T>& c)
{
    std::vector<double> out(size_t(m * n));
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (int64_t p = 0; p < k; ++p)
                s += double(ta ? a[size_t(p * m + i)] : a[size_t(i * k + p)]) *
                     double(tb ? b[size_t(j * k + p)] : b[size_t(p * n + j)]);
            out[size_t(i * n + j)] = alpha * s + (beta == 0 ? 0.0 : beta * double(c[size_t(i * n + j)]));
        }
    return out;
}

template <class T>
void check_gemm_paths()
{
    ThreadsGuard threads;
    set_num_threads(2);
    // Split by columns (n >= m), by rows (m > n), or along k (a small C with a
    // long inner dimension), each with every transpose and beta 0 and 1; and
    // one thread, where BLAS runs the whole product.
    struct Case {
        int64_t m, n, k;
        int threads;
    };
    const Case cases[] = {{40, 200, 40, 2}, {200, 40, 40, 2}, {8, 8, 5000, 2}, {8, 8, 5000, 1}};
    for (const Case& cs : cases)
        for (bool ta : {false, true})
            for (bool tb : {false, true})
                for (double beta : {0.0, 1.0}) {
                    CAPTURE(cs.m);
                    CAPTURE(cs.n);
                    CAPTURE(cs.k);
                    CAPTURE(cs.threads);
                    CAPTURE(ta);
                    CAPTURE(tb);
                    CAPTURE(beta);
                    set_num_threads(cs.threads);
                    const std::vector<float> af = random_floats(size_t(cs.m * cs.k), 21);
                    const std::vector<float> bf = random_floats(size_t(cs.k * cs.n), 22);
                    const std::vector<float> cf = random_floats(size_t(cs.m * cs.n), 23);
                    const std::vector<T> a(af.begin(), af.end()), b(bf.begin(), bf.end());
                    std::vector<T> c(cf.begin(), cf.end());
                    const std::vector<double> want = gemm_reference(ta, tb, cs.m, cs.n, cs.k, 0.5, a, b, beta, c);
                    detail::gemm(ta, tb, cs.m, cs.n, cs.k, T(0.5), a.data(), ta ? cs.m : cs.k, b.data(),
                                 tb ? cs.k : cs.n, T(beta), c.data(), cs.n);
                    double worst = 0;
                    for (size_t i = 0; i < c.size(); ++i)
                        worst = std::max(worst, std::abs(double(c[i]) - want[i]) / std::max(1.0, std::abs(want[i])));
                    CHECK(worst <= (std::is_same_v<T, float> ? 1e-4 : 1e-12));
                }
}

}  // namespace

TEST_CASE("gemm: products split across threads by rows, columns or k match a plain loop (float32 and float64)")
{
    check_gemm_paths<float>();
    check_gemm_paths<double>();
}

TEST_CASE("gemm: empty products, k = 0, and sizes beyond BLAS's 32-bit ints")
{
    std::vector<double> a(6, 1.0), b(6, 1.0), c = {1, 2, 3, 4};
    // m = 0 or n = 0: nothing to write.
    detail::gemm(false, false, 0, 2, 3, 1.0, a.data(), 3, b.data(), 2, 0.0, c.data(), 2);
    detail::gemm(false, false, 2, 0, 3, 1.0, a.data(), 3, b.data(), 2, 0.0, c.data(), 2);
    CHECK(c == std::vector<double>{1, 2, 3, 4});
    // k = 0: C = beta·C, and exactly 0 when beta is 0 (not 0·C: C may hold NaN).
    detail::gemm(false, false, 2, 2, 0, 1.0, a.data(), 1, b.data(), 2, 2.0, c.data(), 2);
    CHECK(c == std::vector<double>{2, 4, 6, 8});
    c[1] = std::numeric_limits<double>::quiet_NaN();
    detail::gemm(false, false, 2, 2, 0, 1.0, a.data(), 1, b.data(), 2, 0.0, c.data(), 2);
    CHECK(c == std::vector<double>{0, 0, 0, 0});
    // Each size and leading dimension at INT_MAX is refused before any access.
    const int64_t big = std::numeric_limits<int>::max();
    const int64_t sizes[6][6] = {{big, 1, 1, 1, 1, 1}, {1, big, 1, 1, 1, 1}, {1, 1, big, 1, 1, 1},
                                 {1, 1, 1, big, 1, 1}, {1, 1, 1, 1, big, 1}, {1, 1, 1, 1, 1, big}};
    for (const auto& s : sizes) {
        try {
            detail::gemm(false, false, s[0], s[1], s[2], 1.0f, nullptr, s[3], nullptr, s[4], 0.0f, nullptr, s[5]);
            FAIL_CHECK("no error for sizes beyond 32 bits");
        } catch (const Error& e) {
            const std::string msg = e.what();
            CHECK(msg.find("matmul") != std::string::npos);
            CHECK(msg.find("exceed BLAS's 32-bit sizes") != std::string::npos);
        }
    }
}
