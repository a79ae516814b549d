// Vector math Swift's SIMD types do not lower to one instruction: Swift's SIMD16<Float>.squareRoot()
// compiles to sixteen scalar square roots; clang's elementwise builtin is one vector square root. And
// lane shuffles: Swift's lowHalf/evenHalf are element loops, which LLVM reassembles into long chains of
// 128-bit inserts and extracts (measured: ~80 instructions for four lane sums, against 14 here).
// `static inline`, so Swift inlines it into the calling loop (and compiles it for the module's CPU).
#ifndef SEGGER_VECTORMATH_H
#define SEGGER_VECTORMATH_H

/// 16 floats; Swift sees it as SIMD16<Float>.
typedef float segger_float16 __attribute__((ext_vector_type(16)));

/// The correctly rounded square root of each lane (the same numbers as Float.squareRoot()).
static inline segger_float16 segger_sqrt16(segger_float16 x) {
    return __builtin_elementwise_sqrt(x);
}

/// 4 floats; Swift sees it as SIMD4<Float>.
typedef float segger_float4 __attribute__((ext_vector_type(4)));

/// The lane sums of four vectors, [Σ a, Σ b, Σ c, Σ d], each in this order: t_l = (v_l + v_{l+8}) +
/// (v_{l+4} + v_{l+12}) for l < 4, then (t_0 + t_1) + (t_2 + t_3). Nine shuffles and five adds for all four.
static inline segger_float4 segger_lane_sums4(segger_float16 a, segger_float16 b, segger_float16 c, segger_float16 d) {
#if defined(__AVX512F__)
    // An empty asm the optimizer cannot see through: inlined into a loop that sums a..d, LLVM otherwise
    // splits the whole loop into 256-bit halves to match the first shuffle, a slower kernel.
    __asm__("" : "+v"(a), "+v"(b), "+v"(c), "+v"(d));
#endif
    // [a_l + a_{l+8} | b_l + b_{l+8}] for l < 8, and the same for c, d.
    segger_float16 ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
                      + __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    segger_float16 cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
                      + __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    // 4 lanes per vector: [t_a | t_b | t_c | t_d] with t_l = (v_l + v_{l+8}) + (v_{l+4} + v_{l+12}).
    segger_float16 t = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27)
                     + __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    // Within each group of 4: (t_0 + t_1) + (t_2 + t_3) in its first lane.
    segger_float16 u = t + __builtin_shufflevector(t, t, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    segger_float16 w = u + __builtin_shufflevector(u, u, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    return __builtin_shufflevector(w, w, 0, 4, 8, 12);
}

typedef int segger_int4 __attribute__((ext_vector_type(4)));

// Exactly the operations written below (no fused multiply-adds), so that every build and every lane
// gives the same numbers.
#pragma clang fp contract(off)

/// e^x of each lane, within 1 ulp of the exact value (Cephes' expf: x = n·ln 2 + r with ln 2 in two parts,
/// a degree-6 polynomial for e^r, times 2^n). Results below the smallest normal float are 0; NaN stays NaN.
/// The softmax of the attention kernels calls it with four heads at a time instead of four calls to expf
/// (and the same function for one head at a time, so every shape gets the same numbers).
static inline segger_float4 segger_exp4(segger_float4 x) {
    const float log2e = 1.44269504088896341f, ln2hi = 0.693359375f, ln2lo = -2.12194440e-4f;
    segger_float4 n = __builtin_elementwise_floor(x * log2e + 0.5f);
    // Clamped so that the exponent bits below stay valid; out of range, the tests at the end pick the result.
    n = __builtin_elementwise_min(__builtin_elementwise_max(n, (segger_float4)(-126.0f)), (segger_float4)(127.0f));
    segger_float4 r = (x - n * ln2hi) - n * ln2lo;
    segger_float4 p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = (p * (r * r) + r) + 1.0f;
    segger_int4 bits = (__builtin_convertvector(n, segger_int4) + 127) << 23;
    segger_float4 y = p * (segger_float4)bits;
    y = x < -87.33654f ? (segger_float4)0.0f : y;
    y = x > 88.72283f ? (segger_float4)__builtin_inff() : y;
    return x != x ? x : y;
}

/// e^x by `segger_exp4` (the same numbers), for one value.
static inline float segger_exp1(float x) {
    return segger_exp4((segger_float4)x)[0];
}
#endif
