// The vector types and helpers of one instruction set: the one SIMD style of
// tapegrad's kernels. Kernels are written once against these, with GCC's
// vector extensions (+, *, <, ?: work lane by lane) and the few helpers below
// for what the extensions cannot say (fused multiply-add, masked loads);
// simd_regions.inl compiles them once per instruction set.
//
// Included inside the namespace of one region, where TG_SIMD_LANES is the
// number of floats in a native vector. No include guard: one copy per region.

constexpr int lanes = TG_SIMD_LANES;
typedef float vf __attribute__((vector_size(4 * TG_SIMD_LANES)));  // native width
typedef int32_t vi __attribute__((vector_size(4 * TG_SIMD_LANES)));
typedef float vf4 __attribute__((vector_size(16)));  // 128 bits, for short rows
typedef int32_t vi4 __attribute__((vector_size(16)));

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

template <class V>
[[gnu::always_inline]] inline V broadcast(float x)
{
    return V{} + x;
}

// a·b + c in one rounding where the instruction set has it.
[[gnu::always_inline]] inline vf fma(vf a, vf b, vf c)
{
#if TG_SIMD_LANES == 8
    return _mm256_fmadd_ps(a, b, c);
#else
    return a * b + c;
#endif
}

// The first n (< lanes) floats at p, zeros after; reads nothing past p + n.
[[gnu::always_inline]] inline vf load_first(const float* p, int64_t n)
{
#if TG_SIMD_LANES == 8
    const vi ramp = {0, 1, 2, 3, 4, 5, 6, 7};
    return _mm256_maskload_ps(p, (__m256i)(ramp < int32_t(n)));
#else
    vf v{};
    std::memcpy(&v, p, size_t(n) * sizeof(float));
    return v;
#endif
}

// Stores the first n (< lanes) lanes of v at p. Through memory, not a masked
// store: those are microcoded and slow on AMD cores.
[[gnu::always_inline]] inline void store_first(float* p, vf v, int64_t n)
{
    std::memcpy(p, &v, size_t(n) * sizeof(float));
}

// The sum of the lanes, halving: (lo + hi) until one lane is left.
template <class V>
[[gnu::always_inline]] inline float reduce_add(V v)
{
    constexpr int n = int(sizeof(V) / sizeof(float));
    float part[n];
    std::memcpy(part, &v, sizeof v);
    for (int width = n / 2; width >= 1; width /= 2)
        for (int j = 0; j < width; ++j) part[j] += part[j + width];
    return part[0];
}

// --- for the pooling kernels

// True when every lane of the mask m (lanes 0 or -1) is set: one movemask.
[[gnu::always_inline]] inline bool all_true(vi m)
{
#if TG_SIMD_LANES == 8
    return _mm256_movemask_ps((__m256)m) == 0xFF;
#else
    return _mm_movemask_ps((__m128)m) == 0xF;
#endif
}

// --- for the convolution kernels ----------------------------------------------------------
// (The including file includes <utility>.)

// x in every lane, in one instruction (vbroadcastss, from memory): broadcast(x)
// is V{} + x, an add GCC must keep before the broadcast, since 0 + -0 is +0.
template <class V, size_t... I>
[[gnu::always_inline]] inline V splat_lanes(float x, std::index_sequence<I...>)
{
    const V v = {x};
    return __builtin_shufflevector(v, v, (I * 0)...);
}

template <class V>
[[gnu::always_inline]] inline V splat(float x)
{
    return splat_lanes<V>(x, std::make_index_sequence<sizeof(V) / sizeof(float)>());
}

// The sum of the lanes in reduce_add's order ((lo + hi) until one lane is
// left) in vector registers: reduce_add's array goes through the stack.
[[gnu::always_inline]] inline float hsum(vf v)
{
#if TG_SIMD_LANES == 8
    const vf4 s = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
#else
    const vf4 s = v;
#endif
    const vf4 t = s + __builtin_shufflevector(s, s, 2, 3, 2, 3);
    return t[0] + t[1];
}
