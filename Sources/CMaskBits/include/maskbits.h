// Relu mask bits for the GATv2 kernels: one AVX-512 compare into a mask register, which Swift cannot
// express (its SIMD masks have no bit-cast to an integer; the lane sum it compiles to instead is ~11
// instructions). `static inline`, so Swift inlines it into the calling loop; other CPUs get the loop.
#ifndef SEGGER_MASKBITS_H
#define SEGGER_MASKBITS_H
#include <stdint.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/// Bit l (0..<16) set where p[l] > 0 (clear for NaN).
static inline uint16_t segger_positive_bits16(const float *p) {
#if defined(__AVX512F__)
    return (uint16_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(p), _mm512_setzero_ps(), _CMP_GT_OQ);
#else
    uint16_t bits = 0;
    for (int l = 0; l < 16; l++) bits |= (uint16_t)(p[l] > 0) << l;
    return bits;
#endif
}
#endif
