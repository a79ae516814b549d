// Filling large buffers with stores that bypass the caches (non-temporal stores). A normal store to a
// line that is not in cache first reads the line from memory ("read for ownership"); when a whole
// buffer is about to be overwritten, that read is wasted traffic. Used to initialize a GEMM's output
// rows (bias rows, or zeros) that are larger than the caches just before the GEMM adds to them.
#ifndef SEGGER_CSTREAMING_H
#define SEGGER_CSTREAMING_H
#include <stddef.h>

/// Rows 0..<rows of dst (row stride ld floats) get cols floats each: a copy of `row`, or zeros when
/// `row` is NULL. The bulk is written with non-temporal stores, then a store fence.
void segger_fill_rows_streaming(float *dst, size_t ld, const float *row, size_t cols, size_t rows);
#endif
