/* stat and list: what is at a path, as JSON lines
 * {"name":"a","path":"/d/a","type":"file","size":3,"mode":"0644",
 *  "mtime":"2026-12-06T12:00:00.123Z"} with "target" added for a symlink. Symlinks are
 * never followed. */
#ifndef MOAT_INIT_LISTING_H
#define MOAT_INIT_LISTING_H

#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "init/error.h"

#define LISTING_ENTRIES_MAX (1024 * 1024) /* the most entries of one directory list sorts */
#define LISTING_TIME_SIZE   32            /* room for listing_time_format's text */

/* "file", "dir", "symlink" or "other" for the type bits of mode. */
const char *listing_type_name(mode_t mode);

/* Formats ts as RFC 3339 in UTC with milliseconds ("2026-12-06T12:00:00.123Z"). Returns 0,
 * or -1 when it does not fit size (or the year cannot be represented). */
int listing_time_format(char *buf, size_t size, const struct timespec *ts);

/* Prints one entry's line on f; target is the symlink's target (NULL for other types).
 * Returns 0, or -1 with errno when f failed. */
int listing_entry_print(FILE *f, const char *name, size_t name_len, const char *path,
                        const struct stat *st, const char *target);

/* `stat PATH`: the entry's line on out. */
int listing_stat(FILE *out, const char *path, init_error *err);

/* `list PATH --depth N`: a line for each entry under the directory path, sorted by name
 * (bytewise) in each directory, each directory's entries right after its own line, down to
 * depth levels (1: path's entries only). An entry that cannot be read below path (a
 * directory without permission, a symlink that vanished) gets an error line on errs and the
 * walk goes on. Returns 0; the number (> 0) of such error lines; or -1 with err when path
 * itself cannot be listed or out failed. */
int listing_list(FILE *out, FILE *errs, const char *path, unsigned depth, init_error *err);

#endif
