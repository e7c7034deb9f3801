#include "runsc.h"

#include <string.h>

#include "libmoat/strbuf.h"

const char *iso_runsc_platform(bool hypervisor_usable)
{
    return hypervisor_usable ? ISO_RUNSC_PLATFORM_KVM : ISO_RUNSC_PLATFORM_SYSTRAP;
}

static int take(char **out, moat_strbuf *b, moat_error *err)
{
    if (b->truncated || !b->buf) {
        free(b->buf);
        *b = (moat_strbuf){0};
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory writing runsc.toml");
    }
    *out = moat_strbuf_take(b);
    return 0;
}

int iso_runsc_toml(char **out, iso_runtime_kind kind, const char *platform,
                   const iso_runtime_paths *p, moat_error *err)
{
    if (kind != ISO_RUNTIME_RUNSC && kind != ISO_RUNTIME_RUNSC_NONET &&
        kind != ISO_RUNTIME_RUNSC_NVPROXY)
        return moat_error_set(err, MOAT_E_INVALID, "runsc.toml: runtime kind %d is not gVisor",
                              (int)kind);
    /* ptrace is accepted for hosts where systrap cannot run (it is gVisor's slowest). */
    if (!platform ||
        (strcmp(platform, ISO_RUNSC_PLATFORM_SYSTRAP) != 0 &&
         strcmp(platform, ISO_RUNSC_PLATFORM_KVM) != 0 && strcmp(platform, "ptrace") != 0))
        return moat_error_set(err, MOAT_E_INVALID,
                              "runsc.toml: platform %s is not systrap, kvm or ptrace",
                              platform ? platform : "(none)");
    if (iso_containerd_path_check("runsc binary", p->runsc, err) < 0 ||
        (p->runsc_root && iso_containerd_path_check("runsc root", p->runsc_root, err) < 0) ||
        (p->runsc_log_dir && iso_containerd_path_check("runsc log dir", p->runsc_log_dir, err) < 0))
        return moat_error_prefix(err, "runsc.toml");
    const char *what = kind == ISO_RUNTIME_RUNSC_NONET     ? " without network"
                       : kind == ISO_RUNTIME_RUNSC_NVPROXY ? " with nvproxy (NVIDIA GPUs)"
                                                           : "";
    moat_strbuf b = {0};
    moat_strbuf_appendf(&b,
                        "# containerd-shim-runsc-v1 options for gVisor%s, written by Moat's "
                        "installer (rewritten on every run).\n",
                        what);
    moat_strbuf_appendf(&b, "binary_name = \"%s\"\n", p->runsc);
    if (p->runsc_root)
        moat_strbuf_appendf(&b, "root = \"%s\"\n", p->runsc_root);
    /* A log_path ending in '/' is a directory: the shim writes runsc-shim-<id>.log there.
     * Its options.go says "%ID% tags inside the string are replaced with the container
     * ID", but FormatShimLogPath (pkg/shim/v1/runsccmd/utils.go, 2026-09 build) does not:
     * "shim-%ID%.log" becomes one file of that very name, shared by every shim. runsc itself
     * does replace %ID% in debug-log. */
    if (p->runsc_log_dir)
        moat_strbuf_appendf(&b, "log_path = \"%s/\"\n", p->runsc_log_dir);
    moat_strbuf_appendf(&b, "[runsc_config]\n  platform = \"%s\"\n", platform);
    if (kind == ISO_RUNTIME_RUNSC_NONET)
        moat_strbuf_appendf(&b, "  network = \"none\"\n");
    if (kind == ISO_RUNTIME_RUNSC_NVPROXY)
        moat_strbuf_appendf(&b, "  nvproxy = \"true\"\n");
    if (p->runsc_log_dir)
        moat_strbuf_appendf(&b, "  debug-log = \"%s/%%ID%%/\"\n", p->runsc_log_dir);
    return take(out, &b, err);
}

int iso_runsc_toml_path(char **out, const iso_runtime_paths *p, const char *handler,
                        moat_error *err)
{
    if (iso_containerd_handler_check(handler, err) < 0 ||
        iso_containerd_path_check("runsc config dir", p->runsc_config_dir, err) < 0)
        return -1;
    size_t n = strlen(p->runsc_config_dir);
    while (n > 1 && p->runsc_config_dir[n - 1] == '/')
        n--;
    moat_strbuf b = {0};
    moat_strbuf_appendf(&b, "%.*s/%s.toml", (int)n, p->runsc_config_dir, handler);
    return take(out, &b, err);
}
