/* `moat-init exec`: one command of a session (kubectl exec). The command runs in a process
 * group of its own on our stdin, stdout and stderr (nothing relayed), gets the terminal when
 * stdin is ours, and we stay a subreaper for its orphans. Whatever way it ends (the command
 * exits, the timeout, a signal to us, the reader of stdout or stderr going away), nothing it
 * started is left running afterwards. */
#ifndef MOAT_INIT_RUN_H
#define MOAT_INIT_RUN_H

#include "init/args.h"
#include "init/error.h"

#define RUN_GRACE_NS (2 * 1000000000LL) /* from SIGTERM to SIGKILL */

/* Runs the command and returns the exit status to end with: the command's (128+signal when
 * killed), 128+sig when we received SIGTERM, SIGINT or SIGHUP (forwarded to the group, then
 * SIGKILL after RUN_GRACE_NS), INIT_EXIT_DISCONNECT when stdout's or stderr's reader went
 * away (SIGTERM, the same grace). Returns -1 with err: ETIMEDOUT (status 124) when the
 * timeout killed the group, op "exec" (126/127) when the command could not be started, else
 * status INIT_EXIT_INTERNAL. Changes the process's cwd and environment as a asks. */
int run_exec(const args_exec *a, init_error *err);

#endif
