/* Cleanup attributes and ownership helpers shared by every Moat binary.
 *
 * A local that owns a resource is declared with one of the _cleanup_*_ macros and
 * is released when it goes out of scope. TAKE_PTR() hands ownership out and clears
 * the local, so the cleanup does nothing (systemd's idiom). */
#ifndef MOAT_MACRO_H
#define MOAT_MACRO_H

#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f)    __attribute__((cleanup(f)))
#define _cleanup_free_  _cleanup_(moat_freep)
#define _cleanup_close_ _cleanup_(moat_closep)
#define _unused_        __attribute__((unused))
#define _printf_(a, b)  __attribute__((format(printf, a, b)))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Returns the value of *p and sets *p to NULL: the caller now owns it. */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _ptr_ = (p);                                                                 \
        (p) = NULL;                                                                                \
        _ptr_;                                                                                     \
    })

/* Same for file descriptors: returns the fd and leaves -1 behind. */
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _fd_ = (fd);                                                                           \
        (fd) = -1;                                                                                 \
        _fd_;                                                                                      \
    })

static inline void moat_freep(void *p)
{
    free(*(void **)p);
}

static inline void moat_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

#endif
