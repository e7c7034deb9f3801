#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libmoat/fdio.h"
#include "libmoat/macro.h"
#include "libmoat/names.h"
#include "tty.h"
#include "view.h"
#include "wsexec.h"

bool session_has_helper(const json_t *sandbox)
{
    sandbox_view v;
    sandbox_view_read(&v, sandbox);
    return strcmp(v.mode, "Session") == 0;
}

int session_exec(moat_cli *c, const json_t *sandbox, char *const *argv,
                 const session_exec_options *o, int *ret_exit, moat_error *err)
{
    sandbox_view v;
    size_t argc = 0;
    sandbox_view_read(&v, sandbox);
    if (!*v.pod)
        return moat_error_set(err, MOAT_E_INVALID, "sandbox %s has no pod yet (phase %s)", v.name,
                              *v.phase ? v.phase : "Pending");
    while (argv[argc])
        argc++;
    _cleanup_free_ char **full = calloc(argc + 6, sizeof(char *));
    if (!full)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    size_t n = 0;
    bool helper = session_has_helper(sandbox);
    if (helper) {
        full[n++] = (char *)MOAT_HELPER_PATH;
        full[n++] = (char *)"exec";
        if (!o->tty)
            full[n++] = (char *)"--framed-stdin";
        full[n++] = (char *)"--";
    }
    memcpy(full + n, argv, argc * sizeof(char *));

    wsexec_request req = {
        .ns = c->ns,
        .pod = v.pod,
        .argv = full,
        .tty = o->tty,
        .in_fd = o->interactive || o->tty ? STDIN_FILENO : -1,
        .out_fd = STDOUT_FILENO,
        .err_fd = STDERR_FILENO,
        .resize_fd = STDIN_FILENO,
        .interrupted = &cli_interrupted,
    };
    if (o->tty)
        req.stdin_mode = WSEXEC_STDIN_RAW;
    else if (helper)
        req.stdin_mode = WSEXEC_STDIN_FRAMED; /* even without -i: the end of it, at once */
    else
        req.stdin_mode = o->interactive ? WSEXEC_STDIN_RAW : WSEXEC_STDIN_NONE;
    if (o->tty && tty_raw(STDIN_FILENO, err) < 0)
        return -1;
    int r = wsexec_run(c->cfg, &req, ret_exit, err);
    tty_restore();
    if (r < 0)
        return moat_error_prefix(err, "sandbox %s", v.name);
    return 0;
}

/* The log's pieces to stdout; stops on an interrupt or a failed write (its errno kept in
 * *user for the message). */
static int to_stdout(void *user, const char *data, size_t len)
{
    int *write_errno = user;
    if (cli_interrupted)
        return -1;
    if (moat_write_all(STDOUT_FILENO, data, len) < 0) {
        *write_errno = errno;
        return -1;
    }
    return 0;
}

int session_logs(moat_cli *c, const json_t *sandbox, bool follow, moat_error *err)
{
    sandbox_view v;
    _cleanup_free_ char *path = NULL;
    sandbox_view_read(&v, sandbox);
    if (!*v.pod)
        return moat_error_set(err, MOAT_E_INVALID, "sandbox %s has no pod (phase %s)", v.name,
                              *v.phase ? v.phase : "Pending");
    if (asprintf(&path, "/api/v1/namespaces/%s/pods/%s/log%s", c->ns, v.pod,
                 follow ? "?follow=true" : "") < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    int write_errno = 0;
    if (kube_stream_get(c->kube, path, to_stdout, &write_errno, err) == 0)
        return 0;
    if (err->code == MOAT_E_CANCELED && write_errno)
        return moat_error_set_errno(err, write_errno, "writing the log of sandbox %s", v.name);
    if (err->code == MOAT_E_CANCELED && cli_interrupted) {
        moat_error_clear(err);
        return 0;
    }
    if (kube_error_is(err, KUBE_REASON_NOT_FOUND))
        return moat_error_set(err, MOAT_E_NOTFOUND, "sandbox %s: its pod %s is gone", v.name,
                              v.pod);
    return moat_error_prefix(err, "logs of sandbox %s", v.name);
}
