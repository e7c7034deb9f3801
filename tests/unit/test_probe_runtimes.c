#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "isolation/probe/runtimes.h"

#define RUNSC_OUT "runsc version release-20260905.0\nspec: 1.1.0\n"
#define KATA_OUT                                                                                   \
    "Kata Containers containerd shim (Golang): id: \"io.containerd.kata.v2\", version: 3.2.0, "    \
    "commit: 1b6d3a6b7e0b3e10e2a85f4a8fd7b1f0dca6e9a1\n"

/* ---- a fake install tree and a fake exec ------------------------------------------------ */

typedef struct {
    char root[64];
    char runsc[128], shim[128], kata[128], configs[128];
} tree;

static void put(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void tree_make(tree *t)
{
    snprintf(t->root, sizeof t->root, "/tmp/moat-rt-XXXXXX");
    assert_non_null(mkdtemp(t->root));
    snprintf(t->runsc, sizeof t->runsc, "%s/runsc", t->root);
    snprintf(t->shim, sizeof t->shim, "%s/containerd-shim-runsc-v1", t->root);
    snprintf(t->kata, sizeof t->kata, "%s/containerd-shim-kata-v2", t->root);
    snprintf(t->configs, sizeof t->configs, "%s/kata", t->root);
    assert_int_equal(mkdir(t->configs, 0755), 0);
}

static void tree_install(const tree *t, bool gvisor, bool kata)
{
    char path[256];
    if (gvisor) {
        put(t->runsc, "#!/bin/false\n", 0755);
        put(t->shim, "#!/bin/false\n", 0755);
    }
    if (kata) {
        put(t->kata, "#!/bin/false\n", 0755);
        static const char *const names[] = {"clh", "qemu", "qemu-nvidia-gpu"};
        for (size_t i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/configuration-%s.toml", t->configs, names[i]);
            put(path, "[hypervisor]\n", 0644);
        }
    }
}

static void rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

typedef struct {
    const char *runsc_out, *kata_out;
    int status;
    bool timeout;
    int runs;
    char last[256];
    int last_timeout;
} fake_exec;

static int fake_run(void *impl, char **ret_out, int *ret_status, char *const argv[], int timeout_ms,
                    moat_error *err)
{
    fake_exec *f = impl;
    f->runs++;
    snprintf(f->last, sizeof f->last, "%s", argv[0]);
    f->last_timeout = timeout_ms;
    assert_string_equal(argv[1], "--version");
    assert_null(argv[2]);
    if (f->timeout)
        return moat_error_set(err, MOAT_E_CANCELED, "%s: timed out after %d ms", argv[0],
                              timeout_ms);
    const char *out = strstr(argv[0], "kata") ? f->kata_out : f->runsc_out;
    *ret_out = strdup(out ? out : "");
    *ret_status = f->status;
    return 0;
}

static const iso_probe_result kvm_usable = {
    .usable = true, .hypervisor = "kvm", .reason = "kvm usable", .found = "kvm"};
static const iso_probe_result mshv_usable = {
    .usable = true, .hypervisor = "mshv", .reason = "mshv usable", .found = "mshv"};
static const iso_probe_result pvm = {
    .usable = false,
    .reason = "kvm is kvm_pvm (no vmx/svm): Kata needs hardware virtualization and no /dev/mshv",
    .found = "kvm-pvm"};

static void probe(iso_runtimes_result *r, const tree *t, fake_exec *f, const iso_probe_result *hv)
{
    iso_runtime_paths paths = {t->runsc, t->shim, t->kata, t->configs, 0};
    iso_exec_ops ops = {fake_run, f};
    moat_error err = MOAT_ERROR_INIT;
    if (iso_runtimes_probe(r, &paths, &ops, hv, &err) < 0)
        fail_msg("runtimes probe: %s", err.message);
    assert_null(err.message);
}

/* ---- gVisor ----------------------------------------------------------------------------- */

static void test_gvisor_present(void **state)
{
    tree t;
    tree_make(&t);
    tree_install(&t, true, false);
    fake_exec f = {.runsc_out = RUNSC_OUT};
    iso_runtimes_result r;
    probe(&r, &t, &f, &pvm);
    const iso_gvisor_result *g = &r.gvisor;
    assert_true(g->available);
    assert_string_equal(g->reason, "runsc release-20260905.0 and containerd-shim-runsc-v1");
    assert_true(g->runsc.found);
    assert_string_equal(g->runsc.path, t.runsc);
    assert_string_equal(g->runsc.version, "release-20260905.0");
    assert_string_equal(g->runsc.detail, "ok");
    assert_true(g->shim.found);
    assert_null(g->shim.version); /* not asked */
    /* kvm_pvm: no KVM platform. */
    assert_int_equal(g->n_platforms, 2);
    assert_string_equal(g->platforms[0], "systrap");
    assert_string_equal(g->platforms[1], "ptrace");
    assert_string_equal(g->platform, "systrap");
    /* Only runsc was run (Kata's shim is absent), with the default time limit. */
    assert_int_equal(f.runs, 1);
    assert_string_equal(f.last, t.runsc);
    assert_int_equal(f.last_timeout, ISO_EXEC_TIMEOUT_MS);
    iso_runtimes_result_clear(&r);

    /* Hardware KVM: the kvm platform too, and chosen. */
    probe(&r, &t, &f, &kvm_usable);
    assert_int_equal(r.gvisor.n_platforms, 3);
    assert_string_equal(r.gvisor.platforms[2], "kvm");
    assert_string_equal(r.gvisor.platform, "kvm");
    iso_runtimes_result_clear(&r);

    /* mshv is not KVM: no kvm platform. No probe at all: none either. */
    probe(&r, &t, &f, &mshv_usable);
    assert_string_equal(r.gvisor.platform, "systrap");
    iso_runtimes_result_clear(&r);
    probe(&r, &t, &f, NULL);
    assert_int_equal(r.gvisor.n_platforms, 2);
    iso_runtimes_result_clear(&r);

    /* A runsc whose output has no version line still runs. */
    f.runsc_out = "something else\n";
    probe(&r, &t, &f, &pvm);
    assert_true(r.gvisor.available);
    assert_null(r.gvisor.runsc.version);
    assert_string_equal(r.gvisor.runsc.detail, "ok (no version in its --version output)");
    assert_string_equal(r.gvisor.reason, "runsc (version unknown) and containerd-shim-runsc-v1");
    iso_runtimes_result_clear(&r);
    rm_rf(t.root);
}

static void test_gvisor_absent(void **state)
{
    tree t;
    tree_make(&t);
    fake_exec f = {.runsc_out = RUNSC_OUT};
    iso_runtimes_result r;
    probe(&r, &t, &f, &pvm);
    char want[512];
    snprintf(want, sizeof want, "no %s", t.runsc);
    assert_false(r.gvisor.available);
    assert_false(r.gvisor.runsc.found);
    assert_string_equal(r.gvisor.runsc.detail, want);
    assert_string_equal(r.gvisor.reason, want);
    assert_int_equal(f.runs, 0);
    assert_false(r.kata.installed);
    assert_false(r.kata.available);
    snprintf(want, sizeof want, "no %s", t.kata);
    assert_string_equal(r.kata.reason, want);
    for (size_t i = 0; i < ISO_KATA_CONFIG__COUNT; i++)
        assert_false(r.kata.configs[i].present);
    iso_runtimes_result_clear(&r);

    /* runsc there, its shim not. */
    put(t.runsc, "", 0755);
    probe(&r, &t, &f, &pvm);
    assert_true(r.gvisor.runsc.found);
    assert_false(r.gvisor.available);
    snprintf(want, sizeof want, "no %s", t.shim);
    assert_string_equal(r.gvisor.reason, want);
    iso_runtimes_result_clear(&r);

    /* Not executable. */
    put(t.shim, "", 0755);
    assert_int_equal(chmod(t.runsc, 0644), 0);
    probe(&r, &t, &f, &pvm);
    assert_false(r.gvisor.available);
    snprintf(want, sizeof want, "%s: not an executable file", t.runsc);
    assert_string_equal(r.gvisor.runsc.detail, want);
    iso_runtimes_result_clear(&r);

    /* A directory is not a program. */
    assert_int_equal(unlink(t.runsc), 0);
    assert_int_equal(mkdir(t.runsc, 0755), 0);
    probe(&r, &t, &f, &pvm);
    assert_false(r.gvisor.runsc.found);
    assert_string_equal(r.gvisor.runsc.detail, want);
    iso_runtimes_result_clear(&r);
    rm_rf(t.root);
}

static void test_gvisor_broken(void **state)
{
    tree t;
    tree_make(&t);
    tree_install(&t, true, false);
    fake_exec f = {.runsc_out = "flag provided but not defined: -version\nusage...\n", .status = 2};
    iso_runtimes_result r;
    probe(&r, &t, &f, &pvm);
    char want[512];
    snprintf(want, sizeof want, "%s --version exited 2: flag provided but not defined: -version",
             t.runsc);
    assert_false(r.gvisor.available);
    assert_string_equal(r.gvisor.runsc.detail, want);
    iso_runtimes_result_clear(&r);

    f = (fake_exec){.timeout = true};
    iso_runtime_paths paths = {t.runsc, t.shim, t.kata, t.configs, 250};
    iso_exec_ops ops = {fake_run, &f};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_runtimes_probe(&r, &paths, &ops, &pvm, &err), 0);
    snprintf(want, sizeof want, "%s --version: %s: timed out after 250 ms", t.runsc, t.runsc);
    assert_string_equal(r.gvisor.runsc.detail, want);
    assert_false(r.gvisor.available);
    assert_int_equal(f.last_timeout, 250);
    iso_runtimes_result_clear(&r);
    rm_rf(t.root);
}

/* ---- Kata ------------------------------------------------------------------------------- */

static void test_kata(void **state)
{
    tree t;
    tree_make(&t);
    tree_install(&t, false, true);
    fake_exec f = {.kata_out = KATA_OUT};
    iso_runtimes_result r;
    probe(&r, &t, &f, &kvm_usable);
    const iso_kata_result *k = &r.kata;
    assert_true(k->installed);
    assert_true(k->available);
    assert_string_equal(k->shim.version, "3.2.0");
    assert_string_equal(k->reason, "Kata 3.2.0 with Cloud Hypervisor on kvm");
    assert_string_equal(k->configs[ISO_KATA_CONFIG_CLH].name, "clh");
    assert_true(k->configs[ISO_KATA_CONFIG_CLH].present);
    assert_string_equal(k->configs[ISO_KATA_CONFIG_QEMU_NVIDIA_GPU].name, "qemu-nvidia-gpu");
    char want[512];
    snprintf(want, sizeof want, "%s/configuration-qemu-nvidia-gpu.toml", t.configs);
    assert_string_equal(k->configs[ISO_KATA_CONFIG_QEMU_NVIDIA_GPU].path, want);
    assert_true(k->configs[ISO_KATA_CONFIG_QEMU_NVIDIA_GPU].present);
    iso_runtimes_result_clear(&r);

    /* Installed, but this is kvm_pvm: not available, and why. */
    probe(&r, &t, &f, &pvm);
    assert_true(r.kata.installed);
    assert_false(r.kata.available);
    assert_string_equal(r.kata.reason,
                        "no usable hypervisor: kvm is kvm_pvm (no vmx/svm): Kata needs hardware "
                        "virtualization and no /dev/mshv");
    iso_runtimes_result_clear(&r);
    probe(&r, &t, &f, NULL);
    assert_string_equal(r.kata.reason, "no usable hypervisor: the host was not probed");
    iso_runtimes_result_clear(&r);

    /* No Cloud Hypervisor configuration. */
    snprintf(want, sizeof want, "%s/configuration-clh.toml", t.configs);
    assert_int_equal(unlink(want), 0);
    probe(&r, &t, &f, &mshv_usable);
    assert_false(r.kata.available);
    assert_false(r.kata.configs[ISO_KATA_CONFIG_CLH].present);
    assert_true(r.kata.configs[ISO_KATA_CONFIG_QEMU].present);
    char reason[600];
    snprintf(reason, sizeof reason, "no %s", want);
    assert_string_equal(r.kata.reason, reason);
    iso_runtimes_result_clear(&r);
    rm_rf(t.root);
}

static void test_defaults(void **state)
{
    /* Default paths, without running anything: nothing of it is installed here. */
    fake_exec f = {0};
    iso_exec_ops ops = {fake_run, &f};
    iso_runtimes_result r;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_runtimes_probe(&r, NULL, &ops, NULL, &err), 0);
    assert_string_equal(r.gvisor.runsc.path, ISO_RUNSC_PATH);
    assert_string_equal(r.kata.shim.path, ISO_KATA_SHIM_PATH);
    assert_string_equal(r.kata.configs[ISO_KATA_CONFIG_CLH].path,
                        ISO_KATA_CONFIG_DIR "/configuration-clh.toml");
    iso_runtimes_result_clear(&r);
    iso_runtimes_result_clear(NULL);
    assert_int_equal(iso_runtimes_probe(NULL, NULL, &ops, NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);
}

/* ---- parsers ---------------------------------------------------------------------------- */

static void test_parse(void **state)
{
    static const struct {
        const char *text, *want;
    } runsc[] = {
        {RUNSC_OUT, "release-20260905.0"},
        {"runsc version 0.0.0\n", "0.0.0"},
        {"warning: x\nrunsc version  release-1 \r\nspec: 1\n", "release-1"},
        {"xrunsc version 1\n", NULL}, /* at the start of a line only */
        {"runsc version \n", NULL},
        {"runsc version", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < ELEMENTSOF(runsc); i++) {
        char *v = iso_runtimes_parse_runsc_version(runsc[i].text, strlen(runsc[i].text));
        if (runsc[i].want)
            assert_string_equal(v, runsc[i].want);
        else if (v)
            fail_msg("\"%s\" gave %s", runsc[i].text, v);
        free(v);
    }
    static const struct {
        const char *text, *want;
    } kata[] = {
        {KATA_OUT, "3.2.0"},
        {"version: 3.18.0\n", "3.18.0"},
        {"id: \"x\", version:\"3.1\"", "3.1"},
        {"no version here", NULL},
    };
    for (size_t i = 0; i < ELEMENTSOF(kata); i++) {
        char *v = iso_runtimes_parse_kata_version(kata[i].text, strlen(kata[i].text));
        if (kata[i].want)
            assert_string_equal(v, kata[i].want);
        else if (v)
            fail_msg("\"%s\" gave %s", kata[i].text, v);
        free(v);
    }
    /* The length is respected: no reading past it. */
    char *v = iso_runtimes_parse_runsc_version("runsc version abcdef", 17);
    assert_string_equal(v, "abc");
    free(v);
}

/* ---- the real runner (a shell, never a runtime) ----------------------------------------- */

static long long ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_real_exec(void **state)
{
    const iso_exec_ops *x = iso_exec_host();
    char *out = NULL;
    int status = -1;
    moat_error err = MOAT_ERROR_INIT;

    char *echo[] = {"/bin/sh", "-c", "echo out; echo err >&2; read x; echo \"[$x]\"; exit 3", NULL};
    assert_int_equal(x->run(x->impl, &out, &status, echo, 5000, &err), 0);
    assert_string_equal(out, "out\nerr\n[]\n"); /* stdin is /dev/null */
    assert_int_equal(status, 3);
    free(out);

    char *killed[] = {"/bin/sh", "-c", "kill -9 $$", NULL};
    assert_int_equal(x->run(x->impl, &out, &status, killed, 5000, &err), 0);
    assert_int_equal(status, 128 + 9);
    free(out);

    /* A program that hangs (and a child of it holding the pipe) is killed at the limit. */
    char *hang[] = {"/bin/sh", "-c", "sleep 30 & sleep 30", NULL};
    long long t0 = ms();
    out = (char *)0x1;
    assert_int_equal(x->run(x->impl, &out, &status, hang, 300, &err), -1);
    assert_int_equal(err.code, MOAT_E_CANCELED);
    assert_string_equal(err.message, "/bin/sh: timed out after 300 ms");
    assert_ptr_equal(out, (char *)0x1);
    assert_true(ms() - t0 < 3000);
    moat_error_clear(&err);

    char *missing[] = {"/nonexistent/moat/runsc", "--version", NULL};
    assert_int_equal(x->run(x->impl, &out, &status, missing, 1000, &err), -1);
    assert_int_equal(err.code, MOAT_E_IO);
    assert_int_equal(err.errno_value, ENOENT);
    moat_error_clear(&err);

    char *flood[] = {"/bin/sh", "-c", "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 200000", NULL};
    assert_int_equal(x->run(x->impl, &out, &status, flood, 5000, &err), -1);
    assert_int_equal(err.code, MOAT_E_NOMEM);
    moat_error_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gvisor_present), cmocka_unit_test(test_gvisor_absent),
        cmocka_unit_test(test_gvisor_broken),  cmocka_unit_test(test_kata),
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_parse),
        cmocka_unit_test(test_real_exec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
