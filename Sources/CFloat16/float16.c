#include "cfloat16.h"
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SEGGER_X86 1
#endif

/* Portable scalar conversions (IEEE round to nearest even). */
static inline uint16_t f32_to_f16_scalar(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mant = x & 0x7fffffu;
    int32_t exp = (int32_t)((x >> 23) & 0xff);
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0)); /* inf / nan */
    int32_t e = exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);                         /* overflow -> inf */
    if (e <= 0) {                                                              /* subnormal or zero */
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1u);
        uint32_t mid = 1u << (shift - 1u);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;            /* may carry into inf: correct */
    return (uint16_t)half;
}

static inline float f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t x;
    if (exp == 0) {
        if (mant == 0) x = sign;
        else {
            exp = 127 - 15 + 1;
            while (!(mant & 0x400u)) { mant <<= 1; exp--; }
            mant &= 0x3ffu;
            x = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) x = sign | 0x7f800000u | (mant << 13);
    else x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f; memcpy(&f, &x, 4);
    return f;
}

static inline uint16_t f32_to_bf16_scalar(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return (uint16_t)(x >> 16);
}

static inline float bf16_to_f32_scalar(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f; memcpy(&f, &x, 4);
    return f;
}

#ifdef SEGGER_X86
__attribute__((target("avx,f16c")))
static void f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n, float scale) {
    size_t i = 0;
    __m256 s = _mm256_set1_ps(scale);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + i), s);
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; i++) dst[i] = f32_to_f16_scalar(src[i] * scale);
}

__attribute__((target("avx,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = f16_to_f32_scalar(src[i]);
}

__attribute__((target("avx,f16c")))
static void f16_add_f16c(const uint16_t *in, uint16_t *inout, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i)));
        __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(inout + i)));
        _mm_storeu_si128((__m128i *)(inout + i),
                         _mm256_cvtps_ph(_mm256_add_ps(a, b), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; i++) inout[i] = f32_to_f16_scalar(f16_to_f32_scalar(in[i]) + f16_to_f32_scalar(inout[i]));
}

static int has_f16c = -1;
static int f16c(void) {
    if (has_f16c < 0) {
        __builtin_cpu_init();
        has_f16c = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    }
    return has_f16c;
}
#else
static int f16c(void) { return 0; }
#endif

int segger_f16c_available(void) { return f16c(); }

void segger_f32_to_f16(const float *src, uint16_t *dst, size_t n, float scale) {
#ifdef SEGGER_X86
    if (f16c()) { f32_to_f16_f16c(src, dst, n, scale); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16_scalar(src[i] * scale);
}

void segger_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
#ifdef SEGGER_X86
    if (f16c()) { f16_to_f32_f16c(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32_scalar(src[i]);
}

void segger_f16_add(const uint16_t *in, uint16_t *inout, size_t n) {
#ifdef SEGGER_X86
    if (f16c()) { f16_add_f16c(in, inout, n); return; }
#endif
    for (size_t i = 0; i < n; i++) inout[i] = f32_to_f16_scalar(f16_to_f32_scalar(in[i]) + f16_to_f32_scalar(inout[i]));
}

void segger_f32_to_bf16(const float *src, uint16_t *dst, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_scalar(src[i] * scale);
}

void segger_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32_scalar(src[i]);
}

void segger_bf16_add(const uint16_t *in, uint16_t *inout, size_t n) {
    for (size_t i = 0; i < n; i++) inout[i] = f32_to_bf16_scalar(bf16_to_f32_scalar(in[i]) + bf16_to_f32_scalar(inout[i]));
}
