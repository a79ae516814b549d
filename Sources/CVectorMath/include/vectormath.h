// Vector math Swift's SIMD types do not lower to one instruction: Swift's SIMD16<Float>.squareRoot()
// compiles to sixteen scalar square roots; clang's elementwise builtin is one vector square root.
// `static inline`, so Swift inlines it into the calling loop (and compiles it for the module's CPU).
#ifndef SEGGER_VECTORMATH_H
#define SEGGER_VECTORMATH_H

/// 16 floats; Swift sees it as SIMD16<Float>.
typedef float segger_float16 __attribute__((ext_vector_type(16)));

/// The correctly rounded square root of each lane (the same numbers as Float.squareRoot()).
static inline segger_float16 segger_sqrt16(segger_float16 x) {
    return __builtin_elementwise_sqrt(x);
}
#endif
