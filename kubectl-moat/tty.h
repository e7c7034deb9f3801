/* The local terminal of `exec -t`: raw mode while the remote one runs, and its size. */
#ifndef MOAT_PLUGIN_TTY_H
#define MOAT_PLUGIN_TTY_H

#include <stdbool.h>

#include "libmoat/error.h"

/* Puts fd's terminal in raw mode (keys go to the remote terminal as typed, ^C included) and
 * registers its restoration at exit. -1 with MOAT_E_INVALID when fd is not a terminal. */
int tty_raw(int fd, moat_error *err);

/* Restores the terminal tty_raw changed; nothing if none. Safe to call more than once. */
void tty_restore(void);

/* fd's terminal size; false when fd is not a terminal. */
bool tty_size(int fd, unsigned *ret_cols, unsigned *ret_rows);

#endif
