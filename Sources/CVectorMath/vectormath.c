// The functions of this module are `static inline` in include/vectormath.h; SwiftPM needs one source file.
#include "vectormath.h"
