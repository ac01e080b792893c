// The pipeline's transport: point-to-point messages between the ranks of an MPI job, every wait a polling loop
// with a deadline so that a dead rank or a broken link becomes a status, never a hang. Built without MPI
// (make MPI=0, or no mpicc), the same functions describe a job of one rank and send nothing.
#ifndef AERO_MPI_TRANSPORT_H
#define AERO_MPI_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/status.h"

// Joins the MPI job when the process was started by mpirun (its environment says so); a plain start, or a build
// without MPI, stays a job of one rank. Call once, first thing in main.
aero_status aero_mpi_init(int *argc, char ***argv, aero_error *err);
// Leaves the job (MPI_Finalize) after the workers were told to stop; nothing for a job of one rank.
void aero_mpi_finalize(void);
// Ends every rank of the job with this exit code: a rank that cannot tell the others to stop (one died).
void aero_mpi_abort(int code);
int aero_mpi_rank(void); // 0 outside a job
int aero_mpi_size(void); // 1 outside a job
bool aero_mpi_built(void); // whether this binary was built with MPI

// Sends n bytes to rank `to` (any size: split into pieces of at most 1 GiB) and waits until the buffer may be
// reused; on rank 0 the wait watches the other ranks' heartbeats.
aero_status aero_mpi_send(int to, const void *buf, size_t n, aero_error *err);
// Starts a send that completes later (aero_mpi_wait_sends): rank 0 computes the next micro-batch meanwhile.
// buf must stay valid until then. At most AERO_MPI_MAX_PENDING sends at once.
#define AERO_MPI_MAX_PENDING 64
aero_status aero_mpi_send_start(int to, const void *buf, size_t n, aero_error *err);
aero_status aero_mpi_wait_sends(aero_error *err);
// Receives the next message from rank `from` into *buf (malloc'ed, *n bytes; the caller frees it); waits without
// limit on a worker, and on rank 0 as long as every other rank's heartbeat keeps coming.
aero_status aero_mpi_recv(int from, void **buf, size_t *n, aero_error *err);
// Workers: a thread that tells rank 0 every AERO_MPI_HEARTBEAT_S that this rank is alive, whatever it computes.
#define AERO_MPI_HEARTBEAT_S 0.2
aero_status aero_mpi_heartbeat_start(aero_error *err);
void aero_mpi_heartbeat_stop(void);
// Rank 0 before a command: takes the heartbeats that arrived. Rank 0 drains them on a thread of its own all the
// time (an idle server queues none); where MPI gives no second thread, every rank counts as just heard from.
void aero_mpi_watch_reset(void);
// Seconds of silence after which rank 0 declares a rank dead: AERO_MPI_TIMEOUT from the environment, else 3.
double aero_mpi_dead_after(void);
// Seconds spent inside MPI waits, bytes sent and received, and messages sent since the start or the last reset
// (the benchmark's figures).
void aero_mpi_counters(double *wait_s, unsigned long long *bytes_sent, unsigned long long *bytes_recv,
                       unsigned long long *messages);
void aero_mpi_counters_reset(void);

#endif
