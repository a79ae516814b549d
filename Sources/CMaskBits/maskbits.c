// The functions of this module are `static inline` in include/maskbits.h; SwiftPM needs one source file.
#include "maskbits.h"
