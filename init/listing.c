#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init/json.h"
#include "init/listing.h"
#include "init/path.h"
#include "libmoat/macro.h"

const char *listing_type_name(mode_t mode)
{
    if (S_ISREG(mode))
        return "file";
    if (S_ISDIR(mode))
        return "dir";
    if (S_ISLNK(mode))
        return "symlink";
    return "other";
}

int listing_time_format(char *buf, size_t size, const struct timespec *ts)
{
    struct tm tm;
    if (!gmtime_r(&ts->tv_sec, &tm))
        return -1;
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n == 0)
        return -1;
    int m = snprintf(buf + n, size - n, ".%03ldZ", ts->tv_nsec / 1000000);
    if (m < 0 || (size_t)m >= size - n)
        return -1;
    return 0;
}

int listing_entry_print(FILE *f, const char *name, size_t name_len, const char *path,
                        const struct stat *st, const char *target)
{
    char mtime[LISTING_TIME_SIZE];
    if (listing_time_format(mtime, sizeof(mtime), &st->st_mtim) < 0)
        mtime[0] = '\0'; /* a year past 9999 or before 1: no time rather than no entry */
    char mode[8];
    snprintf(mode, sizeof(mode), "%04o", (unsigned)(st->st_mode & 07777));
    json_line j;
    json_line_begin(&j, f);
    json_line_stringn(&j, "name", name, name_len);
    json_line_string(&j, "path", path);
    json_line_string(&j, "type", listing_type_name(st->st_mode));
    json_line_uint(&j, "size", st->st_size > 0 ? (uint64_t)st->st_size : 0);
    json_line_string(&j, "mode", mode);
    json_line_string(&j, "mtime", mtime);
    if (target)
        json_line_string(&j, "target", target);
    return json_line_end(&j);
}

/* The target of the symlink name in dirfd into buf (PATH_MAX: the longest the kernel
 * allows). Returns 0, or -1 with errno. */
static int listing_readlink(char *buf, size_t size, int dirfd, const char *name)
{
    ssize_t n = readlinkat(dirfd, name, buf, size);
    if (n < 0)
        return -1;
    if ((size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    buf[n] = '\0';
    return 0;
}

/* Prints the entry name of dirfd, shown as path. */
static int listing_print_at(FILE *out, int dirfd, const char *name, const char *path,
                            struct stat *ret_st, const char *op, init_error *err)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return init_error_errno(err, errno, op, path);
    char target[PATH_MAX];
    bool link = S_ISLNK(st.st_mode);
    if (link && listing_readlink(target, sizeof(target), dirfd, name) < 0)
        return init_error_errno(err, errno, "readlink", path);
    const char *base;
    size_t base_len = path_base(name, &base);
    if (listing_entry_print(out, base, base_len, path, &st, link ? target : NULL) < 0)
        return init_error_errno(err, errno, "write", "-");
    *ret_st = st;
    return 0;
}

int listing_stat(FILE *out, const char *path, init_error *err)
{
    struct stat st;
    return listing_print_at(out, AT_FDCWD, path, path, &st, "stat", err);
}

typedef struct {
    char **names;
    size_t n;
    size_t cap;
} listing_names;

static void listing_names_free(listing_names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
}

static int listing_names_add(listing_names *l, const char *name)
{
    if (l->n == LISTING_ENTRIES_MAX) {
        errno = EFBIG;
        return -1;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **names = realloc(l->names, cap * sizeof(char *));
        if (!names)
            return -1;
        l->names = names;
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    l->names[l->n++] = copy;
    return 0;
}

static int listing_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the names in the directory d, sorted bytewise. */
static int listing_read_names(listing_names *out, DIR *d, const char *path, init_error *err)
{
    _cleanup_(listing_names_free) listing_names l = {0};
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (listing_names_add(&l, de->d_name) < 0)
            return init_error_errno(err, errno, "readdir", path);
    }
    if (errno != 0)
        return init_error_errno(err, errno, "readdir", path);
    if (l.n > 0)
        qsort(l.names, l.n, sizeof(char *), listing_name_cmp);
    *out = l;
    l = (listing_names){0};
    return 0;
}

typedef struct {
    FILE *out;
    FILE *errs;
    path_buf path; /* the directory being listed, then each entry in turn */
    int failures;  /* error lines written to errs */
} listing_walk;

/* An entry below the listed directory failed: its error line, and the walk goes on. */
static void listing_failed(listing_walk *w, init_error *entry_err)
{
    init_error_print(entry_err, w->errs);
    init_error_clear(entry_err);
    w->failures++;
}

static void listing_closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

/* Lists the directory open at fd (which it takes), whose path is w->path, down to depth
 * levels. Returns -1 only when out failed (err set) or, at the top (w->path is the path
 * asked for), when the directory cannot be read; below it a failure is an error line. */
static int listing_walk_dir(listing_walk *w, int fd, unsigned depth, bool top, init_error *err)
{
    _cleanup_init_error_ init_error entry_err = INIT_ERROR_INIT;
    _cleanup_(listing_closedirp) DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        if (top)
            return init_error_errno(err, e, "opendir", w->path.data);
        init_error_errno(&entry_err, e, "opendir", w->path.data);
        listing_failed(w, &entry_err);
        return 0;
    }
    _cleanup_(listing_names_free) listing_names names = {0};
    if (listing_read_names(&names, d, w->path.data, top ? err : &entry_err) < 0) {
        if (top)
            return -1;
        listing_failed(w, &entry_err);
        return 0;
    }
    for (size_t i = 0; i < names.n; i++) {
        const char *name = names.names[i];
        size_t mark;
        if (path_buf_push(&w->path, name, &mark) < 0) {
            init_error_errno(&entry_err, errno, "list", w->path.data);
            listing_failed(w, &entry_err);
            continue;
        }
        struct stat st;
        int r = listing_print_at(w->out, dirfd(d), name, w->path.data, &st, "stat", &entry_err);
        if (r < 0 && entry_err.errnum == ENOENT) {
            init_error_clear(&entry_err); /* removed since readdir: not there to list */
        } else if (r < 0 && ferror(w->out)) {
            path_buf_pop(&w->path, mark);
            return init_error_errno(err, entry_err.errnum, "write", "-");
        } else if (r < 0) {
            listing_failed(w, &entry_err);
        } else if (S_ISDIR(st.st_mode) && depth > 1) {
            int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                init_error_errno(&entry_err, errno, "open", w->path.data);
                listing_failed(w, &entry_err);
            } else if (listing_walk_dir(w, sub, depth - 1, false, err) < 0) {
                path_buf_pop(&w->path, mark);
                return -1;
            }
        }
        path_buf_pop(&w->path, mark);
    }
    return 0;
}

int listing_list(FILE *out, FILE *errs, const char *path, unsigned depth, init_error *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return init_error_errno(err, errno, "open", path);
    listing_walk w = {.out = out, .errs = errs};
    if (path_buf_init(&w.path, path) < 0) {
        int e = errno;
        close(fd);
        return init_error_errno(err, e, "list", path);
    }
    int r = listing_walk_dir(&w, fd, depth, true, err);
    path_buf_done(&w.path);
    if (r < 0)
        return -1;
    return w.failures;
}
