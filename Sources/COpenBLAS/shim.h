#ifndef SEGGER_COPENBLAS_SHIM_H
#define SEGGER_COPENBLAS_SHIM_H
#include <cblas.h>
// Declared by OpenBLAS's cblas.h; repeated here so the intent is visible: threads per rank.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
#endif
