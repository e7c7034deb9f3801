/* Where a kubeconfig comes from and the secrets it reads: files read whole under a cap and
 * zeroed when their buffer is dropped, the kubeconfig file itself, the in-cluster service
 * account, the choice between them, and the token file re-read when it rotates. What the
 * document says is kubeconfig.c. */
#include "kubeconfig-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* A token file is re-read at least this often even when its stat looks unchanged: an
 * in-place rewrite of the same size within one mtime tick (a few ms on most file systems)
 * is otherwise invisible. client-go re-reads on the same period. */
#define KUBE_TOKEN_MAX_AGE_NS (60LL * 1000000000LL)
#define KUBE_SA_DIR           "/var/run/secrets/kubernetes.io/serviceaccount"

/* ---- files ------------------------------------------------------------------------------ */

/* A buffer that already holds data is never left behind unzeroed when it grows, since the
 * file may be a key. */
int kubeconfig_read_file(blob *ret, struct stat *ret_st, const char *path, size_t max,
                         moat_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return moat_error_set_errno(err, errno, "%s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return moat_error_set_errno(err, errno, "%s", path);
    if (!S_ISREG(st.st_mode))
        return moat_error_set(err, MOAT_E_INVALID, "%s: not a regular file", path);
    if ((uintmax_t)st.st_size > max)
        return moat_error_set(err, MOAT_E_NOMEM, "%s: larger than %zu bytes", path, max);

    _cleanup_blob_ blob b = {NULL, 0};
    size_t cap = (size_t)st.st_size; /* bytes of data room; one more for the NUL */
    b.data = malloc(cap + 1);
    if (!b.data)
        return moat_error_set(err, MOAT_E_NOMEM, "%s: out of memory", path);
    for (;;) {
        if (b.len == cap) {
            /* Full: the file grew since fstat (or /proc-style size 0). Room for one byte
             * past the cap shows whether the file is over it. */
            if (cap > max)
                return moat_error_set(err, MOAT_E_NOMEM, "%s: larger than %zu bytes", path, max);
            size_t ncap = cap < 2048 ? 4096 : cap * 2;
            if (ncap > max + 1)
                ncap = max + 1;
            unsigned char *n = malloc(ncap + 1);
            if (!n)
                return moat_error_set(err, MOAT_E_NOMEM, "%s: out of memory", path);
            memcpy(n, b.data, b.len);
            secret_free(b.data, cap + 1);
            b.data = n;
            cap = ncap;
        }
        ssize_t r = read(fd, b.data + b.len, cap - b.len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return moat_error_set_errno(err, errno, "%s", path);
        if (r == 0)
            break;
        b.len += (size_t)r;
    }
    if (b.len > max)
        return moat_error_set(err, MOAT_E_NOMEM, "%s: larger than %zu bytes", path, max);
    b.data[b.len] = '\0';
    if (ret_st)
        *ret_st = st;
    *ret = blob_take(&b);
    return 0;
}

char *kubeconfig_resolve_path(const char *base_dir, const char *path)
{
    if (path[0] == '/' || !base_dir || !*base_dir)
        return strdup(path);
    return kubeconfig_format("%s%s%s", base_dir, base_dir[strlen(base_dir) - 1] == '/' ? "" : "/",
                             path);
}

/* Not realpath(): the kubelet rotates a projected token by swapping a symlink, which must be
 * followed anew on every read. */
int kubeconfig_make_absolute(char **path)
{
    if ((*path)[0] == '/')
        return 0;
    _cleanup_free_ char *cwd = get_current_dir_name();
    char *r = cwd ? kubeconfig_format("%s/%s", cwd, *path) : NULL;
    if (!r)
        return -1;
    free(*path);
    *path = r;
    return 0;
}

/* ---- tokens ----------------------------------------------------------------------------- */

const char *kubeconfig_token_normalize(char *s, size_t *ret_len)
{
    size_t len = *ret_len;
    size_t start = 0, end = len;
    while (start < end && strchr(" \t\r\n", s[start]) && s[start])
        start++;
    while (end > start && strchr(" \t\r\n", s[end - 1]) && s[end - 1])
        end--;
    memmove(s, s + start, end - start);
    explicit_bzero(s + (end - start), len - (end - start));
    len = end - start;
    *ret_len = len;
    if (len == 0)
        return "no token in it";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return "the token has characters an HTTP header cannot carry";
    return NULL;
}

static int64_t elapsed_ns(const struct timespec *since, const struct timespec *now)
{
    return (int64_t)(now->tv_sec - since->tv_sec) * 1000000000LL + (now->tv_nsec - since->tv_nsec);
}

static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

int kube_config_token_refresh(kube_config *c, moat_error *err)
{
    struct timespec now;
    struct stat st;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (c->token && stat(c->token_file, &st) == 0 && same_file_state(&st, &c->token_st) &&
        elapsed_ns(&c->token_read_at, &now) < KUBE_TOKEN_MAX_AGE_NS)
        return 0;

    _cleanup_blob_ blob b = {NULL, 0};
    if (kubeconfig_read_file(&b, &st, c->token_file, KUBE_CREDENTIAL_MAX_BYTES, err) < 0)
        return -1;
    size_t len = b.len;
    const char *problem = kubeconfig_token_normalize((char *)b.data, &len);
    if (problem)
        return moat_error_set(err, MOAT_E_INVALID, "%s: %s", c->token_file, problem);
    secret_free_str(c->token);
    c->token = (char *)TAKE_PTR(b.data);
    c->token_st = st;
    c->token_read_at = now;
    return 0;
}

/* ---- where a config comes from ---------------------------------------------------------- */

int kube_config_load_file(kube_config **out, const char *path, const char *context, moat_error *err)
{
    _cleanup_blob_ blob text = {NULL, 0};
    if (kubeconfig_read_file(&text, NULL, path, KUBE_CONFIG_MAX_BYTES, err) < 0)
        return moat_error_prefix(err, "kubeconfig");

    _cleanup_free_ char *dir = NULL;
    const char *slash = strrchr(path, '/');
    if (slash) {
        dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
        if (!dir)
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    return kube_config_parse(out, (const char *)text.data, text.len, path, dir, context, err);
}

/* Moves src's error into dst (which may be NULL), keeping its code and errno. */
static int error_move(moat_error *dst, moat_error *src)
{
    if (dst) {
        moat_error_clear(dst);
        *dst = *src;
        *src = (moat_error)MOAT_ERROR_INIT;
    }
    return -1;
}

static int in_cluster(kube_config **out, const char *sa_dir, moat_error *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port)
        return moat_error_set(err, MOAT_E_INVALID,
                              "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
    if (kubeconfig_has_ctl_or_space(host, strlen(host)) || strpbrk(host, "/?#@"))
        return moat_error_set(err, MOAT_E_INVALID, "KUBERNETES_SERVICE_HOST \"%s\" is not a host",
                              host);
    size_t plen = strlen(port);
    if (plen > 5 || strspn(port, "0123456789") != plen || atoi(port) < 1 || atoi(port) > 65535)
        return moat_error_set(err, MOAT_E_INVALID, "KUBERNETES_SERVICE_PORT \"%s\" is not a port",
                              port);

    _cleanup_(kube_config_freep) kube_config *c = kube_config_new();
    if (!c)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    bool v6 = strchr(host, ':') && host[0] != '[';
    c->server = kubeconfig_format("https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (!c->server)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");

    const char *dir = sa_dir ? sa_dir : KUBE_SA_DIR;
    _cleanup_free_ char *ca_path = kubeconfig_format("%s/ca.crt", dir);
    _cleanup_free_ char *ns_path = kubeconfig_format("%s/namespace", dir);
    c->token_file = kubeconfig_format("%s/token", dir);
    if (!ca_path || !ns_path || !c->token_file)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (kubeconfig_read_file(&c->ca, NULL, ca_path, KUBE_CREDENTIAL_MAX_BYTES, err) < 0)
        return -1;
    if (c->ca.len == 0)
        return moat_error_set(err, MOAT_E_INVALID, "%s: file is empty", ca_path);
    if (kubeconfig_make_absolute(&c->token_file) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (kube_config_token_refresh(c, err) < 0)
        return -1;

    _cleanup_blob_ blob ns = {NULL, 0};
    _cleanup_error_ moat_error ns_err = MOAT_ERROR_INIT;
    if (kubeconfig_read_file(&ns, NULL, ns_path, 4096, &ns_err) < 0) {
        if (ns_err.errno_value != ENOENT)
            return error_move(err, &ns_err);
    } else {
        size_t len = ns.len;
        kubeconfig_token_normalize((char *)ns.data, &len);
        if (len > 0 &&
            (strlen((char *)ns.data) != len || !kubeconfig_namespace_valid((char *)ns.data)))
            return moat_error_set(err, MOAT_E_INVALID, "%s: not a valid namespace", ns_path);
        if (len > 0)
            c->namespace = (char *)TAKE_PTR(ns.data);
    }
    if (!c->namespace && !(c->namespace = strdup("default")))
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (!(c->context = strdup("in-cluster")))
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    *out = TAKE_PTR(c);
    return 0;
}

int kube_config_in_cluster(kube_config **out, const char *sa_dir, moat_error *err)
{
    if (in_cluster(out, sa_dir, err) < 0)
        return moat_error_prefix(err, "in-cluster config");
    return 0;
}

int kube_config_load_default(kube_config **out, const char *context, moat_error *err)
{
    const char *list = getenv("KUBECONFIG");
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, ":");
        if (n > 0) {
            _cleanup_free_ char *path = strndup(p, n);
            if (!path)
                return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            return kube_config_load_file(out, path, context, err);
        }
        p++;
    }
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    if (host && *host)
        return kube_config_in_cluster(out, NULL, err);
    const char *home = getenv("HOME");
    if (!home || !*home)
        return moat_error_set(err, MOAT_E_INVALID,
                              "kubeconfig: no $KUBECONFIG, no $HOME and not in a cluster");
    _cleanup_free_ char *path = kubeconfig_format("%s/.kube/config", home);
    if (!path)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    return kube_config_load_file(out, path, context, err);
}

/* ---- the token -------------------------------------------------------------------------- */

int kube_config_token(kube_config *c, char **ret_token, moat_error *err)
{
    char *t;
    if (!c->token_file) { /* a static token never changes: no lock needed */
        if (!c->token) {
            *ret_token = NULL;
            return 0;
        }
        t = strdup(c->token);
    } else {
        pthread_mutex_lock(&c->lock);
        int r = kube_config_token_refresh(c, err);
        t = r < 0 ? NULL : strdup(c->token);
        pthread_mutex_unlock(&c->lock);
        if (r < 0)
            return moat_error_prefix(err, "token file");
    }
    if (!t)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    *ret_token = t;
    return 0;
}
