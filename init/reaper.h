/* `moat-init init`: PID 1 of a session sandbox. A subreaper (so it works when not PID 1 too,
 * as in the tests) that reaps every zombie, and either runs one command or nothing at all. */
#ifndef MOAT_INIT_REAPER_H
#define MOAT_INIT_REAPER_H

#include "init/error.h"

#define REAPER_GRACE_NS (2 * 1000000000LL) /* from SIGTERM to SIGKILL, without a command */

/* With cmd: starts it in a process group of its own, forwards SIGTERM, SIGINT, SIGHUP,
 * SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to it, and returns its exit status when it exits
 * (128+signal when killed). When we are not PID 1, what it left behind is SIGKILLed and
 * reaped first (as PID 1, the kernel does that when we exit).
 *
 * Without cmd (NULL): reaps until SIGTERM or SIGINT, then sends SIGTERM to every other
 * process (kill(-1) as PID 1; when not PID 1, only to our children: the processes that our
 * being a subreaper made ours), waits up to REAPER_GRACE_NS for them, SIGKILLs the rest and
 * returns 0.
 *
 * Returns -1 with err when it could not start: op "exec" (126/127) or status
 * INIT_EXIT_INTERNAL. */
int reaper_run(char *const cmd[], init_error *err);

#endif
