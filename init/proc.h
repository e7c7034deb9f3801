/* Processes: starting a command in a process group of its own, signalling and reaping what a
 * subreaper is left with, and the exit status a wait status stands for. Shared by exec
 * (run.c) and init (reaper.c), which both receive signals through a signalfd and never do
 * work in a signal handler. */
#ifndef MOAT_INIT_PROC_H
#define MOAT_INIT_PROC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "init/error.h"

#define PROC_NSEC_PER_SEC 1000000000LL

/* The exit status a shell would give for this wait status: the code, or 128+signal. */
int proc_exit_status(int wstatus);

/* The exit status for a command execvp could not start: 127 for ENOENT, else 126. */
int proc_exec_failure_status(int errnum);

/* Parses the parent pid and the process group out of the text of /proc/PID/stat (whose
 * command name may hold spaces and parentheses). Returns 0, or -1 if the text is not one. */
int proc_stat_parse(pid_t *ret_ppid, pid_t *ret_pgrp, const char *text);

/* Blocks the n signals and returns a non-blocking, close-on-exec signalfd for them, or -1
 * with err (status INIT_EXIT_INTERNAL). *ret_old gets the mask from before, for the
 * command. */
int proc_signalfd_open(sigset_t *ret_old, const int *sigs, size_t n, init_error *err);

/* Whether fd is a terminal whose foreground process group is ours: then a command we start
 * gets the terminal (so Ctrl-C and reads reach it rather than stopping it). */
bool proc_tty_is_ours(int fd);

/* Forks and execs argv (PATH searched) in a new process group led by the child, with the
 * signal mask child_mask and SIGPIPE back to its default. With foreground, the group is
 * made the foreground group of the terminal on stdin (SIGTTOU must be blocked). Returns the
 * pid, or -1 with err: op "exec" and the command's errno when execvp failed (status 127 or
 * 126; the child is reaped), status INIT_EXIT_INTERNAL when fork or pipe failed. stdin_fd
 * >= 0 becomes the child's stdin (ours stays ours); -1: it inherits ours. */
pid_t proc_spawn(char *const argv[], const sigset_t *child_mask, bool foreground, int stdin_fd,
                 init_error *err);

/* Sends sig to every process whose parent we are (a subreaper's orphans included), except
 * those in process group skip_pgrp (0: none skipped), found in /proc. Returns how many, or
 * -1 with errno when /proc could not be read. */
int proc_signal_children(int sig, pid_t skip_pgrp);

/* Reaps every child that has exited, without blocking. When main_pid is among them, writes
 * its wait status to *main_status and returns 1; else returns 0. Returns -1 (errno ECHILD)
 * when there are no children at all. */
int proc_reap(pid_t main_pid, int *main_status);

/* SIGKILLs process group pgid (when > 0) and every child, again and again, reaping, until
 * no child is left: the orphans of a killed child come back to us and are killed in turn.
 * When main_pid is reaped on the way, its wait status goes to *main_status. */
void proc_kill_and_reap(pid_t pgid, pid_t main_pid, int *main_status);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t proc_now_ns(void);

/* The poll() timeout in milliseconds until deadline (0: no deadline, -1 returned), rounded
 * up so that poll does not wake before it. */
int proc_poll_timeout_ms(int64_t deadline, int64_t now);

/* How long a command's client input is still read, and dropped, after the command cannot
 * take it any more (exec's framed stdin after the command is down, a write that failed):
 * the exec's stream then closes with nothing of the client's unread. Closed with input
 * unread, the connection is reset (TCP RST) and the client loses the exit status sent just
 * before it. */
#define PROC_DRAIN_NS (10 * 1000000000LL)

/* Waits until fd is readable (or at its end); false once deadline (proc_now_ns's clock)
 * passes or poll fails. */
bool proc_wait_readable(int fd, int64_t deadline);

#endif
