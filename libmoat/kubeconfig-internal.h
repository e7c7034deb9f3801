/* Shared between the files of the kubeconfig module (kubeconfig.c: the kubeconfig document
 * and the object's accessors; kubeconfig-source.c: where a config comes from, the files it
 * reads and the token file); not part of its contract. */
#ifndef MOAT_KUBECONFIG_INTERNAL_H
#define MOAT_KUBECONFIG_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kubeconfig.h"
#include "macro.h"

/* A CA bundle, client certificate, key or token file. A full public CA bundle is ~250 KiB. */
#define KUBE_CREDENTIAL_MAX_BYTES (1024 * 1024)

typedef struct {
    unsigned char *data; /* followed by a NUL that len does not count */
    size_t len;
} blob;

struct kube_config {
    char *server;
    char *namespace;
    char *context;
    char *tls_server_name;
    blob ca, cert, key;
    bool insecure;

    char *token_file; /* absolute, so a later chdir() does not lose it; NULL for none */
    pthread_mutex_t lock;
    /* The static token (immutable), or the token file's contents as last read (under lock). */
    char *token;
    struct stat token_st;
    struct timespec token_read_at; /* CLOCK_MONOTONIC */
};

/* ---- secrets: zeroed before they are freed ---------------------------------------------- */

static inline void secret_free(void *p, size_t size)
{
    if (!p)
        return;
    explicit_bzero(p, size);
    free(p);
}

static inline void secret_free_str(char *s)
{
    if (s)
        secret_free(s, strlen(s));
}

static inline void secret_freep(char **s)
{
    secret_free_str(*s);
}
#define _cleanup_secret_ _cleanup_(secret_freep)

static inline void blob_clear(blob *b)
{
    if (b->data)
        secret_free(b->data, b->len + 1);
    b->data = NULL;
    b->len = 0;
}
#define _cleanup_blob_ _cleanup_(blob_clear)

/* *b handed out, *b left empty (TAKE_PTR for a blob). */
static inline blob blob_take(blob *b)
{
    blob r = *b;
    *b = (blob){NULL, 0};
    return r;
}

/* ---- the object (kubeconfig.c) ---------------------------------------------------------- */

/* An empty config with its lock initialized, or NULL when out of memory. */
kube_config *kube_config_new(void);

static inline void kube_config_freep(kube_config **c)
{
    kube_config_free(*c);
}

/* asprintf() that returns the string, or NULL (asprintf leaves its pointer undefined then). */
_printf_(1, 2) char *kubeconfig_format(const char *fmt, ...);

/* Bytes outside printable ASCII, or a space: not allowed in a name, URL or header value. */
bool kubeconfig_has_ctl_or_space(const char *s, size_t len);

/* A DNS-1123 label, as the API server requires of a namespace: it goes into URL paths. */
bool kubeconfig_namespace_valid(const char *s);

/* ---- files and tokens (kubeconfig-source.c) --------------------------------------------- */

/* Reads the regular file at `path`, at most `max` bytes, into a NUL-terminated blob; *ret_st
 * (may be NULL) receives its stat. Returns 0, or -1 with MOAT_E_IO, MOAT_E_INVALID (not a
 * regular file) or MOAT_E_NOMEM (over max, or out of memory); errors start with the path. */
int kubeconfig_read_file(blob *ret, struct stat *ret_st, const char *path, size_t max,
                         moat_error *err);

/* `path` as written in the config, resolved against base_dir when relative; the caller
 * frees it. NULL when out of memory. */
char *kubeconfig_resolve_path(const char *base_dir, const char *path);

/* Makes *path absolute against the current directory; -1 when out of memory. */
int kubeconfig_make_absolute(char **path);

/* Trims surrounding whitespace of the *ret_len bytes at s in place (zeroing what it moves
 * away from) and checks that what is left can go into an Authorization header. Returns NULL,
 * or what is wrong; *ret_len is the trimmed length either way. */
const char *kubeconfig_token_normalize(char *s, size_t *ret_len);

/* Re-reads c->token_file into c->token when the file changed or the copy is old. Called
 * with c->lock held, or before c is shared. Errors start with the path. */
int kube_config_token_refresh(kube_config *c, moat_error *err);

#endif
