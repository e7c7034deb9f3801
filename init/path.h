/* Path strings: the last component of a path, and a growing path that a directory walk
 * extends by one name per level (for the paths it prints and its error messages; the walk
 * itself goes by directory fds, so the kernel's PATH_MAX does not bound it, PATH_BUF_MAX
 * does). */
#ifndef MOAT_INIT_PATH_H
#define MOAT_INIT_PATH_H

#include <stddef.h>

#define PATH_BUF_MAX (64 * 1024) /* the longest path a walk builds, NUL included */

/* The last component of path, trailing slashes left out: sets *ret_start and returns its
 * length ("a/b/" -> "b", "/" -> "/", "b" -> "b"). Returns 0 for "". */
size_t path_base(const char *path, const char **ret_start);

typedef struct {
    char *data; /* owned, NUL-terminated */
    size_t len;
    size_t cap;
} path_buf;

/* Starts the buffer with root. Returns 0, or -1 with errno ENOMEM or ENAMETOOLONG. */
int path_buf_init(path_buf *b, const char *root);

/* Appends "/name" (no second slash after a root ending in one) and writes the length to
 * pass to path_buf_pop into *ret_mark. Returns 0, or -1 with errno ENOMEM or ENAMETOOLONG
 * (over PATH_BUF_MAX); the buffer is unchanged then. */
int path_buf_push(path_buf *b, const char *name, size_t *ret_mark);

/* Cuts the buffer back to the length path_buf_push returned in mark. */
void path_buf_pop(path_buf *b, size_t mark);

/* Frees the buffer; accepts a zeroed one. */
void path_buf_done(path_buf *b);

#endif
