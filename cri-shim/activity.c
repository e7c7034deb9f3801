#include "activity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libmoat/activity.h"
#include "libmoat/macro.h"

struct shim_activity {
    int dir_fd; /* every file is opened relative to it: the directory is fixed at start */
    char *dir;
};

int shim_activity_new(shim_activity **out, const char *dir, moat_error *err)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return moat_error_set_errno(err, errno, "creating the activity directory %s", dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return moat_error_set_errno(err, errno, "opening the activity directory %s", dir);
    shim_activity *a = calloc(1, sizeof(*a));
    if (!a || !(a->dir = strdup(dir))) {
        free(a);
        close(fd);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    a->dir_fd = fd;
    *out = a;
    return 0;
}

int shim_activity_touch(shim_activity *a, const char *id, moat_error *err)
{
    if (!moat_activity_id_valid(id))
        return moat_error_set(err, MOAT_E_INVALID, "activity: \"%.64s\" is not an ID",
                              id ? id : "");
    int fd = openat(a->dir_fd, id, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
    if (fd < 0)
        return moat_error_set_errno(err, errno, "activity: creating %s/%s", a->dir, id);
    int r = futimens(fd, NULL); /* both times: now */
    int e = errno;
    close(fd);
    if (r < 0)
        return moat_error_set_errno(err, e, "activity: touching %s/%s", a->dir, id);
    return 0;
}

int shim_activity_forget(shim_activity *a, const char *id, moat_error *err)
{
    if (!moat_activity_id_valid(id))
        return moat_error_set(err, MOAT_E_INVALID, "activity: \"%.64s\" is not an ID",
                              id ? id : "");
    if (unlinkat(a->dir_fd, id, 0) < 0 && errno != ENOENT)
        return moat_error_set_errno(err, errno, "activity: removing %s/%s", a->dir, id);
    return 0;
}

void shim_activity_free(shim_activity *a)
{
    if (!a)
        return;
    close(a->dir_fd);
    free(a->dir);
    free(a);
}
