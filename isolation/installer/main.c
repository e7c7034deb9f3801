/* moat-install: the node installer (isolation/installer/install.h), run by the node image's
 * DaemonSet with the host's root mounted. Prints what it changed, one line each, and a summary. */
#include <curl/curl.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <grpc/grpc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolation/installer/install.h"
#include "libmoat/strv.h"
#include "libmoat/egress.h"
#include "libmoat/names.h"
#include "isolation/installer/service.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: moat-install [install|uninstall] [OPTIONS]\n"
               "       moat-install service start|stop|restart NAME [--service-manager ...]\n"
               "Installs Moat on this node (run from the DaemonSet with the host's / mounted).\n\n"
               "  --mode shim|config          shim: gVisor + moat-cri, kubelet pointed at it\n"
               "                              config: containerd maps moat-* handlers itself\n"
               "  --host-root DIR             the host's / as seen here (default /host)\n"
               "  --bundle DIR                the image's bin/ and lib/ (default /opt/moat-image)\n"
               "  --prefix PATH               host: moat-cri's bundle (default /opt/moat)\n"
               "  --bin-dir PATH              host: runsc and its shim (default /usr/local/bin)\n"
               "  --state-dir PATH            host: backups and manifest (default /var/lib/moat)\n"
               "  --containerd-config PATH    (default /etc/containerd/config.toml)\n"
               "  --containerd-socket PATH    (default /run/containerd/containerd.sock)\n"
               "  --containerd-service NAME   (default containerd)\n"
               "  --runsc-config-dir PATH     runsc.toml files (default /etc/moat/runsc)\n"
               "  --runsc-root PATH           runsc's state root (default: runsc's own)\n"
               "  --cri-config PATH           moat-cri's config (default /etc/moat/cri.yaml)\n"
               "  --cri-socket PATH           (default /run/moat/cri.sock)\n"
               "  --cri-metrics ADDR          (default 127.0.0.1:9466)\n"
               "  --cri-timeout MS            for moat-cri's Version (default 30000)\n"
               "  --kubelet-config PATH       KubeletConfiguration (default "
               "/var/lib/kubelet/config.yaml)\n"
               "  --kubelet-flags PATH        a flags/env file with --container-runtime-endpoint\n"
               "  --kubelet-service NAME      (default kubelet)\n"
               "  --kubelet-healthz URL       (default http://127.0.0.1:10248/healthz)\n"
               "  --kubelet-timeout MS        (default 60000)\n"
               "  --kubelet-settle MS         healthy that long to count (default 5000)\n"
               "  --service-manager systemd|process:DIR   (default systemd)\n"
               "  --systemctl 'CMD ...'       (default 'nsenter --target 1 --mount -- systemctl')\n"
               "  --assume-hypervisor kvm|mshv|none   take that answer instead of probing\n"
               "  --egress-wall-table NAME            moat-cri's nftables table (moat)\n"
               "  --cluster-cidrs CIDR[,CIDR...]      the cluster's pod and service ranges,\n"
               "                                      never reachable from a sandbox\n"
               "  --gpu-mode container|vm-passthrough|none   this pool's GPUs (default none)\n"
               "  --help\n");
}

static char **split_words(const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    size_t n = 0;
    char **v = calloc(strlen(s) / 2 + 2, sizeof(*v));
    if (!v) {
        free(copy);
        return NULL;
    }
    char *save = NULL;
    for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        v[n++] = strdup(w);
    free(copy);
    return v;
}

static void print_report(const iso_install_report *rep)
{
    for (size_t i = 0; i < rep->n; i++)
        printf("%s\n", rep->lines[i]);
}

int main(int argc, char **argv)
{
    iso_install_options o;
    iso_install_options_default(&o);
    const char *manager = "systemd", *systemctl = NULL;
    iso_install_real real = {0};
    enum {
        O_MODE = 256,
        O_ROOT,
        O_BUNDLE,
        O_PREFIX,
        O_BIN,
        O_STATE,
        O_CD_CONFIG,
        O_CD_SOCK,
        O_CD_SVC,
        O_RUNSC_DIR,
        O_RUNSC_ROOT,
        O_CRI_CONFIG,
        O_CRI_SOCK,
        O_CRI_METRICS,
        O_CRI_TIMEOUT,
        O_KL_CONFIG,
        O_KL_FLAGS,
        O_KL_SVC,
        O_KL_HEALTHZ,
        O_KL_TIMEOUT,
        O_KL_SETTLE,
        O_MANAGER,
        O_SYSTEMCTL,
        O_ASSUME,
        O_WALL_TABLE,
        O_CLUSTER_CIDRS,
        O_GPU,
    };
    static const struct option opts[] = {
        {"mode", required_argument, NULL, O_MODE},
        {"host-root", required_argument, NULL, O_ROOT},
        {"bundle", required_argument, NULL, O_BUNDLE},
        {"prefix", required_argument, NULL, O_PREFIX},
        {"bin-dir", required_argument, NULL, O_BIN},
        {"state-dir", required_argument, NULL, O_STATE},
        {"containerd-config", required_argument, NULL, O_CD_CONFIG},
        {"containerd-socket", required_argument, NULL, O_CD_SOCK},
        {"containerd-service", required_argument, NULL, O_CD_SVC},
        {"runsc-config-dir", required_argument, NULL, O_RUNSC_DIR},
        {"runsc-root", required_argument, NULL, O_RUNSC_ROOT},
        {"cri-config", required_argument, NULL, O_CRI_CONFIG},
        {"cri-socket", required_argument, NULL, O_CRI_SOCK},
        {"cri-metrics", required_argument, NULL, O_CRI_METRICS},
        {"cri-timeout", required_argument, NULL, O_CRI_TIMEOUT},
        {"kubelet-config", required_argument, NULL, O_KL_CONFIG},
        {"kubelet-flags", required_argument, NULL, O_KL_FLAGS},
        {"kubelet-service", required_argument, NULL, O_KL_SVC},
        {"kubelet-healthz", required_argument, NULL, O_KL_HEALTHZ},
        {"kubelet-timeout", required_argument, NULL, O_KL_TIMEOUT},
        {"kubelet-settle", required_argument, NULL, O_KL_SETTLE},
        {"service-manager", required_argument, NULL, O_MANAGER},
        {"systemctl", required_argument, NULL, O_SYSTEMCTL},
        {"assume-hypervisor", required_argument, NULL, O_ASSUME},
        {"egress-wall-table", required_argument, NULL, O_WALL_TABLE},
        {"cluster-cidrs", required_argument, NULL, O_CLUSTER_CIDRS},
        {"gpu-mode", required_argument, NULL, O_GPU},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MODE:
            if (strcmp(optarg, "shim") == 0)
                o.mode = ISO_INSTALL_SHIM;
            else if (strcmp(optarg, "config") == 0)
                o.mode = ISO_INSTALL_CONFIG;
            else {
                fprintf(stderr, "moat-install: --mode: \"%s\" is not shim or config\n", optarg);
                return 2;
            }
            break;
        case O_ROOT:
            o.host_root = optarg;
            break;
        case O_BUNDLE:
            o.bundle_dir = optarg;
            break;
        case O_PREFIX:
            o.prefix = optarg;
            break;
        case O_BIN:
            o.bin_dir = optarg;
            break;
        case O_STATE:
            o.state_dir = optarg;
            break;
        case O_CD_CONFIG:
            o.containerd_config = optarg;
            break;
        case O_CD_SOCK:
            o.containerd_socket = optarg;
            break;
        case O_CD_SVC:
            o.containerd_service = optarg;
            break;
        case O_RUNSC_DIR:
            o.runsc_config_dir = optarg;
            break;
        case O_RUNSC_ROOT:
            o.runsc_root = optarg;
            break;
        case O_CRI_CONFIG:
            o.cri_config = optarg;
            break;
        case O_CRI_SOCK:
            o.cri_socket = optarg;
            break;
        case O_CRI_METRICS:
            o.cri_metrics = optarg;
            break;
        case O_CRI_TIMEOUT:
            o.cri_timeout_ms = atoi(optarg);
            break;
        case O_KL_CONFIG:
            o.kubelet_config = optarg;
            break;
        case O_KL_FLAGS:
            o.kubelet_flags = optarg;
            break;
        case O_KL_SVC:
            o.kubelet_service = optarg;
            break;
        case O_KL_HEALTHZ:
            o.kubelet_healthz = optarg;
            break;
        case O_KL_TIMEOUT:
            o.kubelet_timeout_ms = atoi(optarg);
            break;
        case O_KL_SETTLE:
            o.kubelet_settle_ms = atoi(optarg);
            break;
        case O_MANAGER:
            manager = optarg;
            break;
        case O_SYSTEMCTL:
            systemctl = optarg;
            break;
        case O_ASSUME:
            real.assume_hypervisor = optarg;
            o.cri_probe_assume = optarg;
            break;
        case O_CLUSTER_CIDRS: {
            /* checked here: moat-cri would refuse to start on a bad one, after the install */
            char item[INET6_ADDRSTRLEN + 8];
            for (const char *p = optarg; *p;) {
                size_t len = strcspn(p, ",");
                snprintf(item, sizeof(item), "%.*s", (int)len, p);
                if (len >= sizeof(item) || !moat_cidr_valid(item, NULL)) {
                    fprintf(stderr, "moat-install: --cluster-cidrs: \"%.*s\" is not a CIDR\n",
                            (int)len, p);
                    return 2;
                }
                p += len + (p[len] == ',');
            }
            o.cri_cluster_cidrs = optarg;
            break;
        }
        case O_WALL_TABLE:
            o.cri_wall_table = optarg;
            break;
        case O_GPU:
            if (strcmp(optarg, MOAT_GPU_MODE_CONTAINER) != 0 &&
                strcmp(optarg, MOAT_GPU_MODE_VM) != 0 && strcmp(optarg, MOAT_GPU_MODE_NONE) != 0) {
                fprintf(stderr,
                        "moat-install: --gpu-mode: \"%s\" is not container, vm-passthrough or "
                        "none\n",
                        optarg);
                return 2;
            }
            o.gpu_mode = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    const char *verb = optind < argc ? argv[optind] : "install";
    real.host_root = o.host_root;

    moat_error err = MOAT_ERROR_INIT;
    iso_service *backend = NULL;
    char **sysctl = systemctl ? split_words(systemctl) : NULL;
    int r;
    if (strncmp(manager, "process:", 8) == 0)
        r = iso_service_process_new(&backend, manager + 8, 10000, &err);
    else if (strcmp(manager, "systemd") == 0)
        r = iso_service_systemd_new(&backend, o.host_root, (const char *const *)sysctl, &err);
    else {
        fprintf(stderr, "moat-install: --service-manager: \"%s\" is not systemd or process:DIR\n",
                manager);
        return 2;
    }
    moat_strv_free(sysctl);
    if (r < 0) {
        fprintf(stderr, "moat-install: %s\n", err.message);
        moat_error_clear(&err);
        return 1;
    }
    iso_service_ops svc = iso_service_ops_of(backend);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "moat-install: curl_global_init failed\n");
        return 1;
    }
    grpc_init(); /* the CRI client: the runtime's Version after a change */

    iso_install_report rep = {0};
    iso_install_checks chk = iso_install_checks_real(&real);
    if (strcmp(verb, "install") == 0) {
        r = iso_install_run(&rep, &o, &svc, &chk, &err);
    } else if (strcmp(verb, "uninstall") == 0) {
        r = iso_install_uninstall(&rep, &o, &svc, &chk, &err);
    } else if (strcmp(verb, "service") == 0 && optind + 2 < argc) {
        const char *what = argv[optind + 1], *name = argv[optind + 2];
        if (strcmp(what, "start") == 0)
            r = svc.start(svc.impl, name, &err);
        else if (strcmp(what, "stop") == 0)
            r = svc.stop(svc.impl, name, &err);
        else if (strcmp(what, "restart") == 0)
            r = svc.restart(svc.impl, name, &err);
        else
            r = moat_error_set(&err, MOAT_E_INVALID,
                               "service: \"%s\" is not start, stop or "
                               "restart",
                               what);
    } else {
        usage(stderr);
        iso_service_free(backend);
        curl_global_cleanup();
        return 2;
    }
    print_report(&rep);
    if (r < 0)
        fprintf(stderr, "moat-install: %s\n", err.message ? err.message : "failed");
    else if (strcmp(verb, "service") != 0)
        printf(rep.n == 0 && rep.restarts == 0 ? "moat-install: nothing changed\n"
                                               : "moat-install: done, %zu restart(s)\n",
               rep.restarts);
    iso_install_report_clear(&rep);
    moat_error_clear(&err);
    iso_service_free(backend);
    curl_global_cleanup();
    return r < 0 ? 1 : 0;
}
