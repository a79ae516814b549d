// libzstd from Debian's libzstd-dev: Parquet pages are compressed with the one-shot API.
#ifndef SEGGER_CZSTD_SHIM_H
#define SEGGER_CZSTD_SHIM_H
#include <zstd.h>
#endif
