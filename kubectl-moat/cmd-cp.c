/* kubectl moat cp SRC DST: files in and out of a Session through Moat's helper, so any
 * image works (no tar, no shell needed in it), streamed and binary-safe. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "libmoat/kobj.h"
#include "libmoat/macro.h"
#include "libmoat/names.h"
#include "session.h"
#include "view.h"
#include "wsexec.h"

static const char usage[] =
    "Usage: kubectl moat cp SRC DST\n"
    "\n"
    "Copies one file into or out of a Session; the Sandbox's side is NAME:/path.\n"
    "  kubectl moat cp ./data.bin my-session:/work/data.bin\n"
    "  kubectl moat cp my-session:/work/out.csv ./out.csv\n"
    "A DST ending in / (or a local directory) takes SRC's file name; - is stdin or stdout.\n"
    "A copy is all or nothing: the file appears whole, under its name, or not at all.\n"
    "\n"
    "  -n, --namespace NS, --context CTX, --kubeconfig FILE: as kubectl's\n";

typedef struct {
    char *name; /* the Sandbox's, or NULL for a local path */
    const char *path;
} endpoint;

/* NAME:/path when what precedes the first ':' is a Sandbox name (lowercase DNS label
 * characters) and the text does not start as a local path does. */
static void endpoint_parse(endpoint *e, char *arg)
{
    char *colon = strchr(arg, ':');
    *e = (endpoint){NULL, arg};
    if (!colon || colon == arg || arg[0] == '/' || arg[0] == '.')
        return;
    for (char *p = arg; p < colon; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return;
    *colon = '\0';
    e->name = arg;
    e->path = colon + 1;
}

/* The helper's JSON error line (its last line on stderr) as an error a person reads. */
static int helper_failed(const moat_strbuf *stderr_text, const char *name, const char *path,
                         int code, moat_error *err)
{
    const char *text = stderr_text->buf ? stderr_text->buf : "";
    const char *line = text, *nl;
    while ((nl = strchr(line, '\n')) && nl[1])
        line = nl + 1;
    json_t *e = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
    const char *msg = kobj_str(e, "message"), *code_name = kobj_str(e, "error");
    if (msg)
        moat_error_set(err, MOAT_E_IO, "%s:%s: %s (%s)", name, path, msg,
                       code_name ? code_name : "?");
    else
        moat_error_set(err, MOAT_E_IO, "%s:%s: Moat's helper failed (exit %d): %.*s", name, path,
                       code, (int)strcspn(line, "\n"), line);
    json_decref(e);
    return -1;
}

static int sandbox_for_files(moat_cli *c, const char *name, json_t **ret, moat_error *err)
{
    if (cli_sandbox_get(c, name, ret, err) < 0)
        return -1;
    if (!session_has_helper(*ret)) {
        json_decref(*ret);
        *ret = NULL;
        return moat_error_set(err, MOAT_E_INVALID,
                              "sandbox %s is a Run: cp needs a Session (spec.mode: Session), "
                              "whose helper moves the files",
                              name);
    }
    if (!cli_ready_for_exec(c, *ret)) {
        json_decref(*ret);
        *ret = NULL;
        return cli_sandbox_wait(c, name, cli_ready_for_exec, 120, ret, err);
    }
    return 0;
}

static int copy_out(moat_cli *c, const endpoint *src, const char *dst, moat_error *err)
{
    json_t *sb = NULL;
    sandbox_view v;
    _cleanup_free_ char *target = NULL, *tmp = NULL, *base_src = strdup(src->path);
    struct stat st;
    char *argv[] = {(char *)MOAT_HELPER_PATH, (char *)"read", (char *)src->path, NULL};
    moat_strbuf errtext = {.max = 64 * 1024};
    int fd = -1, code = -1, r = -1;

    if (!base_src)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (sandbox_for_files(c, src->name, &sb, err) < 0)
        return -1;
    sandbox_view_read(&v, sb);
    bool to_stdout = strcmp(dst, "-") == 0;
    if (to_stdout) {
        fd = STDOUT_FILENO;
    } else {
        size_t n = strlen(dst);
        if ((n && dst[n - 1] == '/') || (stat(dst, &st) == 0 && S_ISDIR(st.st_mode)))
            r = asprintf(&target, "%s%s%s", dst, n && dst[n - 1] == '/' ? "" : "/",
                         basename(base_src));
        else
            r = (target = strdup(dst)) ? 0 : -1;
        if (r < 0 || asprintf(&tmp, "%s.moat-cp-XXXXXX", target) < 0) {
            r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            goto out;
        }
        r = -1;
        if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
            moat_error_set_errno(err, errno, "%s", target);
            free(tmp);
            tmp = NULL;
            goto out;
        }
    }
    wsexec_request req = {.ns = c->ns,
                          .pod = v.pod,
                          .argv = argv,
                          .stdin_mode = WSEXEC_STDIN_NONE,
                          .in_fd = -1,
                          .out_fd = fd,
                          .err_buf = &errtext};
    if (wsexec_run(c->cfg, &req, &code, err) < 0) {
        moat_error_prefix(err, "cp %s:%s", src->name, src->path);
        goto out;
    }
    if (code != 0) {
        helper_failed(&errtext, src->name, src->path, code, err);
        goto out;
    }
    if (!to_stdout) {
        mode_t um = umask(0);
        umask(um);
        if (fchmod(fd, 0666 & ~um) < 0 || fsync(fd) < 0 || rename(tmp, target) < 0) {
            moat_error_set_errno(err, errno, "%s", target);
            goto out;
        }
        free(tmp);
        tmp = NULL; /* renamed: nothing to remove */
    }
    r = 0;
out:
    if (fd >= 0 && !to_stdout)
        close(fd);
    if (tmp)
        unlink(tmp);
    moat_strbuf_free(&errtext);
    json_decref(sb);
    return r;
}

static int copy_in(moat_cli *c, const char *src, const endpoint *dst, moat_error *err)
{
    json_t *sb = NULL;
    sandbox_view v;
    struct stat st;
    char size[32] = "", mode[16] = "";
    _cleanup_free_ char *target = NULL, *base_src = strdup(src);
    moat_strbuf errtext = {.max = 64 * 1024};
    int fd = -1, devnull = -1, code = -1, r = -1;

    if (!base_src)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    bool from_stdin = strcmp(src, "-") == 0;
    if (from_stdin) {
        fd = STDIN_FILENO;
    } else {
        if ((fd = open(src, O_RDONLY | O_CLOEXEC)) < 0)
            return moat_error_set_errno(err, errno, "%s", src);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            r = S_ISDIR(st.st_mode)
                    ? moat_error_set(err, MOAT_E_INVALID, "%s: a directory (cp copies files)", src)
                    : moat_error_set_errno(err, errno ? errno : EINVAL, "%s", src);
            close(fd);
            return r;
        }
        snprintf(size, sizeof(size), "%lld", (long long)st.st_size);
        snprintf(mode, sizeof(mode), "%o", (unsigned)(st.st_mode & 07777));
    }
    size_t n = strlen(dst->path);
    if (n && dst->path[n - 1] == '/') {
        if (from_stdin) {
            r = moat_error_set(err, MOAT_E_INVALID, "%s:%s: a file name is needed for stdin",
                               dst->name, dst->path);
            goto out;
        }
        if (asprintf(&target, "%s%s", dst->path, basename(base_src)) < 0) {
            r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            goto out;
        }
    } else if (!(target = strdup(dst->path))) {
        r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        goto out;
    }
    if (sandbox_for_files(c, dst->name, &sb, err) < 0)
        goto out;
    sandbox_view_read(&v, sb);
    /* --size: a copy cut short writes nothing; --mode: the local file's */
    char *argv[] = {(char *)MOAT_HELPER_PATH,
                    (char *)"write",
                    target,
                    (char *)"--size",
                    size,
                    (char *)"--mode",
                    mode,
                    NULL};
    if (from_stdin)
        argv[3] = NULL;
    if ((devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) {
        moat_error_set_errno(err, errno, "/dev/null");
        goto out;
    }
    wsexec_request req = {.ns = c->ns,
                          .pod = v.pod,
                          .argv = argv,
                          .stdin_mode = WSEXEC_STDIN_RAW,
                          .in_fd = fd,
                          .out_fd = devnull,
                          .err_buf = &errtext};
    if (wsexec_run(c->cfg, &req, &code, err) < 0) {
        moat_error_prefix(err, "cp to %s:%s", dst->name, target);
        goto out;
    }
    if (code != 0) {
        helper_failed(&errtext, dst->name, target, code, err);
        goto out;
    }
    r = 0;
out:
    if (fd >= 0 && !from_stdin)
        close(fd);
    if (devnull >= 0)
        close(devnull);
    moat_strbuf_free(&errtext);
    json_decref(sb);
    return r;
}

int cmd_cp(moat_cli *c, int argc, char **argv, moat_error *err)
{
    static const struct option opts[] = {CLI_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
        if (cli_global_option(c, opt, optarg))
            continue;
        if (opt == 'h')
            return cli_usage(usage, false, NULL);
        return cli_usage(usage, true, NULL);
    }
    if (argc - optind != 2)
        return cli_usage(usage, true, "cp: SRC and DST, one of them NAME:/path");
    endpoint src, dst;
    endpoint_parse(&src, argv[optind]);
    endpoint_parse(&dst, argv[optind + 1]);
    if (!!src.name == !!dst.name)
        return cli_usage(usage, true, "cp: exactly one of SRC and DST must be NAME:/path");
    const endpoint *remote = src.name ? &src : &dst;
    if (remote->path[0] != '/')
        return cli_usage(usage, true, "cp: %s:%s: the path in the sandbox must be absolute",
                         remote->name, remote->path);
    if (cli_connect(c, err) < 0)
        return -1;
    return (src.name ? copy_out(c, &src, dst.path, err) : copy_in(c, src.path, &dst, err)) < 0 ? -1
                                                                                               : 0;
}
