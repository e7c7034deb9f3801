/* A command in a Sandbox's pod: in a Session through Moat's helper (`/.moat/moat-init exec`,
 * whose framed stdin ends the command when this client goes away), in a Run directly. */
#ifndef MOAT_PLUGIN_SESSION_H
#define MOAT_PLUGIN_SESSION_H

#include <jansson.h>
#include <stdbool.h>

#include "cli.h"

typedef struct {
    bool tty;         /* a remote terminal of this one's size (stdin must be a terminal) */
    bool interactive; /* stdin is passed */
} session_exec_options;

/* Runs argv in the sandbox's pod with this process's stdin/stdout/stderr; *ret_exit: the
 * command's exit code. The sandbox must be running (status.podName set). */
int session_exec(moat_cli *c, const json_t *sandbox, char *const *argv,
                 const session_exec_options *o, int *ret_exit, moat_error *err);

/* True when the sandbox is a Session (Moat's helper is in its pod). */
bool session_has_helper(const json_t *sandbox);

/* Copies the log of the sandbox's pod to stdout; with follow, until the container ends (or
 * the user interrupts: 0). */
int session_logs(moat_cli *c, const json_t *sandbox, bool follow, moat_error *err);

#endif
