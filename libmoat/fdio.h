/* Writing to a file descriptor whole. */
#ifndef MOAT_FDIO_H
#define MOAT_FDIO_H

#include <stddef.h>

/* Writes all len bytes of data to fd, across short writes and EINTR. 0, or -1 with errno
 * set (EPIPE: the reader went away). */
int moat_write_all(int fd, const void *data, size_t len);

#endif
