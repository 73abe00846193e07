// 2×2 max pooling with stride 2, forward with argmax and dense backward, for
// float (compiled per instruction set by pool.cpp).
//
// The common case gets branch-free kernels: the generic loop's compares
// depend on the data, and on random activations about half of them were
// mispredicted (a fifth of a training step's time went there). A step takes
// `lanes` adjacent windows of one output row: the even and odd columns of
// 2·lanes inputs of each of its two input rows.
//
// Nothing is loaded or stored in part (masked stores are microcoded and slow
// on AMD cores, and a copy through the stack became memmove calls). A row of
// at least `lanes` windows ends with a step that overlaps the one before,
// rewriting some outputs with the same values. A shorter row takes a whole
// step anyway: it reads on into the rows after it and writes its extra lanes
// into the outputs of the rows after it, which rewrite them in turn (rows run
// in order). Only rows whose step would reach past the caller's planes take
// the scalar rows of pool.cpp. Indices are int32 in the lanes: a plane has
// fewer than 2^30 elements.

typedef uint32_t vu __attribute__((vector_size(sizeof(vi))));

template <class V>
[[gnu::always_inline]] inline V load_bits(const void* p)
{
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class V>
[[gnu::always_inline]] inline void store_bits(void* p, V v)
{
    std::memcpy(p, &v, sizeof v);
}

// 0, 1, ..., lanes - 1.
[[gnu::always_inline]] inline vi ramp()
{
#if TG_SIMD_LANES == 8
    return vi{0, 1, 2, 3, 4, 5, 6, 7};
#else
    return vi{0, 1, 2, 3};
#endif
}

// The even (odd) lanes of a, then those of b. With 8 lanes: within each
// 128-bit half first (one shufps), then the 64-bit pairs in order.
template <class V>
[[gnu::always_inline]] inline V even(V a, V b)
{
#if TG_SIMD_LANES == 8
    const V t = __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14);
    return __builtin_shufflevector(t, t, 0, 1, 4, 5, 2, 3, 6, 7);
#else
    return __builtin_shufflevector(a, b, 0, 2, 4, 6);
#endif
}
template <class V>
[[gnu::always_inline]] inline V odd(V a, V b)
{
#if TG_SIMD_LANES == 8
    const V t = __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
    return __builtin_shufflevector(t, t, 0, 1, 4, 5, 2, 3, 6, 7);
#else
    return __builtin_shufflevector(a, b, 1, 3, 5, 7);
#endif
}

// d[0, 2·lanes) = a0 b0 a1 b1 ...
[[gnu::always_inline]] inline void store_pairs(float* d, vf a, vf b)
{
#if TG_SIMD_LANES == 8
    store(d, __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11));
    store(d + 8, __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15));
#else
    store(d, __builtin_shufflevector(a, b, 0, 4, 1, 5));
    store(d + 4, __builtin_shufflevector(a, b, 2, 6, 3, 7));
#endif
}

// idx[0, lanes) = the lanes of v, which are not negative: zero-extended by
// interleaving with zeros (a vpmovzxdq per half on AVX2).
[[gnu::always_inline]] inline void store_indices(int64_t* idx, vi v)
{
#if TG_SIMD_LANES == 8
    const vi4 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3), hi = __builtin_shufflevector(v, v, 4, 5, 6, 7);
    store_bits(idx, __builtin_shufflevector(lo, vi4{}, 0, 4, 1, 5, 2, 6, 3, 7));
    store_bits(idx + 4, __builtin_shufflevector(hi, vi4{}, 0, 4, 1, 5, 2, 6, 3, 7));
#else
    store_bits(idx, __builtin_shufflevector(v, vi{}, 0, 4, 1, 5));
    store_bits(idx + 2, __builtin_shufflevector(v, vi{}, 2, 6, 3, 7));
#endif
}

// "u beats v": u > v, or u is NaN. Applied in scan order it keeps the first
// maximum, and the last NaN, as the generic loop (and PyTorch).
[[gnu::always_inline]] inline void beat(vf u, vi ui, vf& v, vi& vi_)
{
    const vi b = (u > v) | (u != u);
    v = b ? u : v;
    vi_ = b ? ui : vi_;
}

// `lanes` windows of one output row: input rows r0 and r1 (r0 at plane offset base).
[[gnu::always_inline]] inline void max2x2_step(const float* r0, const float* r1, int32_t base, int32_t w, float* y,
                                               int64_t* idx)
{
    const vf a0 = load<vf>(r0), a1 = load<vf>(r0 + lanes), b0 = load<vf>(r1), b1 = load<vf>(r1 + lanes);
    const vi i00 = base + 2 * ramp();
    vf v = even(a0, a1);
    vi vi_ = i00;
    beat(odd(a0, a1), i00 + 1, v, vi_);
    beat(even(b0, b1), i00 + w, v, vi_);
    beat(odd(b0, b1), i00 + (w + 1), v, vi_);
    store(y, v);
    store_indices(idx, vi_);
}

// Planes [p0, p1) of h×w, ho = h/2 by wo = w/2 outputs each.
void max2x2_planes(const float* x, float* y, int64_t* idx, int64_t p0, int64_t p1, int64_t h, int64_t w)
{
    const int64_t ho = h / 2, wo = w / 2, plane = h * w;
    for (int64_t p = p0; p < p1; ++p)
        for (int64_t oh = 0; oh < ho; ++oh) {
            const int64_t in = p * plane + 2 * oh * w, out = (p * ho + oh) * wo;
            const float* r0 = x + in;
            const int32_t base = int32_t(2 * oh * w);
            if (wo >= lanes) {
                int64_t ow = 0;
                for (; ow + lanes <= wo; ow += lanes)
                    max2x2_step(r0 + 2 * ow, r0 + w + 2 * ow, base + int32_t(2 * ow), int32_t(w), y + out + ow,
                                idx + out + ow);
                if (ow < wo) {
                    ow = wo - lanes;  // overlapping the step before
                    max2x2_step(r0 + 2 * ow, r0 + w + 2 * ow, base + int32_t(2 * ow), int32_t(w), y + out + ow,
                                idx + out + ow);
                }
            } else if (in + w + 2 * lanes <= p1 * plane && out + lanes <= p1 * ho * wo) {
                max2x2_step(r0, r0 + w, base, int32_t(w), y + out, idx + out);  // into the rows after
            } else {
                max2x2_row_scalar(r0, r0 + w, base, w, wo, y + out, idx + out);
            }
        }
}

// The backward of `lanes` windows written densely into input rows d0 and d1
// (d0 at plane offset base): g at each window's argmax, 0 at its other three
// places, as 0 + g like the scatter (-0 lands as +0). Returns the lanes whose
// index is in its own window.
[[gnu::always_inline]] inline vi unpool2x2_step(const float* g, const int64_t* idx, int32_t base, int32_t w,
                                                float* d0, float* d1)
{
    // The int64 indices as their low words (the even int32 lanes) and high words.
    const vi q0 = load_bits<vi>(idx), q1 = load_bits<vi>(idx + lanes / 2);
    const vi lo = even(q0, q1), hi = odd(q0, q1);
    // In its window b + {0, 1, w, w + 1} (b = base + 2·lane, b + w + 1 < 2^30):
    // the high word is 0 and the low word minus b is one of those offsets; no
    // other int64 has both, so 32-bit lanes decide it.
    const vi o = vi(vu(lo) - vu(base + 2 * ramp()));
    const vi in = (hi == 0) & ((o == 0) | (o == 1) | (o == w) | (o == w + 1));
    const vf gv = vf{} + load<vf>(g);
    store_pairs(d0, o == 0 ? gv : vf{}, o == 1 ? gv : vf{});
    store_pairs(d1, o == w ? gv : vf{}, o == w + 1 ? gv : vf{});
    return in;
}

// One plane of ho×wo windows tiling 2ho × w; the next planes_after planes (of
// g, idx and d) are the caller's, to be done after this one. False (part of d
// written, maybe into the planes after) when an index is not in its own window.
bool unpool2x2_plane(const float* g, const int64_t* idx, int64_t ho, int64_t wo, int64_t w, float* d,
                     int64_t planes_after)
{
    vi in = ~vi{};
    for (int64_t oh = 0; oh < ho; ++oh) {
        const float* go = g + oh * wo;
        const int64_t* io = idx + oh * wo;
        float *d0 = d + 2 * oh * w, *d1 = d0 + w;
        const int32_t base = int32_t(2 * oh * w);
        if (wo >= lanes) {
            int64_t ow = 0;
            for (; ow + lanes <= wo; ow += lanes)
                in &= unpool2x2_step(go + ow, io + ow, base + int32_t(2 * ow), int32_t(w), d0 + 2 * ow, d1 + 2 * ow);
            if (ow < wo) {
                ow = wo - lanes;  // overlapping the step before
                in &= unpool2x2_step(go + ow, io + ow, base + int32_t(2 * ow), int32_t(w), d0 + 2 * ow, d1 + 2 * ow);
            }
        } else if (oh * wo + lanes <= (1 + planes_after) * ho * wo &&
                   (2 * oh + 1) * w + 2 * lanes <= (1 + planes_after) * 2 * ho * w) {
            // Into the rows after (d1 is stored after d0): the extra lanes do not count.
            in &= unpool2x2_step(go, io, base, int32_t(w), d0, d1) | (ramp() >= int32_t(wo));
        } else if (!unpool2x2_row_scalar(go, io, base, w, wo, d0, d1)) {
            return false;
        }
    }
    return all_true(in);
}
