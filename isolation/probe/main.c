/* moat-probe: prints what this node can run (the host probe, libvirt's opinion, GPUs and
 * the installed runtimes), as JSON with --json. Exits 0 when the probe ran, whatever it
 * found; 1 on an error (out of memory, output failed); 2 on a bad command line. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolation/probe/report.h"

#define VERSION MOAT_VERSION_STRING

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: moat-probe [OPTIONS]\n"
            "Proves what this node can run: a usable hypervisor for Kata, libvirt's second\n"
            "opinion, NVIDIA GPUs and their mode, and the installed sandbox runtimes.\n\n"
            "  --json                  the report as JSON\n"
            "  --root DIR              prefix for /proc, /sys and /dev (default /)\n"
            "  --kvm PATH              the KVM device (default <root>/dev/kvm)\n"
            "  --mshv PATH             the MSHV device (default <root>/dev/mshv)\n"
            "  --runsc PATH            runsc (default " ISO_RUNSC_PATH ")\n"
            "  --runsc-shim PATH       containerd-shim-runsc-v1 (default " ISO_RUNSC_SHIM_PATH ")\n"
            "  --kata-shim PATH        containerd-shim-kata-v2 (default " ISO_KATA_SHIM_PATH ")\n"
            "  --kata-config-dir DIR   Kata's configuration-*.toml (default\n"
            "                          " ISO_KATA_CONFIG_DIR ")\n"
            "  --libvirt-uri URI       libvirt to ask (default " ISO_LIBVIRT_URI ")\n"
            "  --no-libvirt            do not ask libvirt\n"
            "  --timeout MS            time limit for each --version run (default %d)\n"
            "  --version, --help\n",
            ISO_EXEC_TIMEOUT_MS);
}

int main(int argc, char **argv)
{
    enum {
        O_JSON = 256,
        O_ROOT,
        O_KVM,
        O_MSHV,
        O_RUNSC,
        O_RUNSC_SHIM,
        O_KATA_SHIM,
        O_KATA_DIR,
        O_LIBVIRT_URI,
        O_NO_LIBVIRT,
        O_TIMEOUT,
    };
    static const struct option opts[] = {
        {"json", no_argument, NULL, O_JSON},
        {"root", required_argument, NULL, O_ROOT},
        {"kvm", required_argument, NULL, O_KVM},
        {"mshv", required_argument, NULL, O_MSHV},
        {"runsc", required_argument, NULL, O_RUNSC},
        {"runsc-shim", required_argument, NULL, O_RUNSC_SHIM},
        {"kata-shim", required_argument, NULL, O_KATA_SHIM},
        {"kata-config-dir", required_argument, NULL, O_KATA_DIR},
        {"libvirt-uri", required_argument, NULL, O_LIBVIRT_URI},
        {"no-libvirt", no_argument, NULL, O_NO_LIBVIRT},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    iso_report_config cfg = {0};
    bool json = false;
    int o;
    while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (o) {
        case O_JSON:
            json = true;
            break;
        case O_ROOT:
            cfg.probe.root = optarg;
            break;
        case O_KVM:
            cfg.probe.kvm_path = optarg;
            break;
        case O_MSHV:
            cfg.probe.mshv_path = optarg;
            break;
        case O_RUNSC:
            cfg.runtimes.runsc = optarg;
            break;
        case O_RUNSC_SHIM:
            cfg.runtimes.runsc_shim = optarg;
            break;
        case O_KATA_SHIM:
            cfg.runtimes.kata_shim = optarg;
            break;
        case O_KATA_DIR:
            cfg.runtimes.kata_config_dir = optarg;
            break;
        case O_LIBVIRT_URI:
            cfg.libvirt_uri = optarg;
            break;
        case O_NO_LIBVIRT:
            cfg.no_libvirt = true;
            break;
        case O_TIMEOUT: {
            char *end = NULL;
            long ms = strtol(optarg, &end, 10);
            if (!*optarg || *end || ms <= 0 || ms > 600000) {
                fprintf(stderr, "moat-probe: --timeout: \"%s\" is not 1..600000 ms\n", optarg);
                return 2;
            }
            cfg.runtimes.timeout_ms = (int)ms;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("moat-probe %s\n", VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moat-probe: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    const char *paths[] = {cfg.probe.kvm_path,     cfg.probe.mshv_path,
                           cfg.runtimes.runsc,     cfg.runtimes.runsc_shim,
                           cfg.runtimes.kata_shim, cfg.runtimes.kata_config_dir};
    for (size_t i = 0; i < ELEMENTSOF(paths); i++)
        if (paths[i] && paths[i][0] != '/') {
            fprintf(stderr, "moat-probe: \"%s\" is not an absolute path\n", paths[i]);
            return 2;
        }

    iso_report r;
    moat_error err = MOAT_ERROR_INIT;
    if (iso_report_collect(&r, &cfg, NULL, &err) < 0) {
        fprintf(stderr, "moat-probe: %s\n", err.message);
        moat_error_clear(&err);
        return 1;
    }
    int rc = 0;
    if (json) {
        json_t *j = iso_report_to_json(&r);
        if (!j || json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII) < 0 ||
            fputc('\n', stdout) == EOF)
            rc = 1;
        json_decref(j);
    } else {
        char *text = iso_report_to_text(&r);
        if (!text || fputs(text, stdout) == EOF)
            rc = 1;
        free(text);
    }
    if (fflush(stdout) != 0)
        rc = 1;
    if (rc)
        fprintf(stderr, "moat-probe: cannot write the report\n");
    iso_report_clear(&r);
    return rc;
}
