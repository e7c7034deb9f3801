/* The node installer: kubelet's config and flags edits, the handler plan, and whole runs in
 * a scratch host root with a fake service manager and fake checks (restarts recorded). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "isolation/installer/install.h"
#include "libmoat/names.h"
#include "libmoat/textfile.h"

/* ---- kubelet config ---- */

static char *set_ep(const char *text, const char *ep)
{
    char *out = NULL;
    moat_error err = MOAT_ERROR_INIT;
    int r = iso_kubelet_config_set_endpoint(&out, text, strlen(text), ep, &err);
    if (r < 0) {
        print_message("error: %s\n", err.message);
        moat_error_clear(&err);
        return NULL;
    }
    return out;
}

static void test_kubelet_replace(void **state)
{
    (void)state;
    const char *in = "apiVersion: kubelet.config.k8s.io/v1beta1\n"
                     "kind: KubeletConfiguration\n"
                     "# the runtime (kubeadm writes this)\n"
                     "containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock\n"
                     "cgroupDriver: systemd   # trailing comment kept\n";
    char *out = set_ep(in, "unix:///run/moat/cri.sock");
    assert_non_null(out);
    assert_string_equal(out, "apiVersion: kubelet.config.k8s.io/v1beta1\n"
                             "kind: KubeletConfiguration\n"
                             "# the runtime (kubeadm writes this)\n"
                             "containerRuntimeEndpoint: \"unix:///run/moat/cri.sock\"\n"
                             "cgroupDriver: systemd   # trailing comment kept\n");
    /* Setting it again changes nothing. */
    char *again = set_ep(out, "unix:///run/moat/cri.sock");
    assert_string_equal(again, out);
    /* And back to the original value: only the quotes differ. */
    char *back = set_ep(out, "unix:///var/run/containerd/containerd.sock");
    assert_non_null(strstr(back, "containerRuntimeEndpoint: "
                                 "\"unix:///var/run/containerd/containerd.sock\"\n"));
    free(out);
    free(again);
    free(back);
}

static void test_kubelet_replace_quoted_utf8(void **state)
{
    (void)state;
    /* Non-ASCII before the key: libyaml's marks count characters, not bytes. */
    const char *in = "# réglage du nœud\nkind: KubeletConfiguration\n"
                     "containerRuntimeEndpoint: 'unix:///x.sock'\nport: 10250\n";
    char *out = set_ep(in, "unix:///run/moat/cri.sock");
    assert_non_null(out);
    assert_string_equal(out, "# réglage du nœud\nkind: KubeletConfiguration\n"
                             "containerRuntimeEndpoint: \"unix:///run/moat/cri.sock\"\n"
                             "port: 10250\n");
    free(out);
}

static void test_kubelet_insert_block(void **state)
{
    (void)state;
    const char *in = "---\n# header\napiVersion: kubelet.config.k8s.io/v1beta1\n"
                     "kind: KubeletConfiguration\n";
    char *out = set_ep(in, "unix:///run/moat/cri.sock");
    assert_non_null(out);
    assert_string_equal(out, "---\n# header\n"
                             "containerRuntimeEndpoint: \"unix:///run/moat/cri.sock\"\n"
                             "apiVersion: kubelet.config.k8s.io/v1beta1\n"
                             "kind: KubeletConfiguration\n");
    free(out);
}

static void test_kubelet_json(void **state)
{
    (void)state;
    /* EKS writes JSON (/etc/kubernetes/kubelet/config.json). */
    const char *in = "{\n  \"kind\": \"KubeletConfiguration\",\n  \"port\": 10250\n}\n";
    char *out = set_ep(in, "unix:///run/moat/cri.sock");
    assert_non_null(out);
    assert_string_equal(out, "{\"containerRuntimeEndpoint\": \"unix:///run/moat/cri.sock\", \n"
                             "  \"kind\": \"KubeletConfiguration\",\n  \"port\": 10250\n}\n");
    char *again = set_ep(out, "unix:///run/moat/cri.sock");
    assert_string_equal(again, out);
    const char *in2 = "{\"containerRuntimeEndpoint\":\"unix:///a.sock\",\"port\":1}";
    char *out2 = set_ep(in2, "unix:///b.sock");
    assert_string_equal(out2, "{\"containerRuntimeEndpoint\":\"unix:///b.sock\",\"port\":1}");
    free(out);
    free(again);
    free(out2);
}

static void test_kubelet_refused(void **state)
{
    (void)state;
    assert_null(set_ep("- a\n- b\n", "unix:///x"));
    assert_null(set_ep("a: [\n", "unix:///x"));
    assert_null(set_ep("containerRuntimeEndpoint: {a: b}\n", "unix:///x"));
    assert_null(set_ep("a: 1\n---\nb: 2\n", "unix:///x"));
    char *out = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_kubelet_config_get_endpoint(&out, "a: 1\n", 5, &err), 0);
    assert_null(out);
}

static void test_kubelet_flags(void **state)
{
    (void)state;
    const char *in = "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/"
                     "containerd/containerd.sock --pod-infra-container-image=k8s.gcr.io/"
                     "pause:3.9\"\n";
    char *out = NULL;
    bool found = false;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_kubelet_flags_set_endpoint(&out, &found, in, strlen(in),
                                                    "unix:///run/moat/cri.sock", &err),
                     0);
    assert_true(found);
    assert_string_equal(out, "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/"
                             "moat/cri.sock --pod-infra-container-image=k8s.gcr.io/pause:3.9\"\n");
    free(out);
    const char *sp = "ARGS=--v=2 --container-runtime-endpoint unix:///a.sock\n";
    assert_int_equal(
        iso_kubelet_flags_set_endpoint(&out, &found, sp, strlen(sp), "unix:///b", &err), 0);
    assert_true(found);
    assert_string_equal(out, "ARGS=--v=2 --container-runtime-endpoint unix:///b\n");
    free(out);
    const char *none = "ARGS=--v=2 --container-runtime-endpoints=x\n";
    assert_int_equal(
        iso_kubelet_flags_set_endpoint(&out, &found, none, strlen(none), "unix:///b", &err), 0);
    assert_false(found);
    assert_string_equal(out, none);
    free(out);
}

static void test_entries(void **state)
{
    (void)state;
    iso_runtime_entry e[ISO_INSTALL_MAX_ENTRIES];
    size_t n = iso_install_entries(e, ISO_INSTALL_CONFIG, NULL, NULL);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].handler, MOAT_RUNTIMECLASS_AUTO);
    assert_int_equal(e[0].kind, ISO_RUNTIME_RUNSC);
    assert_string_equal(e[1].handler, MOAT_RUNTIMECLASS_GVISOR);
    n = iso_install_entries(e, ISO_INSTALL_CONFIG, MOAT_HYPERVISOR_KVM, MOAT_GPU_MODE_NONE);
    assert_int_equal(n, 3);
    assert_string_equal(e[2].handler, MOAT_RUNTIMECLASS_VM);
    assert_int_equal(e[2].kind, ISO_RUNTIME_KATA_CLH);
    n = iso_install_entries(e, ISO_INSTALL_SHIM, NULL, NULL);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].handler, MOAT_HANDLER_RUNSC);
    assert_string_equal(e[1].handler, MOAT_HANDLER_RUNSC_NONET);
    assert_int_equal(e[1].kind, ISO_RUNTIME_RUNSC_NONET);
    n = iso_install_entries(e, ISO_INSTALL_SHIM, MOAT_HYPERVISOR_KVM, NULL);
    assert_int_equal(n, 3);
    assert_string_equal(e[2].handler, MOAT_HANDLER_KATA_CLH);
}

/* GPU pools: nvproxy's gVisor in container mode, Kata's GPU runtime in VM passthrough mode
 * (only with a hypervisor: without one a GPU VM cannot run, and nothing pretends it can). */
static void test_entries_gpu(void **state)
{
    (void)state;
    iso_runtime_entry e[ISO_INSTALL_MAX_ENTRIES];
    size_t n = iso_install_entries(e, ISO_INSTALL_SHIM, NULL, MOAT_GPU_MODE_CONTAINER);
    assert_int_equal(n, 3);
    assert_string_equal(e[2].handler, MOAT_HANDLER_RUNSC_NVPROXY);
    assert_int_equal(e[2].kind, ISO_RUNTIME_RUNSC_NVPROXY);
    n = iso_install_entries(e, ISO_INSTALL_SHIM, MOAT_HYPERVISOR_KVM, MOAT_GPU_MODE_VM);
    assert_int_equal(n, 4);
    assert_string_equal(e[2].handler, MOAT_HANDLER_KATA_CLH);
    assert_string_equal(e[3].handler, MOAT_HANDLER_KATA_QEMU_NV_GPU);
    assert_int_equal(e[3].kind, ISO_RUNTIME_KATA_GPU);
    n = iso_install_entries(e, ISO_INSTALL_SHIM, NULL, MOAT_GPU_MODE_VM);
    assert_int_equal(n, 2); /* no hypervisor: no VM runtime at all */
    n = iso_install_entries(e, ISO_INSTALL_CONFIG, NULL, MOAT_GPU_MODE_CONTAINER);
    assert_int_equal(n, 2);
    assert_int_equal(e[0].kind, ISO_RUNTIME_RUNSC_NVPROXY);
    assert_int_equal(e[1].kind, ISO_RUNTIME_RUNSC_NVPROXY);
    n = iso_install_entries(e, ISO_INSTALL_CONFIG, MOAT_HYPERVISOR_KVM, MOAT_GPU_MODE_VM);
    assert_int_equal(n, 3);
    assert_int_equal(e[0].kind, ISO_RUNTIME_RUNSC);
    assert_string_equal(e[2].handler, MOAT_RUNTIMECLASS_VM);
    assert_int_equal(e[2].kind, ISO_RUNTIME_KATA_GPU);
}

/* ---- whole runs: fake services and checks ---- */

typedef struct {
    char log[4096]; /* "restart:containerd start:moat-cri ..." */
    bool cri_defined, cri_running;
    bool kubelet_healthy;
    int version_calls;
    char wall_removed[64]; /* the table remove_wall was last asked for */
    bool wall_fails;
} fake;

static void logf_(fake *f, const char *what, const char *name)
{
    size_t l = strlen(f->log);
    snprintf(f->log + l, sizeof(f->log) - l, "%s:%s ", what, name);
}

static int f_define(void *impl, const char *name, const char *const *argv, const char *run_dir,
                    bool *changed, moat_error *err)
{
    fake *f = impl;
    (void)err;
    assert_string_equal(run_dir, "/run/moat");
    assert_string_equal(argv[1], "--config=/etc/moat/cri.yaml");
    *changed = !f->cri_defined;
    f->cri_defined = true;
    logf_(f, "define", name);
    return 0;
}

static int f_undefine(void *impl, const char *name, bool *changed, moat_error *err)
{
    fake *f = impl;
    (void)err;
    *changed = f->cri_defined;
    if (f->cri_defined)
        logf_(f, "undefine", name);
    f->cri_defined = f->cri_running = false;
    return 0;
}

static int f_start(void *impl, const char *name, moat_error *err)
{
    fake *f = impl;
    (void)err;
    logf_(f, "start", name);
    if (strcmp(name, "moat-cri") == 0)
        f->cri_running = true;
    return 0;
}

static int f_restart(void *impl, const char *name, moat_error *err)
{
    fake *f = impl;
    (void)err;
    logf_(f, "restart", name);
    if (strcmp(name, "moat-cri") == 0)
        f->cri_running = true;
    return 0;
}

static int f_stop(void *impl, const char *name, moat_error *err)
{
    fake *f = impl;
    (void)err;
    logf_(f, "stop", name);
    return 0;
}

static int f_running(void *impl, const char *name, bool *out, moat_error *err)
{
    fake *f = impl;
    (void)err;
    *out = strcmp(name, "moat-cri") == 0 ? f->cri_running : true;
    return 0;
}

static int f_hypervisor(void *impl, const char **ret, moat_error *err)
{
    (void)impl;
    (void)err;
    *ret = NULL;
    return 0;
}

static int f_version(void *impl, const char *path, int timeout_ms, char **ret, moat_error *err)
{
    fake *f = impl;
    (void)timeout_ms;
    f->version_calls++;
    if (strstr(path, "/run/containerd/containerd.sock")) {
        *ret = strdup("containerd v2.4.2");
        return 0;
    }
    assert_non_null(strstr(path, "/run/moat/cri.sock"));
    if (!f->cri_running)
        return moat_error_set(err, MOAT_E_NETWORK, "no moat-cri");
    *ret = strdup("containerd v2.4.2");
    return 0;
}

static int f_healthy(void *impl, const char *url, int timeout_ms, int settle_ms, moat_error *err)
{
    fake *f = impl;
    (void)url;
    (void)timeout_ms;
    (void)settle_ms;
    return f->kubelet_healthy ? 0 : moat_error_set(err, MOAT_E_NETWORK, "connection refused");
}

static int f_remove_wall(void *impl, const char *table, moat_error *err)
{
    fake *f = impl;
    if (f->wall_fails)
        return moat_error_set(err, MOAT_E_IO, "nftables: Operation not permitted");
    snprintf(f->wall_removed, sizeof(f->wall_removed), "%s", table);
    return 0;
}

static void put(const char *root, const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", root, rel);
    bool ch;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_install_file_put(path, text, strlen(text), 0755, &ch, &err), 0);
}

static char *get(const char *root, const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", root, rel);
    char *t = NULL;
    size_t len;
    if (moat_read_text(&t, &len, path, 1 << 20, NULL) < 0)
        return NULL;
    return t;
}

static bool exists(const char *root, const char *rel)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s%s", root, rel);
    return lstat(path, &st) == 0;
}

static const char CONTAINERD[] = "version = 3\n"
                                 "[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n"
                                 "  default_runtime_name = \"runc\"\n"
                                 "  [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes."
                                 "runc]\n"
                                 "    runtime_type = \"io.containerd.runc.v2\"\n";
static const char KUBELET[] = "apiVersion: kubelet.config.k8s.io/v1beta1\n"
                              "kind: KubeletConfiguration\n"
                              "containerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n";

typedef struct {
    char root[64], bundle[96];
    fake f;
    iso_service_ops svc;
    iso_install_checks chk;
    iso_install_options o;
} world;

static void world_init(world *w, iso_install_mode mode)
{
    memset(w, 0, sizeof(*w));
    strcpy(w->root, "/tmp/moat-install-unit-XXXXXX");
    assert_non_null(mkdtemp(w->root));
    snprintf(w->bundle, sizeof(w->bundle), "%s-bundle", w->root);
    char b[160];
    snprintf(b, sizeof(b), "%s-bundle", w->root);
    put(b, "/bin/runsc", "runsc");
    put(b, "/bin/containerd-shim-runsc-v1", "shim");
    put(b, "/bin/moat-cri", "moat-cri");
    put(b, "/lib/libc.so.6", "libc");
    put(w->root, "/etc/containerd/config.toml", CONTAINERD);
    put(w->root, "/var/lib/kubelet/config.yaml", KUBELET);
    w->svc = (iso_service_ops){f_define, f_undefine, f_start, f_restart, f_stop, f_running, &w->f};
    w->chk = (iso_install_checks){f_hypervisor, f_version, f_healthy, f_remove_wall, &w->f};
    iso_install_options_default(&w->o);
    w->o.mode = mode;
    w->o.host_root = w->root;
    w->o.bundle_dir = w->bundle;
    w->f.kubelet_healthy = true;
}

static void world_clear(world *w)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", w->root, w->bundle);
    assert_int_equal(system(cmd), 0);
}

static int run(world *w, iso_install_report *rep)
{
    moat_error err = MOAT_ERROR_INIT;
    w->f.log[0] = '\0';
    int r = iso_install_run(rep, &w->o, &w->svc, &w->chk, &err);
    if (r < 0)
        print_message("install: %s\n", err.message);
    moat_error_clear(&err);
    return r;
}

static int uninstall(world *w, iso_install_report *rep)
{
    moat_error err = MOAT_ERROR_INIT;
    w->f.log[0] = '\0';
    int r = iso_install_uninstall(rep, &w->o, &w->svc, &w->chk, &err);
    if (r < 0)
        print_message("uninstall: %s\n", err.message);
    moat_error_clear(&err);
    return r;
}

static void test_config_mode(void **state)
{
    (void)state;
    world w;
    world_init(&w, ISO_INSTALL_CONFIG);
    iso_install_report rep = {0};
    assert_int_equal(run(&w, &rep), 0);
    assert_string_equal(w.f.log, "restart:containerd ");
    assert_int_equal(rep.restarts, 1);
    char *cd = get(w.root, "/etc/containerd/config.toml");
    assert_non_null(strstr(cd, "runtimes.moat-auto]"));
    assert_non_null(strstr(cd, "runtimes.moat-gvisor]"));
    assert_null(strstr(cd, "moat-vm"));
    free(cd);
    assert_true(exists(w.root, "/usr/local/bin/runsc"));
    assert_true(exists(w.root, "/etc/moat/runsc/moat-auto.toml"));
    assert_false(exists(w.root, "/opt/moat/bin/moat-cri"));
    iso_install_report_clear(&rep);

    /* Again: nothing written, nothing restarted. */
    assert_int_equal(run(&w, &rep), 0);
    assert_string_equal(w.f.log, "");
    assert_int_equal(rep.n, 0);
    iso_install_report_clear(&rep);

    assert_int_equal(uninstall(&w, &rep), 0);
    assert_string_equal(w.f.log, "restart:containerd ");
    cd = get(w.root, "/etc/containerd/config.toml");
    assert_string_equal(cd, CONTAINERD);
    free(cd);
    assert_false(exists(w.root, "/usr/local"));
    assert_false(exists(w.root, "/etc/moat"));
    assert_false(exists(w.root, "/var/lib/moat"));
    assert_true(exists(w.root, "/var/lib/kubelet/config.yaml"));
    iso_install_report_clear(&rep);
    assert_int_equal(uninstall(&w, &rep), 0);
    assert_string_equal(w.f.log, "");
    assert_int_equal(rep.n, 0);
    world_clear(&w);
}

/* The cluster's ranges reach moat-cri's configuration as a YAML list it reads back. */
static void test_cluster_cidrs(void **state)
{
    (void)state;
    world w;
    world_init(&w, ISO_INSTALL_SHIM);
    w.o.cri_cluster_cidrs = "10.244.0.0/16,fd00:10:96::/108";
    w.o.cri_wall_table = "moat_x";
    iso_install_report rep = {0};
    assert_int_equal(run(&w, &rep), 0);
    char *cri = get(w.root, "/etc/moat/cri.yaml");
    assert_non_null(strstr(cri, "egressWall:\n  table: moat_x\n"
                                "  clusterCIDRs: [\"10.244.0.0/16\", \"fd00:10:96::/108\"]\n"));
    free(cri);
    iso_install_report_clear(&rep);
    world_clear(&w);
}

static void test_shim_mode(void **state)
{
    (void)state;
    world w;
    world_init(&w, ISO_INSTALL_SHIM);
    iso_install_report rep = {0};
    assert_int_equal(run(&w, &rep), 0);
    assert_string_equal(w.f.log, "restart:containerd define:moat-cri restart:moat-cri "
                                 "restart:kubelet ");
    char *k = get(w.root, "/var/lib/kubelet/config.yaml");
    assert_non_null(strstr(k, "containerRuntimeEndpoint: \"unix:///run/moat/cri.sock\"\n"));
    free(k);
    char *cri = get(w.root, "/etc/moat/cri.yaml");
    assert_non_null(strstr(cri, "listen: /run/moat/cri.sock\n"));
    assert_non_null(strstr(cri, "upstream: /run/containerd/containerd.sock\n"));
    assert_null(strstr(cri, "egressWall"));
    free(cri);
    assert_true(exists(w.root, "/opt/moat/lib/libc.so.6"));
    char *cd = get(w.root, "/etc/containerd/config.toml");
    assert_non_null(strstr(cd, "runtimes.runsc]"));
    assert_non_null(strstr(cd, "runtimes.runsc-nonet]"));
    free(cd);
    iso_install_report_clear(&rep);

    /* Again: moat-cri is asked for its Version (no side effects) and nothing restarts. */
    assert_int_equal(run(&w, &rep), 0);
    assert_string_equal(w.f.log, "define:moat-cri ");
    assert_int_equal(rep.n, 0);
    assert_int_equal(rep.restarts, 0);
    iso_install_report_clear(&rep);

    /* A stopped moat-cri is started, and only that. */
    w.f.cri_running = false;
    assert_int_equal(run(&w, &rep), 0);
    assert_string_equal(w.f.log, "define:moat-cri start:moat-cri ");
    iso_install_report_clear(&rep);

    /* The wall cannot be removed: the uninstall says so, and the next run finishes it. */
    w.f.wall_fails = true;
    iso_install_report rep2 = {0};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_install_uninstall(&rep2, &w.o, &w.svc, &w.chk, &err), -1);
    assert_non_null(strstr(err.message, "removing moat-cri's egress wall: nftables"));
    moat_error_clear(&err);
    iso_install_report_clear(&rep2);
    w.f.wall_fails = false;
    w.f.log[0] = '\0';

    assert_int_equal(uninstall(&w, &rep), 0);
    assert_string_equal(w.f.wall_removed, "moat");
    k = get(w.root, "/var/lib/kubelet/config.yaml");
    assert_string_equal(k, KUBELET);
    free(k);
    cd = get(w.root, "/etc/containerd/config.toml");
    assert_string_equal(cd, CONTAINERD);
    free(cd);
    assert_false(exists(w.root, "/opt"));
    assert_false(exists(w.root, "/etc/moat"));
    assert_false(exists(w.root, "/var/lib/moat"));
    iso_install_report_clear(&rep);
    world_clear(&w);
}

static const char FLAGS[] = "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/"
                            "containerd/containerd.sock --v=2\"\n";

static void test_shim_mode_flags(void **state)
{
    (void)state;
    world w;
    world_init(&w, ISO_INSTALL_SHIM);
    put(w.root, "/var/lib/kubelet/kubeadm-flags.env", FLAGS);
    w.o.kubelet_flags = "/var/lib/kubelet/kubeadm-flags.env";
    iso_install_report rep = {0};
    assert_int_equal(run(&w, &rep), 0);
    char *f = get(w.root, "/var/lib/kubelet/kubeadm-flags.env");
    assert_string_equal(f, "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/moat/"
                           "cri.sock --v=2\"\n");
    free(f);
    iso_install_report_clear(&rep);
    assert_int_equal(run(&w, &rep), 0);
    assert_int_equal(rep.n, 0);
    iso_install_report_clear(&rep);
    assert_int_equal(uninstall(&w, &rep), 0);
    f = get(w.root, "/var/lib/kubelet/kubeadm-flags.env");
    assert_string_equal(f, FLAGS);
    free(f);
    f = get(w.root, "/var/lib/kubelet/config.yaml");
    assert_string_equal(f, KUBELET);
    free(f);
    iso_install_report_clear(&rep);
    /* Rolled back: both files as they were. */
    w.f.kubelet_healthy = false;
    assert_int_equal(run(&w, &rep), -1);
    f = get(w.root, "/var/lib/kubelet/kubeadm-flags.env");
    assert_string_equal(f, FLAGS);
    free(f);
    f = get(w.root, "/var/lib/kubelet/config.yaml");
    assert_string_equal(f, KUBELET);
    free(f);
    iso_install_report_clear(&rep);
    world_clear(&w);
}

static void test_shim_mode_rollback(void **state)
{
    (void)state;
    world w;
    world_init(&w, ISO_INSTALL_SHIM);
    w.f.kubelet_healthy = false;
    iso_install_report rep = {0};
    assert_int_equal(run(&w, &rep), -1);
    assert_string_equal(w.f.log, "restart:containerd define:moat-cri restart:moat-cri "
                                 "restart:kubelet restart:kubelet undefine:moat-cri ");
    char *k = get(w.root, "/var/lib/kubelet/config.yaml");
    assert_string_equal(k, KUBELET);
    free(k);
    assert_false(w.f.cri_defined);
    iso_install_report_clear(&rep);
    /* Uninstall after a rollback: kubelet's file is already the original (no restart). */
    assert_int_equal(uninstall(&w, &rep), 0);
    assert_string_equal(w.f.log, "restart:containerd ");
    char *cd = get(w.root, "/etc/containerd/config.toml");
    assert_string_equal(cd, CONTAINERD);
    free(cd);
    iso_install_report_clear(&rep);
    world_clear(&w);
}

static void test_shim_mode_no_answer(void **state)
{
    (void)state;
    world w;
    world_init(&w, ISO_INSTALL_SHIM);
    /* moat-cri never answers: kubelet is not touched. */
    w.svc.restart = f_stop; /* restarting moat-cri does not bring it up */
    iso_install_report rep = {0};
    assert_int_equal(run(&w, &rep), -1);
    assert_null(strstr(w.f.log, "kubelet"));
    char *k = get(w.root, "/var/lib/kubelet/config.yaml");
    assert_string_equal(k, KUBELET);
    free(k);
    iso_install_report_clear(&rep);
    world_clear(&w);
}

static int f_restart_fail(void *impl, const char *name, moat_error *err)
{
    logf_(impl, "restart-failed", name);
    return moat_error_set(err, MOAT_E_IO, "systemctl restart %s exited 1", name);
}

static void test_pending_restart(void **state)
{
    (void)state;
    world w;
    world_init(&w, ISO_INSTALL_CONFIG);
    /* The restart fails after the config was written: the next run restarts although the
     * file no longer changes, and the one after that does nothing. */
    w.svc.restart = f_restart_fail;
    iso_install_report rep = {0};
    assert_int_equal(run(&w, &rep), -1);
    assert_string_equal(w.f.log, "restart-failed:containerd ");
    iso_install_report_clear(&rep);
    w.svc.restart = f_restart;
    assert_int_equal(run(&w, &rep), 0);
    assert_string_equal(w.f.log, "restart:containerd ");
    iso_install_report_clear(&rep);
    assert_int_equal(run(&w, &rep), 0);
    assert_string_equal(w.f.log, "");
    iso_install_report_clear(&rep);
    assert_int_equal(uninstall(&w, &rep), 0);
    assert_false(exists(w.root, "/var/lib/moat"));
    iso_install_report_clear(&rep);
    world_clear(&w);
}

/* ---- the service backends ---- */

static void test_service_systemd_unit(void **state)
{
    (void)state;
    char root[] = "/tmp/moat-install-sd-XXXXXX";
    assert_non_null(mkdtemp(root));
    /* systemctl is `true`: the unit file is what is checked. */
    const char *const sysctl[] = {"true", NULL};
    iso_service *s = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_service_systemd_new(&s, root, sysctl, &err), 0);
    iso_service_ops ops = iso_service_ops_of(s);
    const char *argv[] = {"/opt/moat/bin/moat-cri", "--config=/etc/moat/a b.yaml", "100%$x", NULL};
    bool ch = false;
    assert_int_equal(ops.define(ops.impl, "moat-cri", argv, "/run/moat", &ch, &err), 0);
    assert_true(ch);
    char *unit = get(root, "/etc/systemd/system/moat-cri.service");
    assert_non_null(unit);
    assert_non_null(strstr(unit, "ExecStart=\"/opt/moat/bin/moat-cri\" "
                                 "\"--config=/etc/moat/a b.yaml\" \"100%%$$x\"\n"));
    assert_non_null(strstr(unit, "RuntimeDirectory=moat\n"));
    assert_non_null(strstr(unit, "Restart=always\n"));
    free(unit);
    assert_int_equal(ops.define(ops.impl, "moat-cri", argv, "/run/moat", &ch, &err), 0);
    assert_false(ch);
    bool running = false;
    assert_int_equal(ops.running(ops.impl, "moat-cri", &running, &err), 0);
    assert_true(running); /* `true --quiet is-active` exits 0 */
    assert_int_equal(ops.undefine(ops.impl, "moat-cri", &ch, &err), 0);
    assert_true(ch);
    assert_false(exists(root, "/etc/systemd/system/moat-cri.service"));
    iso_service_free(s);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static void test_service_process(void **state)
{
    (void)state;
    char dir[] = "/tmp/moat-install-proc-XXXXXX";
    assert_non_null(mkdtemp(dir));
    iso_service *s = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_service_process_new(&s, dir, 2000, &err), 0);
    iso_service_ops ops = iso_service_ops_of(s);
    bool ch = false, running = true;
    assert_int_equal(ops.running(ops.impl, "sleeper", &running, &err), 0);
    assert_false(running);
    assert_int_equal(ops.start(ops.impl, "sleeper", &err), -1); /* not defined */
    moat_error_clear(&err);
    const char *argv[] = {"/bin/sleep", "60", NULL};
    char rundir[96];
    snprintf(rundir, sizeof(rundir), "%s/run/x", dir);
    assert_int_equal(ops.define(ops.impl, "sleeper", argv, rundir, &ch, &err), 0);
    assert_true(ch);
    assert_int_equal(ops.start(ops.impl, "sleeper", &err), 0);
    assert_true(exists(rundir, ""));
    assert_int_equal(ops.running(ops.impl, "sleeper", &running, &err), 0);
    assert_true(running);
    char *pid1 = get(dir, "/sleeper.pid");
    assert_int_equal(ops.start(ops.impl, "sleeper", &err), 0); /* running: left alone */
    char *pid2 = get(dir, "/sleeper.pid");
    assert_string_equal(pid1, pid2);
    assert_int_equal(ops.restart(ops.impl, "sleeper", &err), 0);
    char *pid3 = get(dir, "/sleeper.pid");
    assert_string_not_equal(pid1, pid3);
    assert_int_equal(ops.stop(ops.impl, "sleeper", &err), 0);
    assert_int_equal(ops.running(ops.impl, "sleeper", &running, &err), 0);
    assert_false(running);
    /* A missing program is an error naming it. */
    const char *bad[] = {"/nonexistent/prog", NULL};
    assert_int_equal(ops.define(ops.impl, "bad", bad, NULL, &ch, &err), 0);
    assert_int_equal(ops.start(ops.impl, "bad", &err), -1);
    assert_non_null(strstr(err.message, "/nonexistent/prog"));
    moat_error_clear(&err);
    assert_int_equal(ops.undefine(ops.impl, "sleeper", &ch, &err), 0);
    assert_true(ch);
    free(pid1);
    free(pid2);
    free(pid3);
    iso_service_free(s);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kubelet_replace),
        cmocka_unit_test(test_kubelet_replace_quoted_utf8),
        cmocka_unit_test(test_kubelet_insert_block),
        cmocka_unit_test(test_kubelet_json),
        cmocka_unit_test(test_kubelet_refused),
        cmocka_unit_test(test_kubelet_flags),
        cmocka_unit_test(test_entries),
        cmocka_unit_test(test_entries_gpu),
        cmocka_unit_test(test_config_mode),
        cmocka_unit_test(test_shim_mode),
        cmocka_unit_test(test_cluster_cidrs),
        cmocka_unit_test(test_shim_mode_flags),
        cmocka_unit_test(test_shim_mode_rollback),
        cmocka_unit_test(test_shim_mode_no_answer),
        cmocka_unit_test(test_pending_restart),
        cmocka_unit_test(test_service_systemd_unit),
        cmocka_unit_test(test_service_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
