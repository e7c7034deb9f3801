/* The file operations of moat-init: write (atomic), read, mkdir, remove, exists. Contents
 * stream through one buffer of FILES_BUFFER_SIZE, binary-safe; no file is ever held in
 * memory. Every function returns 0 or -1 with err (status INIT_EXIT_FAILURE, op the call
 * that failed, path the path it failed on). */
#ifndef MOAT_INIT_FILES_H
#define MOAT_INIT_FILES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "init/error.h"

#define FILES_BUFFER_SIZE (256 * 1024)
#define FILES_DIR_MODE    0755 /* for mkdir and write --parents (less the umask) */
#define FILES_FILE_MODE   0644 /* write's default when no file is replaced */

/* Streams in_fd to a temporary file in path's directory (O_TMPFILE, or
 * ".<name>.moat-XXXXXX"), fsyncs it, gives it mode (with has_mode; else the mode of the
 * regular file it replaces, else FILES_FILE_MODE) and renames it over path: a reader sees
 * the old file or the new one, never a part. A symlink at path is replaced, not followed.
 * On any error the temporary file is gone. With parents, missing directories are made
 * first. Then prints {"path":"<absolute>","size":N} on out. With expect_size >= 0 the
 * input must hold exactly that many bytes, or nothing is written (EIO): a writer that went
 * away mid-stream ends its stdin as a finished one does. */
int files_write(FILE *out, int in_fd, const char *path, mode_t mode, bool has_mode, bool parents,
                int64_t expect_size, init_error *err);

/* Streams the file at path to out_fd. A directory is refused (EISDIR). When out_fd's reader
 * goes away, fails with errno EPIPE (op "write"). */
int files_read(int out_fd, const char *path, init_error *err);

/* Makes the directory path; with parents, the missing ones above it too, and an existing
 * directory at path is no error. */
int files_mkdir(const char *path, bool parents, init_error *err);

/* Removes a file, a symlink (not what it points to) or an empty directory; with recursive,
 * a directory with everything under it, walking by directory fds and never following a
 * symlink. */
int files_remove(const char *path, bool recursive, init_error *err);

/* Whether something (a dangling symlink too) is at path: 1 yes, 0 no (ENOENT, ENOTDIR), -1
 * with err when it cannot be told (EACCES). */
int files_exists(const char *path, init_error *err);

#endif
