/* The kubeconfig document: walking the YAML of the selected context to its cluster and
 * user, inline base64 credentials, and the loaded config's accessors and destructor. Where
 * the text, the referenced files and the token file come from is kubeconfig-source.c. */
#include "kubeconfig-internal.h"
#include "textfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define KUBE_NAMESPACE_MAX 63

/* ---- helpers kubeconfig-source.c shares ------------------------------------------------- */

bool kubeconfig_has_ctl_or_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return true;
    return false;
}

char *kubeconfig_format(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

/* ---- base64 ----------------------------------------------------------------------------- */

static int base64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Strict standard base64 (RFC 4648 section 4): the alphabet with '+' and '/', padding
 * required, no data after it, no bits set past the end of the data. ASCII whitespace is
 * skipped anywhere, since the value may be folded over lines. Returns 0 and a
 * NUL-terminated *ret, or -1 with errno EINVAL (malformed) or ENOMEM.
 *
 * Not OpenSSL's decoder (libmoat does not link libcrypto; only the operator does), because
 * OpenSSL 3 accepts what this one refuses. EVP_DecodeUpdate ignores bits set past the
 * end of the data ("YR==" gives "a") and takes a '-' for the start of a PEM footer, dropping
 * what follows ("YWJj-!!!" gives "abc"); EVP_DecodeBlock checks no padding ("Y===" and
 * "YQ==YQ==" pass) and skips no whitespace inside the text. Its context also keeps up to 80
 * bytes of the input, here a private key, and EVP_ENCODE_CTX_free does not zero them. */
static int base64_decode(blob *ret, const char *in, size_t len)
{
    size_t size = len / 4 * 3 + 4;
    _cleanup_blob_ blob b = {malloc(size), 0};
    if (!b.data) {
        errno = ENOMEM;
        return -1;
    }
    uint32_t acc = 0;
    int q = 0; /* characters of the current quantum seen, padding included */
    bool pad = false, done = false;
    unsigned char *out = b.data;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
            continue;
        if (done)
            goto bad;
        if (ch == '=') {
            if (q == 2 && !pad) { /* "xx=": one more '=' must follow */
                pad = true;
                q = 3;
            } else if (q == 3 && pad) { /* "xx==": 12 bits, one byte */
                if (acc & 0xf)
                    goto bad;
                *out++ = (unsigned char)(acc >> 4);
                done = true;
            } else if (q == 3) { /* "xxx=": 18 bits, two bytes */
                if (acc & 0x3)
                    goto bad;
                *out++ = (unsigned char)(acc >> 10);
                *out++ = (unsigned char)(acc >> 2);
                done = true;
            } else {
                goto bad;
            }
            continue;
        }
        int v = base64_value(ch);
        if (v < 0 || pad)
            goto bad;
        acc = acc << 6 | (uint32_t)v;
        if (++q == 4) {
            *out++ = (unsigned char)(acc >> 16);
            *out++ = (unsigned char)(acc >> 8);
            *out++ = (unsigned char)acc;
            q = 0;
            acc = 0;
        }
    }
    if (q != 0 && !done)
        goto bad;
    *out = '\0';
    b.len = (size_t)(out - b.data);
    explicit_bzero(&acc, sizeof(acc));
    *ret = blob_take(&b);
    return 0;
bad:
    explicit_bzero(&acc, sizeof(acc));
    b.len = size - 1; /* blob_clear zeroes len + 1 bytes: all of them */
    errno = EINVAL;
    return -1;
}

/* Walks the selected context through a loaded document. Every mapping key looked at costs
 * one step: aliases let a small text make the same large mapping appear in many places, and
 * the budget keeps that from turning into minutes of lookups. */
#define KUBE_CONFIG_MAX_STEPS (16 * 1024 * 1024)

typedef struct {
    yaml_document_t *doc;
    size_t steps;
} walk;

/* ---- YAML access ------------------------------------------------------------------------ */

static const char *dot(const char *path)
{
    return *path ? "." : "";
}

static bool scalar_eq(const yaml_node_t *n, const char *s, size_t len)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.length == len &&
           memcmp(n->data.scalar.value, s, len) == 0;
}

/* Finds `key` in the mapping `map` (NULL = empty) found at `path`; *ret is NULL when the key is
 * absent or null. A key given twice is an error: which one wins would be a guess. When
 * `type` is not YAML_NO_NODE, a present value must be of that type. */
static int map_get(yaml_node_t **ret, walk *w, const yaml_node_t *map, const char *path,
                   const char *key, yaml_node_type_t type, moat_error *err)
{
    yaml_node_t *found = NULL;
    bool seen = false;
    size_t klen = strlen(key);
    if (map)
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
             p++) {
            if (++w->steps > KUBE_CONFIG_MAX_STEPS)
                return moat_error_set(err, MOAT_E_NOMEM,
                                      "too complex: more than %d mapping keys looked at",
                                      KUBE_CONFIG_MAX_STEPS);
            yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
            if (!k || !scalar_eq(k, key, klen))
                continue;
            if (seen)
                return moat_error_set(err, MOAT_E_INVALID, "%s%s%s: duplicate key", path, dot(path),
                                      key);
            seen = true;
            found = yaml_document_get_node(w->doc, p->value);
        }
    if (moat_yaml_is_null(found))
        found = NULL;
    if (found && type != YAML_NO_NODE && found->type != type)
        return moat_error_set(err, MOAT_E_INVALID, "%s%s%s: expected %s", path, dot(path), key,
                              moat_yaml_type_name(&(yaml_node_t){.type = type}));
    *ret = found;
    return 0;
}

/* The string value of `key`, or NULL when absent or null. The value is used as a C string,
 * so a NUL inside (possible with "\0" in double quotes) is refused. */
static int map_get_str(char **ret, walk *w, const yaml_node_t *map, const char *path,
                       const char *key, moat_error *err)
{
    yaml_node_t *n;
    if (map_get(&n, w, map, path, key, YAML_SCALAR_NODE, err) < 0)
        return -1;
    if (!n) {
        *ret = NULL;
        return 0;
    }
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (memchr(v, '\0', len))
        return moat_error_set(err, MOAT_E_INVALID, "%s%s%s: contains a NUL byte", path, dot(path),
                              key);
    char *s = strndup(v, len);
    if (!s)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    *ret = s;
    return 0;
}

/* A boolean, false when absent. YAML 1.1 spellings too, as the Go decoder kubectl uses
 * accepts them. */
static int map_get_bool(bool *ret, walk *w, const yaml_node_t *map, const char *path,
                        const char *key, moat_error *err)
{
    static const struct {
        const char *word;
        bool value;
    } words[] = {
        {"true", true},   {"True", true},   {"TRUE", true}, {"yes", true}, {"Yes", true},
        {"YES", true},    {"on", true},     {"On", true},   {"ON", true},  {"false", false},
        {"False", false}, {"FALSE", false}, {"no", false},  {"No", false}, {"NO", false},
        {"off", false},   {"Off", false},   {"OFF", false},
    };
    yaml_node_t *n;
    if (map_get(&n, w, map, path, key, YAML_SCALAR_NODE, err) < 0)
        return -1;
    if (!n) {
        *ret = false;
        return 0;
    }
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
            if (scalar_eq(n, words[i].word, strlen(words[i].word))) {
                *ret = words[i].value;
                return 0;
            }
    return moat_error_set(err, MOAT_E_INVALID, "%s%s%s: expected true or false", path, dot(path),
                          key);
}

/* Checks the top-level list `list` (contexts, clusters, users): a sequence of mappings that
 * each have a name. *ret is the sequence, or NULL when absent. */
static int check_list(yaml_node_t **ret, walk *w, const yaml_node_t *root, const char *list,
                      moat_error *err)
{
    yaml_node_t *seq;
    if (map_get(&seq, w, root, "", list, YAML_SEQUENCE_NODE, err) < 0)
        return -1;
    if (seq)
        for (yaml_node_item_t *it = seq->data.sequence.items.start;
             it < seq->data.sequence.items.top; it++) {
            size_t i = (size_t)(it - seq->data.sequence.items.start);
            yaml_node_t *e = yaml_document_get_node(w->doc, *it);
            if (!e || e->type != YAML_MAPPING_NODE)
                return moat_error_set(err, MOAT_E_INVALID, "%s[%zu]: expected a mapping", list, i);
            _cleanup_free_ char *path = kubeconfig_format("%s[%zu]", list, i);
            if (!path)
                return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            _cleanup_free_ char *name = NULL;
            if (map_get_str(&name, w, e, path, "name", err) < 0)
                return -1;
            if (!name || !*name)
                return moat_error_set(err, MOAT_E_INVALID, "%s.name: missing", path);
        }
    *ret = seq;
    return 0;
}

/* Finds the entry called `name` in a list checked by check_list() and returns its `body`
 * mapping ("context", "cluster", "user"). Returns 1 and *ret_body, 0 when there is no such
 * entry, or -1. */
static int find_entry(yaml_node_t **ret_body, walk *w, const yaml_node_t *seq, const char *list,
                      const char *name, const char *body, moat_error *err)
{
    yaml_node_t *found = NULL;
    size_t len = strlen(name);
    if (seq)
        for (yaml_node_item_t *it = seq->data.sequence.items.start;
             it < seq->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(w->doc, *it), *n;
            if (map_get(&n, w, e, list, "name", YAML_SCALAR_NODE, err) < 0) /* the budget */
                return -1;
            if (!n || !scalar_eq(n, name, len))
                continue;
            if (found)
                return moat_error_set(err, MOAT_E_INVALID, "%s[%s]: duplicate name", list, name);
            found = e;
        }
    if (!found)
        return 0;
    _cleanup_free_ char *path = kubeconfig_format("%s[%s]", list, name);
    if (!path)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    yaml_node_t *b;
    if (map_get(&b, w, found, path, body, YAML_MAPPING_NODE, err) < 0)
        return -1;
    if (!b)
        return moat_error_set(err, MOAT_E_INVALID, "%s.%s: missing", path, body);
    *ret_body = b;
    return 1;
}

/* ---- the selected context --------------------------------------------------------------- */

/* A credential given as a path (`file_key`) or inline as base64 (`data_key`), not both.
 * *ret stays empty when neither is set. */
static int load_pem(blob *ret, walk *w, const yaml_node_t *map, const char *path,
                    const char *file_key, const char *data_key, const char *base_dir,
                    moat_error *err)
{
    _cleanup_free_ char *file = NULL;
    yaml_node_t *data;
    if (map_get_str(&file, w, map, path, file_key, err) < 0 ||
        map_get(&data, w, map, path, data_key, YAML_SCALAR_NODE, err) < 0)
        return -1;
    if (file && *file && data)
        return moat_error_set(err, MOAT_E_INVALID, "%s: %s and %s are both set", path, file_key,
                              data_key);

    _cleanup_blob_ blob b = {NULL, 0};
    if (data) {
        if (base64_decode(&b, (const char *)data->data.scalar.value, data->data.scalar.length) < 0)
            return errno == ENOMEM ? moat_error_set(err, MOAT_E_NOMEM, "out of memory")
                                   : moat_error_set(err, MOAT_E_INVALID, "%s.%s: invalid base64",
                                                    path, data_key);
        if (b.len == 0) /* "" decodes to nothing: as if unset, like Go's empty []byte */
            blob_clear(&b);
    } else if (file && *file) {
        _cleanup_free_ char *full = kubeconfig_resolve_path(base_dir, file);
        if (!full)
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        if (kubeconfig_read_file(&b, NULL, full, KUBE_CREDENTIAL_MAX_BYTES, err) < 0)
            return moat_error_prefix(err, "%s.%s", path, file_key);
        if (b.len == 0)
            return moat_error_set(err, MOAT_E_INVALID, "%s.%s: %s: file is empty", path, file_key,
                                  full);
    }
    *ret = blob_take(&b);
    return 0;
}

/* Checks a server URL and strips its trailing slashes; returns NULL or what is wrong. */
static const char *server_normalize(char *s)
{
    size_t scheme;
    if (strncasecmp(s, "https://", 8) == 0)
        scheme = 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        scheme = 7;
    else
        return "must start with https:// or http://";
    if (kubeconfig_has_ctl_or_space(s, strlen(s)))
        return "contains whitespace or control characters";
    size_t len = strlen(s);
    while (len > scheme && s[len - 1] == '/')
        s[--len] = '\0';
    if (len == scheme || strchr("/?#", s[scheme]))
        return "has no host";
    return NULL;
}

bool kubeconfig_namespace_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > KUBE_NAMESPACE_MAX || s[0] == '-' || s[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static int parse_cluster(kube_config *c, walk *w, const yaml_node_t *m, const char *path,
                         const char *base_dir, moat_error *err)
{
    yaml_node_t *proxy;
    if (map_get(&proxy, w, m, path, "proxy-url", YAML_NO_NODE, err) < 0)
        return -1;
    if (proxy)
        return moat_error_set(err, MOAT_E_INVALID, "%s.proxy-url: proxies are not supported", path);

    _cleanup_free_ char *server = NULL;
    if (map_get_str(&server, w, m, path, "server", err) < 0)
        return -1;
    if (!server || !*server)
        return moat_error_set(err, MOAT_E_INVALID, "%s.server: missing", path);
    const char *problem = server_normalize(server);
    if (problem)
        return moat_error_set(err, MOAT_E_INVALID, "%s.server: \"%s\" %s", path, server, problem);

    _cleanup_free_ char *sni = NULL;
    if (map_get_str(&sni, w, m, path, "tls-server-name", err) < 0)
        return -1;
    if (sni && kubeconfig_has_ctl_or_space(sni, strlen(sni)))
        return moat_error_set(err, MOAT_E_INVALID,
                              "%s.tls-server-name: contains whitespace or control characters",
                              path);
    if (sni && !*sni) {
        free(sni);
        sni = NULL;
    }

    if (map_get_bool(&c->insecure, w, m, path, "insecure-skip-tls-verify", err) < 0 ||
        load_pem(&c->ca, w, m, path, "certificate-authority", "certificate-authority-data",
                 base_dir, err) < 0)
        return -1;
    /* client-go refuses this too: which of the two was meant is a guess. */
    if (c->insecure && c->ca.data)
        return moat_error_set(err, MOAT_E_INVALID,
                              "%s: insecure-skip-tls-verify together with a certificate authority",
                              path);
    c->server = TAKE_PTR(server);
    c->tls_server_name = TAKE_PTR(sni);
    return 0;
}

static int parse_user(kube_config *c, walk *w, const yaml_node_t *m, const char *path,
                      const char *base_dir, moat_error *err)
{
    static const struct {
        const char *key, *why;
    } unsupported[] = {
        {"exec", "exec credential plugins are not supported"},
        {"auth-provider", "auth-provider plugins are not supported"},
        {"username", "basic authentication is not supported"},
        {"password", "basic authentication is not supported"},
        {"as", "impersonation is not supported"},
        {"as-uid", "impersonation is not supported"},
        {"as-groups", "impersonation is not supported"},
        {"as-user-extra", "impersonation is not supported"},
    };
    for (size_t i = 0; i < ELEMENTSOF(unsupported); i++) {
        yaml_node_t *n;
        if (map_get(&n, w, m, path, unsupported[i].key, YAML_NO_NODE, err) < 0)
            return -1;
        if (n)
            return moat_error_set(err, MOAT_E_INVALID, "%s.%s: %s", path, unsupported[i].key,
                                  unsupported[i].why);
    }

    if (load_pem(&c->cert, w, m, path, "client-certificate", "client-certificate-data", base_dir,
                 err) < 0 ||
        load_pem(&c->key, w, m, path, "client-key", "client-key-data", base_dir, err) < 0)
        return -1;
    if (c->cert.data && !c->key.data)
        return moat_error_set(err, MOAT_E_INVALID, "%s: client-certificate without client-key",
                              path);
    if (c->key.data && !c->cert.data)
        return moat_error_set(err, MOAT_E_INVALID, "%s: client-key without client-certificate",
                              path);

    _cleanup_secret_ char *token = NULL;
    _cleanup_free_ char *token_file = NULL;
    if (map_get_str(&token, w, m, path, "token", err) < 0 ||
        map_get_str(&token_file, w, m, path, "tokenFile", err) < 0)
        return -1;
    if (token && *token && token_file && *token_file)
        return moat_error_set(err, MOAT_E_INVALID, "%s: token and tokenFile are both set", path);
    if (token && *token) {
        size_t len = strlen(token);
        const char *problem = kubeconfig_token_normalize(token, &len);
        if (problem)
            return moat_error_set(err, MOAT_E_INVALID, "%s.token: %s", path, problem);
        c->token = TAKE_PTR(token);
    } else if (token_file && *token_file) {
        c->token_file = kubeconfig_resolve_path(base_dir, token_file);
        if (!c->token_file || kubeconfig_make_absolute(&c->token_file) < 0)
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        if (kube_config_token_refresh(c, err) < 0)
            return moat_error_prefix(err, "%s.tokenFile", path);
    }
    return 0;
}

static int parse_document(kube_config *c, walk *w, const char *base_dir, const char *context,
                          moat_error *err)
{
    yaml_node_t *root = yaml_document_get_root_node(w->doc);
    if (moat_yaml_is_null(root))
        root = NULL; /* an empty file: no context to find */
    if (root && root->type != YAML_MAPPING_NODE)
        return moat_error_set(err, MOAT_E_INVALID, "expected a mapping at the top level");

    yaml_node_t *contexts, *clusters, *users;
    _cleanup_free_ char *current = NULL;
    if (check_list(&contexts, w, root, "contexts", err) < 0 ||
        check_list(&clusters, w, root, "clusters", err) < 0 ||
        check_list(&users, w, root, "users", err) < 0 ||
        map_get_str(&current, w, root, "", "current-context", err) < 0)
        return -1;

    const char *name = context && *context ? context : current;
    if (!name || !*name)
        return moat_error_set(err, MOAT_E_INVALID, "no current-context and no context given");
    yaml_node_t *ctx;
    int r = find_entry(&ctx, w, contexts, "contexts", name, "context", err);
    if (r < 0)
        return -1;
    if (r == 0)
        return moat_error_set(err, MOAT_E_NOTFOUND, "%scontext \"%s\" not found",
                              name == current ? "current-context: " : "", name);

    _cleanup_free_ char *cpath = kubeconfig_format("contexts[%s]", name);
    _cleanup_free_ char *bpath = kubeconfig_format("contexts[%s].context", name);
    _cleanup_free_ char *cluster = NULL, *user = NULL, *ns = NULL;
    if (!cpath || !bpath)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (map_get_str(&cluster, w, ctx, bpath, "cluster", err) < 0 ||
        map_get_str(&user, w, ctx, bpath, "user", err) < 0 ||
        map_get_str(&ns, w, ctx, bpath, "namespace", err) < 0)
        return -1;
    if (!cluster || !*cluster)
        return moat_error_set(err, MOAT_E_INVALID, "%s.cluster: missing", bpath);
    if (ns && *ns && !kubeconfig_namespace_valid(ns))
        return moat_error_set(err, MOAT_E_INVALID, "%s.namespace: \"%s\" is not a valid namespace",
                              bpath, ns);

    yaml_node_t *body;
    _cleanup_free_ char *path = NULL;
    r = find_entry(&body, w, clusters, "clusters", cluster, "cluster", err);
    if (r < 0)
        return -1;
    if (r == 0)
        return moat_error_set(err, MOAT_E_NOTFOUND, "%s: cluster \"%s\" not found", cpath, cluster);
    if (!(path = kubeconfig_format("clusters[%s].cluster", cluster)))
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (parse_cluster(c, w, body, path, base_dir, err) < 0)
        return -1;

    if (user && *user) { /* no user: anonymous, or authenticated by the proxy in front */
        r = find_entry(&body, w, users, "users", user, "user", err);
        if (r < 0)
            return -1;
        if (r == 0)
            return moat_error_set(err, MOAT_E_NOTFOUND, "%s: user \"%s\" not found", cpath, user);
        free(path);
        if (!(path = kubeconfig_format("users[%s].user", user)))
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        if (parse_user(c, w, body, path, base_dir, err) < 0)
            return -1;
    }

    c->namespace = ns && *ns ? TAKE_PTR(ns) : strdup("default");
    c->context = strdup(name);
    if (!c->namespace || !c->context)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    return 0;
}

/* ---- YAML parsing ----------------------------------------------------------------------- */

kube_config *kube_config_new(void)
{
    kube_config *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

static int parse_text(kube_config **out, const char *text, size_t len, const char *base_dir,
                      const char *context, moat_error *err)
{
    if (!text && len > 0)
        return moat_error_set(err, MOAT_E_INVALID, "no text");
    if (len > KUBE_CONFIG_MAX_BYTES)
        return moat_error_set(err, MOAT_E_NOMEM, "larger than %d bytes", KUBE_CONFIG_MAX_BYTES);

    /* the scalars hold any inline key or token: zeroed before they are freed */
    yaml_document_t doc;
    if (moat_yaml_load(&doc, text, len, true, err) < 0)
        return -1;
    _cleanup_(kube_config_freep) kube_config *c = kube_config_new();
    walk w = {&doc, 0};
    int r = c ? parse_document(c, &w, base_dir, context, err)
              : moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    moat_yaml_document_destroy(&doc, true);
    if (r < 0)
        return -1;
    *out = TAKE_PTR(c);
    return 0;
}

/* ---- public API ------------------------------------------------------------------------- */

int kube_config_parse(kube_config **out, const char *text, size_t len, const char *origin,
                      const char *base_dir, const char *context, moat_error *err)
{
    if (parse_text(out, text, len, base_dir, context, err) < 0)
        return origin ? moat_error_prefix(err, "kubeconfig %s", origin)
                      : moat_error_prefix(err, "kubeconfig");
    return 0;
}

const char *kube_config_server(const kube_config *c)
{
    return c->server;
}

const char *kube_config_namespace(const kube_config *c)
{
    return c->namespace;
}

const char *kube_config_context(const kube_config *c)
{
    return c->context;
}

const char *kube_config_tls_server_name(const kube_config *c)
{
    return c->tls_server_name;
}

static const unsigned char *blob_get(const blob *b, size_t *ret_len)
{
    if (ret_len)
        *ret_len = b->data ? b->len : 0;
    return b->data;
}

const unsigned char *kube_config_ca(const kube_config *c, size_t *ret_len)
{
    return blob_get(&c->ca, ret_len);
}

const unsigned char *kube_config_client_cert(const kube_config *c, size_t *ret_len)
{
    return blob_get(&c->cert, ret_len);
}

const unsigned char *kube_config_client_key(const kube_config *c, size_t *ret_len)
{
    return blob_get(&c->key, ret_len);
}

bool kube_config_insecure(const kube_config *c)
{
    return c->insecure;
}

void kube_config_free(kube_config *c)
{
    if (!c)
        return;
    free(c->server);
    free(c->namespace);
    free(c->context);
    free(c->tls_server_name);
    blob_clear(&c->ca);
    blob_clear(&c->cert);
    blob_clear(&c->key);
    free(c->token_file);
    secret_free_str(c->token);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
