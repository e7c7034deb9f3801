/* Where the API server is and how to authenticate to it: a kubeconfig file, or the
 * in-cluster service account.
 *
 * Only what the selected context needs is read: its cluster (server, CA, TLS options)
 * and its user (client certificate and key, or a bearer token). Credentials that run
 * code or talk to a third party (exec, auth-provider) and basic auth are refused with an
 * error naming the key, as is anything else that is malformed, so a config is either
 * used as written or not at all. Every error message names the file and the key path,
 * e.g. "kubeconfig /x: clusters[local].cluster.server: missing".
 *
 * Certificates, keys and tokens are held in memory only and zeroed before they are freed. */
#ifndef MOAT_KUBECONFIG_H
#define MOAT_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* The largest kubeconfig text accepted, from a file or from memory. */
#define KUBE_CONFIG_MAX_BYTES (4 * 1024 * 1024)

typedef struct kube_config kube_config; /* opaque */

/* Parses kubeconfig YAML text. `origin` names it in errors (the file path); relative file
 * paths in it resolve against `base_dir` (NULL = current dir). `context` selects a context;
 * NULL uses current-context. Files the selected context refers to (CA, client certificate
 * and key, token file) are read now. Returns 0 and *out (free with kube_config_free), or -1
 * with MOAT_E_INVALID (malformed or unsupported), MOAT_E_NOTFOUND (the context, or a
 * cluster or user it names, does not exist), MOAT_E_IO (a referenced file cannot be read)
 * or MOAT_E_NOMEM (out of memory, or text or a file over its cap). */
int kube_config_parse(kube_config **out, const char *text, size_t len, const char *origin,
                      const char *base_dir, const char *context, moat_error *err);

/* Reads and parses a kubeconfig file; relative paths in it resolve against its directory.
 * Returns as kube_config_parse, or -1 with MOAT_E_IO when the file cannot be read. */
int kube_config_load_file(kube_config **out, const char *path, const char *context,
                          moat_error *err);

/* In-cluster: token file, CA file and namespace file from `sa_dir` (NULL =
 * /var/run/secrets/kubernetes.io/serviceaccount), server from
 * $KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT (IPv6 hosts bracketed). The token and CA
 * must exist; a missing namespace file means "default". Returns 0 and *out, or -1 with
 * MOAT_E_INVALID (variables unset or malformed) or MOAT_E_IO (a file cannot be read). */
int kube_config_in_cluster(kube_config **out, const char *sa_dir, moat_error *err);

/* $KUBECONFIG (first file of a colon-separated list), else in-cluster when
 * $KUBERNETES_SERVICE_HOST is set (`context` is then ignored), else ~/.kube/config.
 * Returns as the loader it picked. */
int kube_config_load_default(kube_config **out, const char *context, moat_error *err);

/* "https://host:port" (and any path the config gives), no trailing slash. */
const char *kube_config_server(const kube_config *c);
/* The context's namespace, "default" if unset. */
const char *kube_config_namespace(const kube_config *c);
/* The context's name ("in-cluster" for in-cluster). */
const char *kube_config_context(const kube_config *c);
/* The name to verify the server's certificate against instead of the host, or NULL. */
const char *kube_config_tls_server_name(const kube_config *c);

/* PEM bytes held in memory (inline data base64-decoded, or a file's contents read at load);
 * NULL when absent. Never written to disk. The bytes belong to c and are followed by a NUL
 * that *ret_len does not count. */
const unsigned char *kube_config_ca(const kube_config *c, size_t *ret_len);
const unsigned char *kube_config_client_cert(const kube_config *c, size_t *ret_len);
const unsigned char *kube_config_client_key(const kube_config *c, size_t *ret_len);

/* insecure-skip-tls-verify: the server's certificate is not to be verified. */
bool kube_config_insecure(const kube_config *c);

/* The bearer token: a static `token`, or the current contents of `tokenFile` (and the
 * in-cluster token file), re-read whenever the file's mtime/size/inode changes (and at
 * least once a minute), so a rotated service-account token is picked up. Thread-safe.
 * Returns 0 and *ret_token (caller frees, ideally after explicit_bzero; NULL when the
 * config has no token), or -1 if the token file cannot be read (MOAT_E_IO) or holds no
 * usable token (MOAT_E_INVALID). */
int kube_config_token(kube_config *c, char **ret_token, moat_error *err);

/* Zeroes the credentials and frees c; accepts NULL. */
void kube_config_free(kube_config *c);

#endif
