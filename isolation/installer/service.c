/* The service backends: systemd through systemctl, and plain processes with pid files. */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "install.h"
#include "libmoat/strv.h"
#include "libmoat/strbuf.h"
#include "libmoat/textfile.h"

#define ARGV_MAX_BYTES (64 * 1024)
#define ARGV_MAX_ARGS  256

struct iso_service {
    bool systemd;
    char *root; /* systemd: the host root; processes: the directory */
    char **systemctl;
    int stop_timeout_ms;
};

/* Runs argv to its end; 0 when it exits 0, else MOAT_E_IO naming the command and status. */
static int run_wait(const char *const *argv, int *ret_status, moat_error *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0)
        return moat_error_set_errno(err, e, "exec %s", argv[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return moat_error_set_errno(err, errno, "waitpid for %s", argv[0]);
    if (ret_status) {
        *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return 0;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        return moat_error_set(err, MOAT_E_IO, "%s exited %d", argv[0], WEXITSTATUS(status));
    return moat_error_set(err, MOAT_E_IO, "%s killed by signal %d", argv[0], WTERMSIG(status));
}

/* mkdir -p <root><dir>. */
static int mkdir_host(const char *root, const char *dir, moat_error *err)
{
    _cleanup_free_ char *p = NULL;
    size_t rl = strlen(root);
    while (rl > 0 && root[rl - 1] == '/')
        rl--;
    if (asprintf(&p, "%.*s%s/", (int)rl, root, dir) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    for (char *q = strchr(p + 1, '/'); q; q = strchr(q + 1, '/')) {
        *q = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return moat_error_set_errno(err, errno, "mkdir %s", p);
        *q = '/';
    }
    return 0;
}

/* ---- systemd ---- */

static int systemctl(iso_service *s, const char *verb, const char *unit, int *ret_status,
                     moat_error *err)
{
    size_t n = 0;
    while (s->systemctl[n])
        n++;
    _cleanup_free_ const char **argv = calloc(n + 4, sizeof(*argv));
    if (!argv)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        argv[k++] = s->systemctl[i];
    char quiet[] = "--quiet";
    argv[k++] = verb;
    if (ret_status)
        argv[k++] = quiet;
    if (unit)
        argv[k++] = unit;
    argv[k] = NULL;
    if (run_wait(argv, ret_status, err) < 0)
        return moat_error_prefix(err, "systemctl %s %s", verb, unit ? unit : "");
    return 0;
}

static char *unit_name(const char *name)
{
    char *u;
    return asprintf(&u, "%s.service", name) < 0 ? NULL : u;
}

static char *unit_path(iso_service *s, const char *name)
{
    char *p;
    return asprintf(&p, "%s/etc/systemd/system/%s.service", s->root, name) < 0 ? NULL : p;
}

/* systemd's ExecStart= quoting: each word in double quotes, with \ and " escaped, and $
 * and % doubled so that systemd takes neither as an expansion. */
static void unit_quote(moat_strbuf *b, const char *word)
{
    moat_strbuf_appendf(b, "\"");
    for (const char *p = word; *p; p++) {
        if (*p == '\\' || *p == '"')
            moat_strbuf_appendf(b, "\\%c", *p);
        else if (*p == '$' || *p == '%')
            moat_strbuf_appendf(b, "%c%c", *p, *p);
        else
            moat_strbuf_appendf(b, "%c", *p);
    }
    moat_strbuf_appendf(b, "\"");
}

static int sd_define(void *impl, const char *name, const char *const *argv, const char *run_dir,
                     bool *changed, moat_error *err)
{
    iso_service *s = impl;
    moat_strbuf b = {0};
    moat_strbuf_appendf(&b,
                        "# Written by moat-install; removed by moat-install uninstall.\n"
                        "[Unit]\n"
                        "Description=Moat %s\n"
                        "After=containerd.service\n"
                        "Wants=containerd.service\n"
                        "\n[Service]\nExecStart=",
                        name);
    for (size_t i = 0; argv[i]; i++) {
        if (i)
            moat_strbuf_appendf(&b, " ");
        unit_quote(&b, argv[i]);
    }
    /* A socket directory under /run: systemd makes it before each start (a reboot empties
     * /run). Elsewhere it persists: moat-install makes it. */
    if (run_dir && strncmp(run_dir, "/run/", 5) == 0 && run_dir[5])
        moat_strbuf_appendf(&b, "\nRuntimeDirectory=%s\nRuntimeDirectoryPreserve=yes", run_dir + 5);
    else if (run_dir && mkdir_host(s->root, run_dir, err) < 0)
        return -1;
    moat_strbuf_appendf(&b, "\nRestart=always\nRestartSec=1\nKillMode=mixed\n"
                            "\n[Install]\nWantedBy=multi-user.target\n");
    bool trunc = b.truncated;
    _cleanup_free_ char *text = moat_strbuf_take(&b);
    _cleanup_free_ char *path = unit_path(s, name);
    _cleanup_free_ char *unit = unit_name(name);
    if (!text || trunc || !path || !unit)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    bool ch = false;
    if (iso_install_file_put(path, text, strlen(text), 0644, &ch, err) < 0)
        return -1;
    if (ch && (systemctl(s, "daemon-reload", NULL, NULL, err) < 0 ||
               systemctl(s, "enable", unit, NULL, err) < 0))
        return -1;
    *changed = ch;
    return 0;
}

static int sd_undefine(void *impl, const char *name, bool *changed, moat_error *err)
{
    iso_service *s = impl;
    _cleanup_free_ char *path = unit_path(s, name);
    _cleanup_free_ char *unit = unit_name(name);
    if (!path || !unit)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (access(path, F_OK) < 0) {
        *changed = false;
        return 0;
    }
    if (systemctl(s, "disable", unit, NULL, err) < 0 || systemctl(s, "stop", unit, NULL, err) < 0)
        return -1;
    if (unlink(path) < 0 && errno != ENOENT)
        return moat_error_set_errno(err, errno, "unlink %s", path);
    if (systemctl(s, "daemon-reload", NULL, NULL, err) < 0)
        return -1;
    *changed = true;
    return 0;
}

static int sd_verb(void *impl, const char *verb, const char *name, moat_error *err)
{
    _cleanup_free_ char *unit = unit_name(name);
    if (!unit)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    return systemctl(impl, verb, unit, NULL, err);
}

static int sd_start(void *impl, const char *name, moat_error *err)
{
    return sd_verb(impl, "start", name, err);
}

/* daemon-reload first: the file that changed may be the service's own unit or a drop-in
 * (kubelet's flags live in kubelet.service on some nodes), which systemd reads only then. */
static int sd_restart(void *impl, const char *name, moat_error *err)
{
    if (systemctl(impl, "daemon-reload", NULL, NULL, err) < 0)
        return -1;
    return sd_verb(impl, "restart", name, err);
}

static int sd_stop(void *impl, const char *name, moat_error *err)
{
    return sd_verb(impl, "stop", name, err);
}

static int sd_running(void *impl, const char *name, bool *out, moat_error *err)
{
    _cleanup_free_ char *unit = unit_name(name);
    if (!unit)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    int st = -1;
    if (systemctl(impl, "is-active", unit, &st, err) < 0)
        return -1;
    *out = st == 0;
    return 0;
}

int iso_service_systemd_new(iso_service **out, const char *host_root, const char *const *cmd,
                            moat_error *err)
{
    static const char *const dflt[] = {"nsenter", "--target",  "1", "--mount",
                                       "--",      "systemctl", NULL};
    iso_service *s = calloc(1, sizeof(*s));
    if (!s || !(s->root = strdup(host_root)) ||
        !(s->systemctl = moat_strv_copy(cmd ? cmd : dflt))) {
        iso_service_free(s);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    s->systemd = true;
    *out = s;
    return 0;
}

/* ---- processes ---- */

static char *proc_file(iso_service *s, const char *name, const char *ext)
{
    char *p;
    return asprintf(&p, "%s/%s.%s", s->root, name, ext) < 0 ? NULL : p;
}

/* The .argv file: one argument per line, no empty arguments. */
static int proc_argv_read(char ***out, iso_service *s, const char *name, moat_error *err)
{
    _cleanup_free_ char *path = proc_file(s, name, "argv");
    if (!path)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    _cleanup_free_ char *text = NULL;
    size_t len;
    if (moat_read_text(&text, &len, path, ARGV_MAX_BYTES, err) < 0) {
        if (err && err->errno_value == ENOENT)
            err->code = MOAT_E_NOTFOUND;
        return moat_error_prefix(err, "service %s is not defined", name);
    }
    char **v = calloc(ARGV_MAX_ARGS + 1, sizeof(*v));
    if (!v)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (n == ARGV_MAX_ARGS) {
            moat_strv_free(v);
            return moat_error_set(err, MOAT_E_NOMEM, "%s: more than %d arguments", path,
                                  ARGV_MAX_ARGS);
        }
        if (!(v[n++] = strdup(line))) {
            moat_strv_free(v);
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        }
    }
    if (n == 0) {
        moat_strv_free(v);
        return moat_error_set(err, MOAT_E_INVALID, "%s: no command", path);
    }
    *out = v;
    return 0;
}

/* The pid in <name>.pid when that process still runs (not a zombie) and its argv[0] is the
 * service's: a pid file outliving its process may name someone else's pid by now. */
static pid_t proc_alive(iso_service *s, const char *name, const char *argv0)
{
    _cleanup_free_ char *path = proc_file(s, name, "pid");
    _cleanup_free_ char *text = NULL;
    size_t len;
    if (!path || moat_read_text(&text, &len, path, 64, NULL) < 0)
        return 0;
    char *end;
    long pid = strtol(text, &end, 10);
    if (pid <= 0 || end == text)
        return 0;
    char stat_path[64], cmd_path[64];
    snprintf(stat_path, sizeof(stat_path), "/proc/%ld/stat", pid);
    snprintf(cmd_path, sizeof(cmd_path), "/proc/%ld/cmdline", pid);
    _cleanup_free_ char *st = NULL, *cmd = NULL;
    if (moat_read_text(&st, &len, stat_path, 4096, NULL) < 0)
        return 0;
    const char *close_paren = strrchr(st, ')');
    if (!close_paren || close_paren[1] != ' ' || close_paren[2] == 'Z' || close_paren[2] == 'X')
        return 0;
    if (argv0 && moat_read_text(&cmd, &len, cmd_path, ARGV_MAX_BYTES, NULL) == 0 &&
        strcmp(cmd, argv0) != 0)
        return 0;
    return (pid_t)pid;
}

static int proc_define(void *impl, const char *name, const char *const *argv, const char *run_dir,
                       bool *changed, moat_error *err)
{
    iso_service *s = impl;
    moat_strbuf b = {0};
    for (size_t i = 0; argv[i]; i++) {
        if (!*argv[i] || strchr(argv[i], '\n'))
            return moat_error_set(err, MOAT_E_INVALID,
                                  "service %s: argument %zu is empty or "
                                  "holds a newline",
                                  name, i);
        moat_strbuf_appendf(&b, "%s\n", argv[i]);
    }
    bool trunc = b.truncated;
    _cleanup_free_ char *text = moat_strbuf_take(&b);
    _cleanup_free_ char *path = proc_file(s, name, "argv");
    _cleanup_free_ char *rd = proc_file(s, name, "rundir");
    if (!text || trunc || !path || !rd)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    bool ch = false;
    if (run_dir) {
        if (iso_install_file_put(rd, run_dir, strlen(run_dir), 0644, &ch, err) < 0)
            return -1;
    } else if (unlink(rd) == 0) {
        ch = true;
    }
    if (iso_install_file_put(path, text, strlen(text), 0644, changed, err) < 0)
        return -1;
    *changed = *changed || ch;
    return 0;
}

static int proc_stop(void *impl, const char *name, moat_error *err)
{
    iso_service *s = impl;
    char **argv = NULL;
    moat_error ignored = MOAT_ERROR_INIT;
    /* Without a definition the pid file alone decides (argv[0] unchecked). */
    (void)proc_argv_read(&argv, s, name, &ignored);
    moat_error_clear(&ignored);
    pid_t pid = proc_alive(s, name, argv ? argv[0] : NULL);
    moat_strv_free(argv);
    _cleanup_free_ char *pidfile = proc_file(s, name, "pid");
    if (!pidfile)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (pid > 0) {
        kill(pid, SIGTERM);
        struct timespec tick = {0, 20 * 1000000L};
        int waited = 0;
        while (proc_alive(s, name, NULL) == pid) {
            if (waited >= s->stop_timeout_ms) {
                kill(pid, SIGKILL);
                waited = -1000000; /* then wait for it to go without a bound */
            }
            /* A service this process started is its child: reap it (ECHILD otherwise). */
            waitpid(pid, NULL, WNOHANG);
            nanosleep(&tick, NULL);
            waited += 20;
        }
        waitpid(pid, NULL, WNOHANG);
    }
    unlink(pidfile);
    return 0;
}

static int proc_start(void *impl, const char *name, moat_error *err)
{
    iso_service *s = impl;
    char **argv = NULL;
    if (proc_argv_read(&argv, s, name, err) < 0)
        return -1;
    if (proc_alive(s, name, argv[0]) > 0) {
        moat_strv_free(argv);
        return 0;
    }
    _cleanup_free_ char *log = proc_file(s, name, "log");
    _cleanup_free_ char *pidfile = proc_file(s, name, "pid");
    _cleanup_free_ char *rd = proc_file(s, name, "rundir"), *run_dir = NULL;
    size_t rd_len;
    if (rd && moat_read_text(&run_dir, &rd_len, rd, 4096, NULL) == 0 &&
        mkdir_host("/", run_dir, err) < 0) {
        moat_strv_free(argv);
        return -1;
    }
    if (!log || !pidfile) {
        moat_strv_free(argv);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    /* posix_spawn reports a failed exec, but not under every runtime (valgrind's fork
     * fallback): look first. */
    if (access(argv[0], X_OK) < 0) {
        int rc = moat_error_set_errno(err, errno, "service %s: exec %s", name, argv[0]);
        moat_strv_free(argv);
        return rc;
    }
    /* posix_spawn: no code of ours runs in the child, and an exec failure comes back as the
     * return value. The service gets a session of its own and the default signal handling;
     * it stays the installer's child until the installer exits (then init's). */
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, dflt;
    sigemptyset(&none);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE);
    sigaddset(&dflt, SIGTERM);
    sigaddset(&dflt, SIGINT);
    sigaddset(&dflt, SIGHUP);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dflt);
    pid_t pid = 0;
    int e = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (e != 0) {
        int rc = moat_error_set_errno(err, e, "service %s: exec %s", name, argv[0]);
        moat_strv_free(argv);
        return rc;
    }
    moat_strv_free(argv);
    char text[32];
    int n = snprintf(text, sizeof(text), "%d\n", pid);
    bool changed;
    return iso_install_file_put(pidfile, text, (size_t)n, 0644, &changed, err);
}

static int proc_restart(void *impl, const char *name, moat_error *err)
{
    if (proc_stop(impl, name, err) < 0)
        return -1;
    return proc_start(impl, name, err);
}

static int proc_undefine(void *impl, const char *name, bool *changed, moat_error *err)
{
    iso_service *s = impl;
    _cleanup_free_ char *path = proc_file(s, name, "argv");
    if (!path)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (access(path, F_OK) < 0) {
        *changed = false;
        return 0;
    }
    if (proc_stop(impl, name, err) < 0)
        return -1;
    if (unlink(path) < 0)
        return moat_error_set_errno(err, errno, "unlink %s", path);
    _cleanup_free_ char *rd = proc_file(s, name, "rundir");
    if (rd)
        unlink(rd);
    *changed = true;
    return 0;
}

static int proc_running(void *impl, const char *name, bool *out, moat_error *err)
{
    iso_service *s = impl;
    char **argv = NULL;
    moat_error ignored = MOAT_ERROR_INIT;
    (void)proc_argv_read(&argv, s, name, &ignored);
    moat_error_clear(&ignored);
    *out = proc_alive(s, name, argv ? argv[0] : NULL) > 0;
    moat_strv_free(argv);
    (void)err;
    return 0;
}

int iso_service_process_new(iso_service **out, const char *dir, int stop_timeout_ms,
                            moat_error *err)
{
    iso_service *s = calloc(1, sizeof(*s));
    if (!s || !(s->root = strdup(dir))) {
        iso_service_free(s);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        iso_service_free(s);
        return moat_error_set_errno(err, errno, "mkdir %s", dir);
    }
    s->stop_timeout_ms = stop_timeout_ms > 0 ? stop_timeout_ms : 10000;
    *out = s;
    return 0;
}

iso_service_ops iso_service_ops_of(iso_service *s)
{
    if (s->systemd)
        return (iso_service_ops){sd_define, sd_undefine, sd_start, sd_restart,
                                 sd_stop,   sd_running,  s};
    return (iso_service_ops){proc_define, proc_undefine, proc_start, proc_restart,
                             proc_stop,   proc_running,  s};
}

void iso_service_free(iso_service *s)
{
    if (!s)
        return;
    free(s->root);
    moat_strv_free(s->systemctl);
    free(s);
}
