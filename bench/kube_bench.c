/* Benchmark of the Kubernetes client library against the real API server of $KUBECONFIG:
 *   - resident memory per 1,000 cached Pods (real Pod objects, as the server returns them);
 *   - the time the informer takes to list and cache them;
 *   - watch events decoded and applied to the cache per second: a stream of MODIFIED events
 *     built from those real Pods as the server lists them (each with a new
 *     resourceVersion) fed through the informer's own decode-and-apply path.
 * Prints measured figures; asserts nothing. Usage: kube_bench [pods] [rounds] */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libmoat/informer.h"
#include "libmoat/kobj.h"
#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"

static kube_client *client;
static char ns[64];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A Pod the size of a real workload's: labels, annotations, env, resources, probes. */
static json_t *pod(int i)
{
    char name[64];
    snprintf(name, sizeof(name), "bench-%05d", i);
    json_t *env = json_array();
    for (int e = 0; e < 8; e++) {
        char k[32], v[64];
        snprintf(k, sizeof(k), "SETTING_%d", e);
        snprintf(v, sizeof(v), "value-%d-of-the-benchmark-pod-%d", e, i);
        json_array_append_new(env, json_pack("{s:s, s:s}", "name", k, "value", v));
    }
    return json_pack(
        "{s:s, s:s, s:{s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s}}, s:{s:s, s:s, s:b, s:["
        "{s:s, s:s, s:[s,s,s], s:o, s:{s:{s:s, s:s}, s:{s:s, s:s}}, s:[{s:s, s:i}],"
        " s:{s:{s:s, s:i}, s:i, s:i}, s:{s:b, s:b, s:{s:[s]}}}]}}",
        "apiVersion", "v1", "kind", "Pod", "metadata", "name", name, "labels", "app", "bench",
        "moat.dev/sandbox", name, "tier", "sandbox", "annotations", "moat.dev/network", "none",
        "moat.dev/gpu-count", "0", "spec", "nodeName", "bench-node-that-does-not-exist",
        "restartPolicy", "Never", "enableServiceLinks", false, "containers", "name", "main",
        "image", "moat.local/busybox:1.35", "command", "sh", "-c", "echo benchmark; sleep 3600",
        "env", env, "resources", "requests", "cpu", "100m", "memory", "128Mi", "limits", "cpu",
        "100m", "memory", "128Mi", "ports", "name", "http", "containerPort", 8080, "readinessProbe",
        "httpGet", "path", "/healthz", "port", 8080, "periodSeconds", 5, "timeoutSeconds", 1,
        "securityContext", "allowPrivilegeEscalation", false, "readOnlyRootFilesystem", true,
        "capabilities", "drop", "ALL");
}

struct range {
    int from, to;
};

static void *create(void *arg)
{
    struct range *r = arg;
    for (int i = r->from; i < r->to; i++) {
        moat_error err = MOAT_ERROR_INIT;
        json_t *p = pod(i);
        if (kube_create(client, NULL, &KUBE_PODS, ns, p, &err) < 0) {
            fprintf(stderr, "%s\n", err.message);
            moat_error_clear(&err);
        }
        json_decref(p);
    }
    return NULL;
}

struct sbx_range {
    const char *ns, *prefix;
    int from, to;
};

static void *create_sandboxes(void *arg)
{
    struct sbx_range *r = arg;
    for (int i = r->from; i < r->to; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s-%05d", r->prefix, i);
        json_t *s = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "apiVersion", "moat.dev/v1alpha1",
                              "kind", "Sandbox", "metadata", "name", name, "spec", "image",
                              "moat.local/busybox:1.35");
        moat_error err = MOAT_ERROR_INIT;
        if (kube_create(client, NULL, &KUBE_SANDBOXES, r->ns, s, &err) < 0) {
            fprintf(stderr, "%s\n", err.message);
            moat_error_clear(&err);
        }
        json_decref(s);
    }
    return NULL;
}

/* `kube_bench --create-sandboxes NS PREFIX N`: N Sandboxes from 8 threads sharing one client
 * (reused connections), for bench/operator_bench.py: kubectl's start-up would dominate. */
static int create_sandboxes_main(const char *namespace_, const char *prefix, int n)
{
    enum { THREADS = 8 };
    pthread_t t[THREADS];
    struct sbx_range r[THREADS];
    for (int i = 0; i < THREADS; i++) {
        r[i] = (struct sbx_range){namespace_, prefix, n * i / THREADS, n * (i + 1) / THREADS};
        pthread_create(&t[i], NULL, create_sandboxes, &r[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    return 0;
}

/* The client (the global one) from the default kubeconfig, whose *ret_cfg the caller frees
 * after the client; 0, or -1 said on stderr. */
static int client_open(kube_config **ret_cfg)
{
    moat_error err = MOAT_ERROR_INIT;
    if (kube_config_load_default(ret_cfg, NULL, &err) < 0 ||
        kube_client_new(&client, *ret_cfg, NULL, &err) < 0) {
        fprintf(stderr, "kube_bench: %s\n", err.message);
        moat_error_clear(&err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--create-sandboxes") == 0) {
        kube_config *cfg = NULL;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (client_open(&cfg) < 0)
            return 1;
        int r = create_sandboxes_main(argv[2], argv[3], atoi(argv[4]));
        kube_client_free(client);
        kube_config_free(cfg);
        curl_global_cleanup();
        return r;
    }
    int n = argc > 1 ? atoi(argv[1]) : 1000, rounds = argc > 2 ? atoi(argv[2]) : 20;
    moat_error err = MOAT_ERROR_INIT;
    kube_config *cfg = NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (client_open(&cfg) < 0)
        return 1;
    snprintf(ns, sizeof(ns), "moat-bench-%d", getpid());
    json_t *nsobj = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                              "metadata", "name", ns);
    if (kube_create(client, NULL, &KUBE_NAMESPACES, NULL, nsobj, &err) < 0) {
        fprintf(stderr, "kube_bench: %s\n", err.message);
        return 1;
    }
    json_decref(nsobj);

    double t0 = now();
    enum { THREADS = 4 };
    pthread_t th[THREADS];
    struct range rg[THREADS];
    for (int i = 0; i < THREADS; i++) {
        rg[i] = (struct range){n * i / THREADS, n * (i + 1) / THREADS};
        pthread_create(&th[i], NULL, create, &rg[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    printf("created %d pods in %.2f s (%.0f creates/s, 4 threads)\n", n, now() - t0,
           n / (now() - t0));

    long rss_before = rss_kib();
    kube_loop *loop = NULL;
    kube_informer *inf = NULL;
    kube_informer_options io = {.resource = &KUBE_PODS, .namespace = ns};
    double t1 = now();
    if (kube_loop_new(&loop, client, &err) < 0 ||
        kube_informer_new(&inf, loop, &io, NULL, &err) < 0 || kube_loop_start(loop, &err) < 0 ||
        kube_informer_wait_synced(inf, 120 * 1000000000LL) < 0) {
        fprintf(stderr, "kube_bench: informer: %s\n", err.message ? err.message : "no sync");
        return 1;
    }
    double synced = now() - t1;
    long rss_after = rss_kib();
    size_t cached = kube_informer_size(inf);
    printf("informer listed and cached %zu pods in %.3f s\n", cached, synced);
    printf("resident memory: %ld KiB before, %ld KiB after: %.0f KiB per 1,000 cached pods\n",
           rss_before, rss_after, (rss_after - rss_before) * 1000.0 / (double)cached);

    /* A watch stream of real objects, as the server sends them (managedFields included):
     * each Pod MODIFIED with a new resourceVersion. */
    kube_loop_stop(loop);
    json_t *list = NULL, *obj;
    if (kube_list(client, &list, &KUBE_PODS, ns, NULL, &err) < 0) {
        fprintf(stderr, "kube_bench: %s\n", err.message);
        return 1;
    }
    json_t *all = json_incref(json_object_get(list, "items"));
    json_decref(list);
    size_t i, stream_len = 0, cap = 1 << 20;
    char *stream = malloc(cap);
    long long rv = 1000000000LL;
    json_t *copies = json_array();
    json_array_foreach (all, i, obj)
        json_array_append_new(copies, json_deep_copy(obj));
    json_decref(all);
    char **lines = calloc((size_t)rounds, sizeof(char *));
    size_t *lens = calloc((size_t)rounds, sizeof(size_t));
    size_t events = 0, bytes = 0;
    for (int r = 0; r < rounds; r++) {
        stream_len = 0;
        json_array_foreach (copies, i, obj) {
            char v[32];
            snprintf(v, sizeof(v), "%lld", ++rv);
            json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion",
                                json_string(v));
            json_t *ev = json_pack("{s:s, s:O}", "type", "MODIFIED", "object", obj);
            char *line = json_dumps(ev, JSON_COMPACT);
            size_t len = strlen(line);
            while (stream_len + len + 2 > cap)
                stream = realloc(stream, cap *= 2);
            memcpy(stream + stream_len, line, len);
            stream[stream_len + len] = '\n';
            stream_len += len + 1;
            free(line);
            json_decref(ev);
            events++;
        }
        lines[r] = malloc(stream_len);
        memcpy(lines[r], stream, stream_len);
        lens[r] = stream_len;
        bytes += stream_len;
    }
    double t2 = now();
    for (int r = 0; r < rounds; r++) {
        for (size_t off = 0; off < lens[r]; off += 65536) {
            size_t chunk = lens[r] - off < 65536 ? lens[r] - off : 65536;
            if (kube_informer_apply_stream(inf, lines[r] + off, chunk, &err) < 0) {
                fprintf(stderr, "kube_bench: %s\n", err.message);
                return 1;
            }
        }
    }
    double took = now() - t2;
    kube_informer_stats st;
    kube_informer_get_stats(inf, &st);
    printf("watch events decoded and applied: %zu in %.3f s: %.0f events/s (%.1f MB/s, "
           "%.1f KB per event)\n",
           events, took, events / took, bytes / took / 1e6, bytes / (double)events / 1e3);

    for (int r = 0; r < rounds; r++)
        free(lines[r]);
    free(lines);
    free(lens);
    free(stream);
    json_decref(copies);
    kube_loop_free(loop);
    kube_delete(client, NULL, &KUBE_NAMESPACES, NULL, ns, NULL, &err);
    moat_error_clear(&err);
    kube_client_free(client);
    kube_config_free(cfg);
    curl_global_cleanup();
    return 0;
}
