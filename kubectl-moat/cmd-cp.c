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
    "A copy is all or nothing: the file appears whole, under its name, or not at all. A\n"
    "new file gets its source's mode (less the umask here); a file replaced keeps its own.\n"
    "\n"
    "  -n, --namespace NS, --context CTX, --kubeconfig FILE: as kubectl's\n";

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

typedef struct {
    moat_cli *c;
    const char *name; /* the Sandbox's */
    const char *pod;
} session_files;

/* One file operation of the helper (`moat-init OP PATH ARGS...`) in the Session: stdin from
 * in_fd (-1: none), stdout to out_fd or out_buf; its JSON error line as the error. */
static int helper_run(const session_files *f, char *const *args, int in_fd, int out_fd,
                      moat_strbuf *out_buf, moat_error *err)
{
    char *argv[16] = {(char *)MOAT_HELPER_PATH};
    size_t n = 1;
    for (; args[n - 1] && n < ELEMENTSOF(argv) - 1; n++)
        argv[n] = args[n - 1];
    moat_strbuf errtext = {.max = 64 * 1024};
    int code = -1;
    wsexec_request req = {.ns = f->c->ns,
                          .pod = f->pod,
                          .argv = argv,
                          .stdin_mode = in_fd >= 0 ? WSEXEC_STDIN_RAW : WSEXEC_STDIN_NONE,
                          .in_fd = in_fd,
                          .out_fd = out_fd,
                          .out_buf = out_buf,
                          .err_buf = &errtext,
                          .interrupted = &cli_interrupted};
    int r = wsexec_run(f->c->cfg, &req, &code, err);
    if (r < 0)
        moat_error_prefix(err, "cp %s:%s", f->name, args[1]);
    else if (code != 0)
        r = helper_failed(&errtext, f->name, args[1], code, err);
    moat_strbuf_free(&errtext);
    return r;
}

static int session_files_open(session_files *f, moat_cli *c, const char *name, json_t **ret,
                              moat_error *err)
{
    sandbox_view v;
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
        if (cli_sandbox_wait(c, name, cli_ready_for_exec, 120, ret, err) < 0)
            return -1;
    }
    sandbox_view_read(&v, *ret);
    *f = (session_files){c, name, v.pod};
    return 0;
}

/* The mode of the file at path in the Session (`moat-init stat`); a directory or anything
 * but a file is refused. */
static int remote_file_mode(const session_files *f, const char *path, mode_t *ret_mode,
                            moat_error *err)
{
    char *args[] = {(char *)"stat", (char *)path, NULL};
    moat_strbuf out = {.max = 64 * 1024};
    int r = helper_run(f, args, -1, -1, &out, err);
    if (r == 0) {
        json_t *st = out.buf ? json_loads(out.buf, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
        const char *type = kobj_str(st, "type"), *mode = kobj_str(st, "mode");
        if (!type || !mode)
            r = moat_error_set(err, MOAT_E_INVALID, "%s:%s: the helper's stat is not readable",
                               f->name, path);
        else if (strcmp(type, "symlink") == 0)
            *ret_mode = 0644; /* read follows it; its target's mode is not told */
        else if (strcmp(type, "file") != 0)
            r = moat_error_set(err, MOAT_E_INVALID, "%s:%s: a %s (cp copies files)", f->name, path,
                               type);
        else
            *ret_mode = (mode_t)strtoul(mode, NULL, 8) & 07777;
        json_decref(st);
    }
    moat_strbuf_free(&out);
    return r;
}

/* Flushes the directory holding path, so a rename in it lasts. */
static int fsync_dir_of(const char *path, moat_error *err)
{
    _cleanup_free_ char *copy = strdup(path);
    if (!copy)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return moat_error_set_errno(err, e, "%s", path);
    }
    close(fd);
    return 0;
}

static int copy_out(moat_cli *c, const cli_file_arg *src, const char *dst, moat_error *err)
{
    json_t *sb = NULL;
    session_files f;
    _cleanup_free_ char *target = NULL, *tmp = NULL, *base_src = strdup(src->path);
    struct stat st;
    mode_t mode = 0, um = umask(0);
    char *args[] = {(char *)"read", (char *)src->path, NULL};
    int fd = -1, r = -1;

    umask(um);
    if (!base_src)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (session_files_open(&f, c, src->name, &sb, err) < 0)
        return -1;
    if (remote_file_mode(&f, src->path, &mode, err) < 0)
        goto out;
    bool to_stdout = strcmp(dst, "-") == 0;
    if (to_stdout) {
        r = helper_run(&f, args, -1, STDOUT_FILENO, NULL, err);
        goto out;
    }
    size_t n = strlen(dst);
    if ((n && dst[n - 1] == '/') || (stat(dst, &st) == 0 && S_ISDIR(st.st_mode)))
        r = asprintf(&target, "%s%s%s", dst, n && dst[n - 1] == '/' ? "" : "/", basename(base_src));
    else
        r = (target = strdup(dst)) ? 0 : -1;
    if (r < 0 || asprintf(&tmp, "%s.moat-cp-XXXXXX", target) < 0) {
        r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        goto out;
    }
    r = -1;
    /* a file replaced keeps its mode; a new one gets the sandbox's, less the umask (cp's) */
    if (stat(target, &st) == 0 && S_ISREG(st.st_mode))
        mode = st.st_mode & 07777;
    else
        mode &= ~um;
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        moat_error_set_errno(err, errno, "%s", target);
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (helper_run(&f, args, -1, fd, NULL, err) < 0)
        goto out;
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || rename(tmp, target) < 0) {
        moat_error_set_errno(err, errno, "%s", target);
        goto out;
    }
    free(tmp);
    tmp = NULL; /* renamed: nothing to remove */
    r = fsync_dir_of(target, err);
out:
    if (fd >= 0)
        close(fd);
    if (tmp)
        unlink(tmp);
    json_decref(sb);
    return r;
}

/* in_fd (a pipe, stdin) into an unnamed temporary file, so that its size is known before
 * it is sent: the helper then writes the file only if all of it arrived. Returns the file,
 * at its start, or -1. */
static int spool(int in_fd, const char *what, moat_error *err)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return moat_error_set_errno(err, errno, "a temporary file in %s for %s", dir, what);
    static char buf[64 * 1024];
    for (;;) {
        ssize_t n = read(in_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR && !cli_interrupted)
            continue;
        if (n < 0 || (n > 0 && write(fd, buf, (size_t)n) != n)) {
            int e = errno;
            close(fd);
            return moat_error_set_errno(err, e, "spooling %s", what);
        }
        if (n == 0)
            break;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        int e = errno;
        close(fd);
        return moat_error_set_errno(err, e, "spooling %s", what);
    }
    return fd;
}

static int copy_in(moat_cli *c, const char *src, const cli_file_arg *dst, moat_error *err)
{
    json_t *sb = NULL;
    session_files f;
    struct stat st;
    char size[32], mode[16] = "";
    _cleanup_free_ char *target = NULL, *base_src = strdup(src);
    int fd = -1, devnull = -1, r = -1;

    if (!base_src)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    bool from_stdin = strcmp(src, "-") == 0;
    size_t n = strlen(dst->path);
    if (n && dst->path[n - 1] == '/') {
        if (from_stdin)
            return moat_error_set(err, MOAT_E_INVALID, "%s:%s: a file name is needed for stdin",
                                  dst->name, dst->path);
        if (asprintf(&target, "%s%s", dst->path, basename(base_src)) < 0)
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    } else if (!(target = strdup(dst->path))) {
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    if (from_stdin) {
        if ((fd = spool(STDIN_FILENO, "stdin", err)) < 0)
            return -1;
    } else {
        if ((fd = open(src, O_RDONLY | O_CLOEXEC)) < 0)
            return moat_error_set_errno(err, errno, "%s", src);
        if (fstat(fd, &st) < 0) {
            r = moat_error_set_errno(err, errno, "%s", src);
            goto out;
        }
        if (S_ISDIR(st.st_mode)) {
            r = moat_error_set(err, MOAT_E_INVALID, "%s: a directory (cp copies files)", src);
            goto out;
        }
        snprintf(mode, sizeof(mode), "%o", (unsigned)(st.st_mode & 07777));
        if (!S_ISREG(st.st_mode)) { /* a pipe, a device: its size is known once read */
            int spooled = spool(fd, src, err);
            close(fd);
            if ((fd = spooled) < 0)
                return -1;
        }
    }
    if (fstat(fd, &st) < 0) {
        r = moat_error_set_errno(err, errno, "%s", src);
        goto out;
    }
    snprintf(size, sizeof(size), "%lld", (long long)st.st_size);
    if (session_files_open(&f, c, dst->name, &sb, err) < 0)
        goto out;
    if ((devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) {
        moat_error_set_errno(err, errno, "/dev/null");
        goto out;
    }
    /* --size: a copy cut short writes nothing; --mode: the local file's */
    char *args[] = {(char *)"write",
                    target,
                    (char *)"--size",
                    size,
                    *mode ? (char *)"--mode" : NULL,
                    mode,
                    NULL};
    r = helper_run(&f, args, fd, devnull, NULL, err);
out:
    if (fd >= 0)
        close(fd);
    if (devnull >= 0)
        close(devnull);
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
    cli_file_arg src, dst;
    cli_file_arg_parse(&src, argv[optind]);
    cli_file_arg_parse(&dst, argv[optind + 1]);
    if (!!src.name == !!dst.name)
        return cli_usage(usage, true, "cp: exactly one of SRC and DST must be NAME:/path");
    const cli_file_arg *remote = src.name ? &src : &dst;
    if (remote->path[0] != '/')
        return cli_usage(usage, true, "cp: %s:%s: the path in the sandbox must be absolute",
                         remote->name, remote->path);
    if (cli_connect(c, err) < 0)
        return -1;
    cli_catch_interrupt(); /* a temporary file is removed on the way out */
    return (src.name ? copy_out(c, &src, dst.path, err) : copy_in(c, src.path, &dst, err)) < 0 ? -1
                                                                                               : 0;
}
