/* The driver of tests/integration/isolation/test_config.py: merges Moat's block into a base
 * containerd config and writes the runsc.toml of each gVisor handler, as the installer will.
 *
 *   gen_config merge BASE OUT [options] HANDLER=KIND...
 *   gen_config unmerge IN OUT
 *
 * options: --runsc BIN --runsc-dir DIR --runsc-root DIR --log-dir DIR --platform P
 *          --kata-shim BIN --kata-clh-config F --kata-gpu-config F
 * KIND: runsc, runsc-nonet, runsc-nvproxy, kata-clh, kata-qemu-nvidia-gpu.
 * Errors go to stderr with exit status 1. */
#include <stdio.h>
#include <string.h>

#include "isolation/installer/containerd.h"
#include "isolation/gvisor/runsc.h"
#include "libmoat/error.h"

static int die(moat_error *err)
{
    fprintf(stderr, "gen_config: %s\n", err->message ? err->message : "error");
    return 1;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

static int read_file(char **out, size_t *len, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *t = realloc(s, cap *= 2);
            if (!t) {
                free(s);
                s = NULL;
            }
            s = t;
        }
    }
    fclose(f);
    if (!s)
        return -1;
    s[n] = '\0';
    *out = s;
    *len = n;
    return 0;
}

static const struct {
    const char *name;
    iso_runtime_kind kind;
} kinds[] = {
    {"runsc", ISO_RUNTIME_RUNSC},
    {"runsc-nonet", ISO_RUNTIME_RUNSC_NONET},
    {"runsc-nvproxy", ISO_RUNTIME_RUNSC_NVPROXY},
    {"kata-clh", ISO_RUNTIME_KATA_CLH},
    {"kata-qemu-nvidia-gpu", ISO_RUNTIME_KATA_GPU},
};

int main(int argc, char **argv)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    if (argc < 4) {
        fprintf(stderr, "usage: gen_config merge|unmerge IN OUT [options] [HANDLER=KIND...]\n");
        return 2;
    }
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    if (read_file(&text, &len, argv[2]) < 0)
        return 1;
    if (strcmp(argv[1], "unmerge") == 0) {
        _cleanup_free_ char *out = NULL;
        if (iso_containerd_unmerge(&out, text, len, &err) < 0)
            return die(&err);
        return write_file(argv[3], out) < 0;
    }
    if (strcmp(argv[1], "merge") != 0)
        return 2;
    iso_runtime_paths p;
    iso_runtime_paths_default(&p);
    const char *platform = ISO_RUNSC_PLATFORM_SYSTRAP;
    iso_runtime_entry entries[16];
    size_t n = 0;
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i];
        const char **opt = strcmp(a, "--runsc") == 0             ? &p.runsc
                           : strcmp(a, "--runsc-dir") == 0       ? &p.runsc_config_dir
                           : strcmp(a, "--runsc-root") == 0      ? &p.runsc_root
                           : strcmp(a, "--log-dir") == 0         ? &p.runsc_log_dir
                           : strcmp(a, "--kata-shim") == 0       ? &p.kata_shim
                           : strcmp(a, "--kata-clh-config") == 0 ? &p.kata_clh_config
                           : strcmp(a, "--kata-gpu-config") == 0 ? &p.kata_gpu_config
                           : strcmp(a, "--platform") == 0        ? &platform
                                                                 : NULL;
        if (opt) {
            if (++i == argc)
                return 2;
            *opt = argv[i];
            continue;
        }
        const char *eq = strchr(a, '=');
        if (!eq || n == ELEMENTSOF(entries))
            return 2;
        size_t k = 0;
        while (k < ELEMENTSOF(kinds) && strcmp(kinds[k].name, eq + 1) != 0)
            k++;
        if (k == ELEMENTSOF(kinds)) {
            fprintf(stderr, "gen_config: unknown kind %s\n", eq + 1);
            return 2;
        }
        argv[i][eq - a] = '\0';
        entries[n++] = (iso_runtime_entry){a, kinds[k].kind};
    }
    iso_containerd_version v;
    _cleanup_free_ char *block = NULL, *merged = NULL;
    if (iso_containerd_version_detect(&v, text, len, &err) < 0 ||
        iso_containerd_block(&block, v, entries, n, &p, &err) < 0 ||
        iso_containerd_merge(&merged, text, len, block, &err) < 0)
        return die(&err);
    for (size_t i = 0; i < n; i++) {
        if (entries[i].kind > ISO_RUNTIME_RUNSC_NVPROXY)
            continue;
        _cleanup_free_ char *toml = NULL, *path = NULL;
        if (iso_runsc_toml(&toml, entries[i].kind, platform, &p, &err) < 0 ||
            iso_runsc_toml_path(&path, &p, entries[i].handler, &err) < 0)
            return die(&err);
        if (write_file(path, toml) < 0)
            return 1;
    }
    return write_file(argv[3], merged) < 0;
}
