#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "init/proc.h"
#include "libmoat/macro.h"

/* Room for a whole /proc/PID/stat line: 52 numbers and a command name of up to 64 bytes. */
#define PROC_STAT_SIZE 4096

int proc_exit_status(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return INIT_EXIT_INTERNAL; /* stopped or continued: never asked for (no WUNTRACED) */
}

int proc_exec_failure_status(int errnum)
{
    return errnum == ENOENT ? INIT_EXIT_NOT_FOUND : INIT_EXIT_CANNOT_RUN;
}

int proc_stat_parse(pid_t *ret_ppid, pid_t *ret_pgrp, const char *text)
{
    /* "PID (COMM) STATE PPID PGRP ...": COMM may hold ") ", so go by the last ')'. */
    const char *p = strrchr(text, ')');
    if (!p || p[1] != ' ' || !isalpha((unsigned char)p[2]) || p[3] != ' ')
        return -1;
    char *end;
    errno = 0;
    long ppid = strtol(p + 4, &end, 10);
    if (end == p + 4 || *end != ' ' || errno != 0 || ppid < 0 || ppid > INT_MAX)
        return -1;
    const char *q = end + 1;
    long pgrp = strtol(q, &end, 10);
    if (end == q || (*end != ' ' && *end != '\n' && *end != '\0') || errno != 0 || pgrp < 0 ||
        pgrp > INT_MAX)
        return -1;
    *ret_ppid = (pid_t)ppid;
    *ret_pgrp = (pid_t)pgrp;
    return 0;
}

int proc_signalfd_open(sigset_t *ret_old, const int *sigs, size_t n, init_error *err)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < n; i++)
        sigaddset(&set, sigs[i]);
    sigset_t old;
    if (sigprocmask(SIG_BLOCK, &set, &old) < 0)
        return init_error_errno(err, errno, "sigprocmask", NULL);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        init_error_errno(err, e, "signalfd", NULL);
        err->status = INIT_EXIT_INTERNAL;
        return -1;
    }
    *ret_old = old;
    return fd;
}

bool proc_tty_is_ours(int fd)
{
    if (!isatty(fd))
        return false;
    pid_t fg = tcgetpgrp(fd);
    return fg > 0 && fg == getpgrp();
}

pid_t proc_spawn(char *const argv[], const sigset_t *child_mask, bool foreground, int stdin_fd,
                 init_error *err)
{
    /* The child reports execvp's errno through this pipe; on success, exec closes it. */
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        init_error_errno(err, errno, "pipe", NULL);
        err->status = INIT_EXIT_INTERNAL;
        return -1;
    }
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        init_error_errno(err, e, "fork", argv[0]);
        err->status = INIT_EXIT_INTERNAL;
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls from here to execvp. Both sides set the group (and the
         * terminal's foreground), so neither can act on the group before it exists. */
        close(pipefd[0]);
        if (stdin_fd >= 0 && dup2(stdin_fd, STDIN_FILENO) < 0)
            _exit(INIT_EXIT_INTERNAL);
        setpgid(0, 0);
        if (foreground)
            tcsetpgrp(STDIN_FILENO, getpid());
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigaction(SIGPIPE, &dfl, NULL);
        sigprocmask(SIG_SETMASK, child_mask, NULL);
        execvp(argv[0], argv);
        int e = errno;
        ssize_t n = write(pipefd[1], &e, sizeof(e));
        (void)n;
        _exit(proc_exec_failure_status(e));
    }
    close(pipefd[1]);
    setpgid(pid, pid); /* EACCES once the child has exec'd: it did it itself then */
    if (foreground)
        tcsetpgrp(STDIN_FILENO, pid);
    int e = 0;
    ssize_t n;
    do
        n = read(pipefd[0], &e, sizeof(e));
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof(e)) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        init_error_errno(err, e, "exec", argv[0]);
        err->status = proc_exec_failure_status(e);
        return -1;
    }
    return pid;
}

static int proc_read_stat(char *buf, size_t size, int dirfd, const char *pid)
{
    char path[sizeof(((struct dirent *)0)->d_name) + sizeof("/stat")];
    snprintf(path, sizeof(path), "%s/stat", pid);
    _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

int proc_signal_children(int sig, pid_t skip_pgrp)
{
    /* /proc rather than /proc/self/task/TID/children: that file needs CONFIG_PROC_CHILDREN,
     * and a sandbox runtime's /proc (gVisor's) need not have it. */
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    pid_t self = getpid();
    int count = 0;
    struct dirent *de;
    char buf[PROC_STAT_SIZE];
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t ppid, pgrp;
        if (proc_read_stat(buf, sizeof(buf), dirfd(d), de->d_name) < 0 ||
            proc_stat_parse(&ppid, &pgrp, buf) < 0)
            continue; /* gone meanwhile */
        if (ppid != self || (skip_pgrp > 0 && pgrp == skip_pgrp))
            continue;
        if (kill((pid_t)atoi(de->d_name), sig) == 0)
            count++;
    }
    closedir(d);
    return count;
}

int proc_reap(pid_t main_pid, int *main_status)
{
    int found = 0;
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            return found ? found : -1;
        if (pid == 0)
            return found;
        if (main_pid > 0 && pid == main_pid) {
            *main_status = st;
            found = 1;
        }
    }
}

void proc_kill_and_reap(pid_t pgid, pid_t main_pid, int *main_status)
{
    for (;;) {
        if (pgid > 0)
            kill(-pgid, SIGKILL);
        /* No child at all, running or not: nothing is left below us (a subreaper's orphans
         * are its children), and the /proc scan (milliseconds under gVisor, on every exec)
         * is skipped. */
        siginfo_t si;
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD)
            return;
        proc_signal_children(SIGKILL, pgid);
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            return; /* ECHILD: nothing is left */
        if (main_pid > 0 && pid == main_pid)
            *main_status = st;
        if (proc_reap(main_pid, main_status) < 0)
            return;
    }
}

int64_t proc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * PROC_NSEC_PER_SEC + ts.tv_nsec;
}

int proc_poll_timeout_ms(int64_t deadline, int64_t now)
{
    if (deadline == 0)
        return -1;
    if (deadline <= now)
        return 0;
    int64_t left = deadline - now;
    int64_t ms = left / 1000000 + (left % 1000000 != 0);
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

bool proc_wait_readable(int fd, int64_t deadline)
{
    for (;;) {
        int64_t now = proc_now_ns();
        if (now >= deadline)
            return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, proc_poll_timeout_ms(deadline, now));
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
    }
}
