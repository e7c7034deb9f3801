/* A small program around one informer, for tests written in Python that put the fault
 * proxy between it and the API server. It watches ConfigMaps of one namespace and prints
 * one JSON line per handler call on stdout:
 *   {"op":"add"|"update"|"delete","name":...,"rv":...}
 * and answers commands read from stdin, one per line:
 *   sync   -> {"op":"synced"} once the first list is done
 *   dump   -> {"op":"cache","items":{name: rv, ...}}
 *   stats  -> {"op":"stats","lists":..,"watches":..,"watch_failures":..,"events":..}
 *   get N  -> {"op":"get","ok":true|false,"error":...,"reason":...,"ms":...} (a plain GET)
 *   quit
 * Usage: informer_driver <namespace> [stall_timeout_s] */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libmoat/informer.h"
#include "libmoat/kobj.h"
#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void emit(json_t *line)
{
    char *s = json_dumps(line, JSON_COMPACT);
    pthread_mutex_lock(&out_lock);
    printf("%s\n", s);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    free(s);
    json_decref(line);
}

static void on_add(void *user, json_t *obj)
{
    emit(json_pack("{s:s, s:s?, s:s?}", "op", "add", "name", kobj_name(obj), "rv",
                   kobj_resource_version(obj)));
}

static void on_update(void *user, json_t *old, json_t *obj)
{
    emit(json_pack("{s:s, s:s?, s:s?}", "op", "update", "name", kobj_name(obj), "rv",
                   kobj_resource_version(obj)));
}

static void on_delete(void *user, json_t *obj)
{
    emit(json_pack("{s:s, s:s?, s:s?}", "op", "delete", "name", kobj_name(obj), "rv",
                   kobj_resource_version(obj)));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <namespace> [stall_timeout_s]\n", argv[0]);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    moat_error err = MOAT_ERROR_INIT;
    kube_config *cfg = NULL;
    kube_client *client = NULL;
    kube_loop *loop = NULL;
    kube_informer *inf = NULL;
    kube_client_options co = {.retry_base_ns = 50000000, .max_retries = 3};
    kube_informer_options io = {
        .resource = &KUBE_CONFIGMAPS,
        .namespace = argv[1],
        .stall_timeout_s = argc > 2 ? atoi(argv[2]) : 0,
        .backoff_base_ns = 50000000,
        .backoff_cap_ns = 1000000000,
    };
    kube_informer_handlers h = {on_add, on_update, on_delete, NULL};
    if (kube_config_load_default(&cfg, NULL, &err) < 0 ||
        kube_client_new(&client, cfg, &co, &err) < 0 || kube_loop_new(&loop, client, &err) < 0 ||
        kube_informer_new(&inf, loop, &io, &h, &err) < 0 || kube_loop_start(loop, &err) < 0) {
        fprintf(stderr, "informer_driver: %s\n", err.message);
        return 1;
    }
    char line[512];
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, "sync") == 0) {
            int ok = kube_informer_wait_synced(inf, 60 * 1000000000LL) == 0;
            emit(json_pack("{s:s, s:b}", "op", "synced", "ok", ok));
        } else if (strcmp(line, "dump") == 0) {
            json_t *items = json_object(), *all = kube_informer_list(inf), *obj;
            size_t i;
            json_array_foreach (all, i, obj)
                json_object_set_new(items, kobj_name(obj), json_string(kobj_resource_version(obj)));
            json_decref(all);
            emit(json_pack("{s:s, s:o}", "op", "cache", "items", items));
        } else if (strcmp(line, "stats") == 0) {
            kube_informer_stats st;
            kube_informer_get_stats(inf, &st);
            emit(json_pack("{s:s, s:I, s:I, s:I, s:I}", "op", "stats", "lists",
                           (json_int_t)st.lists, "watches", (json_int_t)st.watches,
                           "watch_failures", (json_int_t)st.watch_failures, "events",
                           (json_int_t)st.events));
        } else if (strncmp(line, "get ", 4) == 0) {
            struct timespec a, b;
            json_t *obj = NULL;
            clock_gettime(CLOCK_MONOTONIC, &a);
            int r = kube_get(client, &obj, &KUBE_CONFIGMAPS, argv[1], line + 4, &err);
            clock_gettime(CLOCK_MONOTONIC, &b);
            double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
            emit(json_pack("{s:s, s:b, s:s?, s:s, s:f}", "op", "get", "ok", r == 0, "error",
                           r < 0 ? err.message : NULL, "reason",
                           r < 0 ? kube_reason_name((kube_reason)err.kube_reason) : "", "ms", ms));
            moat_error_clear(&err);
            json_decref(obj);
        } else if (strcmp(line, "quit") == 0) {
            break;
        }
    }
    kube_loop_free(loop);
    kube_client_free(client);
    kube_config_free(cfg);
    curl_global_cleanup();
    return 0;
}
