/* CPU and memory of the processes a benchmark involves, from /proc. */
#include "procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t cpu_ns(pid_t pid)
{
    if (pid == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    thread_cpu t;
    thread_cpu_read(&t, pid);
    int64_t sum = 0;
    for (int i = 0; i < t.n; i++)
        sum += t.ns[i];
    return sum;
}

void thread_cpu_read(thread_cpu *out, pid_t pid)
{
    char path[64];
    out->n = 0;
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && out->n < PROCSTAT_MAX_THREADS) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
        FILE *f = fopen(p, "r");
        long long on_cpu = 0;
        if (f && fscanf(f, "%lld", &on_cpu) == 1) {
            out->tid[out->n] = atol(e->d_name);
            out->ns[out->n++] = on_cpu;
        }
        if (f)
            fclose(f);
    }
    closedir(d);
}

int64_t thread_cpu_max(const thread_cpu *a, const thread_cpu *b)
{
    int64_t best = 0;
    for (int i = 0; i < b->n; i++) {
        int64_t before = 0;
        for (int k = 0; k < a->n; k++)
            if (a->tid[k] == b->tid[i])
                before = a->ns[k];
        if (b->ns[i] - before > best)
            best = b->ns[i] - before;
    }
    return best;
}

void host_jiffies(long long *ret_busy, long long *ret_total)
{
    long long v[10] = {0}, total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        if (fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) < 8)
            memset(v, 0, sizeof(v));
        fclose(f);
    }
    /* guest and guest_nice (8, 9) are already counted in user and nice. */
    for (int i = 0; i < 8; i++)
        total += v[i];
    *ret_busy = total - v[3] - v[4];
    *ret_total = total;
}

long status_kib(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}
