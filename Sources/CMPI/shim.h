// Swift cannot import Open MPI's handle macros (they are addresses of incomplete structs), so each
// handle the project uses is returned by a static inline accessor.
#ifndef SEGGER_CMPI_SHIM_H
#define SEGGER_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm segger_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype segger_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype segger_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype segger_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype segger_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype segger_mpi_uint16(void) { return MPI_UINT16_T; }
static inline MPI_Datatype segger_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype segger_mpi_char(void) { return MPI_CHAR; }
static inline MPI_Op segger_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op segger_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op segger_mpi_min(void) { return MPI_MIN; }
static inline void *segger_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *segger_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Request segger_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler segger_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int segger_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int segger_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
#endif
