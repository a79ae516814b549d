// fp32 <-> fp16 / bf16 conversion of whole buffers, with an F16C path picked at run time so that one
// portable binary converts at vector speed on every x86-64 machine that has the instructions.
#ifndef SEGGER_CFLOAT16_H
#define SEGGER_CFLOAT16_H
#include <stddef.h>
#include <stdint.h>

/// dst[i] = fp16(src[i] * scale), round to nearest even; values beyond the fp16 range become ±inf.
void segger_f32_to_f16(const float *src, uint16_t *dst, size_t n, float scale);
/// dst[i] = fp32(src[i]).
void segger_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// inout[i] = fp16(fp32(inout[i]) + fp32(in[i])): the fp16 sum with fp32 accumulation.
void segger_f16_add(const uint16_t *in, uint16_t *inout, size_t n);
/// dst[i] = bf16(src[i] * scale), round to nearest even.
void segger_f32_to_bf16(const float *src, uint16_t *dst, size_t n, float scale);
/// dst[i] = fp32(src[i]).
void segger_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/// inout[i] = bf16(fp32(inout[i]) + fp32(in[i])).
void segger_bf16_add(const uint16_t *in, uint16_t *inout, size_t n);
/// 1 when the F16C path is in use.
int segger_f16c_available(void);
#endif
