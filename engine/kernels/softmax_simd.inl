// exp for float, vectorised (compiled per instruction set by softmax.cpp).
// exp dominates softmax and cross-entropy, and glibc's expf is one call per
// element. exp(x) = 2^n · e^r with n = round(x·log2 e) and |r| <= ln2/2, e^r by
// the Cephes polynomial (about 1 ulp). Callers pass x - shift <= 0 (shift is
// the row's maximum or log-sum-exp); below -87.3 the result is 0, and NaN stays NaN.

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

// Rows shorter than a vector: the next narrower kernel, or plain scalar code.
inline void exp_row_scalar(const float* x, float shift, float* out, int64_t n, float scale, float offset)
{
    for (int64_t k = 0; k < n; ++k) out[k] = std::exp(x[k] - shift) * scale + offset;
}
inline RowLse<float> logsumexp_row_scalar(const float* x, int64_t n)
{
    float m = -INFINITY;
    for (int64_t k = 0; k < n; ++k) m = m < x[k] ? x[k] : m;
    if (!(m > -INFINITY && m < INFINITY)) return {m, std::log(float(n))};
    float s = 0;
    for (int64_t k = 0; k < n; ++k) s += std::exp(x[k] - m);
    return {m, std::log(s)};
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
        if constexpr (L > 4) exp_row_v<vf4, vi4>(x, shift, out, n, scale, offset);
        else exp_row_scalar(x, shift, out, n, scale, offset);
        return;
    }
    V last = load<V>(x + n - L);
    int64_t k = 0;
    for (; k + L <= n; k += L) store(out + k, exp_v<V, I>(load<V>(x + k) - shift) * scale + offset);
    if (k < n) store(out + n - L, exp_v<V, I>(last - shift) * scale + offset);
}

// log Σ exp(x[k]) = m + log Σ exp(x[k] - m), m the maximum, as its two terms.
template <class V, class I>
[[gnu::always_inline]] inline RowLse<float> logsumexp_row_v(const float* x, int64_t n)
{
    constexpr int64_t L = sizeof(V) / 4;
    if (n < L) {
        if constexpr (L > 4) return logsumexp_row_v<vf4, vi4>(x, n);
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
    if (!(m > -INFINITY && m < INFINITY)) return {m, std::log(float(n))};  // ±inf rows
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
    return {m, std::log(s)};
}

void exp_row(const float* x, float shift, float* out, int64_t n, float scale, float offset)
{
    exp_row_v<vf, vi>(x, shift, out, n, scale, offset);
}
RowLse<float> logsumexp_row(const float* x, int64_t n) { return logsumexp_row_v<vf, vi>(x, n); }
