/* The node installer's files and state: host paths under the host root, files written only
 * when their bytes or mode differ, and the manifest and backups that make every change
 * undoable, and the restarts owed (install-internal.h). */
#include "install-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libmoat/strbuf.h"
#include "libmoat/textfile.h"

#define MANIFEST_MAX ((size_t)1 << 20)

/* ---- report ---- */

void install_report_add(iso_install_report *rep, const char *fmt, ...)
{
    if (!rep)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    int r = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    char **n = realloc(rep->lines, (rep->n + 1) * sizeof(*n));
    if (!n) {
        free(line);
        return;
    }
    rep->lines = n;
    rep->lines[rep->n++] = line;
}

void iso_install_report_clear(iso_install_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->lines[i]);
    free(r->lines);
    *r = (iso_install_report){0};
}

/* ---- files ---- */

static char *path_join(const char *root, const char *path)
{
    char *p;
    size_t rl = strlen(root);
    while (rl > 0 && root[rl - 1] == '/')
        rl--;
    return asprintf(&p, "%.*s%s%s", (int)rl, root, path[0] == '/' ? "" : "/", path) < 0 ? NULL : p;
}

/* Creates the missing parents of path; when created is given, each directory made is passed
 * to it (outermost first). */
static int mkdir_parents(const char *path, void (*created)(void *, const char *), void *user,
                         moat_error *err)
{
    _cleanup_free_ char *p = strdup(path);
    if (!p)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0755) == 0) {
            if (created)
                created(user, p);
        } else if (errno != EEXIST) {
            return moat_error_set_errno(err, errno, "mkdir %s", p);
        }
        *s = '/';
    }
    return 0;
}

int install_read_file(char **ret, size_t *ret_len, bool *ret_exists, const char *path, size_t max,
                      moat_error *err)
{
    moat_error e = MOAT_ERROR_INIT;
    if (moat_read_text(ret, ret_len, path, max, &e) == 0) {
        *ret_exists = true;
        return 0;
    }
    if (e.code == MOAT_E_IO && e.errno_value == ENOENT) {
        moat_error_clear(&e);
        *ret = NULL;
        *ret_len = 0;
        *ret_exists = false;
        return 0;
    }
    if (err) {
        moat_error_clear(err);
        *err = e;
    } else {
        moat_error_clear(&e);
    }
    return -1;
}

int iso_install_file_put(const char *path, const char *data, size_t len, unsigned mode,
                         bool *changed, moat_error *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == len) {
        _cleanup_free_ char *cur = NULL;
        size_t cur_len;
        bool exists;
        if (install_read_file(&cur, &cur_len, &exists, path, len, NULL) == 0 && exists &&
            cur_len == len && memcmp(cur, data, len) == 0) {
            if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0)
                return moat_error_set_errno(err, errno, "chmod %s", path);
            *changed = (st.st_mode & 07777) != mode;
            return 0;
        }
    }
    if (mkdir_parents(path, NULL, NULL, err) < 0)
        return -1;
    _cleanup_free_ char *tmp = NULL;
    if (asprintf(&tmp, "%s.moat-tmp", path) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return moat_error_set_errno(err, errno, "open %s", tmp);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            unlink(tmp);
            return moat_error_set_errno(err, e, "write %s", tmp);
        }
        off += (size_t)w;
    }
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
        int e = errno;
        unlink(tmp);
        return moat_error_set_errno(err, e, "fsync %s", tmp);
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return moat_error_set_errno(err, e, "rename %s", path);
    }
    *changed = true;
    return 0;
}

/* ---- the state: manifest and backups (install-internal.h) ---- */

void install_ctx_clear(install_ctx *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->entries[i]);
    free(c->entries);
    free(c->state);
}

char *install_host(const install_ctx *c, const char *hostpath)
{
    return path_join(c->o->host_root, hostpath);
}

char *install_backup_path(const install_ctx *c, const char *hostpath)
{
    _cleanup_free_ char *flat = strdup(hostpath);
    if (!flat)
        return NULL;
    for (char *p = flat; *p; p++)
        if (*p == '/')
            *p = '%';
    char *b;
    return asprintf(&b, "%s/backup/%s", c->state, flat) < 0 ? NULL : b;
}

static bool ctx_has(const install_ctx *c, const char *entry)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->entries[i], entry) == 0)
            return true;
    return false;
}

static int ctx_load(install_ctx *c, moat_error *err)
{
    _cleanup_free_ char *path = NULL, *text = NULL;
    if (asprintf(&path, "%s/manifest", c->state) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    size_t len;
    bool exists;
    if (install_read_file(&text, &len, &exists, path, MANIFEST_MAX, err) < 0)
        return -1;
    if (!exists)
        return 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if ((l[0] != 'f' && l[0] != 'd') || l[1] != ' ' || l[2] != '/')
            return moat_error_set(err, MOAT_E_INVALID, "%s: bad line \"%s\"", path, l);
        char **n = realloc(c->entries, (c->n + 1) * sizeof(*n));
        if (!n || !(n[c->n] = strdup(l))) {
            if (n)
                c->entries = n;
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        }
        c->entries = n;
        c->n++;
    }
    return 0;
}

static int ctx_save(install_ctx *c, moat_error *err)
{
    moat_strbuf b = {0};
    for (size_t i = 0; i < c->n; i++)
        moat_strbuf_appendf(&b, "%s\n", c->entries[i]);
    bool trunc = b.truncated;
    _cleanup_free_ char *text = moat_strbuf_take(&b);
    _cleanup_free_ char *path = NULL;
    if (!text || trunc || asprintf(&path, "%s/manifest", c->state) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    bool changed;
    return iso_install_file_put(path, text, strlen(text), 0600, &changed, err);
}

static int ctx_record(install_ctx *c, char kind, const char *hostpath, bool save, moat_error *err)
{
    _cleanup_free_ char *e = NULL;
    if (asprintf(&e, "%c %s", kind, hostpath) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (ctx_has(c, e))
        return 0;
    char **n = realloc(c->entries, (c->n + 1) * sizeof(*n));
    if (!n)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    c->entries = n;
    c->entries[c->n++] = TAKE_PTR(e);
    return save ? ctx_save(c, err) : 0;
}

typedef struct {
    install_ctx *c;
    size_t root_len;
    int failed;
} dir_rec;

static void dir_created(void *user, const char *path)
{
    dir_rec *d = user;
    moat_error e = MOAT_ERROR_INIT;
    /* The host path of the directory: drop the host root. */
    const char *hp = path + d->root_len;
    if (*hp != '/' || ctx_record(d->c, 'd', hp, false, &e) < 0)
        d->failed = 1;
    moat_error_clear(&e);
}

static size_t root_len(const char *root)
{
    size_t rl = strlen(root);
    while (rl > 0 && root[rl - 1] == '/')
        rl--;
    return rl;
}

/* Writes a host file the installer manages: its first original kept, its path and the
 * directories made for it recorded before it is written. */
int install_put_tracked(install_ctx *c, const char *hostpath, const char *data, size_t len,
                        unsigned mode, bool *ret_changed, moat_error *err)
{
    _cleanup_free_ char *path = install_host(c, hostpath);
    _cleanup_free_ char *entry = NULL;
    if (!path || asprintf(&entry, "f %s", hostpath) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    _cleanup_free_ char *cur = NULL;
    size_t cur_len;
    bool exists;
    if (install_read_file(&cur, &cur_len, &exists, path, len + 1, NULL) == 0 && exists &&
        cur_len == len && memcmp(cur, data, len) == 0) {
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 07777) == mode) {
            *ret_changed = false;
            return 0;
        }
    }
    if (!ctx_has(c, entry)) {
        struct stat st;
        if (lstat(path, &st) == 0) {
            /* The first change to a file that was there: keep what it was. */
            _cleanup_free_ char *orig = NULL, *bp = install_backup_path(c, hostpath);
            size_t orig_len;
            if (!bp)
                return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            if (install_read_file(&orig, &orig_len, &exists, path, BUNDLE_MAX, err) < 0)
                return moat_error_prefix(err, "backing up");
            bool ch;
            if (iso_install_file_put(bp, orig ? orig : "", orig_len, st.st_mode & 07777, &ch, err) <
                0)
                return moat_error_prefix(err, "backing up %s", hostpath);
        } else {
            dir_rec d = {c, root_len(c->o->host_root), 0};
            if (mkdir_parents(path, dir_created, &d, err) < 0)
                return -1;
            if (d.failed)
                return moat_error_set(err, MOAT_E_IO, "recording the directories of %s", hostpath);
        }
        if (ctx_record(c, 'f', hostpath, true, err) < 0)
            return -1;
    }
    if (iso_install_file_put(path, data, len, mode, ret_changed, err) < 0)
        return -1;
    if (*ret_changed)
        install_report_add(c->rep, "wrote %s", hostpath);
    return 0;
}

int install_ctx_open(install_ctx *c, const iso_install_options *o, iso_install_report *rep,
                     moat_error *err)
{
    *c = (install_ctx){.o = o, .rep = rep};
    if (!(c->state = path_join(o->host_root, o->state_dir)))
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    return ctx_load(c, err);
}

/* Records the state directory itself (and parents it needs) before anything else. */
int install_ctx_prepare(install_ctx *c, moat_error *err)
{
    _cleanup_free_ char *probe = NULL;
    if (asprintf(&probe, "%s/backup/x", c->state) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    dir_rec d = {c, root_len(c->o->host_root), 0};
    if (mkdir_parents(probe, dir_created, &d, err) < 0)
        return -1;
    if (d.failed)
        return moat_error_set(err, MOAT_E_IO, "recording %s", c->o->state_dir);
    return ctx_save(c, err);
}

/* ---- restarts owed ---- */

/* <state>/pending-<service>: a restart that is owed. Written before the restart and removed
 * after it, so a run that failed between changing a file and restarting its reader restarts
 * it next time although the file no longer changes. */
char *install_pending_path(const install_ctx *c, const char *name)
{
    char *p;
    return asprintf(&p, "%s/pending-%s", c->state, name) < 0 ? NULL : p;
}

bool install_pending(const install_ctx *c, const char *name)
{
    _cleanup_free_ char *p = install_pending_path(c, name);
    return p && access(p, F_OK) == 0;
}

int install_restart(install_ctx *c, const iso_service_ops *svc, const char *name, moat_error *err)
{
    _cleanup_free_ char *mark = install_pending_path(c, name);
    bool ch;
    if (!mark || iso_install_file_put(mark, "", 0, 0600, &ch, err) < 0)
        return moat_error_prefix(err, "marking a restart of %s", name);
    if (svc->restart(svc->impl, name, err) < 0)
        return moat_error_prefix(err, "restarting %s", name);
    unlink(mark);
    install_report_add(c->rep, "restarted %s", name);
    if (c->rep)
        c->rep->restarts++;
    return 0;
}

int install_restart_containerd(install_ctx *c, const iso_service_ops *svc,
                               const iso_install_checks *chk, moat_error *err)
{
    if (install_restart(c, svc, c->o->containerd_service, err) < 0)
        return -1;
    _cleanup_free_ char *sock = install_host(c, c->o->containerd_socket), *runtime = NULL;
    if (!sock)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (chk->cri_version(chk->impl, sock, c->o->cri_timeout_ms, &runtime, err) < 0)
        return moat_error_prefix(err, "containerd does not answer after its restart");
    return 0;
}
