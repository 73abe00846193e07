// float32 products with a short side, for convolutions with few channels
// (compiled per instruction set by gemm.cpp; see gemm.hpp for when they run).
//
// A 3×3 convolution of one input channel is a GEMM with an inner dimension of
// 9 (forward), 9 rows (wᵀ·gy) or 9 columns (the weight gradient). BLAS spends
// most of such a call packing its operands and storing partial tiles, so these
// shapes get register-blocked kernels that read the operands in place.
//
// The accumulators are named variables: GCC keeps arrays of vectors on the
// stack, spilling every multiply-add.

// C[MR × nc] = A[MR × k] · B[k × nc] (+ bias[r] on row r when given), A element
// (r, p) at a[r·ars + p·acs]. A tile is V vectors of columns (nc = V·lanes, or
// fewer when Tail: the last vector then holds the nc − (V − 1)·lanes left).
template <int MR, int V, bool Tail>
inline void short_k_tile(int64_t k, const float* a, int64_t ars, int64_t acs, const float* b, int64_t ldb, float* c,
                         int64_t ldc, int64_t nc, const float* bias)
{
    static_assert(V == 1 || V == 2);
    const int64_t tail = nc - (V - 1) * lanes;  // the last vector's columns
    // One column vector of B's row p: vector 0, or the last (partial when Tail).
    auto load_b = [&](const float* row, int v) {
        if (Tail && v == V - 1) return load_first(row + v * lanes, tail);
        return load<vf>(row + v * lanes);
    };
    auto store_c = [&](float* row, int v, vf x) {
        if (Tail && v == V - 1) store_first(row + v * lanes, x, tail);
        else store(row + v * lanes, x);
    };
    vf x00{}, x01{}, x10{}, x11{}, x20{}, x21{}, x30{}, x31{}, x40{}, x41{}, x50{}, x51{};
#define TG_ROWS(M) M(0, x00, x01) M(1, x10, x11) M(2, x20, x21) M(3, x30, x31) M(4, x40, x41) M(5, x50, x51)
    if (bias) {
#define TG_BIAS(r, v0, v1) \
        if constexpr (MR > r) v0 = v1 = splat<vf>(bias[r]);
        TG_ROWS(TG_BIAS)
#undef TG_BIAS
    }
    for (int64_t p = 0; p < k; ++p) {
        const float* bp = b + p * ldb;
        const vf b0 = load_b(bp, 0), b1 = V > 1 ? load_b(bp, 1) : vf{};
        const float* ap = a + p * acs;
#define TG_FMA(r, v0, v1)                                \
        if constexpr (MR > r) {                          \
            const vf av = splat<vf>(ap[r * ars]);        \
            v0 = fma(av, b0, v0);                        \
            if constexpr (V > 1) v1 = fma(av, b1, v1);   \
        }
        TG_ROWS(TG_FMA)
#undef TG_FMA
    }
#define TG_STORE(r, v0, v1)                               \
    if constexpr (MR > r) {                               \
        store_c(c + r * ldc, 0, v0);                      \
        if constexpr (V > 1) store_c(c + r * ldc, 1, v1); \
    }
    TG_ROWS(TG_STORE)
#undef TG_STORE
#undef TG_ROWS
}

// MR rows of C: full tiles of two vectors, then the rest of the columns by a
// full tile that ends at column n, overlapping the one before (each column is
// computed alone, so the overlap stores what is there again). Partial vectors
// only for rows narrower than that: with the mask, GCC runs out of registers
// and keeps accumulators on the stack.
template <int MR>
inline void short_k_rows(int64_t n, int64_t k, const float* a, int64_t ars, int64_t acs, const float* b, int64_t ldb,
                         float* c, int64_t ldc, const float* bias)
{
    auto tile = [&]<int V, bool Tail>(int64_t j, int64_t nc) {
        short_k_tile<MR, V, Tail>(k, a, ars, acs, b + j, ldb, c + j, ldc, nc, bias);
    };
    int64_t j = 0;
    for (; j + 2 * lanes <= n; j += 2 * lanes) tile.template operator()<2, false>(j, 2 * lanes);
    const int64_t rest = n - j;
    if (rest == 0) return;
    if (rest <= lanes && n >= lanes) tile.template operator()<1, false>(n - lanes, lanes);
    else if (n >= 2 * lanes) tile.template operator()<2, false>(n - 2 * lanes, 2 * lanes);
    else if (n > lanes) tile.template operator()<2, true>(0, n);
    else tile.template operator()<1, true>(0, n);
}

void short_k_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t ars, int64_t acs, const float* b,
                  int64_t ldb, float* c, int64_t ldc, const float* bias)
{
    auto rows = [&]<int MR>(std::integral_constant<int, MR>, int64_t i) {
        short_k_rows<MR>(n, k, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc, bias ? bias + i : nullptr);
    };
    int64_t i = 0;
    for (; i + 6 <= m; i += 6) rows(std::integral_constant<int, 6>(), i);
    switch (m - i) {
    case 5: rows(std::integral_constant<int, 5>(), i); break;
    case 4: rows(std::integral_constant<int, 4>(), i); break;
    case 3: rows(std::integral_constant<int, 3>(), i); break;
    case 2: rows(std::integral_constant<int, 2>(), i); break;
    case 1: rows(std::integral_constant<int, 1>(), i); break;
    default: break;
    }
}

// C[m × n] += A[m × len] · B[n × len]ᵀ for few columns n: dot products of rows,
// four rows of A against three rows of B at a time (named accumulators, as above).
inline void dot_tile_4x3(int64_t len, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc)
{
    vf s00{}, s01{}, s02{}, s10{}, s11{}, s12{}, s20{}, s21{}, s22{}, s30{}, s31{}, s32{};
    int64_t p = 0;
    for (; p + lanes <= len; p += lanes) {
        const vf b0 = load<vf>(b + p), b1 = load<vf>(b + ldb + p), b2 = load<vf>(b + 2 * ldb + p);
        vf av = load<vf>(a + p);
        s00 = fma(av, b0, s00), s01 = fma(av, b1, s01), s02 = fma(av, b2, s02);
        av = load<vf>(a + lda + p);
        s10 = fma(av, b0, s10), s11 = fma(av, b1, s11), s12 = fma(av, b2, s12);
        av = load<vf>(a + 2 * lda + p);
        s20 = fma(av, b0, s20), s21 = fma(av, b1, s21), s22 = fma(av, b2, s22);
        av = load<vf>(a + 3 * lda + p);
        s30 = fma(av, b0, s30), s31 = fma(av, b1, s31), s32 = fma(av, b2, s32);
    }
    const vf sums[4][3] = {{s00, s01, s02}, {s10, s11, s12}, {s20, s21, s22}, {s30, s31, s32}};
    for (int r = 0; r < 4; ++r)
        for (int q = 0; q < 3; ++q) {
            float v = hsum(sums[r][q]);
            for (int64_t t = p; t < len; ++t) v += a[r * lda + t] * b[q * ldb + t];
            c[r * ldc + q] += v;
        }
}

inline void dot_1x1(int64_t len, const float* a, const float* b, float* c)
{
    vf s0{}, s1{};
    int64_t p = 0;
    for (; p + 2 * lanes <= len; p += 2 * lanes) {
        s0 = fma(load<vf>(a + p), load<vf>(b + p), s0);
        s1 = fma(load<vf>(a + p + lanes), load<vf>(b + p + lanes), s1);
    }
    float v = hsum(s0 + s1);
    for (; p < len; ++p) v += a[p] * b[p];
    *c += v;
}

void dot_gemm(int64_t m, int64_t n, int64_t len, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc)
{
    for (int64_t i = 0; i < m; i += 4) {
        const int64_t mr = std::min<int64_t>(4, m - i);
        for (int64_t j = 0; j < n; j += 3) {
            const int64_t nr = std::min<int64_t>(3, n - j);
            const float* ai = a + i * lda;
            const float* bj = b + j * ldb;
            float* cij = c + i * ldc + j;
            // 4×3 tiles; the edges one element at a time.
            if (mr == 4 && nr == 3) dot_tile_4x3(len, ai, lda, bj, ldb, cij, ldc);
            else
                for (int64_t r = 0; r < mr; ++r)
                    for (int64_t q = 0; q < nr; ++q) dot_1x1(len, ai + r * lda, bj + q * ldb, cij + r * ldc + q);
        }
    }
}
