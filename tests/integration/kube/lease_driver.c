/* One candidate of a leader election, for the leader-election test. While it believes it
 * leads it "works": every 100 ms, only if kube_leader_is_leading() says so, it writes its
 * identity and a counter into ConfigMap <lease>-work. It prints one JSON line per event:
 *   {"op":"leading"|"stopped"|"wrote","id":...,"t":<unix seconds>}
 * Usage: lease_driver <namespace> <lease name> <identity> (durations: 15 s / 10 s / 2 s) */
#include <curl/curl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"
#include "libmoat/lease.h"

static const char *identity;
static atomic_bool quit;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void say(const char *op)
{
    printf("{\"op\":\"%s\",\"id\":\"%s\",\"t\":%.3f}\n", op, identity, now());
    fflush(stdout);
}

static void started(void *user)
{
    say("leading");
}

static void stopped(void *user, const char *why)
{
    (void)why;
    say("stopped");
}

static void on_term(int sig)
{
    atomic_store(&quit, true);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s <namespace> <lease> <identity>\n", argv[0]);
        return 2;
    }
    identity = argv[3];
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    moat_error err = MOAT_ERROR_INIT;
    kube_config *cfg = NULL;
    kube_client *client = NULL;
    kube_leader *leader = NULL;
    kube_client_options co = {.timeout_ms = 3000, .max_retries = -1};
    kube_leader_options lo = {.namespace = argv[1],
                              .name = argv[2],
                              .identity = identity,
                              .on_started = started,
                              .on_stopped = stopped};
    if (kube_config_load_default(&cfg, NULL, &err) < 0 ||
        kube_client_new(&client, cfg, &co, &err) < 0 ||
        kube_leader_start(&leader, client, &lo, &err) < 0) {
        fprintf(stderr, "lease_driver: %s\n", err.message);
        return 1;
    }
    char work[256];
    snprintf(work, sizeof(work), "%s-work", argv[2]);
    long counter = 0;
    while (!atomic_load(&quit)) {
        usleep(100000);
        if (!kube_leader_is_leading(leader))
            continue;
        char value[64];
        snprintf(value, sizeof(value), "%ld", ++counter);
        json_t *cm = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}}", "apiVersion", "v1", "kind",
                               "ConfigMap", "metadata", "name", work, "namespace", argv[1], "data",
                               "holder", identity, "counter", value);
        kube_patch_options po = {.field_manager = identity, .force = true};
        if (kube_patch(client, NULL, &KUBE_CONFIGMAPS, argv[1], work, KUBE_PATCH_APPLY, cm, &po,
                       &err) == 0)
            say("wrote");
        moat_error_clear(&err);
        json_decref(cm);
    }
    kube_leader_stop(leader);
    kube_client_free(client);
    kube_config_free(cfg);
    curl_global_cleanup();
    return 0;
}
