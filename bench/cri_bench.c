/* Benchmark of moat-cri's relay against a real containerd, side by side in one run:
 *   - the floor a relay cannot beat: a bare gRPC-core echo server (a second process, this
 *     program with --echo-serve) and the same client's round trip to it;
 *   - Version and ListPodSandbox latency, sequential calls, straight to containerd and
 *     through the shim, interleaved in rounds so that drift hits both alike;
 *   - Version throughput with many caller threads sharing one channel per target;
 *   - RunPodSandbox -> CreateContainer -> StartContainer time (runc, handler ""), pods
 *     started in pairs, one direct and one through the shim, each side first in turn, then
 *     stopped and removed;
 *   - the shim's memory afterwards.
 * CPU per call comes from /proc/<pid>/task/<tid>/schedstat (nanoseconds on the CPU), so the
 * figures also say where the time goes. Prints measured figures and the goals; asserts
 * nothing. bench/cri_bench.sh starts containerd and moat-cri and runs this.
 *
 *   cri_bench --containerd SOCK --containerd-pid PID --shim SOCK --shim-pid PID --work DIR
 *             [--calls N] [--seconds S] [--callers C] [--pods P]
 *   cri_bench --echo-serve SOCK */
#include <getopt.h>
#include <grpc/grpc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cri_echo.h"
#include "procstat.h"
#include "libmoat/cri/cri.h"
#include "libmoat/cri/cri.pb-c.h"
#include "libmoat/clock.h"
#include "libmoat/macro.h"

#define M_VERSION       "/runtime.v1.RuntimeService/Version"
#define M_LIST_PODS     "/runtime.v1.RuntimeService/ListPodSandbox"
#define M_RUN_POD       "/runtime.v1.RuntimeService/RunPodSandbox"
#define M_CREATE        "/runtime.v1.RuntimeService/CreateContainer"
#define M_START         "/runtime.v1.RuntimeService/StartContainer"
#define M_STOP_POD      "/runtime.v1.RuntimeService/StopPodSandbox"
#define M_REMOVE_POD    "/runtime.v1.RuntimeService/RemovePodSandbox"
#define CHEAP_DEADLINE  10000  /* ms; kubelet sets a deadline on every call, so do we */
#define POD_DEADLINE    120000 /* ms */
#define ROUND           100    /* sequential calls per target before switching target */
#define WARMUP          200    /* calls per target before anything is measured */
#define MAX_TARGETS     3
#define MAX_CALLERS     256
#define MAX_PODS        200
#define MAX_LOAD_SAMPLE 400000 /* latencies kept per caller thread under load */
#define POD_IMAGE       "moat.local/busybox:1.35"

/* ---- the client ---------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    cri_client *cl;
    pid_t server; /* containerd or the echo server */
    pid_t shim;   /* 0 when the calls go straight to the server */
} target;

/* One call through the target's client (libmoat/cri): 0, or -1 with *ret_why (malloc'd)
 * when asked for. On success with ret_resp, *ret_resp / *ret_len hold the response (the
 * caller frees). */
static int call(cri_client *cl, const char *method, const uint8_t *req, size_t req_len,
                int timeout_ms, uint8_t **ret_resp, size_t *ret_len, char **ret_why)
{
    moat_error err = MOAT_ERROR_INIT;
    uint8_t *resp = NULL;
    size_t n = 0;
    if (cri_client_call(cl, &resp, &n, method, req, req_len, timeout_ms, &err) < 0) {
        if (ret_why)
            *ret_why = strdup(err.message); /* (its own copy: the message may be static) */
        moat_error_clear(&err);
        return -1;
    }
    if (ret_resp) {
        *ret_resp = resp;
        *ret_len = n;
    } else {
        free(resp);
    }
    return 0;
}

/* ---- statistics ---------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n samples (sorts them). */
static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t k = (size_t)ceil(p * (double)n);
    return v[k ? k - 1 : 0];
}

static double mean(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : NAN;
}

/* ---- sequential latency -------------------------------------------------------------------- */

typedef struct {
    double p50, p99, avg;                    /* microseconds */
    double cpu_client, cpu_server, cpu_shim; /* microseconds of CPU per call */
    size_t errors;
    char *first_error;
} latency;

/* calls sequential calls of method per target, in rounds of ROUND calls per target. The CPU
 * of each round is charged to its target. */
static void measure_latency(latency *out, const target *t, size_t n_targets, const char *method,
                            const uint8_t *req, size_t req_len, size_t calls)
{
    double *samples[MAX_TARGETS];
    int64_t cpu[MAX_TARGETS][3] = {{0}};
    for (size_t i = 0; i < n_targets; i++) {
        samples[i] = calloc(calls, sizeof(double));
        if (!samples[i])
            abort();
        out[i] = (latency){0};
        for (int w = 0; w < WARMUP; w++)
            call(t[i].cl, method, req, req_len, CHEAP_DEADLINE, NULL, NULL, NULL);
    }
    for (size_t done = 0; done < calls; done += ROUND) {
        size_t n = calls - done < ROUND ? calls - done : ROUND;
        for (size_t i = 0; i < n_targets; i++) {
            int64_t c0 = cpu_ns(0), s0 = cpu_ns(t[i].server),
                    h0 = t[i].shim ? cpu_ns(t[i].shim) : 0;
            for (size_t k = 0; k < n; k++) {
                char *why = NULL;
                int64_t a = moat_mono_ns();
                int rc = call(t[i].cl, method, req, req_len, CHEAP_DEADLINE, NULL, NULL,
                              out[i].first_error ? NULL : &why);
                samples[i][done + k] = (double)(moat_mono_ns() - a) / 1e3;
                if (rc != 0) {
                    out[i].errors++;
                    if (why)
                        out[i].first_error = why;
                }
            }
            cpu[i][0] += cpu_ns(0) - c0;
            cpu[i][1] += cpu_ns(t[i].server) - s0;
            cpu[i][2] += t[i].shim ? cpu_ns(t[i].shim) - h0 : 0;
        }
    }
    for (size_t i = 0; i < n_targets; i++) {
        out[i].avg = mean(samples[i], calls);
        out[i].p50 = pct(samples[i], calls, 0.50);
        out[i].p99 = pct(samples[i], calls, 0.99);
        out[i].cpu_client = (double)cpu[i][0] / 1e3 / (double)calls;
        out[i].cpu_server = (double)cpu[i][1] / 1e3 / (double)calls;
        out[i].cpu_shim = (double)cpu[i][2] / 1e3 / (double)calls;
        free(samples[i]);
    }
}

static void print_latency_row(const char *label, const latency *l, const latency *direct)
{
    char added[32] = "";
    if (direct)
        snprintf(added, sizeof(added), "%+8.1f", l->p50 - direct->p50);
    printf("  %-34s %8.1f %8.1f %8.1f %9s   %6.1f %6.1f %6.1f", label, l->p50, l->p99, l->avg,
           added, l->cpu_client, l->cpu_server, l->cpu_shim);
    if (l->errors)
        printf("   %zu errors, first: %s", l->errors, l->first_error ? l->first_error : "?");
    printf("\n");
}

/* ---- throughput ---------------------------------------------------------------------------- */

typedef struct {
    const target *t;
    const char *method;
    const uint8_t *req;
    size_t req_len;
    atomic_bool *stop;
    pthread_barrier_t *go;
    double *lat; /* microseconds, MAX_LOAD_SAMPLE of them */
    size_t calls, errors;
} caller;

static void *caller_run(void *arg)
{
    caller *c = arg;
    cri_client *cl = NULL; /* the target's channel, a queue of this thread's own */
    if (cri_client_share(&cl, c->t->cl, NULL) < 0)
        abort();
    pthread_barrier_wait(c->go); /* everybody starts together */
    while (!atomic_load(c->stop)) {
        int64_t a = moat_mono_ns();
        int rc = call(cl, c->method, c->req, c->req_len, CHEAP_DEADLINE, NULL, NULL, NULL);
        if (c->calls < MAX_LOAD_SAMPLE)
            c->lat[c->calls] = (double)(moat_mono_ns() - a) / 1e3;
        c->calls++;
        if (rc != 0)
            c->errors++;
    }
    cri_client_free(cl);
    return NULL;
}

typedef struct {
    double rate, p50, p99;                   /* calls/s, microseconds */
    double host_busy;                        /* of the machine's CPU time, 0..1 */
    double shim_thread;                      /* the shim's busiest thread, of one CPU */
    double cpu_client, cpu_server, cpu_shim; /* microseconds of CPU per call */
    size_t calls, errors;
} load;

static void measure_load(load *out, const target *t, const char *method, const uint8_t *req,
                         size_t req_len, int n_callers, double seconds)
{
    caller c[MAX_CALLERS];
    pthread_t th[MAX_CALLERS];
    atomic_bool stop = false;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)n_callers + 1);
    for (int i = 0; i < n_callers; i++) {
        c[i] = (caller){t, method, req, req_len, &stop, &go, NULL, 0, 0};
        c[i].lat = malloc(MAX_LOAD_SAMPLE * sizeof(double));
        if (!c[i].lat || pthread_create(&th[i], NULL, caller_run, &c[i]) != 0)
            abort();
    }
    int64_t c0 = cpu_ns(0), s0 = cpu_ns(t->server), h0 = t->shim ? cpu_ns(t->shim) : 0;
    long long busy0, total0, busy1, total1;
    thread_cpu th0 = {0}, th1 = {0};
    if (t->shim)
        thread_cpu_read(&th0, t->shim);
    host_jiffies(&busy0, &total0);
    pthread_barrier_wait(&go);
    int64_t a = moat_mono_ns();
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&stop, true);
    for (int i = 0; i < n_callers; i++)
        pthread_join(th[i], NULL);
    int64_t elapsed = moat_mono_ns() - a;
    pthread_barrier_destroy(&go);
    host_jiffies(&busy1, &total1);
    if (t->shim)
        thread_cpu_read(&th1, t->shim);
    int64_t c1 = cpu_ns(0), s1 = cpu_ns(t->server), h1 = t->shim ? cpu_ns(t->shim) : 0;

    size_t total = 0, kept = 0;
    *out = (load){0};
    for (int i = 0; i < n_callers; i++) {
        total += c[i].calls;
        out->errors += c[i].errors;
        kept += c[i].calls < MAX_LOAD_SAMPLE ? c[i].calls : MAX_LOAD_SAMPLE;
    }
    double *all = malloc((kept ? kept : 1) * sizeof(double));
    if (!all)
        abort();
    size_t k = 0;
    for (int i = 0; i < n_callers; i++) {
        size_t n = c[i].calls < MAX_LOAD_SAMPLE ? c[i].calls : MAX_LOAD_SAMPLE;
        memcpy(all + k, c[i].lat, n * sizeof(double));
        k += n;
        free(c[i].lat);
    }
    out->calls = total;
    out->shim_thread = t->shim ? (double)thread_cpu_max(&th0, &th1) / (double)elapsed : 0;
    out->host_busy = total1 > total0 ? (double)(busy1 - busy0) / (double)(total1 - total0) : NAN;
    out->rate = (double)total / ((double)elapsed / 1e9);
    out->p50 = pct(all, kept, 0.50);
    out->p99 = pct(all, kept, 0.99);
    /* The callers' thread start and end fall outside the window; a few calls in flight at
     * the end are counted whole: negligible against seconds of calls. */
    out->cpu_client = total ? (double)(c1 - c0) / 1e3 / (double)total : NAN;
    out->cpu_server = total ? (double)(s1 - s0) / 1e3 / (double)total : NAN;
    out->cpu_shim = total ? (double)(h1 - h0) / 1e3 / (double)total : NAN;
    free(all);
}

/* ---- pods ---------------------------------------------------------------------------------- */

typedef struct {
    char *id;
    double run, create, start; /* milliseconds */
    bool ok;
} pod;

static uint8_t *pack(const ProtobufCMessage *m, size_t *ret_len)
{
    *ret_len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*ret_len ? *ret_len : 1);
    if (!buf)
        abort();
    protobuf_c_message_pack(m, buf);
    return buf;
}

/* A string field of a one-field response (RunPodSandboxResponse, CreateContainerResponse:
 * field 1), copied; NULL when absent. */
static char *response_id(const uint8_t *buf, size_t len, bool container)
{
    char *id = NULL;
    if (container) {
        Moat__Cri__CreateContainerResponse *r =
            moat__cri__create_container_response__unpack(NULL, len, buf);
        if (r && r->container_id && *r->container_id)
            id = strdup(r->container_id);
        moat__cri__create_container_response__free_unpacked(r, NULL);
    } else {
        Moat__Cri__RunPodSandboxResponse *r =
            moat__cri__run_pod_sandbox_response__unpack(NULL, len, buf);
        if (r && r->pod_sandbox_id && *r->pod_sandbox_id)
            id = strdup(r->pod_sandbox_id);
        moat__cri__run_pod_sandbox_response__free_unpacked(r, NULL);
    }
    return id;
}

/* RunPodSandbox -> CreateContainer -> StartContainer, as kubelet does it for a pod with one
 * container whose image is present, each step timed. */
static void pod_start(pod *out, cri_client *cl, const char *work, const char *name, const char *uid)
{
    *out = (pod){0};
    char logdir[4096];
    snprintf(logdir, sizeof(logdir), "%s/logs/%s", work, name);
    mkdir(logdir, 0755);

    Moat__Cri__PodSandboxMetadata md = MOAT__CRI__POD_SANDBOX_METADATA__INIT;
    md.name = (char *)name;
    md.uid = (char *)uid;
    md.namespace_ = "moat-bench";
    Moat__Cri__PodSandboxConfig cfg = MOAT__CRI__POD_SANDBOX_CONFIG__INIT;
    cfg.metadata = &md;
    cfg.hostname = (char *)name;
    cfg.log_directory = logdir;
    Moat__Cri__RunPodSandboxRequest run = MOAT__CRI__RUN_POD_SANDBOX_REQUEST__INIT;
    run.config = &cfg;
    run.runtime_handler = "";

    size_t len = 0, resp_len = 0;
    _cleanup_free_ uint8_t *req = pack(&run.base, &len);
    _cleanup_free_ uint8_t *resp = NULL;
    _cleanup_free_ char *why = NULL;
    int64_t a = moat_mono_ns();
    int rc = call(cl, M_RUN_POD, req, len, POD_DEADLINE, &resp, &resp_len, &why);
    out->run = (double)(moat_mono_ns() - a) / 1e6;
    if (rc != 0 || !(out->id = response_id(resp, resp_len, false))) {
        fprintf(stderr, "cri_bench: RunPodSandbox %s: %s\n", name, why ? why : "no id");
        return;
    }

    Moat__Cri__ContainerMetadata cmd = MOAT__CRI__CONTAINER_METADATA__INIT;
    cmd.name = "main";
    Moat__Cri__ImageSpec image = MOAT__CRI__IMAGE_SPEC__INIT;
    image.image = POD_IMAGE;
    char *command[] = {"sleep", "3600"};
    Moat__Cri__ContainerConfig ccfg = MOAT__CRI__CONTAINER_CONFIG__INIT;
    ccfg.metadata = &cmd;
    ccfg.image = &image;
    ccfg.n_command = ELEMENTSOF(command);
    ccfg.command = command;
    ccfg.log_path = "main.log";
    Moat__Cri__CreateContainerRequest create = MOAT__CRI__CREATE_CONTAINER_REQUEST__INIT;
    create.pod_sandbox_id = out->id;
    create.config = &ccfg;
    create.sandbox_config = &cfg;
    free(req);
    free(TAKE_PTR(resp));
    req = pack(&create.base, &len);
    a = moat_mono_ns();
    rc = call(cl, M_CREATE, req, len, POD_DEADLINE, &resp, &resp_len, &why);
    out->create = (double)(moat_mono_ns() - a) / 1e6;
    _cleanup_free_ char *cid = rc == 0 ? response_id(resp, resp_len, true) : NULL;
    if (!cid) {
        fprintf(stderr, "cri_bench: CreateContainer in %s: %s\n", name, why ? why : "no id");
        return;
    }

    Moat__Cri__StartContainerRequest start = MOAT__CRI__START_CONTAINER_REQUEST__INIT;
    start.container_id = cid;
    free(req);
    req = pack(&start.base, &len);
    a = moat_mono_ns();
    rc = call(cl, M_START, req, len, POD_DEADLINE, NULL, NULL, &why);
    out->start = (double)(moat_mono_ns() - a) / 1e6;
    if (rc != 0) {
        fprintf(stderr, "cri_bench: StartContainer in %s: %s\n", name, why ? why : "?");
        return;
    }
    out->ok = true;
}

/* StopPodSandbox + RemovePodSandbox; returns the milliseconds both took, or -1. */
static double pod_remove(cri_client *cl, const char *id)
{
    Moat__Cri__StopPodSandboxRequest stop = MOAT__CRI__STOP_POD_SANDBOX_REQUEST__INIT;
    stop.pod_sandbox_id = (char *)id;
    Moat__Cri__RemovePodSandboxRequest rm = MOAT__CRI__REMOVE_POD_SANDBOX_REQUEST__INIT;
    rm.pod_sandbox_id = (char *)id;
    size_t len;
    _cleanup_free_ uint8_t *a = pack(&stop.base, &len);
    _cleanup_free_ char *why = NULL;
    int64_t t0 = moat_mono_ns();
    if (call(cl, M_STOP_POD, a, len, POD_DEADLINE, NULL, NULL, &why) != 0) {
        fprintf(stderr, "cri_bench: StopPodSandbox %s: %s\n", id, why ? why : "?");
        return -1;
    }
    _cleanup_free_ uint8_t *b = pack(&rm.base, &len);
    if (call(cl, M_REMOVE_POD, b, len, POD_DEADLINE, NULL, NULL, &why) != 0) {
        fprintf(stderr, "cri_bench: RemovePodSandbox %s: %s\n", id, why ? why : "?");
        return -1;
    }
    return (double)(moat_mono_ns() - t0) / 1e6;
}

typedef struct {
    double total, run, create, start; /* medians, milliseconds */
    size_t ok;
} pod_stats;

static pod_stats pod_summary(const pod *p, size_t n)
{
    double total[MAX_PODS], run[MAX_PODS], create[MAX_PODS], start[MAX_PODS];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (p[i].ok) {
            total[k] = p[i].run + p[i].create + p[i].start;
            run[k] = p[i].run;
            create[k] = p[i].create;
            start[k] = p[i].start;
            k++;
        }
    return (pod_stats){pct(total, k, 0.5), pct(run, k, 0.5), pct(create, k, 0.5),
                       pct(start, k, 0.5), k};
}

/* ---- main ---------------------------------------------------------------------------------- */

static const char *met(bool yes)
{
    return yes ? "yes" : "NO";
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: cri_bench --containerd SOCK --containerd-pid PID --shim SOCK --shim-pid PID\n"
            "                 --work DIR [--calls N] [--seconds S] [--callers C] [--pods P]\n"
            "       cri_bench --echo-serve SOCK\n");
}

int main(int argc, char **argv)
{
    const char *containerd = NULL, *shim = NULL, *work = NULL;
    pid_t containerd_pid = 0, shim_pid = 0;
    size_t calls = 2000, pods = 20;
    int callers = 16;
    double seconds = 5;
    enum {
        O_CONTAINERD = 256,
        O_CONTAINERD_PID,
        O_SHIM,
        O_SHIM_PID,
        O_WORK,
        O_CALLS,
        O_SECONDS,
        O_CALLERS,
        O_PODS,
        O_ECHO
    };
    static const struct option opts[] = {
        {"containerd", required_argument, NULL, O_CONTAINERD},
        {"containerd-pid", required_argument, NULL, O_CONTAINERD_PID},
        {"shim", required_argument, NULL, O_SHIM},
        {"shim-pid", required_argument, NULL, O_SHIM_PID},
        {"work", required_argument, NULL, O_WORK},
        {"calls", required_argument, NULL, O_CALLS},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"callers", required_argument, NULL, O_CALLERS},
        {"pods", required_argument, NULL, O_PODS},
        {"echo-serve", required_argument, NULL, O_ECHO},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_CONTAINERD:
            containerd = optarg;
            break;
        case O_CONTAINERD_PID:
            containerd_pid = (pid_t)atoi(optarg);
            break;
        case O_SHIM:
            shim = optarg;
            break;
        case O_SHIM_PID:
            shim_pid = (pid_t)atoi(optarg);
            break;
        case O_WORK:
            work = optarg;
            break;
        case O_CALLS:
            calls = strtoul(optarg, NULL, 10);
            break;
        case O_SECONDS:
            seconds = atof(optarg);
            break;
        case O_CALLERS:
            callers = atoi(optarg);
            break;
        case O_PODS:
            pods = strtoul(optarg, NULL, 10);
            break;
        case O_ECHO:
            return cri_echo_serve(optarg);
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!containerd || !shim || !work || containerd_pid <= 0 || shim_pid <= 0 || calls == 0 ||
        callers < 1 || callers > MAX_CALLERS || pods < 1 || pods > MAX_PODS / 2 || seconds <= 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char echo_path[4096], logs[4096];
    snprintf(echo_path, sizeof(echo_path), "%s/echo.sock", work);
    snprintf(logs, sizeof(logs), "%s/logs", work);
    mkdir(logs, 0755);
    /* Before grpc_init: the echo server is a process of its own, like containerd. */
    pid_t echo_pid = cri_echo_spawn(echo_path);
    if (echo_pid < 0) {
        fprintf(stderr, "cri_bench: the echo server did not start\n");
        return 1;
    }
    long rss_start = status_kib(shim_pid, "VmRSS"), hwm_start = status_kib(shim_pid, "VmHWM");
    /* This machine may be shared: how busy it is before the benchmark adds anything. */
    long long idle_busy0, idle_total0, idle_busy1, idle_total1;
    host_jiffies(&idle_busy0, &idle_total0);
    sleep(2);
    host_jiffies(&idle_busy1, &idle_total1);
    double background = idle_total1 > idle_total0 ? (double)(idle_busy1 - idle_busy0) /
                                                        (double)(idle_total1 - idle_total0)
                                                  : NAN;

    grpc_init();
    target echo = {"echo", NULL, echo_pid, 0};
    target direct = {"direct", NULL, containerd_pid, 0};
    target via = {"via shim", NULL, containerd_pid, shim_pid};
    moat_error err = MOAT_ERROR_INIT;
    if (cri_client_new_without_retries(&echo.cl, echo_path, &err) < 0 ||
        cri_client_new_without_retries(&direct.cl, containerd, &err) < 0 ||
        cri_client_new_without_retries(&via.cl, shim, &err) < 0) {
        fprintf(stderr, "cri_bench: %s\n", err.message);
        cri_echo_stop(echo_pid);
        return 1;
    }

    /* The runtime's identity, and the shim's answer the same as containerd's. */
    Moat__Cri__VersionRequest vreq = MOAT__CRI__VERSION_REQUEST__INIT;
    vreq.version = "v1";
    size_t vlen;
    _cleanup_free_ uint8_t *vbuf = pack(&vreq.base, &vlen);
    _cleanup_free_ uint8_t *vresp = NULL;
    _cleanup_free_ char *why = NULL;
    size_t vresp_len = 0;
    if (call(direct.cl, M_VERSION, vbuf, vlen, CHEAP_DEADLINE, &vresp, &vresp_len, &why) != 0) {
        fprintf(stderr, "cri_bench: Version from containerd: %s\n", why ? why : "?");
        cri_echo_stop(echo_pid);
        return 1;
    }
    Moat__Cri__VersionResponse *v = moat__cri__version_response__unpack(NULL, vresp_len, vresp);
    printf("== CRI relay (bench/cri_bench.c): %s %s (CRI %s) at %s, moat-cri pid %d, %ld CPUs\n",
           v ? v->runtime_name : "?", v ? v->runtime_version : "?",
           v ? v->runtime_api_version : "?", containerd, (int)shim_pid,
           sysconf(_SC_NPROCESSORS_ONLN));
    moat__cri__version_response__free_unpacked(v, NULL);
    printf("   the machine was %.0f %% busy (all CPUs) in the 2 s before the benchmark began\n",
           100 * background);
    printf("   client: C on gRPC core library %s; one channel per target, retries off; a %d s "
           "deadline on each call\n",
           grpc_version_string(), CHEAP_DEADLINE / 1000);

    /* Sequential latency. The echo server sends back the VersionRequest's bytes. */
    latency lv[3], ll0[2], ll[2];
    target three[3] = {echo, direct, via}, two[2] = {direct, via};
    measure_latency(lv, three, 3, M_VERSION, vbuf, vlen, calls);
    Moat__Cri__ListPodSandboxRequest lreq = MOAT__CRI__LIST_POD_SANDBOX_REQUEST__INIT;
    size_t llen;
    _cleanup_free_ uint8_t *lbuf = pack(&lreq.base, &llen);
    measure_latency(ll0, two, 2, M_LIST_PODS, lbuf, llen, calls);

    /* Throughput. */
    load ld[3];
    measure_load(&ld[0], &echo, M_VERSION, vbuf, vlen, callers, seconds);
    measure_load(&ld[1], &direct, M_VERSION, vbuf, vlen, callers, seconds);
    measure_load(&ld[2], &via, M_VERSION, vbuf, vlen, callers, seconds);

    /* Pods, alternately direct and through the shim. */
    pod *pd = calloc(pods, sizeof(*pd)), *ps = calloc(pods, sizeof(*ps));
    if (!pd || !ps)
        abort();
    long nonce = (long)getpid();
    for (size_t i = 0; i < pods; i++) {
        /* Direct first in even pairs, the shim first in odd ones: neither gains from going
         * second (a warm cache, the other's pod still settling). */
        for (int k = 0; k < 2; k++) {
            bool shim_turn = (k == 0) == (i % 2 == 1);
            char name[64], uid[96];
            snprintf(name, sizeof(name), "bench-%s-%02zu", shim_turn ? "shim" : "direct", i);
            snprintf(uid, sizeof(uid), "%s-%ld", name, nonce);
            pod_start(shim_turn ? &ps[i] : &pd[i], shim_turn ? via.cl : direct.cl, work, name, uid);
        }
    }
    pod_stats sd = pod_summary(pd, pods), ss = pod_summary(ps, pods);

    /* ListPodSandbox again, now with every pod listed. */
    size_t list_bytes = 0, listed = 0;
    {
        _cleanup_free_ uint8_t *resp = NULL;
        if (call(direct.cl, M_LIST_PODS, lbuf, llen, CHEAP_DEADLINE, &resp, &list_bytes, NULL) ==
            0) {
            Moat__Cri__ListPodSandboxResponse *r =
                moat__cri__list_pod_sandbox_response__unpack(NULL, list_bytes, resp);
            listed = r ? r->n_items : 0;
            moat__cri__list_pod_sandbox_response__free_unpacked(r, NULL);
        }
    }
    measure_latency(ll, two, 2, M_LIST_PODS, lbuf, llen, calls);

    /* Clean up, straight to containerd (not measured against a goal). */
    double rm[2 * MAX_PODS];
    size_t n_rm = 0;
    for (size_t i = 0; i < 2 * pods; i++) {
        const pod *p = i < pods ? &pd[i] : &ps[i - pods];
        double ms = p->id ? pod_remove(direct.cl, p->id) : -1;
        if (ms >= 0)
            rm[n_rm++] = ms;
    }

    long rss = status_kib(shim_pid, "VmRSS"), hwm = status_kib(shim_pid, "VmHWM");
    long threads = status_kib(shim_pid, "Threads");
    long anon = status_kib(shim_pid, "RssAnon"), file = status_kib(shim_pid, "RssFile");
    long pss = -1;
    {
        char path[64], line[256];
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)shim_pid);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof(line), f))
            if (strncmp(line, "Pss:", 4) == 0)
                pss = strtol(line + 4, NULL, 10);
        if (f)
            fclose(f);
    }
    long cd_rss = status_kib(containerd_pid, "VmRSS");

    /* ---- the figures ---- */
    printf("\nSequential calls: %zu per target after %d to warm up, interleaved in rounds of %d;"
           " us.\nCPU us per call from /proc/<pid>/task/*/schedstat (server: echo or "
           "containerd).\n",
           calls, WARMUP, ROUND);
    printf("  %-34s %8s %8s %8s %9s   %6s %6s %6s\n", "", "p50", "p99", "mean", "+p50", "client",
           "server", "shim");
    print_latency_row("bare gRPC echo hop", &lv[0], NULL);
    print_latency_row("Version, direct", &lv[1], NULL);
    print_latency_row("Version, via shim", &lv[2], &lv[1]);
    print_latency_row("ListPodSandbox (0 pods), direct", &ll0[0], NULL);
    print_latency_row("ListPodSandbox (0 pods), via shim", &ll0[1], &ll0[0]);
    char label[64];
    snprintf(label, sizeof(label), "ListPodSandbox (%zu pods), direct", listed);
    print_latency_row(label, &ll[0], NULL);
    snprintf(label, sizeof(label), "ListPodSandbox (%zu pods), via shim", listed);
    print_latency_row(label, &ll[1], &ll[0]);
    printf("  (the %zu-pod ListPodSandbox answer is %zu bytes)\n", listed, list_bytes);

    printf("\nThroughput, Version: %d caller threads sharing ONE channel per target (each "
           "thread its own\ncompletion queue), %.0f s each; latency in us, CPU us per call.\n",
           callers, seconds);
    printf("  %-34s %9s %8s %8s   %6s %6s %6s   %s\n", "", "calls/s", "p50", "p99", "client",
           "server", "shim", "host CPU busy");
    const char *load_names[3] = {"bare gRPC echo", "Version, direct", "Version, via shim"};
    for (int i = 0; i < 3; i++) {
        printf("  %-34s %9.0f %8.1f %8.1f   %6.1f %6.1f %6.1f   %5.1f %%", load_names[i],
               ld[i].rate, ld[i].p50, ld[i].p99, ld[i].cpu_client, ld[i].cpu_server, ld[i].cpu_shim,
               100 * ld[i].host_busy);
        if (ld[i].errors)
            printf("   %zu errors", ld[i].errors);
        printf("\n");
    }
    /* When the machine's CPUs are the limit, calls/s go as 1 / (CPU per call, all processes). */
    double cpu_direct = ld[1].cpu_client + ld[1].cpu_server;
    double cpu_via = ld[2].cpu_client + ld[2].cpu_server + ld[2].cpu_shim;
    double cpu_hop = ld[0].cpu_client + ld[0].cpu_server;
    printf(
        "  CPU per call, all processes: direct %.1f us, via shim %.1f us (direct / via = %.0f %%);"
        "\n  a relay costing one bare hop (echo client + server, %.1f us) would give %.0f %%.\n"
        "  The shim's busiest thread was on a CPU %.0f %% of the time.\n",
        cpu_direct, cpu_via, 100 * cpu_direct / cpu_via, cpu_hop,
        100 * cpu_direct / (cpu_direct + cpu_hop), 100 * ld[2].shim_thread);

    printf("\nPod start (runc, handler \"\"): RunPodSandbox -> CreateContainer -> StartContainer,"
           " %zu pods\neach way, in pairs (direct first, then the shim first, and so on); medians "
           "in ms.\n",
           pods);
    printf("  %-34s %8s %8s %8s %8s %5s\n", "", "total", "run", "create", "start", "ok");
    printf("  %-34s %8.1f %8.1f %8.1f %8.1f %5zu\n", "direct", sd.total, sd.run, sd.create,
           sd.start, sd.ok);
    printf("  %-34s %8.1f %8.1f %8.1f %8.1f %5zu\n", "via shim", ss.total, ss.run, ss.create,
           ss.start, ss.ok);
    printf("  cleanup: StopPodSandbox + RemovePodSandbox, median %.1f ms (%zu of %zu pods)\n",
           pct(rm, n_rm, 0.5), n_rm, 2 * pods);
    printf(
        "\nmoat-cri memory after all that: VmRSS %ld KiB (RssAnon %ld, RssFile %ld: mapped "
        "library\npages, shared), VmHWM %ld KiB, Pss %ld KiB, %ld threads; at the start VmRSS %ld "
        "KiB,\nVmHWM %ld KiB. containerd VmRSS %ld KiB.\n",
        rss, anon, file, hwm, pss, threads, rss_start, hwm_start, cd_rss);

    /* ---- the goals ---- */
    double echo_p50 = lv[0].p50, limit = 1.25 * echo_p50;
    double add_v = lv[2].p50 - lv[1].p50, add_l0 = ll0[1].p50 - ll0[0].p50,
           add_l = ll[1].p50 - ll[0].p50;
    double tput = ld[2].rate / ld[1].rate, ratio = ss.total / sd.total;
    double hwm_mib = (double)hwm / 1024, rss_mib = (double)rss / 1024;
    printf("\nGoals\n");
    printf("  %-44s %11s   %-36s %s\n", "figure", "measured", "goal", "met");
    char goal[64], fig[32];
    snprintf(goal, sizeof(goal), "<= 1.25 x echo p50 %.1f = %.1f us", echo_p50, limit);
    snprintf(fig, sizeof(fig), "%.1f us", add_v);
    printf("  %-44s %11s   %-36s %s\n", "added p50, Version (shim - direct)", fig, goal,
           met(add_v <= limit));
    snprintf(fig, sizeof(fig), "%.1f us", add_l0);
    printf("  %-44s %11s   %-36s %s\n", "added p50, ListPodSandbox (0 pods)", fig, goal,
           met(add_l0 <= limit));
    snprintf(label, sizeof(label), "added p50, ListPodSandbox (%zu pods)", listed);
    snprintf(fig, sizeof(fig), "%.1f us", add_l);
    printf("  %-44s %11s   %-36s %s\n", label, fig, goal, met(add_l <= limit));
    snprintf(label, sizeof(label), "Version calls/s at %d callers, shim / direct", callers);
    snprintf(fig, sizeof(fig), "%.1f %%", 100 * tput);
    printf("  %-44s %11s   %-36s %s\n", label, fig, ">= 80 %", met(tput >= 0.80));
    snprintf(fig, sizeof(fig), "%.3f", ratio);
    printf("  %-44s %11s   %-36s %s\n", "pod start median, shim / direct", fig, "<= 1.05",
           met(ss.ok > 0 && sd.ok > 0 && ratio <= 1.05));
    snprintf(fig, sizeof(fig), "%.1f MiB", hwm_mib);
    printf("  %-44s %11s   %-36s %s\n", "moat-cri peak RSS (VmHWM)", fig, "< 10 MiB",
           met(hwm > 0 && hwm_mib < 10));
    snprintf(fig, sizeof(fig), "%.1f MiB", rss_mib);
    printf("  %-44s %11s   %-36s %s\n", "moat-cri RSS now (VmRSS)", fig, "< 10 MiB",
           met(rss > 0 && rss_mib < 10));

    for (size_t i = 0; i < pods; i++) {
        free(pd[i].id);
        free(ps[i].id);
    }
    free(pd);
    free(ps);
    free(lv[0].first_error);
    free(lv[1].first_error);
    free(lv[2].first_error);
    for (int i = 0; i < 2; i++) {
        free(ll0[i].first_error);
        free(ll[i].first_error);
    }
    cri_client_free(echo.cl);
    cri_client_free(direct.cl);
    cri_client_free(via.cl);
    grpc_shutdown();
    cri_echo_stop(echo_pid);
    return 0;
}
