/* moat-cri: wires the configuration, the host probe, the decisions, the relay and the HTTP
 * endpoint together. SIGTERM/SIGINT stop accepting calls and drain those in flight; SIGHUP
 * probes the host again. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "decide.h"
#include "intercept.h"
#include "libmoat/activity.h"
#include "libmoat/cri/cri.h"
#include "libmoat/http.h"
#include "libmoat/log.h"
#include "libmoat/signals.h"
#include "libmoat/strv.h"
#include "netns.h"
#include "podnet.h"
#include "isolation/probe/probe.h"
#include "cri-shim/wall.h"
#include "relay.h"

#define VERSION  MOAT_VERSION_STRING
#define DRAIN_NS (10 * 1000000000LL)

static void usage(FILE *f)
{
    fprintf(f, "Usage: moat-cri [OPTIONS]\n"
               "A CRI proxy in front of containerd that chooses each Moat pod's isolation.\n\n"
               "  --config PATH        configuration (YAML); defaults when absent\n"
               "  --listen PATH        the socket kubelet talks to (config: listen)\n"
               "  --upstream PATH      containerd's CRI socket (config: upstream)\n"
               "  --metrics-addr ADDR  /healthz and /metrics, host:port (config: metrics)\n"
               "  --gpu-mode MODE      container, vm-passthrough or none (config: gpuMode)\n"
               "  --egress-wall MODE   nftables or none (config: egressWall.mode)\n"
               "  --remove-wall        delete the egress wall's nftables table and exit\n"
               "                       (uninstall: running sandboxes lose their wall)\n"
               "  --log-level LEVEL    debug, info, warn, error (default info)\n"
               "  --version, --help\n");
}

static char *http_metrics(void *user)
{
    return shim_intercept_metrics(user);
}

/* The egress wall's further blocked destinations: the cluster's CIDRs (configuration) and
 * the node's own addresses, now. */
static int wall_extra(char ***ret, size_t *ret_n, const shim_config *cfg, moat_error *err)
{
    _cleanup_strv_ char **node = NULL;
    if (iso_netns_node_addresses(&node, err) < 0)
        return -1;
    size_t n = 0, k = 0;
    for (char **p = cfg->wall_cluster_cidrs; *p; p++)
        n++;
    for (char **p = node; *p; p++)
        n++;
    _cleanup_strv_ char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    for (char **p = cfg->wall_cluster_cidrs; *p; p++)
        if (!(v[k++] = strdup(*p)))
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    for (char **p = node; *p; p++)
        v[k++] = TAKE_PTR(*p);
    *ret = TAKE_PTR(v);
    *ret_n = k;
    return 0;
}

/* Puts the egress wall back every SHIM_WALL_REASSERT_S: a flushed ruleset or a deleted
 * table stays so at most that long, and a new node address is blocked as soon. */
typedef struct {
    shim_intercept *icp;
    const shim_config *cfg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
} reasserter;

static void *reassert_loop(void *arg)
{
    reasserter *ra = arg;
    pthread_mutex_lock(&ra->lock);
    while (!ra->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += SHIM_WALL_REASSERT_S;
        while (!ra->stop && pthread_cond_timedwait(&ra->cond, &ra->lock, &until) == 0)
            ;
        if (ra->stop)
            break;
        pthread_mutex_unlock(&ra->lock);
        moat_error err = MOAT_ERROR_INIT;
        char **extra = NULL;
        size_t n = 0;
        bool restored = false;
        if (wall_extra(&extra, &n, ra->cfg, &err) < 0 ||
            shim_intercept_wall_reassert(ra->icp, (const char *const *)extra, n, &restored, &err) <
                0)
            log_warn(NULL, "%s", err.message);
        else if (restored)
            log_warn(NULL, "egress wall: the kernel's table had changed (flushed, deleted, or "
                           "elements gone): put back");
        moat_strv_free(extra);
        moat_error_clear(&err);
        pthread_mutex_lock(&ra->lock);
    }
    pthread_mutex_unlock(&ra->lock);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *level = "info";
    bool remove_wall = false;
    typedef struct {
        const char *key, *value;
    } override;
    override overrides[8];
    size_t n_over = 0;
    enum { O_CONFIG = 256, O_LISTEN, O_UPSTREAM, O_METRICS, O_GPU, O_LOG, O_WALL, O_REMOVE_WALL };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG},
        {"listen", required_argument, NULL, O_LISTEN},
        {"upstream", required_argument, NULL, O_UPSTREAM},
        {"metrics-addr", required_argument, NULL, O_METRICS},
        {"gpu-mode", required_argument, NULL, O_GPU},
        {"log-level", required_argument, NULL, O_LOG},
        {"egress-wall", required_argument, NULL, O_WALL},
        {"remove-wall", no_argument, NULL, O_REMOVE_WALL},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (o) {
        case O_CONFIG:
            config_path = optarg;
            break;
        case O_LISTEN:
            overrides[n_over++] = (override){"listen", optarg};
            break;
        case O_UPSTREAM:
            overrides[n_over++] = (override){"upstream", optarg};
            break;
        case O_METRICS:
            overrides[n_over++] = (override){"metrics", optarg};
            break;
        case O_GPU:
            overrides[n_over++] = (override){"gpuMode", optarg};
            break;
        case O_LOG:
            level = optarg;
            break;
        case O_WALL:
            overrides[n_over++] = (override){"egressWall.mode", optarg};
            break;
        case O_REMOVE_WALL:
            remove_wall = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("moat-cri %s\n", VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (n_over == sizeof(overrides) / sizeof(overrides[0])) {
            fprintf(stderr, "moat-cri: too many options\n");
            return 2;
        }
    }
    moat_log_level lvl;
    if (moat_log_level_parse(&lvl, level) < 0) {
        fprintf(stderr, "moat-cri: --log-level: \"%s\" is not debug, info, warn or error\n", level);
        return 2;
    }
    moat_log_init("moat-cri", lvl, STDERR_FILENO);

    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    signal(SIGPIPE, SIG_IGN);

    moat_error err = MOAT_ERROR_INIT;
    if (moat_signals_install(sigs, sizeof(sigs) / sizeof(sigs[0]), &err) < 0) {
        log_error(NULL, "signals: %s", err.message);
        return 1;
    }
    shim_config *cfg = NULL;
    shim_intercept *icp = NULL;
    cri_client *upstream = NULL;
    shim_relay *relay = NULL;
    moat_http *http = NULL;
    iso_nft nft = {0};
    iso_wall *wall = NULL;
    shim_activity *activity = NULL;
    iso_probe_result probe[2] = {{0}, {0}};
    int current = 0, rc = 1;

    if ((config_path ? shim_config_load(&cfg, config_path, &err)
                     : shim_config_new_default(&cfg, &err)) < 0) {
        log_error(NULL, "configuration: %s", err.message);
        goto out;
    }
    for (size_t i = 0; i < n_over; i++)
        if (shim_config_set(cfg, overrides[i].key, overrides[i].value, &err) < 0) {
            log_error(NULL, "--%s: %s", overrides[i].key, err.message);
            goto out;
        }
    if (shim_config_check(cfg, &err) < 0) {
        log_error(NULL, "configuration: %s", err.message);
        goto out;
    }
    bool walled = strcmp(cfg->wall_mode, SHIM_WALL_NFTABLES) == 0;
    /* --remove-wall whatever the mode: a wall an earlier configuration raised goes too. */
    if ((walled || remove_wall) && iso_nft_open(&nft, &err) < 0) {
        log_error(NULL, "egress wall: %s", err.message);
        goto out;
    }
    if (remove_wall) {
        if (iso_wall_delete(&nft, cfg->wall_table, &err) < 0) {
            log_error(NULL, "%s", err.message);
            goto out;
        }
        log_info(NULL, "egress wall: table inet %s removed", cfg->wall_table);
        rc = 0;
        goto out;
    }
    if (walled) {
        _cleanup_strv_ char **extra = NULL;
        size_t n_extra = 0;
        if (wall_extra(&extra, &n_extra, cfg, &err) < 0) {
            log_error(NULL, "%s", err.message);
            goto out;
        }
        if (iso_wall_open(&wall, &nft, cfg->wall_table, (const char *const *)extra, n_extra, &err) <
            0) {
            log_error(NULL, "%s (egressWall.mode none runs without it)", err.message);
            goto out;
        }
        log_info(NULL, "egress wall: nftables table inet %s, %zu pod sandboxes walled",
                 cfg->wall_table, iso_wall_count(wall));
    } else {
        log_warn(NULL, "egress wall: off (egressWall.mode none): a sandbox's first instants "
                       "rely on the network plugin's NetworkPolicy alone");
    }
    shim_handlers handlers = {cfg->handler_auto, cfg->handler_vm,  cfg->handler_gvisor,
                              cfg->runsc,        cfg->runsc_nonet, cfg->runsc_nvproxy,
                              cfg->kata_clh,     cfg->kata_gpu,    cfg->gpu_mode};
    iso_probe_paths probe_paths = {.kvm_path = cfg->probe_kvm, .mshv_path = cfg->probe_mshv};
    if (cfg->probe_assume) {
        if (iso_probe_assume(&probe[0], cfg->probe_assume, "by the configuration (probe.assume)",
                             &err) < 0) {
            log_error(NULL, "probe.assume: %s", err.message);
            goto out;
        }
    } else if (iso_probe_run(&probe[0], iso_sys_host(), &probe_paths, &err) < 0) {
        log_error(NULL, "host probe: %s", err.message);
        goto out;
    }
    log_info(NULL, "host probe: hypervisor %s (found %s: %s)",
             probe[0].usable ? "usable" : "not usable", probe[0].found, probe[0].reason);

    grpc_init();
    /* the wall's worker asks containerd (not the callers) where a pod's network is */
    if (wall && cri_client_new(&upstream, cfg->upstream, &err) < 0) {
        log_error(NULL, "upstream %s: %s", cfg->upstream, err.message);
        goto out_grpc;
    }
    shim_pod_network net = {shim_podnet_lookup, upstream};
    if (shim_intercept_new(&icp, &handlers, &probe[0], wall, &net, &err) < 0)
        goto out_grpc;
    /* Sessions' activity beside the socket, where the node agent mounts it (activity.h). */
    char *activity_dir = moat_activity_dir_for(cfg->listen);
    int ar = activity_dir ? shim_activity_new(&activity, activity_dir, &err) : -1;
    free(activity_dir);
    if (ar < 0) {
        log_error(NULL, "%s", err.message ? err.message : "out of memory");
        goto out_grpc;
    }
    shim_intercept_set_activity(icp, activity);
    shim_hooks hooks = shim_intercept_hooks(icp);
    if (shim_relay_start(&relay, cfg->listen, cfg->socket_mode, cfg->upstream, &hooks, &err) < 0) {
        log_error(NULL, "%s", err.message);
        goto out_grpc;
    }
    if (cfg->socket_group) {
        /* kubelet runs as root; a group lets other node agents reach the socket too. */
        struct group *g = getgrnam(cfg->socket_group);
        if (!g || chown(cfg->listen, (uid_t)-1, g->gr_gid) < 0) {
            log_error(NULL, "socketGroup %s: %s", cfg->socket_group,
                      g ? strerror(errno) : "no such group");
            goto out_grpc;
        }
    }
    moat_http_handlers hh = {.metrics = http_metrics, .user = icp};
    if (cfg->metrics && *cfg->metrics && moat_http_start(&http, cfg->metrics, &hh, &err) < 0) {
        log_error(NULL, "%s", err.message);
        goto out_grpc;
    }
    log_info(NULL, "moat-cri %s: %s -> %s", VERSION, cfg->listen, cfg->upstream);
    reasserter ra = {.icp = icp, .cfg = cfg};
    pthread_mutex_init(&ra.lock, NULL);
    /* a monotonic deadline: a clock set back must not stall the wall's upkeep */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ra.cond, &ca);
    pthread_condattr_destroy(&ca);
    bool reasserting = wall && pthread_create(&ra.thread, NULL, reassert_loop, &ra) == 0;
    if (wall && !reasserting) {
        log_error(NULL, "egress wall: cannot start the thread that keeps it in place");
        goto out_grpc;
    }

    for (;;) {
        int sig = moat_signals_wait();
        if (sig < 0)
            break;
        if (sig != SIGHUP) {
            log_info(NULL, "signal %d: draining", sig);
            break;
        }
        if (cfg->probe_assume)
            continue; /* nothing to probe: the configuration says */
        int next = 1 - current;
        iso_probe_result_clear(&probe[next]);
        if (iso_probe_run(&probe[next], iso_sys_host(), &probe_paths, &err) < 0) {
            log_warn(NULL, "host probe: %s", err.message);
            moat_error_clear(&err);
            continue;
        }
        shim_intercept_set_probe(icp, &probe[next]);
        current = next;
        log_info(NULL, "host probe again: hypervisor %s (found %s: %s)",
                 probe[current].usable ? "usable" : "not usable", probe[current].found,
                 probe[current].reason);
    }
    rc = 0;
    if (reasserting) {
        pthread_mutex_lock(&ra.lock);
        ra.stop = true;
        pthread_cond_signal(&ra.cond);
        pthread_mutex_unlock(&ra.lock);
        pthread_join(ra.thread, NULL);
    }
out_grpc:
    moat_http_stop(http);
    shim_relay_stop(relay, DRAIN_NS);
    shim_intercept_free(icp);
    shim_activity_free(activity);
    cri_client_free(upstream);
    grpc_shutdown();
out:
    iso_probe_result_clear(&probe[0]);
    iso_probe_result_clear(&probe[1]);
    iso_wall_free(wall);
    iso_nft_close(&nft);
    shim_config_free(cfg);
    moat_error_clear(&err);
    return rc;
}
