#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(signal_pipe[1], &b, 1); /* full pipe: the signal is already pending */
    (void)r;
    errno = saved;
}

int moat_signals_install(const int *sigs, size_t n, moat_error *err)
{
    if (signal_pipe[0] < 0 && pipe2(signal_pipe, O_CLOEXEC) < 0)
        return moat_error_set_errno(err, errno, "pipe");
    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < n; i++)
        if (sigaction(sigs[i], &sa, NULL) < 0)
            return moat_error_set_errno(err, errno, "sigaction %d", sigs[i]);
    return 0;
}

int moat_signals_wait(void)
{
    unsigned char b;
    for (;;) {
        ssize_t r = read(signal_pipe[0], &b, 1);
        if (r == 1)
            return b;
        if (r < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

void moat_signals_raise(int sig)
{
    on_signal(sig);
}
