#include "tty.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

static struct termios saved;
static int saved_fd = -1;

void tty_restore(void)
{
    if (saved_fd >= 0) {
        tcsetattr(saved_fd, TCSAFLUSH, &saved);
        saved_fd = -1;
    }
}

int tty_raw(int fd, moat_error *err)
{
    static bool registered;
    struct termios t;
    if (!isatty(fd))
        return moat_error_set(err, MOAT_E_INVALID, "-t: standard input is not a terminal");
    if (tcgetattr(fd, &t) < 0)
        return moat_error_set_errno(err, errno, "-t: tcgetattr");
    saved = t;
    saved_fd = fd;
    if (!registered) {
        atexit(tty_restore);
        registered = true;
    }
    cfmakeraw(&t);
    if (tcsetattr(fd, TCSAFLUSH, &t) < 0) {
        saved_fd = -1;
        return moat_error_set_errno(err, errno, "-t: tcsetattr");
    }
    return 0;
}

bool tty_size(int fd, unsigned *ret_cols, unsigned *ret_rows)
{
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) < 0 || ws.ws_col == 0)
        return false;
    *ret_cols = ws.ws_col;
    *ret_rows = ws.ws_row;
    return true;
}
