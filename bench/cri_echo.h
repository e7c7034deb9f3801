/* The benchmark's bare gRPC echo server (bench/cri_echo.c). */
#ifndef MOAT_BENCH_CRI_ECHO_H
#define MOAT_BENCH_CRI_ECHO_H

#include <sys/types.h>

/* Serves on the unix socket path until killed; grpc_init is its own (a process of its own).
 * Returns 1 when it cannot listen. */
int cri_echo_serve(const char *path);

/* Starts this program again as "cri_bench --echo-serve path" and waits (5 s at most) for the
 * socket. The child's pid, or -1. */
pid_t cri_echo_spawn(const char *path);

/* Kills and reaps the echo server pid. */
void cri_echo_stop(pid_t pid);

#endif
