/* The node installer's install: the plan, gVisor's files, containerd's and moat-cri's
 * config, kubelet's endpoint with its health check and rollback (state.c keeps the files
 * and state, uninstall.c undoes it all). */
#include "install-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "libmoat/cri/cri.h"
#include "isolation/gvisor/runsc.h"
#include "isolation/kata/kata.h"
#include "isolation/probe/probe.h"
#include "cri-shim/wall.h"
#include "libmoat/clock.h"
#include "libmoat/names.h"
#include "libmoat/strbuf.h"
#include "libmoat/textfile.h"

#define CONFIG_MAX ((size_t)4 << 20) /* kubelet's and moat's config files */

void iso_install_options_default(iso_install_options *o)
{
    *o = (iso_install_options){
        .mode = ISO_INSTALL_SHIM,
        .host_root = "/host",
        .bundle_dir = "/opt/moat-image",
        .prefix = "/opt/moat",
        .bin_dir = "/usr/local/bin",
        .state_dir = "/var/lib/moat",
        .containerd_config = "/etc/containerd/config.toml",
        .containerd_socket = "/run/containerd/containerd.sock",
        .containerd_service = "containerd",
        .runsc_config_dir = "/etc/moat/runsc",
        .cri_config = "/etc/moat/cri.yaml",
        .cri_socket = "/run/moat/cri.sock",
        .cri_metrics = "127.0.0.1:9466",
        .cri_service = "moat-cri",
        .cri_timeout_ms = 30000,
        .cri_wall_table = ISO_WALL_TABLE,
        .kubelet_config = "/var/lib/kubelet/config.yaml",
        .kubelet_service = "kubelet",
        .kubelet_healthz = "http://127.0.0.1:10248/healthz",
        .kubelet_timeout_ms = 60000,
        .kubelet_settle_ms = 5000,
    };
}

/* ---- planning ---- */

size_t iso_install_entries(iso_runtime_entry out[ISO_INSTALL_MAX_ENTRIES], iso_install_mode mode,
                           const char *hypervisor, const char *gpu_mode)
{
    bool gpu_container = gpu_mode && strcmp(gpu_mode, MOAT_GPU_MODE_CONTAINER) == 0;
    bool gpu_vm = gpu_mode && strcmp(gpu_mode, MOAT_GPU_MODE_VM) == 0 && hypervisor;
    size_t n = 0;
    if (mode == ISO_INSTALL_SHIM) {
        out[n++] = (iso_runtime_entry){MOAT_HANDLER_RUNSC, ISO_RUNTIME_RUNSC};
        out[n++] = (iso_runtime_entry){MOAT_HANDLER_RUNSC_NONET, ISO_RUNTIME_RUNSC_NONET};
        if (hypervisor)
            out[n++] = (iso_runtime_entry){MOAT_HANDLER_KATA_CLH, ISO_RUNTIME_KATA_CLH};
        if (gpu_container)
            out[n++] = (iso_runtime_entry){MOAT_HANDLER_RUNSC_NVPROXY, ISO_RUNTIME_RUNSC_NVPROXY};
        if (gpu_vm)
            out[n++] = (iso_runtime_entry){MOAT_HANDLER_KATA_QEMU_NV_GPU, ISO_RUNTIME_KATA_GPU};
    } else {
        iso_runtime_kind gvisor = gpu_container ? ISO_RUNTIME_RUNSC_NVPROXY : ISO_RUNTIME_RUNSC;
        out[n++] = (iso_runtime_entry){MOAT_RUNTIMECLASS_AUTO, gvisor};
        out[n++] = (iso_runtime_entry){MOAT_RUNTIMECLASS_GVISOR, gvisor};
        if (hypervisor)
            out[n++] = (iso_runtime_entry){MOAT_RUNTIMECLASS_VM,
                                           gpu_vm ? ISO_RUNTIME_KATA_GPU : ISO_RUNTIME_KATA_CLH};
    }
    return n;
}

/* ---- the steps ---- */

static int runtime_paths(iso_runtime_paths *p, const install_ctx *c, char **ret_runsc)
{
    iso_runtime_paths_default(p);
    char *runsc = NULL;
    if (asprintf(&runsc, "%s/runsc", c->o->bin_dir) < 0)
        return -1;
    p->runsc = runsc;
    p->runsc_config_dir = c->o->runsc_config_dir;
    p->runsc_root = c->o->runsc_root;
    if (c->o->kata_shim)
        p->kata_shim = c->o->kata_shim;
    if (c->o->kata_clh_config)
        p->kata_clh_config = c->o->kata_clh_config;
    *ret_runsc = runsc;
    return 0;
}

/* Copies one bundle file (installer side) to a host path; *changed when its bytes moved. */
static int copy_in(install_ctx *c, const char *src, const char *hostpath, bool *changed,
                   moat_error *err)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    bool exists;
    if (install_read_file(&data, &len, &exists, src, BUNDLE_MAX, err) < 0)
        return -1;
    if (!exists)
        return moat_error_set(err, MOAT_E_NOTFOUND, "%s: not in the bundle", src);
    struct stat st;
    if (stat(src, &st) < 0)
        return moat_error_set_errno(err, errno, "stat %s", src);
    bool ch = false;
    if (install_put_tracked(c, hostpath, data, len, st.st_mode & 0755, &ch, err) < 0)
        return -1;
    *changed = *changed || ch;
    return 0;
}

/* Every regular file of <bundle>/<sub> to <dest>/<name>, in name order. */
static int copy_dir(install_ctx *c, const char *sub, const char *dest, bool *changed,
                    moat_error *err)
{
    _cleanup_free_ char *dir = NULL;
    if (asprintf(&dir, "%s/%s", c->o->bundle_dir, sub) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return moat_error_set_errno(err, errno, "bundle: %s", dir);
    int r = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        _cleanup_free_ char *src = NULL, *dst = NULL;
        struct stat st;
        if (r == 0 && name[0] != '.' && asprintf(&src, "%s/%s", dir, name) >= 0 &&
            stat(src, &st) == 0 && S_ISREG(st.st_mode)) {
            if (asprintf(&dst, "%s/%s", dest, name) < 0)
                r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            else
                r = copy_in(c, src, dst, changed, err);
        }
        free(names[i]);
    }
    free(names);
    return r;
}

static int gvisor_files(install_ctx *c, bool *changed, moat_error *err)
{
    static const char *const bins[] = {"runsc", "containerd-shim-runsc-v1"};
    for (size_t i = 0; i < ELEMENTSOF(bins); i++) {
        _cleanup_free_ char *src = NULL, *dst = NULL;
        if (asprintf(&src, "%s/bin/%s", c->o->bundle_dir, bins[i]) < 0 ||
            asprintf(&dst, "%s/%s", c->o->bin_dir, bins[i]) < 0)
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        if (copy_in(c, src, dst, changed, err) < 0)
            return -1;
    }
    return 0;
}

/* runsc.toml per gVisor handler, Kata's drop-in per Kata handler, and containerd's block. */
static int containerd_files(install_ctx *c, const iso_runtime_entry *e, size_t n,
                            const char *hypervisor, bool *ret_config_changed, moat_error *err)
{
    iso_runtime_paths p;
    _cleanup_free_ char *runsc = NULL;
    if (runtime_paths(&p, c, &runsc) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    const char *platform = iso_runsc_platform(hypervisor && strcmp(hypervisor, "kvm") == 0);
    bool kata_done = false;
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *text = NULL, *path = NULL;
        bool ch;
        if (e[i].kind == ISO_RUNTIME_KATA_CLH || e[i].kind == ISO_RUNTIME_KATA_GPU) {
            if (kata_done)
                continue;
            iso_kata_sizing s = {ISO_KATA_DEFAULT_VCPUS, ISO_KATA_DEFAULT_MEMORY_MIB};
            if (iso_kata_dropin(&text, e[i].kind, &s, err) < 0 ||
                iso_kata_dropin_path(&path, e[i].kind, &p, err) < 0)
                return moat_error_prefix(err, "kata drop-in for %s", e[i].handler);
            kata_done = true;
        } else if (iso_runsc_toml(&text, e[i].kind, platform, &p, err) < 0 ||
                   iso_runsc_toml_path(&path, &p, e[i].handler, err) < 0) {
            return moat_error_prefix(err, "runsc.toml for %s", e[i].handler);
        }
        if (install_put_tracked(c, path, text, strlen(text), 0644, &ch, err) < 0)
            return -1;
    }

    _cleanup_free_ char *cfg = install_host(c, c->o->containerd_config);
    _cleanup_free_ char *text = NULL, *block = NULL, *merged = NULL;
    size_t len;
    bool exists;
    if (!cfg)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (install_read_file(&text, &len, &exists, cfg, ISO_CONTAINERD_MAX_CONFIG, err) < 0)
        return moat_error_prefix(err, "containerd config");
    if (!exists)
        return moat_error_set(err, MOAT_E_NOTFOUND, "containerd config %s does not exist",
                              c->o->containerd_config);
    iso_containerd_version v;
    if (iso_containerd_version_detect(&v, text, len, err) < 0 ||
        iso_containerd_block(&block, v, e, n, &p, err) < 0 ||
        iso_containerd_merge(&merged, text, len, block, err) < 0)
        return moat_error_prefix(err, "containerd config %s", c->o->containerd_config);
    struct stat st;
    unsigned mode = stat(cfg, &st) == 0 ? st.st_mode & 07777 : 0644;
    return install_put_tracked(c, c->o->containerd_config, merged, strlen(merged), mode,
                               ret_config_changed, err);
}

static int cri_files(install_ctx *c, bool *changed, moat_error *err)
{
    _cleanup_free_ char *lib = NULL, *bin = NULL;
    if (asprintf(&lib, "%s/lib", c->o->prefix) < 0 || asprintf(&bin, "%s/bin", c->o->prefix) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    _cleanup_free_ char *src = NULL, *dst = NULL;
    if (asprintf(&src, "%s/bin/moat-cri", c->o->bundle_dir) < 0 ||
        asprintf(&dst, "%s/moat-cri", bin) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (copy_dir(c, "lib", lib, changed, err) < 0 || copy_in(c, src, dst, changed, err) < 0)
        return moat_error_prefix(err, "installing moat-cri");
    moat_strbuf b = {0};
    moat_strbuf_appendf(&b,
                        "# Written by moat-install (keys: cri-shim/config.h); uninstall "
                        "removes it.\nlisten: %s\nupstream: %s\nmetrics: %s\n",
                        c->o->cri_socket, c->o->containerd_socket, c->o->cri_metrics);
    if (c->o->cri_probe_assume)
        moat_strbuf_appendf(&b, "probe:\n  assume: %s\n", c->o->cri_probe_assume);
    bool table = c->o->cri_wall_table && strcmp(c->o->cri_wall_table, ISO_WALL_TABLE) != 0;
    bool cidrs = c->o->cri_cluster_cidrs && *c->o->cri_cluster_cidrs;
    if (table || cidrs)
        moat_strbuf_appendf(&b, "egressWall:\n");
    if (table)
        moat_strbuf_appendf(&b, "  table: %s\n", c->o->cri_wall_table);
    if (cidrs) {
        /* each one quoted: a CIDR holds no quote (moat-cri refuses anything else anyway) */
        moat_strbuf_appendf(&b, "  clusterCIDRs: [");
        const char *p = c->o->cri_cluster_cidrs;
        for (bool first = true; *p; first = false) {
            size_t len = strcspn(p, ",");
            moat_strbuf_appendf(&b, "%s\"%.*s\"", first ? "" : ", ", (int)len, p);
            p += len + (p[len] == ',');
        }
        moat_strbuf_appendf(&b, "]\n");
    }
    if (c->o->gpu_mode && strcmp(c->o->gpu_mode, MOAT_GPU_MODE_NONE) != 0)
        moat_strbuf_appendf(&b, "gpuMode: %s\n", c->o->gpu_mode);
    bool trunc = b.truncated;
    _cleanup_free_ char *yaml = moat_strbuf_take(&b);
    if (!yaml || trunc)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    bool ch = false;
    if (install_put_tracked(c, c->o->cri_config, yaml, strlen(yaml), 0644, &ch, err) < 0)
        return -1;
    *changed = *changed || ch;
    return 0;
}

/* A kubelet file's bytes before this run, for the rollback. */
typedef struct {
    const char *hostpath;
    char *before;
    size_t len;
    bool changed;
} kubelet_file;

static int kubelet_edit(install_ctx *c, kubelet_file *f, bool flags, const char *endpoint,
                        moat_error *err)
{
    _cleanup_free_ char *path = install_host(c, f->hostpath);
    if (!path)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    bool exists;
    if (install_read_file(&f->before, &f->len, &exists, path, CONFIG_MAX, err) < 0)
        return moat_error_prefix(err, "kubelet %s", flags ? "flags" : "config");
    if (!exists) {
        if (flags)
            return 0; /* optional */
        return moat_error_set(err, MOAT_E_NOTFOUND, "kubelet config %s does not exist",
                              f->hostpath);
    }
    _cleanup_free_ char *edited = NULL;
    bool found = true;
    if (flags ? iso_kubelet_flags_set_endpoint(&edited, &found, f->before, f->len, endpoint, err)
              : iso_kubelet_config_set_endpoint(&edited, f->before, f->len, endpoint, err))
        return moat_error_prefix(err, "%s", f->hostpath);
    if (!found)
        return 0;
    struct stat st;
    unsigned mode = stat(path, &st) == 0 ? st.st_mode & 07777 : 0644;
    return install_put_tracked(c, f->hostpath, edited, strlen(edited), mode, &f->changed, err);
}

static int kubelet_restore(install_ctx *c, kubelet_file *f, moat_error *err)
{
    if (!f->changed)
        return 0;
    _cleanup_free_ char *path = install_host(c, f->hostpath);
    struct stat st;
    unsigned mode = path && stat(path, &st) == 0 ? st.st_mode & 07777 : 0644;
    bool ch;
    if (!path || iso_install_file_put(path, f->before, f->len, mode, &ch, err) < 0)
        return moat_error_prefix(err, "restoring %s", f->hostpath);
    install_report_add(c->rep, "restored %s", f->hostpath);
    return 0;
}

static int shim_mode(install_ctx *c, const iso_service_ops *svc, const iso_install_checks *chk,
                     const char *hypervisor, moat_error *err)
{
    const iso_install_options *o = c->o;
    bool cri_changed = false, cd_changed = false, gv = false;
    iso_runtime_entry e[ISO_INSTALL_MAX_ENTRIES];
    size_t n = iso_install_entries(e, ISO_INSTALL_SHIM, hypervisor, o->gpu_mode);
    if (gvisor_files(c, &gv, err) < 0 ||
        containerd_files(c, e, n, hypervisor, &cd_changed, err) < 0)
        return -1;
    if ((cd_changed || install_pending(c, o->containerd_service)) &&
        install_restart_containerd(c, svc, chk, err) < 0)
        return -1;
    if (cri_files(c, &cri_changed, err) < 0)
        return -1;
    _cleanup_free_ char *cri_bin = NULL, *cri_cfg = NULL;
    if (asprintf(&cri_bin, "%s/bin/moat-cri", o->prefix) < 0 ||
        asprintf(&cri_cfg, "--config=%s", o->cri_config) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    const char *argv[] = {cri_bin, cri_cfg, NULL};
    bool defined = false, running = false;
    _cleanup_free_ char *sock_dir = strdup(o->cri_socket);
    char *slash = sock_dir ? strrchr(sock_dir, '/') : NULL;
    if (!slash)
        return moat_error_set(err, MOAT_E_INVALID, "--cri-socket %s is not an absolute path",
                              o->cri_socket);
    *slash = '\0';
    if (svc->define(svc->impl, o->cri_service, argv, sock_dir[0] ? sock_dir : NULL, &defined, err) <
        0)
        return moat_error_prefix(err, "defining %s", o->cri_service);
    if (defined)
        install_report_add(c->rep, "defined service %s", o->cri_service);
    if (cri_changed || defined || install_pending(c, o->cri_service)) {
        if (install_restart(c, svc, o->cri_service, err) < 0)
            return -1;
    } else {
        if (svc->running(svc->impl, o->cri_service, &running, err) < 0)
            return -1;
        if (!running) {
            if (svc->start(svc->impl, o->cri_service, err) < 0)
                return moat_error_prefix(err, "starting %s", o->cri_service);
            install_report_add(c->rep, "started %s", o->cri_service);
            if (c->rep)
                c->rep->restarts++;
        }
    }

    /* Only a moat-cri that answers with containerd's own Version gets kubelet. */
    _cleanup_free_ char *sock = install_host(c, o->cri_socket), *runtime = NULL;
    if (!sock)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (chk->cri_version(chk->impl, sock, o->cri_timeout_ms, &runtime, err) < 0)
        return moat_error_prefix(err,
                                 "%s does not answer through to containerd; kubelet left "
                                 "as it was",
                                 o->cri_service);
    if (strncmp(runtime, "containerd ", 11) != 0)
        return moat_error_set(err, MOAT_E_INVALID,
                              "%s answers Version as \"%s\", not "
                              "containerd's; kubelet left as it was",
                              o->cri_service, runtime);

    _cleanup_free_ char *endpoint = NULL;
    if (asprintf(&endpoint, "unix://%s", o->cri_socket) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    kubelet_file kc = {o->kubelet_config, NULL, 0, false}, kf = {o->kubelet_flags, NULL, 0, false};
    int r = kubelet_edit(c, &kc, false, endpoint, err);
    if (r == 0 && kf.hostpath)
        r = kubelet_edit(c, &kf, true, endpoint, err);
    if (r == 0 && (kc.changed || kf.changed)) {
        r = install_restart(c, svc, o->kubelet_service, err);
        if (r == 0)
            r = chk->healthy(chk->impl, o->kubelet_healthz, o->kubelet_timeout_ms,
                             o->kubelet_settle_ms, err);
        if (r < 0) {
            /* Roll back: kubelet's bytes, kubelet again, moat-cri gone. */
            moat_error_prefix(err, "kubelet on %s is not healthy; rolled back", endpoint);
            install_report_add(c->rep, "kubelet unhealthy: %s",
                               err && err->message ? err->message : "");
            moat_error e2 = MOAT_ERROR_INIT;
            bool ch;
            if (kubelet_restore(c, &kc, &e2) < 0 || kubelet_restore(c, &kf, &e2) < 0 ||
                install_restart(c, svc, o->kubelet_service, &e2) < 0 ||
                svc->undefine(svc->impl, o->cri_service, &ch, &e2) < 0)
                install_report_add(c->rep, "rollback failed: %s", e2.message ? e2.message : "");
            else
                install_report_add(c->rep, "stopped and removed %s", o->cri_service);
            moat_error_clear(&e2);
        }
    }
    free(kc.before);
    free(kf.before);
    return r;
}

static int config_mode(install_ctx *c, const iso_service_ops *svc, const iso_install_checks *chk,
                       const char *hypervisor, moat_error *err)
{
    bool gv = false, cd_changed = false;
    iso_runtime_entry e[ISO_INSTALL_MAX_ENTRIES];
    size_t n = iso_install_entries(e, ISO_INSTALL_CONFIG, hypervisor, c->o->gpu_mode);
    if (gvisor_files(c, &gv, err) < 0 ||
        containerd_files(c, e, n, hypervisor, &cd_changed, err) < 0)
        return -1;
    if (cd_changed || install_pending(c, c->o->containerd_service))
        return install_restart_containerd(c, svc, chk, err);
    return 0;
}

int iso_install_run(iso_install_report *rep, const iso_install_options *o,
                    const iso_service_ops *svc, const iso_install_checks *chk, moat_error *err)
{
    install_ctx c;
    if (install_ctx_open(&c, o, rep, err) < 0 || install_ctx_prepare(&c, err) < 0) {
        install_ctx_clear(&c);
        return moat_error_prefix(err, "state in %s", o->state_dir);
    }
    const char *hypervisor = NULL;
    int r = chk->hypervisor(chk->impl, &hypervisor, err);
    if (r == 0) {
        r = o->mode == ISO_INSTALL_SHIM ? shim_mode(&c, svc, chk, hypervisor, err)
                                        : config_mode(&c, svc, chk, hypervisor, err);
    }
    install_ctx_clear(&c);
    return r;
}
