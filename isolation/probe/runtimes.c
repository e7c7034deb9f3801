#include "isolation/probe/runtimes.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libmoat/clock.h"
#include "libmoat/strbuf.h"
#include "libmoat/names.h"

extern char **environ;

/* ---- running a program ------------------------------------------------------------------ */

static int reap(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int host_run(_unused_ void *impl, char **ret_out, int *ret_status, char *const argv[],
                    int timeout_ms, moat_error *err)
{
    /* posix_spawn reports a failed exec only where it can use CLONE_VFORK (not under
     * valgrind, where the child just exits 127): ask first. */
    if (access(argv[0], X_OK) < 0)
        return moat_error_set_errno(err, errno, "%s: cannot run", argv[0]);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return moat_error_set_errno(err, errno, "%s: pipe", argv[0]);
    _cleanup_close_ int rd = p[0];
    int wr = p[1];

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, wr, 1);
    posix_spawn_file_actions_adddup2(&fa, wr, 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    /* Its own process group, so a timeout kills whatever it started as well. */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    pid_t pid;
    int e = posix_spawn(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(wr);
    if (e != 0)
        return moat_error_set_errno(err, e, "%s: cannot run", argv[0]);

    moat_strbuf b = {.max = (size_t)ISO_EXEC_OUTPUT_MAX + 1};
    char chunk[4096];
    long long deadline = (moat_mono_ns() / 1000000) + timeout_ms;
    int fail = 0; /* MOAT_E_* */
    for (;;) {
        long long left = deadline - (moat_mono_ns() / 1000000);
        if (left <= 0) {
            fail = MOAT_E_CANCELED;
            break;
        }
        struct pollfd pfd = {.fd = rd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            continue; /* the deadline check above ends it */
        ssize_t n = read(rd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF: every writer (the program and its children) is gone */
        if (moat_strbuf_append(&b, chunk, (size_t)n) < 0) {
            fail = MOAT_E_NOMEM;
            break;
        }
    }
    if (fail)
        kill(-pid, SIGKILL);
    int status = reap(pid);
    char *out = fail ? NULL : moat_strbuf_take(&b);
    moat_strbuf_free(&b);
    if (fail == MOAT_E_CANCELED)
        return moat_error_set(err, MOAT_E_CANCELED, "%s: timed out after %d ms", argv[0],
                              timeout_ms);
    if (!out)
        return moat_error_set(err, MOAT_E_NOMEM, "%s: more than %u bytes of output", argv[0],
                              ISO_EXEC_OUTPUT_MAX);
    *ret_out = out;
    *ret_status = status;
    return 0;
}

static const iso_exec_ops host_exec = {.run = host_run};

const iso_exec_ops *iso_exec_host(void)
{
    return &host_exec;
}

/* ---- parsers ---------------------------------------------------------------------------- */

/* The token after prefix on the first line that has it, ending at whitespace or stop. */
static char *token_after(const char *text, size_t len, const char *prefix, const char *stop,
                         bool line_start)
{
    size_t pl = strlen(prefix);
    for (size_t i = 0; i + pl <= len; i++) {
        if (line_start && i > 0 && text[i - 1] != '\n')
            continue;
        if (memcmp(text + i, prefix, pl) != 0)
            continue;
        size_t s = i + pl;
        while (s < len && (text[s] == ' ' || text[s] == '\t' || text[s] == '"'))
            s++;
        size_t e = s;
        while (e < len && text[e] != ' ' && text[e] != '\t' && text[e] != '\n' && text[e] != '\r' &&
               text[e] != '\0' && !strchr(stop, text[e]))
            e++;
        if (e == s || e - s > 128)
            return NULL;
        return strndup(text + s, e - s);
    }
    return NULL;
}

char *iso_runtimes_parse_runsc_version(const char *text, size_t len)
{
    return token_after(text, len, "runsc version ", "", true);
}

char *iso_runtimes_parse_kata_version(const char *text, size_t len)
{
    /* "Kata Containers containerd shim (Golang): id: "io.containerd.kata.v2", version:
     * 3.2.0, commit: 1b6d3a..." */
    return token_after(text, len, "version:", ",\"", false);
}

/* ---- probing ---------------------------------------------------------------------------- */

static void binary_clear(iso_binary *b)
{
    free(b->path);
    free(b->version);
    free(b->detail);
}

/* Fills b for path: there, executable, and (with parse) the version its --version prints.
 * Returns -1 only when out of memory. */
static int binary_probe(iso_binary *b, const char *path, const iso_exec_ops *exec, int timeout_ms,
                        char *(*parse)(const char *, size_t))
{
    *b = (iso_binary){.path = strdup(path)};
    if (!b->path)
        return -1;
    struct stat st;
    char ebuf[24];
    if (stat(path, &st) < 0) {
        b->detail = errno == ENOENT ? iso_strf("no %s", path)
                                    : iso_strf("%s: %s", path, iso_errno_name(errno, ebuf));
        return b->detail ? 0 : -1;
    }
    if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0) {
        b->detail = iso_strf("%s: not an executable file", path);
        return b->detail ? 0 : -1;
    }
    if (!parse) {
        b->found = true;
        b->detail = strdup("ok");
        return b->detail ? 0 : -1;
    }

    char *argv[] = {(char *)path, (char *)"--version", NULL};
    _cleanup_free_ char *output = NULL;
    int status = 0;
    _cleanup_error_ moat_error e = MOAT_ERROR_INIT;
    if (exec->run(exec->impl, &output, &status, argv, timeout_ms, &e) < 0) {
        b->detail = iso_strf("%s --version: %s", path, e.message ? e.message : "failed");
        return b->detail ? 0 : -1;
    }
    if (status != 0) {
        size_t n = strcspn(output, "\n");
        b->detail = iso_strf("%s --version exited %d: %.*s", path, status, (int)(n > 200 ? 200 : n),
                             output);
        return b->detail ? 0 : -1;
    }
    b->version = parse(output, strlen(output));
    b->found = true;
    b->detail = b->version ? strdup("ok") : strdup("ok (no version in its --version output)");
    return b->detail ? 0 : -1;
}

int iso_runtimes_probe(iso_runtimes_result *out, const iso_runtime_paths *paths,
                       const iso_exec_ops *exec, const iso_probe_result *hv, moat_error *err)
{
    if (!out)
        return moat_error_set(err, MOAT_E_INVALID, "runtimes probe: no result");
    static const iso_runtime_paths defaults = {0};
    if (!paths)
        paths = &defaults;
    if (!exec)
        exec = iso_exec_host();
    int timeout = paths->timeout_ms > 0 ? paths->timeout_ms : ISO_EXEC_TIMEOUT_MS;
    const char *config_dir = paths->kata_config_dir ? paths->kata_config_dir : ISO_KATA_CONFIG_DIR;

    iso_runtimes_result r = {0};
    iso_gvisor_result *g = &r.gvisor;
    iso_kata_result *k = &r.kata;

    if (binary_probe(&g->runsc, paths->runsc ? paths->runsc : ISO_RUNSC_PATH, exec, timeout,
                     iso_runtimes_parse_runsc_version) < 0 ||
        binary_probe(&g->shim, paths->runsc_shim ? paths->runsc_shim : ISO_RUNSC_SHIM_PATH, exec,
                     timeout, NULL) < 0 ||
        binary_probe(&k->shim, paths->kata_shim ? paths->kata_shim : ISO_KATA_SHIM_PATH, exec,
                     timeout, iso_runtimes_parse_kata_version) < 0)
        goto nomem;

    /* gVisor's KVM platform needs VMX/SVM; the probe's "usable" kvm proves exactly that. */
    bool hw_kvm =
        hv && hv->usable && hv->hypervisor && strcmp(hv->hypervisor, MOAT_HYPERVISOR_KVM) == 0;
    g->platforms[g->n_platforms++] = "systrap";
    g->platforms[g->n_platforms++] = "ptrace";
    if (hw_kvm)
        g->platforms[g->n_platforms++] = "kvm";
    g->platform = hw_kvm ? "kvm" : "systrap";
    g->available = g->runsc.found && g->shim.found;
    if (g->available)
        g->reason = iso_strf("runsc %s and containerd-shim-runsc-v1",
                             g->runsc.version ? g->runsc.version : "(version unknown)");
    else
        g->reason = strdup(!g->runsc.found ? g->runsc.detail : g->shim.detail);
    if (!g->reason)
        goto nomem;

    static const char *const names[ISO_KATA_CONFIG__COUNT] = {
        [ISO_KATA_CONFIG_CLH] = "clh",
        [ISO_KATA_CONFIG_QEMU] = "qemu",
        [ISO_KATA_CONFIG_QEMU_NVIDIA_GPU] = "qemu-nvidia-gpu",
    };
    for (size_t i = 0; i < ISO_KATA_CONFIG__COUNT; i++) {
        iso_kata_config *c = &k->configs[i];
        c->name = names[i];
        c->path = iso_strf("%s/configuration-%s.toml", config_dir, names[i]);
        if (!c->path)
            goto nomem;
        struct stat st;
        c->present = stat(c->path, &st) == 0 && S_ISREG(st.st_mode);
    }
    k->installed = k->shim.found;
    const iso_kata_config *clh = &k->configs[ISO_KATA_CONFIG_CLH];
    k->available = k->installed && clh->present && hv && hv->usable;
    if (!k->installed)
        k->reason = strdup(k->shim.detail);
    else if (!clh->present)
        k->reason = iso_strf("no %s", clh->path);
    else if (!hv || !hv->usable)
        k->reason = iso_strf("no usable hypervisor: %s",
                             hv && hv->reason ? hv->reason : "the host was not probed");
    else
        k->reason =
            iso_strf("Kata %s with Cloud Hypervisor on %s",
                     k->shim.version ? k->shim.version : "(version unknown)", hv->hypervisor);
    if (!k->reason)
        goto nomem;
    *out = r;
    return 0;

nomem:
    iso_runtimes_result_clear(&r);
    return moat_error_set(err, MOAT_E_NOMEM, "runtimes probe: out of memory");
}

void iso_runtimes_result_clear(iso_runtimes_result *r)
{
    if (!r)
        return;
    binary_clear(&r->gvisor.runsc);
    binary_clear(&r->gvisor.shim);
    free(r->gvisor.reason);
    binary_clear(&r->kata.shim);
    free(r->kata.reason);
    for (size_t i = 0; i < ISO_KATA_CONFIG__COUNT; i++)
        free(r->kata.configs[i].path);
    *r = (iso_runtimes_result){0};
}
