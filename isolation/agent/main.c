/* moat-agent: the node agent (a DaemonSet). Wires the API client, the CRI client, the
 * facts source and the signals to the agent (isolation/agent/agent.h). */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isolation/agent/agent.h"
#include "libmoat/activity.h"
#include "libmoat/cri/cri.h"
#include "libmoat/http.h"
#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"
#include "libmoat/log.h"
#include "libmoat/signals.h"
#include "libmoat/units.h"

#define VERSION MOAT_VERSION_STRING

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: moat-agent [OPTIONS]\n"
            "Labels this node with what it can run and reports on each pod the isolation it\n"
            "really got (the CRI shim's decision read back from the runtime).\n\n"
            "  --node-name NAME          this node (default: $NODE_NAME)\n"
            "  --kubeconfig PATH         kubeconfig (default: $KUBECONFIG, in-cluster, "
            "~/.kube/config)\n"
            "  --cri-endpoint ENDPOINT   CRI socket (default "
            "unix:///run/containerd/containerd.sock)\n"
            "  --facts PATH              take the node's facts from this JSON file instead of\n"
            "                            probing: {\"hypervisor\", \"runtimes\", \"gpuMode\"};\n"
            "                            re-read on each probe (SIGHUP)\n"
            "  --write-facts PATH        probe once, write the facts to PATH (as --facts reads\n"
            "                            them) and exit: the privileged probe in an init\n"
            "                            container, the agent itself without privileges\n"
            "  --root PATH               the host's /proc, /sys and /dev under PATH for the\n"
            "                            probe (a container mounts the host at /host)\n"
            "  --runsc, --runsc-shim, --kata-shim PATH\n"
            "                            where the runtimes are (default /usr/local/bin/...,\n"
            "                            /opt/kata/...)\n"
            "  --assume-hypervisor KIND  kvm, mshv or none instead of the host probe, with\n"
            "  --runtimes LIST           the runtimes, comma-separated (gvisor,kata), and\n"
            "  --gpu-mode MODE           none, container or vm-passthrough (default none)\n"
            "  --mode MODE               shim (moat-cri decides each pod) or config (containerd\n"
            "                            maps the handlers; reports say what that drops)\n"
            "  --probe-interval SECONDS  probe again and recheck every pod (default 60)\n"
            "  --pods-interval DURATION  list the runtime's pod sandboxes, to report new ones\n"
            "                            (default 500ms; 100ms..1m)\n"
            "  --report moat|all         report pods asking for Moat, or every pod (default "
            "all)\n"
            "  --default-runtime NAME    containerd's default runtime (default runc)\n"
            "  --activity-dir DIR        moat-cri's record of Sessions' exec, attach and\n"
            "                            port-forward starts (default: \"activity\" beside the\n"
            "                            CRI socket; \"\" for none: idle is CPU alone)\n"
            "  --metrics-addr ADDR       /healthz, /readyz, /metrics on host:port (default\n"
            "                            127.0.0.1:9468; \"\" for none)\n"
            "  --log-level LEVEL         debug, info, warn, error (default info)\n"
            "  --version, --help\n"
            "SIGHUP probes again at once; SIGTERM and SIGINT stop.\n");
}

static int parse_runtimes(unsigned *out, const char *list)
{
    unsigned r = 0;
    _cleanup_free_ char *copy = strdup(list);
    if (!copy)
        return -1;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "gvisor") == 0)
            r |= AGENT_RUNTIME_GVISOR;
        else if (strcmp(t, "kata") == 0)
            r |= AGENT_RUNTIME_KATA;
        else
            return -1;
    }
    *out = r;
    return 0;
}

typedef struct {
    agent_hypervisor hypervisor;
    const agent_facts *base;
} assumed;

static int assume_probe(void *impl, agent_facts *out, char **ret_reason, moat_error *err)
{
    (void)err;
    const assumed *as = impl;
    *out = *as->base;
    out->hypervisor = as->hypervisor;
    if (ret_reason && asprintf(ret_reason, "%s assumed (--assume-hypervisor)",
                               agent_hypervisor_name(as->hypervisor)) < 0)
        *ret_reason = NULL;
    return 0;
}

/* --write-facts: one probe, its facts written whole (a temporary file renamed) for the
 * agent's --facts. */
static int write_facts_once(const agent_facts_ops *ops, const char *path)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    _cleanup_free_ char *why = NULL, *text = NULL, *tmp = NULL;
    agent_facts f = {0};
    if (ops->probe(ops->impl, &f, &why, &err) < 0) {
        log_error(NULL, "probe: %s", err.message);
        return 1;
    }
    if (!(text = agent_facts_json(&f)) || asprintf(&tmp, "%s.tmp", path) < 0) {
        log_error(NULL, "facts: out of memory");
        return 1;
    }
    FILE *out = fopen(tmp, "w");
    bool ok = out && fprintf(out, "%s\n", text) > 0;
    ok = out && fclose(out) == 0 && ok;
    if (!ok || rename(tmp, path) < 0) {
        log_error(NULL, "facts: writing %s: %s", path, strerror(errno));
        unlink(tmp);
        return 1;
    }
    log_info(NULL, "facts %s written to %s (hypervisor %s: %s)", text, path,
             agent_hypervisor_name(f.hypervisor), why ? why : "");
    return 0;
}

static void *wait_signals(void *arg)
{
    agent *a = arg;
    for (;;) {
        int sig = moat_signals_wait();
        if (sig == SIGHUP) {
            log_info(NULL, "SIGHUP: probing again");
            agent_reprobe(a);
            continue;
        }
        if (sig >= 0)
            log_info(NULL, "signal %d: stopping", sig);
        agent_stop(a);
        return NULL;
    }
}

static bool http_ready(void *user)
{
    return agent_ready(user);
}

static char *http_metrics(void *user)
{
    return agent_metrics(user);
}

int main(int argc, char **argv)
{
    const char *node = getenv("NODE_NAME"), *kubeconfig = NULL, *facts_path = NULL;
    const char *write_facts = NULL;
    const char *endpoint = "unix:///run/containerd/containerd.sock", *assume = NULL;
    const char *default_runtime = "runc", *metrics_addr = "127.0.0.1:9468";
    const char *activity_dir = NULL; /* NULL: beside the CRI socket */
    char *beside = NULL;             /* that default, freed at the end */
    bool config_mode = false;
    agent_facts base = {0};
    bool report_all = true;
    long interval_s = 60;
    int64_t pods_interval_ns = AGENT_PODS_INTERVAL_NS;
    moat_log_level level = MOAT_LOG_INFO;
    /* The agent asks no libvirt daemon: the labels take only the direct probe's verdict. */
    iso_report_config probe_cfg = {.no_libvirt = true};
    enum {
        O_NODE = 256,
        O_ROOT,
        O_RUNSC,
        O_RUNSC_SHIM,
        O_KATA_SHIM,
        O_KUBECONFIG,
        O_CRI,
        O_FACTS,
        O_WRITE_FACTS,
        O_ASSUME,
        O_RUNTIMES,
        O_GPU,
        O_INTERVAL,
        O_PODS_INTERVAL,
        O_REPORT,
        O_DEFAULT_RUNTIME,
        O_MODE,
        O_METRICS,
        O_LOG,
        O_ACTIVITY
    };
    static const struct option opts[] = {
        {"node-name", required_argument, NULL, O_NODE},
        {"kubeconfig", required_argument, NULL, O_KUBECONFIG},
        {"cri-endpoint", required_argument, NULL, O_CRI},
        {"facts", required_argument, NULL, O_FACTS},
        {"write-facts", required_argument, NULL, O_WRITE_FACTS},
        {"assume-hypervisor", required_argument, NULL, O_ASSUME},
        {"runtimes", required_argument, NULL, O_RUNTIMES},
        {"gpu-mode", required_argument, NULL, O_GPU},
        {"probe-interval", required_argument, NULL, O_INTERVAL},
        {"pods-interval", required_argument, NULL, O_PODS_INTERVAL},
        {"report", required_argument, NULL, O_REPORT},
        {"default-runtime", required_argument, NULL, O_DEFAULT_RUNTIME},
        {"mode", required_argument, NULL, O_MODE},
        {"metrics-addr", required_argument, NULL, O_METRICS},
        {"log-level", required_argument, NULL, O_LOG},
        {"activity-dir", required_argument, NULL, O_ACTIVITY},
        {"root", required_argument, NULL, O_ROOT},
        {"runsc", required_argument, NULL, O_RUNSC},
        {"runsc-shim", required_argument, NULL, O_RUNSC_SHIM},
        {"kata-shim", required_argument, NULL, O_KATA_SHIM},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    int o;
    char *end;
    while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (o) {
        case O_NODE:
            node = optarg;
            break;
        case O_ACTIVITY:
            activity_dir = optarg;
            break;
        case O_KUBECONFIG:
            kubeconfig = optarg;
            break;
        case O_CRI:
            endpoint = optarg;
            break;
        case O_FACTS:
            facts_path = optarg;
            break;
        case O_WRITE_FACTS:
            write_facts = optarg;
            break;
        case O_ASSUME:
            assume = optarg;
            break;
        case O_RUNTIMES:
            if (parse_runtimes(&base.runtimes, optarg) < 0) {
                fprintf(stderr, "moat-agent: --runtimes: want gvisor and/or kata\n");
                return 2;
            }
            break;
        case O_GPU: {
            agent_facts tmp;
            _cleanup_free_ char *json = NULL;
            _cleanup_error_ moat_error e = MOAT_ERROR_INIT;
            if (asprintf(&json, "{\"gpuMode\":\"%s\"}", optarg) < 0 ||
                agent_facts_parse(&tmp, json, strlen(json), "--gpu-mode", &e) < 0) {
                fprintf(stderr, "moat-agent: --gpu-mode: want none, container or vm-passthrough\n");
                return 2;
            }
            base.gpu_mode = tmp.gpu_mode;
            break;
        }
        case O_INTERVAL:
            interval_s = strtol(optarg, &end, 10);
            if (*end || interval_s < 1 || interval_s > 86400) {
                fprintf(stderr, "moat-agent: --probe-interval: want 1..86400 seconds\n");
                return 2;
            }
            break;
        case O_PODS_INTERVAL: {
            _cleanup_error_ moat_error e = MOAT_ERROR_INIT;
            if (moat_duration_parse(&pods_interval_ns, optarg, &e) < 0 ||
                pods_interval_ns < 100000000LL || pods_interval_ns > 60000000000LL) {
                fprintf(stderr, "moat-agent: --pods-interval: %s\n",
                        e.message ? e.message : "want 100ms..1m");
                return 2;
            }
            break;
        }
        case O_REPORT:
            if (strcmp(optarg, "all") == 0)
                report_all = true;
            else if (strcmp(optarg, "moat") == 0)
                report_all = false;
            else {
                fprintf(stderr, "moat-agent: --report: want moat or all\n");
                return 2;
            }
            break;
        case O_ROOT:
            probe_cfg.probe.root = optarg;
            break;
        case O_RUNSC:
            probe_cfg.runtimes.runsc = optarg;
            break;
        case O_RUNSC_SHIM:
            probe_cfg.runtimes.runsc_shim = optarg;
            break;
        case O_KATA_SHIM:
            probe_cfg.runtimes.kata_shim = optarg;
            break;
        case O_MODE:
            if (strcmp(optarg, "shim") != 0 && strcmp(optarg, "config") != 0) {
                fprintf(stderr, "moat-agent: --mode: want shim or config\n");
                return 2;
            }
            config_mode = strcmp(optarg, "config") == 0;
            break;
        case O_DEFAULT_RUNTIME:
            default_runtime = optarg;
            break;
        case O_METRICS:
            metrics_addr = optarg;
            break;
        case O_LOG:
            if (moat_log_level_parse(&level, optarg) < 0) {
                fprintf(stderr, "moat-agent: --log-level: want debug, info, warn or error\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("moat-agent %s\n", VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if ((!node || !*node) && !write_facts) {
        fprintf(stderr, "moat-agent: no node name: set NODE_NAME or --node-name\n");
        return 2;
    }
    assumed as = {AGENT_HYPERVISOR_NONE, &base};
    if (assume && agent_hypervisor_parse(&as.hypervisor, assume) < 0) {
        fprintf(stderr, "moat-agent: --assume-hypervisor: want kvm, mshv or none\n");
        return 2;
    }
    if (assume && facts_path) {
        fprintf(stderr, "moat-agent: --facts and --assume-hypervisor exclude each other\n");
        return 2;
    }
    moat_log_init("moat-agent", level, 2);
    if (write_facts) {
        if (facts_path) {
            fprintf(stderr, "moat-agent: --facts and --write-facts exclude each other\n");
            return 2;
        }
        agent_facts_ops ops =
            assume ? (agent_facts_ops){assume_probe, &as} : agent_facts_host(&probe_cfg);
        return write_facts_once(&ops, write_facts);
    }

    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    int rc = 1;
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    if (moat_signals_install(sigs, ELEMENTSOF(sigs), &err) < 0) {
        log_error(NULL, "signals: %s", err.message);
        return 1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error(NULL, "curl_global_init failed");
        return 1;
    }
    grpc_init();
    kube_config *kcfg = NULL;
    kube_client *kc = NULL;
    cri_client *cri = NULL;
    agent *a = NULL;
    moat_http *http = NULL;
    if ((kubeconfig ? kube_config_load_file(&kcfg, kubeconfig, NULL, &err)
                    : kube_config_load_default(&kcfg, NULL, &err)) < 0 ||
        kube_client_new(&kc, kcfg, &(kube_client_options){.user_agent = "moat-agent/" VERSION},
                        &err) < 0 ||
        cri_client_new(&cri, endpoint, &err) < 0) {
        log_error(NULL, "%s", err.message);
        goto out;
    }
    agent_facts_ops facts = facts_path ? agent_facts_file(facts_path)
                            : assume   ? (agent_facts_ops){assume_probe, &as}
                                       : agent_facts_host(&probe_cfg);
    agent_cri_ops cri_ops = agent_cri_client(cri);
    /* moat-cri keeps Sessions' activity beside its socket (libmoat/activity.h) */
    if (!activity_dir && strncmp(endpoint, "unix://", 7) == 0)
        activity_dir = beside = moat_activity_dir_for(endpoint + 7);
    agent_options ao = {
        .activity_dir = activity_dir && *activity_dir ? activity_dir : NULL,
        .node_name = node,
        .default_runtime = default_runtime,
        .config_mode = config_mode,
        .report_all = report_all,
        .probe_interval_ns = interval_s * 1000000000LL,
        .pods_interval_ns = pods_interval_ns,
    };
    if (agent_new(&a, kc, &ao, &facts, &cri_ops, &err) < 0) {
        log_error(NULL, "%s", err.message);
        goto out;
    }
    moat_http_handlers hh = {.ready = http_ready, .metrics = http_metrics, .user = a};
    if (*metrics_addr && moat_http_start(&http, metrics_addr, &hh, &err) < 0) {
        log_error(NULL, "%s", err.message);
        goto out;
    }
    pthread_t sig_thread;
    if (pthread_create(&sig_thread, NULL, wait_signals, a) != 0) {
        log_error(NULL, "cannot start the signal thread");
        goto out;
    }
    log_info(node, "moat-agent %s: API server %s, CRI %s, facts from %s", VERSION,
             kube_config_server(kcfg), endpoint,
             facts_path ? facts_path
             : assume   ? "--assume-hypervisor"
                        : "the host probe");
    if (agent_run(a, &err) < 0) {
        log_error(node, "%s", err.message);
        moat_signals_raise(SIGTERM);
        pthread_join(sig_thread, NULL);
        goto out;
    }
    moat_signals_raise(SIGTERM); /* the thread may still wait: wake it */
    pthread_join(sig_thread, NULL);
    rc = 0;
out:
    moat_http_stop(http);
    agent_free(a);
    free(beside);
    cri_client_free(cri);
    kube_client_free(kc);
    kube_config_free(kcfg);
    grpc_shutdown();
    curl_global_cleanup();
    return rc;
}
