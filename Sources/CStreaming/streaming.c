#include "cstreaming.h"
#include <stdint.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

typedef float f4 __attribute__((ext_vector_type(4)));

void segger_fill_rows_streaming(float *dst, size_t ld, const float *row, size_t cols, size_t rows) {
    for (size_t r = 0; r < rows; r++) {
        float *d = dst + r * ld;
        size_t c = 0;
        // Up to the first 16-byte boundary with plain stores, then 4 floats per non-temporal store.
        while (c < cols && ((uintptr_t)(d + c) & 15) != 0) { d[c] = row ? row[c] : 0.0f; c++; }
        for (; c + 4 <= cols; c += 4) {
            f4 v = 0;
            if (row) __builtin_memcpy(&v, row + c, sizeof v);
            __builtin_nontemporal_store(v, (f4 *)(d + c));
        }
        for (; c < cols; c++) d[c] = row ? row[c] : 0.0f;
    }
#if defined(__x86_64__) || defined(__i386__)
    _mm_sfence();
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}
