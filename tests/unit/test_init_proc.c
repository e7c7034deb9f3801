/* moat-init's process helpers (init/proc.c): exit statuses, /proc/PID/stat, poll timeouts,
 * and one real child: spawned in a group of its own, its exec failure reported. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "init/proc.h"

static void test_exit_status(void **state)
{
    (void)state;
    assert_int_equal(proc_exit_status(0), 0);
    assert_int_equal(proc_exit_status(3 << 8), 3);
    assert_int_equal(proc_exit_status(255 << 8), 255);
    assert_int_equal(proc_exit_status(SIGKILL), 137);
    assert_int_equal(proc_exit_status(SIGTERM), 143);
    assert_int_equal(proc_exit_status(SIGSEGV | 0x80), 128 + SIGSEGV); /* core dumped */
    assert_int_equal(proc_exec_failure_status(ENOENT), 127);
    assert_int_equal(proc_exec_failure_status(EACCES), 126);
    assert_int_equal(proc_exec_failure_status(ENOEXEC), 126);
}

static void test_stat_parse(void **state)
{
    (void)state;
    pid_t ppid = -1, pgrp = -1;
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, "42 (sleep) S 7 42 7 0 -1 4194304 95"), 0);
    assert_int_equal(ppid, 7);
    assert_int_equal(pgrp, 42);
    /* a command name with ") " and digits in it cannot fool the parser */
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, "9 (a) S 1 1 (b) Z 3 5 1 0\n"), 0);
    assert_int_equal(ppid, 3);
    assert_int_equal(pgrp, 5);
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, "1 (init) S 0 1\n"), 0);
    assert_int_equal(ppid, 0);
    assert_int_equal(pgrp, 1);
    ppid = pgrp = 99;
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, ""), -1);
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, "1 (x"), -1);
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, "1 (x) S"), -1);
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, "1 (x) S 2"), -1);
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, "1 (x) S a 2 "), -1);
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, "1 (x) S -2 2 "), -1);
    assert_int_equal(proc_stat_parse(&ppid, &pgrp, "1 (x) S 99999999999 2 "), -1);
    assert_int_equal(ppid, 99);
    assert_int_equal(pgrp, 99);
}

static void test_poll_timeout(void **state)
{
    (void)state;
    assert_int_equal(proc_poll_timeout_ms(0, 123), -1);
    assert_int_equal(proc_poll_timeout_ms(100, 100), 0);
    assert_int_equal(proc_poll_timeout_ms(100, 200), 0);
    assert_int_equal(proc_poll_timeout_ms(1000000, 0), 1);
    assert_int_equal(proc_poll_timeout_ms(1000001, 0), 2); /* never wakes early */
    assert_int_equal(proc_poll_timeout_ms(INT64_MAX, 0), INT32_MAX);
}

static void test_spawn(void **state)
{
    (void)state;
    sigset_t mask;
    sigprocmask(SIG_SETMASK, NULL, &mask);
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    char *simple[] = {"sh", "-c", "kill -0 -$$ && exit 7", NULL};
    pid_t pid = proc_spawn(simple, &mask, false, -1, &err);
    assert_true(pid > 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    /* `kill -0 -$$` succeeds only when a group numbered like the shell's pid exists */
    assert_int_equal(proc_exit_status(st), 7);

    char *missing[] = {"/nonexistent/moat-init-test", NULL};
    assert_int_equal(proc_spawn(missing, &mask, false, -1, &err), -1);
    assert_string_equal(err.code, "ENOENT");
    assert_string_equal(err.op, "exec");
    assert_string_equal(err.path, "/nonexistent/moat-init-test");
    assert_int_equal(err.status, 127);
    /* the failed child was reaped */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);

    char *not_exec[] = {"/dev/null", NULL};
    assert_int_equal(proc_spawn(not_exec, &mask, false, -1, &err), -1);
    assert_string_equal(err.code, "EACCES");
    assert_int_equal(err.status, 126);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_stat_parse),
        cmocka_unit_test(test_poll_timeout),
        cmocka_unit_test(test_spawn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
