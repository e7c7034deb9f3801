/* moat-operator: wires the configuration, the API client, the controller, the HTTP
 * endpoint and the signals together. */
#include <curl/curl.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "controller.h"
#include "libmoat/http.h"
#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"
#include "libmoat/log.h"
#include "libmoat/signals.h"

#define VERSION MOAT_VERSION_STRING

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: moat-operator [OPTIONS]\n"
        "Reconciles every Sandbox (moat.dev/v1alpha1) into one hardened, isolated Pod.\n\n"
        "  --config PATH           operator configuration (YAML); defaults when absent\n"
        "  --kubeconfig PATH       kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)\n"
        "  --context NAME          kubeconfig context (default: current-context)\n"
        "  --metrics-addr ADDR     /healthz, /readyz, /metrics (default :8080)\n"
        "  --leader-elect=BOOL     elect a leader with a Lease (default true)\n"
        "  --lease-namespace NS    the Lease's namespace (default: the pod's, or moat-system)\n"
        "  --identity NAME         this replica's name (default: $POD_NAME or hostname-pid)\n"
        "  --log-level LEVEL       debug, info, warn, error (default info)\n"
        "  --version, --help\n");
}

static bool parse_bool(const char *s, bool *out)
{
    if (!s || strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static char *http_unready(void *user)
{
    return controller_unready(user);
}

static char *http_metrics(void *user)
{
    return controller_metrics_render(user);
}

/* SIGTERM/SIGINT stop the controller gracefully (finish in-flight reconciles, give the
 * Lease up). */
static void *wait_signals(void *arg)
{
    int sig = moat_signals_wait();
    if (sig > 0)
        log_info(NULL, "signal %d: stopping", sig);
    controller_stop(arg);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *kubeconfig = NULL, *context = NULL;
    const char *metrics_addr = ":8080", *lease_ns = NULL, *identity = NULL, *level = "info";
    bool leader_elect = true;
    enum { O_CONFIG = 256, O_KUBECONFIG, O_CONTEXT, O_METRICS, O_LEADER, O_LEASE_NS, O_ID, O_LOG };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG},
        {"kubeconfig", required_argument, NULL, O_KUBECONFIG},
        {"context", required_argument, NULL, O_CONTEXT},
        {"metrics-addr", required_argument, NULL, O_METRICS},
        {"leader-elect", optional_argument, NULL, O_LEADER},
        {"lease-namespace", required_argument, NULL, O_LEASE_NS},
        {"identity", required_argument, NULL, O_ID},
        {"log-level", required_argument, NULL, O_LOG},
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
        case O_KUBECONFIG:
            kubeconfig = optarg;
            break;
        case O_CONTEXT:
            context = optarg;
            break;
        case O_METRICS:
            metrics_addr = optarg;
            break;
        case O_LEADER:
            if (!parse_bool(optarg, &leader_elect)) {
                fprintf(stderr, "moat-operator: --leader-elect: \"%s\" is not true or false\n",
                        optarg);
                return 2;
            }
            break;
        case O_LEASE_NS:
            lease_ns = optarg;
            break;
        case O_ID:
            identity = optarg;
            break;
        case O_LOG:
            level = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("moat-operator %s\n", VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moat-operator: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    moat_log_level lvl;
    if (moat_log_level_parse(&lvl, level) < 0) {
        fprintf(stderr, "moat-operator: --log-level: \"%s\" is not debug, info, warn or error\n",
                level);
        return 2;
    }
    moat_log_init("moat-operator", lvl, STDERR_FILENO);
    /* glibc gives each thread that allocates an arena of its own; with the informer, the
     * workers, the recorder and libmicrohttpd that multiplies resident memory for no gain
     * in a program that spends its time waiting on the API server. */
    mallopt(M_ARENA_MAX, 2);

    static const int sigs[] = {SIGTERM, SIGINT};
    signal(SIGPIPE, SIG_IGN);
    moat_error err = MOAT_ERROR_INIT;
    if (moat_signals_install(sigs, 2, &err) < 0) {
        log_error(NULL, "signals: %s", err.message);
        return 1;
    }
    operator_config *cfg = NULL;
    kube_config *kcfg = NULL;
    kube_client *client = NULL;
    operator_controller *ctl = NULL;
    moat_http *http = NULL;
    int rc = 1;
    char id[256];

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error(NULL, "curl_global_init failed");
        return 1;
    }
    if ((config_path ? operator_config_load(&cfg, config_path, &err)
                     : operator_config_new_default(&cfg, &err)) < 0) {
        log_error(NULL, "configuration: %s", err.message);
        goto out;
    }
    if ((kubeconfig ? kube_config_load_file(&kcfg, kubeconfig, context, &err)
                    : kube_config_load_default(&kcfg, context, &err)) < 0 ||
        kube_client_new(&client, kcfg, NULL, &err) < 0) {
        log_error(NULL, "API client: %s", err.message);
        goto out;
    }
    if (!identity) {
        identity = getenv("POD_NAME");
        if (!identity) {
            char host[128] = "moat-operator";
            gethostname(host, sizeof(host) - 1);
            snprintf(id, sizeof(id), "%s-%d", host, (int)getpid());
            identity = id;
        }
    }
    if (!lease_ns) {
        const char *ns = getenv("POD_NAMESPACE");
        lease_ns = ns && *ns ? ns : "moat-system";
    }
    controller_options co = {.client = client,
                             .config = cfg,
                             .identity = identity,
                             .leader_elect = leader_elect,
                             .lease_namespace = lease_ns};
    if (controller_new(&ctl, &co, &err) < 0) {
        log_error(NULL, "controller: %s", err.message);
        goto out;
    }
    moat_http_handlers hh = {.unready = http_unready, .metrics = http_metrics, .user = ctl};
    if (metrics_addr && *metrics_addr && moat_http_start(&http, metrics_addr, &hh, &err) < 0) {
        log_error(NULL, "%s", err.message);
        goto out;
    }
    pthread_t sig_thread;
    pthread_create(&sig_thread, NULL, wait_signals, ctl);
    pthread_detach(sig_thread);

    log_info(NULL, "moat-operator %s starting as %s (server %s, leader election %s)", VERSION,
             identity, kube_config_server(kcfg), leader_elect ? "on" : "off");
    if (controller_run(ctl, &err) < 0) {
        log_error(NULL, "%s", err.message);
        goto out;
    }
    log_info(NULL, "stopped");
    rc = 0;
out:
    moat_http_stop(http);
    controller_free(ctl);
    kube_client_free(client);
    kube_config_free(kcfg);
    operator_config_free(cfg);
    moat_error_clear(&err);
    curl_global_cleanup();
    return rc;
}
