// softmax and log_softmax: forward loops over the [outer, n, inner] view of the
// axis (one pass per contiguous row when the axis is the last one), backward
// rules, samples. The first-order backward runs a fused loop; with grad mode
// on (create_graph) the same formula is written in tapegrad ops so it can be
// differentiated again.
#include "ops/softmax.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/core/op.hpp"
#include "ops/elementwise.hpp"
#include "engine/kernels/elementwise.hpp"
#include "ops/reduction.hpp"

namespace tg {

namespace {

// --- exp for float, vectorised ------------------------------------------------
// exp dominates softmax and cross-entropy, and glibc's expf is one call per
// element. This one works on GCC vectors (4 lanes with SSE2, 8 with AVX2,
// chosen at run time): exp(x) = 2^n · e^r with n = round(x·log2 e) and
// |r| <= ln2/2, e^r by the Cephes polynomial (about 1 ulp). Callers pass
// x - shift <= 0 (shift is the row's maximum or log-sum-exp); below -87.3 the
// result is 0, and NaN stays NaN.
// 8-lane vectors only ever live inside the AVX2 functions (everything is
// inlined there), so the ABI note about passing them does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float f4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));
typedef float f8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));

template <class V, class I>
[[gnu::always_inline]] inline V exp_v(V x)
{
    constexpr float lo = -87.33654f, hi = 88.37626f;
    I low = x < lo;
    V c = low ? V{} + lo : x;
    c = c > hi ? V{} + hi : c;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer.
    V n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    V r = c - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    V p = V{} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    V scale = (V)((__builtin_convertvector(n, I) + 127) << 23);
    return low ? V{} : p * scale;
}

template <class V>
[[gnu::always_inline]] inline V load(const float* p)
{
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class V>
[[gnu::always_inline]] inline void store(float* p, V v)
{
    std::memcpy(p, &v, sizeof v);
}

// Rows shorter than a vector: the next narrower kernel, or plain scalar code.
inline void exp_row_scalar(const float* x, float shift, float* out, int64_t n, float scale, float offset)
{
    for (int64_t k = 0; k < n; ++k) out[k] = std::exp(x[k] - shift) * scale + offset;
}
inline float logsumexp_row_scalar(const float* x, int64_t n)
{
    float m = -INFINITY;
    for (int64_t k = 0; k < n; ++k) m = m < x[k] ? x[k] : m;
    if (!(m > -INFINITY && m < INFINITY)) return m + std::log(float(n));
    float s = 0;
    for (int64_t k = 0; k < n; ++k) s += std::exp(x[k] - m);
    return m + std::log(s);
}

// out[k] = exp(x[k] - shift)·scale + offset; out may be x. The last,
// partial vector is the row's last full vector, overlapping the one before
// (loaded before any store, so an in-place call reads the original values).
template <class V, class I>
[[gnu::always_inline]] inline void exp_row_v(const float* x, float shift, float* out, int64_t n, float scale,
                                             float offset)
{
    constexpr int64_t L = sizeof(V) / 4;
    if (n < L) {
        if constexpr (L == 8) exp_row_v<f4, i4>(x, shift, out, n, scale, offset);
        else exp_row_scalar(x, shift, out, n, scale, offset);
        return;
    }
    V last = load<V>(x + n - L);
    int64_t k = 0;
    for (; k + L <= n; k += L) store(out + k, exp_v<V, I>(load<V>(x + k) - shift) * scale + offset);
    if (k < n) store(out + n - L, exp_v<V, I>(last - shift) * scale + offset);
}

// log Σ exp(x[k]) = m + log Σ exp(x[k] - m), m the maximum.
template <class V, class I>
[[gnu::always_inline]] inline float logsumexp_row_v(const float* x, int64_t n)
{
    constexpr int64_t L = sizeof(V) / 4;
    if (n < L) {
        if constexpr (L == 8) return logsumexp_row_v<f4, i4>(x, n);
        else return logsumexp_row_scalar(x, n);
    }
    V mv = load<V>(x + n - L);  // the overlap does not change a maximum
    int64_t k = 0;
    for (; k + L <= n; k += L) {
        V v = load<V>(x + k);
        mv = mv < v ? v : mv;  // NaN is skipped here and caught by the sum
    }
    float m = mv[0];
    for (int64_t j = 1; j < L; ++j) m = m < mv[j] ? mv[j] : m;
    if (!(m > -INFINITY && m < INFINITY)) return m + std::log(float(n));  // ±inf rows
    V acc{};
    for (k = 0; k + L <= n; k += L) acc += exp_v<V, I>(load<V>(x + k) - m);
    if (k < n) {
        // Only the lanes past the full vectors count.
        I lane;
        for (int64_t j = 0; j < L; ++j) lane[j] = int32_t(j);
        V e = exp_v<V, I>(load<V>(x + n - L) - m);
        acc += lane >= int32_t(L - (n - k)) ? e : V{};
    }
    float s = 0;
    for (int64_t j = 0; j < L; ++j) s += acc[j];
    return m + std::log(s);
}

[[gnu::target("avx2,fma")]] void exp_row_avx2(const float* x, float shift, float* out, int64_t n, float scale,
                                              float offset)
{
    exp_row_v<f8, i8>(x, shift, out, n, scale, offset);
}
[[gnu::target("avx2,fma")]] float logsumexp_row_avx2(const float* x, int64_t n)
{
    return logsumexp_row_v<f8, i8>(x, n);
}
void exp_row_sse(const float* x, float shift, float* out, int64_t n, float scale, float offset)
{
    exp_row_v<f4, i4>(x, shift, out, n, scale, offset);
}
float logsumexp_row_sse(const float* x, int64_t n) { return logsumexp_row_v<f4, i4>(x, n); }

bool detect_avx2()
{
    __builtin_cpu_init();  // this runs from a static initialiser, possibly before libgcc's own
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
const bool has_avx2 = detect_avx2();

// Row reductions with several partial results, so they vectorise without
// reassociating floating-point sums behind the compiler's back.
constexpr int lanes = 8;

template <class T> T max_row(const T* x, int64_t n)
{
    T acc[lanes];
    for (int j = 0; j < lanes; ++j) acc[j] = -INFINITY;
    int64_t k = 0;
    for (; k + lanes <= n; k += lanes)
        for (int j = 0; j < lanes; ++j) acc[j] = acc[j] < x[k + j] ? x[k + j] : acc[j];
    T m = -INFINITY;
    for (; k < n; ++k) m = m < x[k] ? x[k] : m;
    for (int j = 0; j < lanes; ++j) m = m < acc[j] ? acc[j] : m;
    return m;
}

template <class T> T sum_row(const T* x, int64_t n)
{
    T acc[lanes] = {};
    int64_t k = 0;
    for (; k + lanes <= n; k += lanes)
        for (int j = 0; j < lanes; ++j) acc[j] += x[k + j];
    T s = 0;
    for (; k < n; ++k) s += x[k];
    for (int j = 0; j < lanes; ++j) s += acc[j];
    return s;
}

template <class T> T dot_row(const T* x, const T* y, int64_t n)
{
    T acc[lanes] = {};
    int64_t k = 0;
    for (; k + lanes <= n; k += lanes)
        for (int j = 0; j < lanes; ++j) acc[j] += x[k + j] * y[k + j];
    T s = 0;
    for (; k < n; ++k) s += x[k] * y[k];
    for (int j = 0; j < lanes; ++j) s += acc[j];
    return s;
}

// Runs row(o) for each contiguous row (inner == 1), or block(o, scratch) for
// each [n, inner] block of a strided axis, in parallel over `outer`.
template <class T, class Row, class Block>
void for_each_row(const kernels::AxisSplit& s, Row row, Block block)
{
    // exp costs several elementwise ops: smaller chunks than elementwise loops.
    int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(s.n * s.inner, 1));
    parallel_for(s.outer, grain, [&](int64_t o0, int64_t o1) {
        if (s.inner == 1) {
            for (int64_t o = o0; o < o1; ++o) row(o);
            return;
        }
        std::vector<T> scratch(size_t(2 * s.inner));
        for (int64_t o = o0; o < o1; ++o) block(o, scratch.data(), scratch.data() + s.inner);
    });
}

template <class T>
void softmax_forward(const T* x, T* y, const kernels::AxisSplit& s, bool log)
{
    const int64_t n = s.n, in = s.inner;
    for_each_row<T>(
        s,
        [&](int64_t o) {
            const T* xr = x + o * n;
            T* yr = y + o * n;
            if (log) {
                T lse = detail::logsumexp_row(xr, n);
                for (int64_t k = 0; k < n; ++k) yr[k] = xr[k] - lse;
                return;
            }
            detail::exp_row(xr, max_row(xr, n), yr, n);
            T inv = T(1) / sum_row(yr, n);
            for (int64_t k = 0; k < n; ++k) yr[k] *= inv;
        },
        [&](int64_t o, T* mx, T* sum) {
            const T* xb = x + o * n * in;
            T* yb = y + o * n * in;
            for (int64_t i = 0; i < in; ++i) { mx[i] = -INFINITY; sum[i] = 0; }
            for (int64_t k = 0; k < n; ++k)
                for (int64_t i = 0; i < in; ++i) mx[i] = mx[i] < xb[k * in + i] ? xb[k * in + i] : mx[i];
            // exp(x - max) row by row through y (log_softmax overwrites it below).
            for (int64_t k = 0; k < n; ++k) {
                T* e = yb + k * in;
                for (int64_t i = 0; i < in; ++i) e[i] = xb[k * in + i] - mx[i];
                detail::exp_row(e, T(0), e, in);
                for (int64_t i = 0; i < in; ++i) sum[i] += e[i];
            }
            if (log) {
                for (int64_t i = 0; i < in; ++i) mx[i] += std::log(sum[i]);
                for (int64_t k = 0; k < n; ++k)
                    for (int64_t i = 0; i < in; ++i) yb[k * in + i] = xb[k * in + i] - mx[i];
            } else {
                for (int64_t i = 0; i < in; ++i) sum[i] = T(1) / sum[i];
                for (int64_t k = 0; k < n; ++k)
                    for (int64_t i = 0; i < in; ++i) yb[k * in + i] *= sum[i];
            }
        });
}

// softmax: dx = y·(g - Σ g·y); log_softmax: dx = g - e^y·Σ g (sums along the axis).
template <class T>
void softmax_backward(const T* g, const T* y, T* dx, const kernels::AxisSplit& s, bool log)
{
    const int64_t n = s.n, in = s.inner;
    for_each_row<T>(
        s,
        [&](int64_t o) {
            const T* gr = g + o * n;
            const T* yr = y + o * n;
            T* dr = dx + o * n;
            if (log) {
                T total = sum_row(gr, n);
                detail::exp_row(yr, T(0), dr, n);
                for (int64_t k = 0; k < n; ++k) dr[k] = gr[k] - dr[k] * total;
            } else {
                T d = dot_row(gr, yr, n);
                for (int64_t k = 0; k < n; ++k) dr[k] = yr[k] * (gr[k] - d);
            }
        },
        [&](int64_t o, T* acc, T*) {
            const T* gb = g + o * n * in;
            const T* yb = y + o * n * in;
            T* db = dx + o * n * in;
            for (int64_t i = 0; i < in; ++i) acc[i] = 0;
            for (int64_t k = 0; k < n; ++k)
                for (int64_t i = 0; i < in; ++i) acc[i] += log ? gb[k * in + i] : gb[k * in + i] * yb[k * in + i];
            for (int64_t k = 0; k < n; ++k) {
                const T *gk = gb + k * in, *yk = yb + k * in;
                T* dk = db + k * in;
                if (log) {
                    detail::exp_row(yk, T(0), dk, in);
                    for (int64_t i = 0; i < in; ++i) dk[i] = gk[i] - dk[i] * acc[i];
                } else {
                    for (int64_t i = 0; i < in; ++i) dk[i] = yk[i] * (gk[i] - acc[i]);
                }
            }
        });
}

}  // namespace

namespace detail {

float logsumexp_row(const float* x, int64_t n)
{
    return has_avx2 ? logsumexp_row_avx2(x, n) : logsumexp_row_sse(x, n);
}
void exp_row(const float* x, float shift, float* out, int64_t n, float scale, float offset)
{
    has_avx2 ? exp_row_avx2(x, shift, out, n, scale, offset) : exp_row_sse(x, shift, out, n, scale, offset);
}

// float64 is the checker's dtype: the library exp, exact to the last bit.
double logsumexp_row(const double* x, int64_t n)
{
    double m = max_row(x, n);
    if (!(m > -INFINITY && m < INFINITY)) return m + std::log(double(n));
    double s = 0;
    for (int64_t k = 0; k < n; ++k) s += std::exp(x[k] - m);
    return m + std::log(s);
}
void exp_row(const double* x, double shift, double* out, int64_t n, double scale, double offset)
{
    for (int64_t k = 0; k < n; ++k) out[k] = std::exp(x[k] - shift) * scale + offset;
}

}  // namespace detail
namespace {

// softmax (Log = false) and log_softmax (Log = true) along one axis.
template <bool Log>
struct Softmax : Op<Softmax<Log>> {
    static constexpr const char* name = Log ? "log_softmax" : "softmax";
    static constexpr Saves saves = save_output;
    struct Attrs {
        int64_t axis;  // normalised by forward
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), name, ": undefined operand");
        a.axis = normalize_axis(a.axis, x.dim(), name);
        kernels::AxisSplit s = kernels::split_at(x.shape(), a.axis);
        Tensor out = Tensor::empty(x.shape(), x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), name, [&] { softmax_forward(x.data<scalar_t>(), out.data<scalar_t>(), s, Log); });
        return out;
    }
    // log_softmax: dx = g - e^y·Σ g; softmax: dx = y·(g - Σ g·y) (sums along the axis).
    static tensor_list backward(const BackwardArgs& b, const Attrs& a)
    {
        const Tensor &y = b.output(), &g = b.grad;
        if (Log) return {sub(g, mul(exp(y), sum(g, {a.axis}, true)))};
        return {mul(y, sub(g, sum(mul(g, y), {a.axis}, true)))};
    }
    static tensor_list fused_backward(const BackwardArgs& b, const Attrs& a)
    {
        const Tensor &y = b.output(), &g = b.grad;
        Tensor dx = Tensor::empty(y.shape(), y.dtype());
        kernels::AxisSplit s = kernels::split_at(y.shape(), a.axis);
        TG_DISPATCH_FLOATING(y.dtype(), name, [&] {
            softmax_backward(g.data<scalar_t>(), y.data<scalar_t>(), dx.data<scalar_t>(), s, Log);
        });
        return {dx};
    }
    static std::vector<OpSample> samples()
    {
        using S = Softmax<Log>;
        std::vector<OpSample> out = {
            S::sample("[4,7] last axis", {real("x", {4, 7})}, Attrs{-1}),
            S::sample("[3,4,5] axis 1", {real("x", {3, 4, 5})}, Attrs{1}),
            S::sample("[5,3] axis 0", {real("x", {5, 3})}, Attrs{0}),
            S::sample("[2,19] last axis, row longer than 8", {real("x", {2, 19})}, Attrs{-1}),
        };
        if (!Log) out.push_back(S::sample("[6] 1-d", {real("x", {6})}, Attrs{0}));
        return out;
    }
};
TG_REGISTER_OP(Softmax<false>);
TG_REGISTER_OP(Softmax<true>);

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) { return Softmax<false>::call({x}, {axis}); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return Softmax<true>::call({x}, {axis}); }

}  // namespace tg
