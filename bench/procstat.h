/* CPU and memory of the processes a benchmark involves, read from /proc. */
#ifndef MOAT_BENCH_PROCSTAT_H
#define MOAT_BENCH_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

#define PROCSTAT_MAX_THREADS 1024

typedef struct {
    int n;
    long tid[PROCSTAT_MAX_THREADS];
    int64_t ns[PROCSTAT_MAX_THREADS];
} thread_cpu;

/* Nanoseconds on the CPU: this process (pid 0) from its clock (threads that ended included);
 * another from the sum over its threads of /proc/<pid>/task/<tid>/schedstat (threads that
 * ended are missing, which for containerd and moat-cri are few: their threads live long). */
int64_t cpu_ns(pid_t pid);

/* Each thread's nanoseconds on the CPU (the first PROCSTAT_MAX_THREADS threads). */
void thread_cpu_read(thread_cpu *out, pid_t pid);

/* The most CPU one thread used between two readings. */
int64_t thread_cpu_max(const thread_cpu *a, const thread_cpu *b);

/* Jiffies the whole machine spent busy (the first line of /proc/stat, all but idle and
 * iowait) and in total. */
void host_jiffies(long long *ret_busy, long long *ret_total);

/* A "Key:   1234 kB" line of /proc/<pid>/status, in KiB; -1 when absent. */
long status_kib(pid_t pid, const char *key);

#endif
