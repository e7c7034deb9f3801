#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "init/files.h"
#include "init/json.h"
#include "init/path.h"
#include "libmoat/macro.h"

#define FILES_TMP_TRIES 100 /* names tried for a temporary file before giving up */

/* Waits until fd is ready for events: a runtime may hand us a non-blocking pipe, which
 * answers EAGAIN rather than waiting. */
static int files_wait(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    int r;
    do
        r = poll(&p, 1, -1);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
}

/* Copies in to out until in's end; *ret_size gets the bytes copied. On failure, which side
 * failed is named by op "read" (in_name) or "write" (out_name). */
static int files_copy(int in, int out, uint64_t *ret_size, const char *in_name,
                      const char *out_name, init_error *err)
{
    _cleanup_free_ char *buf = malloc(FILES_BUFFER_SIZE);
    if (!buf)
        return init_error_errno(err, ENOMEM, "read", in_name);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(in, buf, FILES_BUFFER_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && files_wait(in, POLLIN) == 0)
            continue;
        if (n < 0)
            return init_error_errno(err, errno, "read", in_name);
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && errno == EAGAIN && files_wait(out, POLLOUT) == 0)
                continue;
            if (w < 0)
                return init_error_errno(err, errno, "write", out_name);
            done += w;
        }
        total += (uint64_t)n;
    }
    *ret_size = total;
    return 0;
}

/* mkdir -p: each missing directory of path, FILES_DIR_MODE. */
static int files_mkdir_parents(const char *path, init_error *err)
{
    _cleanup_free_ char *p = strdup(path);
    if (!p)
        return init_error_errno(err, ENOMEM, "mkdir", path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, FILES_DIR_MODE) < 0) {
            int e = errno;
            struct stat st;
            if (e != EEXIST)
                return init_error_errno(err, e, "mkdir", p);
            if (stat(p, &st) < 0)
                return init_error_errno(err, errno, "stat", p);
            if (!S_ISDIR(st.st_mode))
                return init_error_errno(err, ENOTDIR, "mkdir", p);
        }
        *s = c;
        if (c == '\0')
            return 0;
    }
}

int files_mkdir(const char *path, bool parents, init_error *err)
{
    if (parents)
        return files_mkdir_parents(path, err);
    if (mkdir(path, FILES_DIR_MODE) < 0)
        return init_error_errno(err, errno, "mkdir", path);
    return 0;
}

/* The temporary file a write goes to: unnamed (O_TMPFILE) until it is linked, or named
 * ".<name>.moat-XXXXXX" from the start. Discarding it removes the name it has. */
typedef struct {
    int dirfd;
    int fd;
    char name[NAME_MAX + 1]; /* "" while it has none */
} files_tmp;

static void files_tmp_discard(files_tmp *t)
{
    if (t->name[0])
        unlinkat(t->dirfd, t->name, 0);
    if (t->fd >= 0)
        close(t->fd);
}

/* ".<name>.moat-XXXXXX" with random letters, the name cut to fit NAME_MAX. */
static void files_tmp_name(char *buf, size_t size, const char *name)
{
    static const char letters[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
        /* no entropy yet: the name need only be unlikely, O_EXCL makes it safe */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof(rnd); i++)
            rnd[i] = (unsigned char)(x >> (8 * i));
    }
    char suffix[sizeof(rnd) + 1];
    for (size_t i = 0; i < sizeof(rnd); i++)
        suffix[i] = letters[rnd[i] % (sizeof(letters) - 1)];
    suffix[sizeof(rnd)] = '\0';
    int room = NAME_MAX - (int)strlen("..moat-") - (int)sizeof(rnd);
    snprintf(buf, size, ".%.*s.moat-%s", room, name, suffix);
}

/* Opens the temporary file in t->dirfd. O_TMPFILE only where /proc is there to link it by
 * (linkat with AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, which a container seldom has). */
static int files_tmp_open(files_tmp *t, const char *name, const char *path, init_error *err)
{
    if (access("/proc/self/fd", X_OK) == 0) {
        t->fd = openat(t->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (t->fd >= 0)
            return 0;
        /* EOPNOTSUPP, EISDIR (kernels before 3.11), EINVAL: the named way */
    }
    for (int i = 0; i < FILES_TMP_TRIES; i++) {
        files_tmp_name(t->name, sizeof(t->name), name);
        t->fd = openat(t->dirfd, t->name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (t->fd >= 0)
            return 0;
        int e = errno;
        t->name[0] = '\0';
        if (e != EEXIST)
            return init_error_errno(err, e, "open", path);
    }
    return init_error_errno(err, EEXIST, "open", path);
}

/* Gives an unnamed temporary file a name, so that rename can put it in place. */
static int files_tmp_link(files_tmp *t, const char *name, const char *path, init_error *err)
{
    if (t->name[0])
        return 0;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", t->fd);
    for (int i = 0; i < FILES_TMP_TRIES; i++) {
        char tmp[NAME_MAX + 1];
        files_tmp_name(tmp, sizeof(tmp), name);
        if (linkat(AT_FDCWD, proc, t->dirfd, tmp, AT_SYMLINK_FOLLOW) == 0) {
            memcpy(t->name, tmp, sizeof(tmp));
            return 0;
        }
        if (errno != EEXIST)
            return init_error_errno(err, errno, "link", path);
    }
    return init_error_errno(err, EEXIST, "link", path);
}

/* Prints {"path":"<dir, resolved>/<name>","size":N}; the path as given when dir cannot be
 * resolved any more. */
static int files_write_report(FILE *out, const char *dir, const char *name, const char *path,
                              uint64_t size, init_error *err)
{
    char real[PATH_MAX];
    char full[PATH_MAX + NAME_MAX + 2];
    const char *shown = path;
    if (realpath(dir, real)) {
        snprintf(full, sizeof(full), "%s%s%s", real, strcmp(real, "/") == 0 ? "" : "/", name);
        shown = full;
    }
    json_line j;
    json_line_begin(&j, out);
    json_line_string(&j, "path", shown);
    json_line_uint(&j, "size", size);
    if (json_line_end(&j) < 0)
        return init_error_errno(err, errno, "write", "-");
    return 0;
}

int files_write(FILE *out, int in_fd, const char *path, mode_t mode, bool has_mode, bool parents,
                int64_t expect_size, init_error *err)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return init_error_errno(err, EISDIR, "write", path);
    _cleanup_free_ char *dir = !slash          ? strdup(".")
                               : slash == path ? strdup("/")
                                               : strndup(path, (size_t)(slash - path));
    if (!dir)
        return init_error_errno(err, ENOMEM, "write", path);
    if (parents && files_mkdir_parents(dir, err) < 0)
        return -1;
    _cleanup_close_ int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return init_error_errno(err, errno, "open", dir);

    /* Fail before reading anything when path cannot be replaced by a file. */
    if (!has_mode)
        mode = FILES_FILE_MODE;
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISDIR(st.st_mode))
            return init_error_errno(err, EISDIR, "write", path);
        if (!has_mode && S_ISREG(st.st_mode))
            mode = st.st_mode & 07777;
    } else if (errno != ENOENT) {
        return init_error_errno(err, errno, "stat", path);
    }

    _cleanup_(files_tmp_discard) files_tmp t = {.dirfd = dirfd, .fd = -1};
    if (files_tmp_open(&t, name, path, err) < 0)
        return -1;
    uint64_t size;
    if (files_copy(in_fd, t.fd, &size, "-", path, err) < 0)
        return -1;
    if (expect_size >= 0 && size != (uint64_t)expect_size)
        return init_error_set(err, "EIO", INIT_EXIT_FAILURE, "write", path,
                              "got %llu of the %lld bytes announced (--size): nothing written",
                              (unsigned long long)size, (long long)expect_size);
    /* fchmod, not the mode of open: the umask must not change what the caller asked for. */
    if (fchmod(t.fd, mode) < 0)
        return init_error_errno(err, errno, "chmod", path);
    if (fsync(t.fd) < 0)
        return init_error_errno(err, errno, "fsync", path);
    if (files_tmp_link(&t, name, path, err) < 0)
        return -1;
    if (renameat(dirfd, t.name, dirfd, name) < 0)
        return init_error_errno(err, errno, "rename", path);
    t.name[0] = '\0';   /* it is path now */
    (void)fsync(dirfd); /* the rename's durability; the file is in place either way */
    return files_write_report(out, dir, name, path, size, err);
}

int files_read(int out_fd, const char *path, init_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return init_error_errno(err, errno, "open", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return init_error_errno(err, errno, "stat", path);
    if (S_ISDIR(st.st_mode))
        return init_error_errno(err, EISDIR, "read", path);
    uint64_t size;
    return files_copy(fd, out_fd, &size, path, "-", err);
}

/* Empties the directory open at dirfd (which it takes), path naming it in errors: every
 * entry unlinked, every subdirectory emptied the same way and removed. */
static int files_remove_children(int dirfd, path_buf *pb, init_error *err)
{
    DIR *d = fdopendir(dirfd);
    if (!d) {
        int e = errno;
        close(dirfd);
        return init_error_errno(err, e, "opendir", pb->data);
    }
    int r = 0;
    /* Entries removed while readdir runs may make it skip others on some file systems: go
     * over the directory again until a pass finds nothing. */
    for (bool removed = true; removed && r == 0;) {
        removed = false;
        rewinddir(d);
        struct dirent *de;
        while (r == 0 && (errno = 0, de = readdir(d))) {
            const char *n = de->d_name;
            if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
                continue;
            size_t mark;
            if (path_buf_push(pb, n, &mark) < 0) {
                r = init_error_errno(err, errno, "remove", pb->data);
                break;
            }
            bool is_dir = de->d_type == DT_DIR;
            if (de->d_type == DT_UNKNOWN) {
                struct stat st;
                is_dir = fstatat(dirfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
            }
            if (is_dir) {
                int sub = openat(dirfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0 && errno != ENOENT)
                    r = init_error_errno(err, errno, "open", pb->data);
                else if (sub >= 0)
                    r = files_remove_children(sub, pb, err);
            }
            if (r == 0 && unlinkat(dirfd, n, is_dir ? AT_REMOVEDIR : 0) < 0 && errno != ENOENT)
                r = init_error_errno(err, errno, is_dir ? "rmdir" : "unlink", pb->data);
            path_buf_pop(pb, mark);
            removed = true;
        }
        if (r == 0 && errno != 0)
            r = init_error_errno(err, errno, "readdir", pb->data);
    }
    closedir(d);
    return r;
}

int files_remove(const char *path, bool recursive, init_error *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return init_error_errno(err, errno, "stat", path);
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) < 0)
            return init_error_errno(err, errno, "unlink", path);
        return 0;
    }
    if (recursive) {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return init_error_errno(err, errno, "open", path);
        path_buf pb;
        if (path_buf_init(&pb, path) < 0) {
            int e = errno;
            close(fd);
            return init_error_errno(err, e, "remove", path);
        }
        int r = files_remove_children(fd, &pb, err);
        path_buf_done(&pb);
        if (r < 0)
            return -1;
    }
    if (rmdir(path) < 0)
        return init_error_errno(err, errno, "rmdir", path);
    return 0;
}

int files_exists(const char *path, init_error *err)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return 1;
    if (errno == ENOENT || errno == ENOTDIR)
        return 0;
    return init_error_errno(err, errno, "stat", path);
}
