/* moat-init: the one program Moat needs inside a sandbox's image, mounted read-only into
 * every container. Static (libc only), so that it runs in an image without a shell or a
 * libc. Subcommands:
 *   init [[--] CMD ARGS...]   PID 1 of a session sandbox (also: no arguments at all, when
 *                             called as moat-init; or `moat-init -- CMD ARGS...`)
 *   exec [OPTIONS] [--] CMD   one command of a session (kubectl exec)
 *   write, read, stat, list, mkdir, remove, exists PATH [OPTIONS]   file operations
 *   version
 * Every error is one JSON line on stderr; exit statuses are in init/error.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init/args.h"
#include "init/error.h"
#include "init/files.h"
#include "init/listing.h"
#include "init/path.h"
#include "init/proc.h"
#include "init/reaper.h"
#include "init/run.h"
#include "libmoat/macro.h"

#ifndef MOAT_INIT_VERSION
#define MOAT_INIT_VERSION "unknown"
#endif

static void usage(FILE *f)
{
    fputs("Usage: moat-init init [[--] CMD ARGS...]\n"
          "       moat-init exec [--timeout SECONDS] [--cwd DIR] [--env NAME=VALUE]... [--] "
          "CMD ARGS...\n"
          "       moat-init write PATH [--mode OCTAL] [--parents]   (stdin to PATH, atomic)\n"
          "       moat-init read PATH\n"
          "       moat-init stat PATH\n"
          "       moat-init list PATH [--depth N]\n"
          "       moat-init mkdir PATH [--parents]\n"
          "       moat-init remove PATH [--recursive]\n"
          "       moat-init exists PATH\n"
          "       moat-init version\n",
          f);
}

/* Prints the error and returns the exit status it stands for. */
static int fail(const init_error *err)
{
    init_error_print(err, stderr);
    return err->status;
}

static int cmd_init(int argc, char **argv)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    char **cmd;
    if (args_init_parse(&cmd, argc, argv, &err) < 0)
        return fail(&err);
    int status = reaper_run(cmd, &err);
    return status < 0 ? fail(&err) : status;
}

static int cmd_exec(int argc, char **argv)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    args_exec a;
    if (args_exec_parse(&a, argc, argv, &err) < 0)
        return fail(&err);
    int status = run_exec(&a, &err);
    args_exec_done(&a);
    return status < 0 ? fail(&err) : status;
}

/* The options each file operation takes. */
static const struct {
    const char *name;
    unsigned options;
} file_ops[] = {
    {"write", ARGS_OPT_MODE | ARGS_OPT_PARENTS | ARGS_OPT_FROM | ARGS_OPT_SIZE},
    {"read", 0},
    {"stat", 0},
    {"list", ARGS_OPT_DEPTH},
    {"mkdir", ARGS_OPT_PARENTS},
    {"remove", ARGS_OPT_RECURSIVE},
    {"exists", 0},
};

/* After a write failed before its input ended, that input is read to its end and dropped,
 * for up to PROC_DRAIN_NS (why: init/proc.h). */
static void drain_stdin(void)
{
    static char buf[64 * 1024];
    int64_t deadline = proc_now_ns() + PROC_DRAIN_NS;
    while (proc_wait_readable(STDIN_FILENO, deadline) && read(STDIN_FILENO, buf, sizeof(buf)) > 0)
        ;
}

static int cmd_file(unsigned options, int argc, char **argv)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    args_file a;
    if (args_file_parse(&a, argc, argv, options, &err) < 0)
        return fail(&err);
    const char *op = argv[0];
    int r;
    if (strcmp(op, "write") == 0) {
        /* --from: a copy (an init container's cp where an image has none) */
        int in = a.from ? open(a.from, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
        if (in < 0) {
            init_error_errno(&err, errno, "write", a.from);
            return fail(&err);
        }
        r = files_write(stdout, in, a.path, a.mode, a.has_mode, a.parents, a.size, &err);
        if (a.from)
            close(in);
        else if (r < 0) {
            init_error_print(&err, stderr);
            drain_stdin();
            return err.status;
        }
    } else if (strcmp(op, "read") == 0) {
        r = files_read(STDOUT_FILENO, a.path, &err);
        if (r < 0 && err.errnum == EPIPE)
            return INIT_EXIT_FAILURE; /* our reader went away: nobody to tell */
    } else if (strcmp(op, "stat") == 0) {
        r = listing_stat(stdout, a.path, &err);
    } else if (strcmp(op, "list") == 0) {
        r = listing_list(stdout, stderr, a.path, a.depth, &err);
        if (r > 0)
            return INIT_EXIT_FAILURE; /* the entries that failed have their lines */
    } else if (strcmp(op, "mkdir") == 0) {
        r = files_mkdir(a.path, a.parents, &err);
    } else if (strcmp(op, "remove") == 0) {
        r = files_remove(a.path, a.recursive, &err);
    } else {
        r = files_exists(a.path, &err);
        if (r >= 0)
            return r == 1 ? 0 : INIT_EXIT_FAILURE;
    }
    return r < 0 ? fail(&err) : 0;
}

int main(int argc, char **argv)
{
    /* One write(2) per error line, so that it never interleaves with a command's output. */
    setvbuf(stderr, NULL, _IOLBF, 0);
    /* A reader that went away is an EPIPE to handle, not a death; commands get SIGPIPE's
     * default back (proc_spawn). */
    signal(SIGPIPE, SIG_IGN);

    const char *self;
    size_t self_len = path_base(argc > 0 ? argv[0] : "", &self);
    init_error err = INIT_ERROR_INIT;
    if (argc < 2) {
        if (self_len == strlen("moat-init") && strncmp(self, "moat-init", self_len) == 0) {
            char *no_args[] = {"init", NULL};
            return cmd_init(1, no_args);
        }
        init_error_usage(&err, NULL, "no subcommand (see moat-init help)");
        return fail(&err);
    }
    const char *sub = argv[1];
    if (strcmp(sub, "init") == 0)
        return cmd_init(argc - 1, argv + 1);
    if (strcmp(sub, "--") == 0)
        return cmd_init(argc, argv); /* `moat-init -- CMD`: argv[0] stands for "init" */
    if (strcmp(sub, "exec") == 0)
        return cmd_exec(argc - 1, argv + 1);
    if (strcmp(sub, "version") == 0 || strcmp(sub, "--version") == 0) {
        printf("moat-init %s\n", MOAT_INIT_VERSION);
        return fflush(stdout) == 0 ? 0 : INIT_EXIT_FAILURE;
    }
    if (strcmp(sub, "help") == 0 || strcmp(sub, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < ELEMENTSOF(file_ops); i++)
        if (strcmp(sub, file_ops[i].name) == 0)
            return cmd_file(file_ops[i].options, argc - 1, argv + 1);
    init_error_usage(&err, sub, "unknown subcommand \"%s\" (see moat-init help)", sub);
    return fail(&err);
}
