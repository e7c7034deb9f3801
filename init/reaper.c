#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "init/proc.h"
#include "init/reaper.h"
#include "libmoat/macro.h"

/* The signals forwarded to the command. SIGCHLD and SIGTTOU (for tcsetpgrp) are blocked too. */
static const int reaper_forwarded[] = {SIGTERM, SIGINT,  SIGHUP,  SIGQUIT,
                                       SIGUSR1, SIGUSR2, SIGWINCH};
static const int reaper_signals[] = {SIGCHLD, SIGTTOU, SIGTERM, SIGINT,  SIGHUP,
                                     SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

static bool reaper_forwards(int sig)
{
    for (size_t i = 0; i < ELEMENTSOF(reaper_forwarded); i++)
        if (reaper_forwarded[i] == sig)
            return true;
    return false;
}

/* Waits for the next signal on sfd, at most until deadline (0: forever). Returns the signal,
 * 0 when the deadline passed, -1 when poll failed. */
static int reaper_next_signal(int sfd, int64_t deadline)
{
    for (;;) {
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            return (int)si.ssi_signo;
        int64_t now = proc_now_ns();
        if (deadline > 0 && now >= deadline)
            return 0;
        struct pollfd pfd = {.fd = sfd, .events = POLLIN};
        if (poll(&pfd, 1, proc_poll_timeout_ms(deadline, now)) < 0 && errno != EINTR)
            return -1;
    }
}

/* Without a command: reap until told to stop, then stop everyone else. */
static int reaper_idle(int sfd)
{
    for (;;) {
        int sig = reaper_next_signal(sfd, 0);
        if (sig < 0)
            return INIT_EXIT_INTERNAL;
        if (sig == SIGCHLD)
            (void)proc_reap(0, NULL);
        else if (sig == SIGTERM || sig == SIGINT)
            break;
        /* others: nothing to forward them to */
    }
    /* kill(-1) only as PID 1, where it means "everyone in this sandbox". Elsewhere (the
     * tests) it would mean every process we may signal on the machine: there, the children
     * that being a subreaper gave us are all we stop (their own children come back to us
     * as orphans when SIGKILL comes, and are killed in turn). */
    const bool pid1 = getpid() == 1;
    if (pid1)
        kill(-1, SIGTERM);
    else
        proc_signal_children(SIGTERM, 0);
    int64_t deadline = proc_now_ns() + REAPER_GRACE_NS;
    while (proc_reap(0, NULL) >= 0) {
        int sig = reaper_next_signal(sfd, deadline);
        if (sig <= 0)
            break;
    }
    if (pid1)
        kill(-1, SIGKILL);
    proc_kill_and_reap(0, 0, NULL);
    return 0;
}

int reaper_run(char *const cmd[], init_error *err)
{
    /* As PID 1 every orphan is ours anyway; elsewhere (tests, a nested init) this makes it
     * so. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
        init_error_errno(err, errno, "prctl", NULL);
        err->status = INIT_EXIT_INTERNAL;
        return -1;
    }
    sigset_t old;
    _cleanup_close_ int sfd =
        proc_signalfd_open(&old, reaper_signals, ELEMENTSOF(reaper_signals), err);
    if (sfd < 0)
        return -1;
    if (!cmd)
        return reaper_idle(sfd);

    pid_t pid = proc_spawn(cmd, &old, proc_tty_is_ours(STDIN_FILENO), -1, err);
    if (pid < 0)
        return -1;
    int wstatus = 0;
    for (;;) {
        int sig = reaper_next_signal(sfd, 0);
        if (sig < 0) {
            init_error_errno(err, errno, "poll", NULL);
            err->status = INIT_EXIT_INTERNAL;
            return -1;
        }
        if (sig == SIGCHLD) {
            if (proc_reap(pid, &wstatus) == 1)
                break;
        } else if (reaper_forwards(sig)) {
            kill(pid, sig);
        }
    }
    /* As PID 1 our exit makes the kernel SIGKILL the rest of the sandbox; elsewhere we do. */
    if (getpid() != 1)
        proc_kill_and_reap(pid, 0, NULL);
    return proc_exit_status(wstatus);
}
