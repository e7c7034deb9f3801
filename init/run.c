#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init/proc.h"
#include "init/run.h"
#include "libmoat/macro.h"

/* SIGTTOU is blocked (never read) so that tcsetpgrp works from the background. */
static const int run_signals[] = {SIGCHLD, SIGTERM, SIGINT,   SIGHUP, SIGQUIT,
                                  SIGUSR1, SIGUSR2, SIGWINCH, SIGTTOU};

/* Whether fd's reader can go away and tell us so: a pipe, a FIFO or a socket (POLLERR or
 * POLLHUP once it is gone), or a terminal (POLLHUP when it hangs up). A regular file or
 * /dev/null never does. */
static bool run_fd_watchable(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return false;
    return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(fd);
}

/* --framed-stdin: our stdin carries frames (a 4-byte big-endian length, then that many
 * bytes for the command's stdin; length 0 ends the command's input), relayed into a pipe
 * that is the command's stdin. The end of our stdin is the client's going (a client keeps
 * it open for the command's life): the caller ends the command. */
#define FRAME_BUF (64 * 1024)

typedef struct {
    int to_child;     /* the pipe's write end; -1 once the command's input ended */
    uint8_t head[4];  /* a frame's length, as it arrives */
    size_t head_have; /* bytes of it so far */
    uint32_t left;    /* payload bytes of the current frame still to come */
    uint8_t buf[FRAME_BUF];
    size_t buf_len, buf_off; /* payload read, not yet written to the pipe */
    bool ended;              /* the 0-length frame came: close to_child once buf is written */
    bool gone;               /* our stdin ended: the client went away */
} framed_stdin;

/* Reads what is there on our stdin and parses it; payload waits in f->buf. 0, or -1 when
 * stdin ended (f->gone). Called only when f->buf is empty. */
static int framed_read(framed_stdin *f)
{
    uint8_t in[FRAME_BUF];
    ssize_t n = read(STDIN_FILENO, in, sizeof(in));
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : (f->gone = true, -1);
    if (n == 0) {
        f->gone = true;
        return -1;
    }
    f->buf_len = f->buf_off = 0;
    for (size_t i = 0; i < (size_t)n;) {
        if (f->left == 0 && f->head_have < 4) {
            f->head[f->head_have++] = in[i++];
            if (f->head_have < 4)
                continue;
            f->left = (uint32_t)f->head[0] << 24 | (uint32_t)f->head[1] << 16 |
                      (uint32_t)f->head[2] << 8 | f->head[3];
            f->head_have = f->left == 0 ? 4 : 0; /* 4 and nothing left: input ended */
            if (f->left == 0)
                f->ended = true; /* framed_write closes the pipe once buf is out */
            continue;
        }
        if (f->left == 0) { /* after the end of input: more is ignored */
            i = (size_t)n;
            continue;
        }
        size_t take = (size_t)n - i < f->left ? (size_t)n - i : f->left;
        if (f->to_child >= 0) { /* f->buf is empty here, and in holds at most its size */
            memcpy(f->buf + f->buf_len, in + i, take);
            f->buf_len += take;
        }
        f->left -= (uint32_t)take;
        i += take;
        if (f->left == 0)
            f->head_have = 0;
    }
    return 0;
}

/* Writes what waits in f->buf to the command's stdin, as far as the pipe takes it. A
 * command that closed its stdin (EPIPE) gets no more. */
static void framed_write(framed_stdin *f)
{
    while (f->to_child >= 0 && f->buf_off < f->buf_len) {
        ssize_t n = write(f->to_child, f->buf + f->buf_off, f->buf_len - f->buf_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            close(f->to_child); /* EPIPE: nobody reads it */
            f->to_child = -1;
            break;
        }
        f->buf_off += (size_t)n;
    }
    if (f->buf_off >= f->buf_len)
        f->buf_len = f->buf_off = 0;
    if (f->ended && f->buf_len == 0 && f->to_child >= 0) {
        close(f->to_child); /* the command sees the end of its input */
        f->to_child = -1;
    }
}

/* After the command is down, its input still coming is read to its end frame and dropped,
 * for up to PROC_DRAIN_NS (why: proc.h). */
static void framed_drain(framed_stdin *f)
{
    int64_t deadline = proc_now_ns() + PROC_DRAIN_NS;
    if (f->to_child >= 0)
        close(f->to_child);
    f->to_child = -1; /* framed_read drops the payload */
    while (!f->ended && !f->gone && proc_wait_readable(STDIN_FILENO, deadline))
        framed_read(f);
}

typedef struct {
    pid_t pid;        /* the command, leader of its process group; 0 once reaped */
    int wstatus;      /* its wait status, once reaped */
    int ending;       /* the exit status we end with once it is down; -1 until decided */
    int64_t deadline; /* --timeout's; 0: none */
    int64_t grace;    /* when SIGTERM turns into SIGKILL; 0: not ending */
} run_state;

/* Starts the end: sig to the group and to the orphans outside it, SIGKILL at the grace's
 * end, exit status status. A second cause changes neither. */
static void run_begin_end(run_state *s, int sig, int status)
{
    kill(-s->pid, sig);
    proc_signal_children(sig, s->pid);
    if (s->ending >= 0)
        return;
    s->ending = status;
    s->grace = proc_now_ns() + RUN_GRACE_NS;
}

static void run_on_signal(run_state *s, int sig)
{
    switch (sig) {
    case SIGCHLD:
        if (s->pid > 0 && proc_reap(s->pid, &s->wstatus) == 1)
            s->pid = 0;
        break;
    case SIGTERM:
    case SIGINT:
    case SIGHUP:
        run_begin_end(s, sig, 128 + sig);
        break;
    case SIGQUIT:
    case SIGUSR1:
    case SIGUSR2:
    case SIGWINCH:
        kill(-s->pid, sig);
        break;
    default:
        break;
    }
}

/* Reads every pending signal off the signalfd. */
static void run_drain_signals(run_state *s, int sfd)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (s->pid == 0 && si.ssi_signo != SIGCHLD)
            continue; /* the command is down: we are about to end */
        run_on_signal(s, (int)si.ssi_signo);
    }
}

int run_exec(const args_exec *a, init_error *err)
{
    if (a->cwd && chdir(a->cwd) < 0) {
        init_error_errno(err, errno, "chdir", a->cwd);
        err->status = INIT_EXIT_INTERNAL;
        return -1;
    }
    /* In our own environment, so that execvp searches the PATH the command is given. */
    for (char **e = a->env; e && *e; e++)
        if (putenv(*e) != 0) {
            init_error_errno(err, errno, "putenv", NULL); /* the value may be a secret */
            err->status = INIT_EXIT_INTERNAL;
            return -1;
        }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
        init_error_errno(err, errno, "prctl", NULL);
        err->status = INIT_EXIT_INTERNAL;
        return -1;
    }
    sigset_t old;
    _cleanup_close_ int sfd = proc_signalfd_open(&old, run_signals, ELEMENTSOF(run_signals), err);
    if (sfd < 0)
        return -1;
    static framed_stdin framed; /* 128 KiB: not on the stack */
    int child_in = -1;
    framed = (framed_stdin){.to_child = -1};
    if (a->framed_stdin) {
        if (isatty(STDIN_FILENO))
            return init_error_set(err, "EUSAGE", INIT_EXIT_USAGE, "exec", NULL,
                                  "--framed-stdin: stdin is a terminal, not frames");
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
            init_error_errno(err, errno, "pipe", NULL);
            err->status = INIT_EXIT_INTERNAL;
            return -1;
        }
        fcntl(p[1], F_SETFL, O_NONBLOCK);
        child_in = p[0];
        framed.to_child = p[1];
    }
    pid_t pid = proc_spawn(a->argv, &old, !a->framed_stdin && proc_tty_is_ours(STDIN_FILENO),
                           child_in, err);
    if (child_in >= 0)
        close(child_in);
    if (pid < 0) {
        if (framed.to_child >= 0)
            close(framed.to_child);
        return -1;
    }
    const pid_t pgid = pid;

    run_state s = {.pid = pid, .ending = -1};
    if (a->timeout_ns > 0)
        s.deadline = proc_now_ns() + a->timeout_ns;
    /* fds[0] signals, [1] and [2] stdout and stderr (their readers going), [3] our stdin
     * and [4] the command's under --framed-stdin; -1 where unused (poll skips those). */
    struct pollfd fds[5] = {
        {.fd = sfd, .events = POLLIN}, {.fd = -1}, {.fd = -1}, {.fd = -1}, {.fd = -1}};
    const nfds_t nfds = 5;
    /* Without frames, only stdout and stderr: the end of stdin is the end of the command's
     * input (cat reads to it), not a client that went away; we never read stdin then. */
    for (int fd = STDOUT_FILENO; fd <= STDERR_FILENO; fd++)
        if (run_fd_watchable(fd))
            fds[fd] = (struct pollfd){.fd = fd, .events = 0};

    for (;;) {
        int64_t now = proc_now_ns();
        if (s.deadline > 0 && now >= s.deadline) {
            proc_kill_and_reap(pgid, 0, NULL);
            if (s.ending >= 0)
                return s.ending;
            char took[32];
            args_duration_format(took, sizeof(took), a->timeout_ns);
            return init_error_set(err, "ETIMEDOUT", INIT_EXIT_TIMEOUT, "exec", NULL,
                                  "timed out after %s; process group killed", took);
        }
        if (s.grace > 0 && now >= s.grace) {
            proc_kill_and_reap(pgid, 0, NULL);
            return s.ending;
        }
        int64_t next = s.deadline;
        if (s.grace > 0 && (next == 0 || s.grace < next))
            next = s.grace;
        if (a->framed_stdin) {
            bool waiting = framed.buf_off < framed.buf_len;
            fds[3] =
                (struct pollfd){.fd = framed.gone || waiting ? -1 : STDIN_FILENO, .events = POLLIN};
            fds[4] = (struct pollfd){.fd = waiting ? framed.to_child : -1, .events = POLLOUT};
        }
        int r = poll(fds, nfds, proc_poll_timeout_ms(next, now));
        if (r < 0 && errno != EINTR) {
            int e = errno;
            proc_kill_and_reap(pgid, 0, NULL);
            init_error_errno(err, e, "poll", NULL);
            err->status = INIT_EXIT_INTERNAL;
            return -1;
        }
        if (r > 0 && (fds[0].revents & POLLIN))
            run_drain_signals(&s, sfd);
        for (nfds_t i = 1; r > 0 && i <= STDERR_FILENO; i++) {
            if (!(fds[i].revents & (POLLERR | POLLHUP | POLLNVAL)))
                continue;
            fds[i].fd = -1; /* poll skips it from now on */
            if (s.pid > 0)
                run_begin_end(&s, SIGTERM, INIT_EXIT_DISCONNECT);
        }
        if (r > 0 && fds[3].fd >= 0 && fds[3].revents) {
            if (framed_read(&framed) < 0 && s.pid > 0)
                run_begin_end(&s, SIGTERM, INIT_EXIT_DISCONNECT); /* the client went away */
            framed_write(&framed);
        }
        if (r > 0 && fds[4].fd >= 0 && fds[4].revents)
            framed_write(&framed);
        if (s.pid == 0) {
            /* The command is down: what it left, in its group or orphaned, goes with it. */
            if (framed.to_child >= 0)
                close(framed.to_child);
            framed.to_child = -1;
            proc_kill_and_reap(pgid, 0, NULL);
            if (a->framed_stdin)
                framed_drain(&framed);
            return s.ending >= 0 ? s.ending : proc_exit_status(s.wstatus);
        }
    }
}
