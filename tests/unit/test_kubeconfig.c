#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "libmoat/kubeconfig.h"

/* Every test works in a fresh directory under /tmp, removed afterwards. */
static char *tmp;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    tmp = strdup("/tmp/moat-kubeconfig-XXXXXX");
    return tmp && mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(tmp);
    tmp = NULL;
    return 0;
}

/* tmp/<name>, which the caller frees. */
static char *tmp_path(const char *name)
{
    char *p;
    assert_true(asprintf(&p, "%s/%s", tmp, name) > 0);
    return p;
}

static void write_file(const char *name, const char *content)
{
    _cleanup_free_ char *p = tmp_path(name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *name)
{
    _cleanup_free_ char *p = tmp_path(name);
    assert_int_equal(mkdir(p, 0700), 0);
}

static kube_config *parse_ok(const char *yaml, const char *context)
{
    moat_error err = MOAT_ERROR_INIT;
    kube_config *c = NULL;
    if (kube_config_parse(&c, yaml, strlen(yaml), "/x/config", tmp, context, &err) < 0)
        fail_msg("parse failed: %s", err.message);
    assert_non_null(c);
    return c;
}

/* Parsing must fail with `code` and a message that contains `want`, leaving *out alone. */
static void assert_parse_error(const char *yaml, const char *context, moat_error_code code,
                               const char *want)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    kube_config *c = (kube_config *)0x1;
    if (kube_config_parse(&c, yaml, strlen(yaml), "/x/config", tmp, context, &err) == 0)
        fail_msg("parse succeeded, wanted \"%s\"", want);
    assert_ptr_equal(c, (kube_config *)0x1);
    assert_non_null(err.message);
    if (strncmp(err.message, "kubeconfig /x/config: ", 22) != 0 || !strstr(err.message, want))
        fail_msg("error \"%s\" lacks \"%s\"", err.message, want);
    if (err.code != code)
        fail_msg("error \"%s\": code %d, want %d", err.message, err.code, code);
}

typedef const unsigned char *(*blob_getter)(const kube_config *c, size_t *ret_len);

static void assert_blob(const kube_config *c, blob_getter get, const char *want)
{
    size_t len = 12345;
    const unsigned char *data = get(c, &len);
    assert_non_null(data);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(data, want, len);
    assert_int_equal(data[len], '\0');
}

static void assert_token(kube_config *c, const char *want)
{
    moat_error err = MOAT_ERROR_INIT;
    char *t = (char *)0x1;
    if (kube_config_token(c, &t, &err) < 0)
        fail_msg("token: %s", err.message);
    if (!want) {
        assert_null(t);
        return;
    }
    assert_non_null(t);
    assert_string_equal(t, want);
    free(t);
}

#define SIMPLE_CLUSTER                                                                             \
    "clusters:\n"                                                                                  \
    "- name: local\n"                                                                              \
    "  cluster:\n"                                                                                 \
    "    server: https://127.0.0.1:6443\n"

static void test_inline_data(void **state)
{
    kube_config *c = parse_ok("apiVersion: v1\n"
                              "kind: Config\n"
                              "current-context: admin@local\n"
                              "clusters:\n"
                              "- name: local\n"
                              "  cluster:\n"
                              "    server: https://127.0.0.1:6443/\n"
                              "    certificate-authority-data: Y2EtcGVtCg==\n"
                              "    tls-server-name: kubernetes.default\n"
                              "    extensions: []\n"
                              "contexts:\n"
                              "- name: admin@local\n"
                              "  context: {cluster: local, user: admin, namespace: sandboxes}\n"
                              "users:\n"
                              "- name: admin\n"
                              "  user:\n"
                              "    client-certificate-data: Y2VydC1wZW0K\n"
                              "    client-key-data: \"a2V5LXBlbQo=\"\n"
                              "preferences: {}\n",
                              NULL);
    assert_string_equal(kube_config_server(c), "https://127.0.0.1:6443");
    assert_string_equal(kube_config_namespace(c), "sandboxes");
    assert_string_equal(kube_config_context(c), "admin@local");
    assert_string_equal(kube_config_tls_server_name(c), "kubernetes.default");
    assert_false(kube_config_insecure(c));
    assert_blob(c, kube_config_ca, "ca-pem\n");
    assert_blob(c, kube_config_client_cert, "cert-pem\n");
    assert_blob(c, kube_config_client_key, "key-pem\n");
    assert_token(c, NULL);
    kube_config_free(c);
    kube_config_free(NULL);
}

static void test_minimal_and_insecure(void **state)
{
    kube_config *c = parse_ok("current-context: dev\n"
                              "contexts: [{name: dev, context: {cluster: c}}]\n"
                              "clusters: [{name: c, cluster: {server: 'http://h:8080', "
                              "insecure-skip-tls-verify: true}}]\n",
                              NULL);
    size_t len = 99;
    assert_string_equal(kube_config_server(c), "http://h:8080");
    assert_string_equal(kube_config_namespace(c), "default");
    assert_null(kube_config_tls_server_name(c));
    assert_null(kube_config_ca(c, &len));
    assert_int_equal(len, 0);
    assert_null(kube_config_client_cert(c, NULL));
    assert_null(kube_config_client_key(c, NULL));
    assert_true(kube_config_insecure(c));
    assert_token(c, NULL);
    kube_config_free(c);

    /* JSON is YAML too; a static token; `null` and "" mean unset. */
    c = parse_ok("{\"current-context\": \"dev\", \"contexts\": [{\"name\": \"dev\", \"context\": "
                 "{\"cluster\": \"c\", \"user\": \"u\", \"namespace\": null}}], \"clusters\": "
                 "[{\"name\": \"c\", \"cluster\": {\"server\": \"https://h\", "
                 "\"certificate-authority-data\": \"\", \"insecure-skip-tls-verify\": false}}], "
                 "\"users\": [{\"name\": \"u\", \"user\": {\"token\": \" abc.def \\n\"}}]}",
                 NULL);
    assert_string_equal(kube_config_server(c), "https://h");
    assert_string_equal(kube_config_namespace(c), "default");
    assert_null(kube_config_ca(c, NULL));
    assert_false(kube_config_insecure(c));
    assert_token(c, "abc.def");
    kube_config_free(c);
}

static void test_file_paths(void **state)
{
    make_dir("kube");
    make_dir("kube/pki");
    write_file("kube/pki/ca.crt", "ca from file\n");
    write_file("kube/pki/client.crt", "cert from file\n");
    write_file("kube/token", "file-token\n");
    _cleanup_free_ char *key = tmp_path("client.key"); /* absolute in the config */
    write_file("client.key", "key from file\n");

    _cleanup_free_ char *yaml = NULL;
    assert_true(asprintf(&yaml,
                         "current-context: ctx\n"
                         "contexts: [{name: ctx, context: {cluster: local, user: me}}]\n"
                         "clusters:\n"
                         "- name: local\n"
                         "  cluster:\n"
                         "    server: https://10.0.0.1\n"
                         "    certificate-authority: pki/ca.crt\n"
                         "users:\n"
                         "- name: me\n"
                         "  user:\n"
                         "    client-certificate: pki/client.crt\n"
                         "    client-key: %s\n"
                         "    tokenFile: token\n",
                         key) > 0);
    write_file("kube/config", yaml);

    _cleanup_free_ char *path = tmp_path("kube/config");
    moat_error err = MOAT_ERROR_INIT;
    kube_config *c = NULL;
    if (kube_config_load_file(&c, path, NULL, &err) < 0)
        fail_msg("%s", err.message);
    assert_blob(c, kube_config_ca, "ca from file\n");
    assert_blob(c, kube_config_client_cert, "cert from file\n");
    assert_blob(c, kube_config_client_key, "key from file\n");
    assert_token(c, "file-token");
    kube_config_free(c);

    /* The same text parsed from memory resolves against base_dir. */
    _cleanup_free_ char *dir = tmp_path("kube");
    assert_int_equal(kube_config_parse(&c, yaml, strlen(yaml), "mem", dir, NULL, &err), 0);
    assert_blob(c, kube_config_ca, "ca from file\n");
    kube_config_free(c);

    /* A file that cannot be read names the key, the path and the reason. */
    assert_int_equal(kube_config_parse(&c, yaml, strlen(yaml), "mem", tmp, NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_IO);
    assert_int_equal(err.errno_value, ENOENT);
    _cleanup_free_ char *want = NULL;
    assert_true(asprintf(&want,
                         "kubeconfig mem: clusters[local].cluster.certificate-authority: "
                         "%s/pki/ca.crt: No such file or directory",
                         tmp) > 0);
    assert_string_equal(err.message, want);
    moat_error_clear(&err);

    /* The kubeconfig itself. */
    _cleanup_free_ char *none = tmp_path("none");
    assert_int_equal(kube_config_load_file(&c, none, NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_IO);
    assert_non_null(strstr(err.message, "none: No such file or directory"));
    moat_error_clear(&err);
}

static void test_file_caps(void **state)
{
    /* A credential file over its cap is an error, not an allocation of any size. */
    _cleanup_free_ char *big = tmp_path("big.crt");
    int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 2 * 1024 * 1024), 0);
    close(fd);
    assert_parse_error("current-context: d\n"
                       "contexts: [{name: d, context: {cluster: c}}]\n"
                       "clusters: [{name: c, cluster: {server: 'https://h', "
                       "certificate-authority: big.crt}}]\n",
                       NULL, MOAT_E_NOMEM, "clusters[c].cluster.certificate-authority: ");
    assert_parse_error("current-context: d\n"
                       "contexts: [{name: d, context: {cluster: c}}]\n"
                       "clusters: [{name: c, cluster: {server: 'https://h', "
                       "certificate-authority: .}}]\n",
                       NULL, MOAT_E_INVALID, "not a regular file");
    write_file("empty.crt", "");
    assert_parse_error("current-context: d\n"
                       "contexts: [{name: d, context: {cluster: c}}]\n"
                       "clusters: [{name: c, cluster: {server: 'https://h', "
                       "certificate-authority: empty.crt}}]\n",
                       NULL, MOAT_E_INVALID, "empty.crt: file is empty");

    /* The text itself. */
    moat_error err = MOAT_ERROR_INIT;
    kube_config *c = NULL;
    size_t n = KUBE_CONFIG_MAX_BYTES + 1;
    char *text = malloc(n);
    assert_non_null(text);
    memset(text, '#', n);
    assert_int_equal(kube_config_parse(&c, text, n, "/big", NULL, NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_NOMEM);
    assert_string_equal(err.message, "kubeconfig /big: larger than 4194304 bytes");
    moat_error_clear(&err);

    _cleanup_free_ char *path = tmp_path("bigconfig");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
    free(text);
    assert_int_equal(kube_config_load_file(&c, path, NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_NOMEM);
    assert_non_null(strstr(err.message, "larger than 4194304 bytes"));
    moat_error_clear(&err);
}

#define TWO_CONTEXTS                                                                               \
    "current-context: dev\n"                                                                       \
    "contexts:\n"                                                                                  \
    "- name: dev\n"                                                                                \
    "  context:\n"                                                                                 \
    "    cluster: a\n"                                                                             \
    "    namespace: team-dev\n"                                                                    \
    "- name: prod\n"                                                                               \
    "  context:\n"                                                                                 \
    "    cluster: b\n"                                                                             \
    "    user: ops\n"                                                                              \
    "clusters:\n"                                                                                  \
    "- {name: a, cluster: {server: 'https://a.example:6443'}}\n"                                   \
    "- {name: b, cluster: {server: 'https://b.example'}}\n"                                        \
    "users:\n"                                                                                     \
    "- {name: ops, user: {token: prod-token}}\n"                                                   \
    "- {name: broken, user: {exec: {command: x}}}\n"

static void test_context_selection(void **state)
{
    kube_config *c = parse_ok(TWO_CONTEXTS, NULL);
    assert_string_equal(kube_config_context(c), "dev");
    assert_string_equal(kube_config_server(c), "https://a.example:6443");
    assert_string_equal(kube_config_namespace(c), "team-dev");
    assert_token(c, NULL);
    kube_config_free(c);

    /* An explicit context wins over current-context; users not selected are not read. */
    c = parse_ok(TWO_CONTEXTS, "prod");
    assert_string_equal(kube_config_context(c), "prod");
    assert_string_equal(kube_config_server(c), "https://b.example");
    assert_string_equal(kube_config_namespace(c), "default");
    assert_token(c, "prod-token");
    kube_config_free(c);

    c = parse_ok(TWO_CONTEXTS, ""); /* "" is no choice */
    assert_string_equal(kube_config_context(c), "dev");
    kube_config_free(c);

    assert_parse_error(TWO_CONTEXTS, "staging", MOAT_E_NOTFOUND, ": context \"staging\" not found");
}

static const struct {
    const char *yaml, *context;
    moat_error_code code;
    const char *want;
} errors[] = {
    {"current-context: dev\ncontexts: [{name: dev, context: {cluster: missing}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_NOTFOUND, "contexts[dev]: cluster \"missing\" not found"},
    {"current-context: dev\ncontexts: [{name: dev, context: {cluster: local, user: u}}]\n"
     "users: [{name: v, user: {}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_NOTFOUND, "contexts[dev]: user \"u\" not found"},
    {"current-context: dev\ncontexts: [{name: dev, context: {user: u}}]\n", NULL, MOAT_E_INVALID,
     "contexts[dev].context.cluster: missing"},
    {"current-context: dev\ncontexts: [{name: dev}]\n", NULL, MOAT_E_INVALID,
     "contexts[dev].context: missing"},
    {"current-context: dev\ncontexts: [{name: dev, context: [a]}]\n", NULL, MOAT_E_INVALID,
     "contexts[dev].context: expected a mapping"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local}}]\n"
     "clusters: [{name: local, cluster: {insecure-skip-tls-verify: true}}]\n",
     NULL, MOAT_E_INVALID, "clusters[local].cluster.server: missing"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}]\n"
     "clusters: [{name: c, cluster: {server: 'ftp://h'}}]\n",
     NULL, MOAT_E_INVALID,
     "clusters[c].cluster.server: \"ftp://h\" must start with https:// or http://"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://'}}]\n",
     NULL, MOAT_E_INVALID, "clusters[c].cluster.server: \"https://\" has no host"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}]\n"
     "clusters: [{name: c, cluster: {server: 'https:///api'}}]\n",
     NULL, MOAT_E_INVALID, "has no host"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}]\n"
     "clusters: [{name: c, cluster: {server: \"https://h\\r\\nX: y\"}}]\n",
     NULL, MOAT_E_INVALID, "clusters[c].cluster.server: "},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://h', proxy-url: 'http://p'}}]\n",
     NULL, MOAT_E_INVALID, "clusters[c].cluster.proxy-url: proxies are not supported"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://h', insecure-skip-tls-verify: maybe}}]\n",
     NULL, MOAT_E_INVALID, "clusters[c].cluster.insecure-skip-tls-verify: expected true or false"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://h', insecure-skip-tls-verify: true, "
     "certificate-authority-data: Y2EtcGVtCg==}}]\n",
     NULL, MOAT_E_INVALID,
     "clusters[c].cluster: insecure-skip-tls-verify together with a certificate authority"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://h', certificate-authority: /ca, "
     "certificate-authority-data: Y2EtcGVtCg==}}]\n",
     NULL, MOAT_E_INVALID,
     "clusters[c].cluster: certificate-authority and certificate-authority-data are both set"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://h', tls-server-name: 'a b'}}]\n",
     NULL, MOAT_E_INVALID, "clusters[c].cluster.tls-server-name: contains whitespace"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: admin}}]\n"
     "users: [{name: admin, user: {client-certificate-data: Y2VydC1wZW0K, client-key: "
     "/no/file}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_IO, "users[admin].user.client-key: /no/file: No such file or directory"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: a}}]\n"
     "users: [{name: a, user: {client-certificate-data: Y2VydC1wZW0K, client-key-data: "
     "'a2V5!!'}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_INVALID, "users[a].user.client-key-data: invalid base64"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: a}}]\n"
     "users: [{name: a, user: {client-certificate-data: Y2VydC1wZW0K}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_INVALID, "users[a].user: client-certificate without client-key"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: a}}]\n"
     "users: [{name: a, user: {client-key-data: a2V5LXBlbQo=}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_INVALID, "users[a].user: client-key without client-certificate"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: admin}}]\n"
     "users: [{name: admin, user: {exec: {apiVersion: client.authentication.k8s.io/v1, "
     "command: aws}}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_INVALID, "users[admin].user.exec: exec credential plugins are not supported"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: g}}]\n"
     "users: [{name: g, user: {auth-provider: {name: gcp}}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_INVALID, "users[g].user.auth-provider: auth-provider plugins are not supported"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: b}}]\n"
     "users: [{name: b, user: {username: admin, password: secret}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_INVALID, "users[b].user.username: basic authentication is not supported"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: b}}]\n"
     "users: [{name: b, user: {token: t, as: someone-else}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_INVALID, "users[b].user.as: impersonation is not supported"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: b}}]\n"
     "users: [{name: b, user: {token: t, tokenFile: /t}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_INVALID, "users[b].user: token and tokenFile are both set"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: b}}]\n"
     "users: [{name: b, user: {tokenFile: /no/token}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_IO, "users[b].user.tokenFile: /no/token: No such file or directory"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, user: b}}]\n"
     "users: [{name: b, user: {token: \"a\\nb\"}}]\n" SIMPLE_CLUSTER,
     NULL, MOAT_E_INVALID, "users[b].user.token: the token has characters"},
    {"contexts: [{name: d, context: {cluster: local}}]\n" SIMPLE_CLUSTER, NULL, MOAT_E_INVALID,
     "no current-context and no context given"},
    {"", NULL, MOAT_E_INVALID, "no current-context and no context given"},
    {"current-context: dev\ncontexts: [{name: d, context: {cluster: local}}]\n", NULL,
     MOAT_E_NOTFOUND, "kubeconfig /x/config: current-context: context \"dev\" not found"},
    {"current-context: dev\ncontexts: [{name: dev, context: {cluster: c, namespace: Dev}}]\n", NULL,
     MOAT_E_INVALID, "contexts[dev].context.namespace: \"Dev\" is not a valid namespace"},
    {"current-context: dev\ncontexts: [{name: dev, context: {cluster: c, namespace: ../x}}]\n",
     NULL, MOAT_E_INVALID, "is not a valid namespace"},
    /* structure */
    {"- a\n- b\n", NULL, MOAT_E_INVALID, "expected a mapping at the top level"},
    {"contexts: {dev: {}}\n", NULL, MOAT_E_INVALID, "contexts: expected a sequence"},
    {"clusters: [a]\n", NULL, MOAT_E_INVALID, "clusters[0]: expected a mapping"},
    {"users: [{name: a, user: {}}, {user: {}}]\n", NULL, MOAT_E_INVALID, "users[1].name: missing"},
    {"users: [{name: [a], user: {}}]\n", NULL, MOAT_E_INVALID, "users[0].name: expected a string"},
    {"current-context: [a]\n", NULL, MOAT_E_INVALID, "current-context: expected a string"},
    {"current-context: \"a\\0b\"\n", NULL, MOAT_E_INVALID, "current-context: contains a NUL byte"},
    {"current-context: d\ncurrent-context: e\n", NULL, MOAT_E_INVALID,
     "current-context: duplicate key"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: local, cluster: x}}]\n", NULL,
     MOAT_E_INVALID, "contexts[d].context.cluster: duplicate key"},
    {"current-context: d\ncontexts: [{name: d, context: {cluster: c}}, "
     "{name: d, context: {cluster: c}}]\n",
     NULL, MOAT_E_INVALID, "contexts[d]: duplicate name"},
    /* YAML syntax */
    {"current-context: d\ncontexts:\n  - name: [x\n", NULL, MOAT_E_INVALID, "line 4, column 1: "},
    {"a: b: c\n", NULL, MOAT_E_INVALID,
     "line 1, column 5: mapping values are not allowed in this context"},
    {"a: *nope\n", NULL, MOAT_E_INVALID, "line 1, column 4: found undefined alias"},
    {"a: b\n---\nc: d\n", NULL, MOAT_E_INVALID, "more than one YAML document"},
    {"a: \"\xff\"\n", NULL, MOAT_E_INVALID, "byte 4: invalid leading UTF-8 octet"},
};

static void test_errors(void **state)
{
    for (size_t i = 0; i < ELEMENTSOF(errors); i++)
        assert_parse_error(errors[i].yaml, errors[i].context, errors[i].code, errors[i].want);

    /* Without an origin, the message still says what failed. */
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    kube_config *c = NULL;
    assert_int_equal(kube_config_parse(&c, NULL, 0, NULL, NULL, NULL, &err), -1);
    assert_string_equal(err.message, "kubeconfig: no current-context and no context given");
    /* A NULL error is allowed. */
    assert_int_equal(kube_config_parse(&c, "x", 1, NULL, NULL, NULL, NULL), -1);
    assert_null(c);
}

static void test_unused_entries_not_read(void **state)
{
    /* Another user's unsupported auth, or another cluster's missing file, is not an error: only
     * the selected context is used. A self-referencing alias does not loop. */
    kube_config *c = parse_ok("current-context: d\n"
                              "contexts: [{name: d, context: {cluster: c}}]\n"
                              "clusters:\n"
                              "- {name: c, cluster: {server: 'https://h'}}\n"
                              "- {name: other, cluster: {certificate-authority: /none}}\n"
                              "users: [{name: x, user: {exec: {}}}]\n"
                              "extensions: &loop [*loop]\n",
                              NULL);
    assert_string_equal(kube_config_server(c), "https://h");
    kube_config_free(c);
}

static void test_alias_budget(void **state)
{
    /* 60 KB of text: one mapping of 5000 keys, aliased as 5000 contexts. Looking up the name
     * of each would take 25M key comparisons; the walk gives up instead. */
    size_t cap = 128 * 1024, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "big: &a {name: n");
    for (int i = 0; i < 5000; i++)
        len += (size_t)snprintf(text + len, cap - len, ", k%d: 0", i);
    len += (size_t)snprintf(text + len, cap - len, "}\ncontexts: [*a");
    for (int i = 1; i < 5000; i++)
        len += (size_t)snprintf(text + len, cap - len, ", *a");
    len += (size_t)snprintf(text + len, cap - len, "]\n");
    assert_true(len < cap);
    assert_parse_error(text, NULL, MOAT_E_NOMEM, "too complex");
    free(text);
}

static void test_server_forms(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"https://h:6443///", "https://h:6443"},
        {"HTTPS://Host.Example", "HTTPS://Host.Example"},
        {"https://[fd00::1]:6443/", "https://[fd00::1]:6443"},
        {"https://rancher.example/k8s/clusters/c-1/", "https://rancher.example/k8s/clusters/c-1"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_free_ char *yaml = NULL;
        assert_true(asprintf(&yaml,
                             "current-context: d\n"
                             "contexts: [{name: d, context: {cluster: c}}]\n"
                             "clusters: [{name: c, cluster: {server: '%s'}}]\n",
                             cases[i].in) > 0);
        kube_config *c = parse_ok(yaml, NULL);
        assert_string_equal(kube_config_server(c), cases[i].out);
        kube_config_free(c);
    }
}

/* Parses a config whose CA is `data`; returns 0 and the decoded bytes, or -1. */
static int decode_ca(const char *data, unsigned char **ret, size_t *ret_len)
{
    _cleanup_free_ char *yaml = NULL;
    assert_true(asprintf(&yaml,
                         "current-context: d\n"
                         "contexts: [{name: d, context: {cluster: c}}]\n"
                         "clusters:\n"
                         "- name: c\n"
                         "  cluster:\n"
                         "    server: https://h\n"
                         "    certificate-authority-data: %s\n",
                         data) > 0);
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    kube_config *c = NULL;
    if (kube_config_parse(&c, yaml, strlen(yaml), "/x/config", NULL, NULL, &err) < 0) {
        assert_non_null(
            strstr(err.message, "clusters[c].cluster.certificate-authority-data: invalid base64"));
        return -1;
    }
    size_t len = 0;
    const unsigned char *d = kube_config_ca(c, &len);
    *ret = d ? memcpy(malloc(len + 1), d, len + 1) : NULL;
    *ret_len = len;
    kube_config_free(c);
    return 0;
}

static void assert_base64(const char *data, const char *want, size_t want_len)
{
    _cleanup_free_ unsigned char *got = NULL;
    size_t len = 0;
    if (decode_ca(data, &got, &len) < 0)
        fail_msg("base64 %s did not decode", data);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, len);
}

static void assert_base64_invalid(const char *data)
{
    _cleanup_free_ unsigned char *got = NULL;
    size_t len;
    if (decode_ca(data, &got, &len) == 0)
        fail_msg("base64 %s decoded", data);
}

#define PEM "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHHIG...\n-----END CERTIFICATE-----\n"

static void test_base64(void **state)
{
    assert_base64("YQ==", "a", 1);
    assert_base64("YWI=", "ab", 2);
    assert_base64("YWJj", "abc", 3);
    assert_base64("YWJjZA==", "abcd", 4);
    assert_base64("AAA=", "\0\0", 2);
    assert_base64("+/+/", "\xfb\xff\xbf", 3);
    assert_base64("'  YW\tJj\r\n  ZA = = '", "abcd", 4);
    assert_base64("|\n      YWJj\n      ZA==\n", "abcd", 4); /* folded over lines */
    assert_base64("YWJj\n      ZA==", "abcd", 4);            /* a multi-line plain scalar */
    assert_base64("''", NULL, 0);                            /* empty: as if unset */
    assert_base64("' '", NULL, 0);
    assert_base64("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJrVENCK3dJSkFLSEhJRy4uLgotLS0tLUVORCBD"
                  "RVJUSUZJQ0FURS0tLS0tCg==",
                  PEM, strlen(PEM));

    assert_base64_invalid("YQ");       /* padding is required */
    assert_base64_invalid("YQ=");      /* and complete */
    assert_base64_invalid("YWJ");      /* a partial quantum */
    assert_base64_invalid("Y===");     /* too much padding */
    assert_base64_invalid("'===='");   /* padding alone */
    assert_base64_invalid("=YWJ");     /* padding first */
    assert_base64_invalid("YQ==YQ=="); /* data after padding */
    assert_base64_invalid("YWI=YQ==");
    assert_base64_invalid("YR=="); /* bits set past the data */
    assert_base64_invalid("YWJ="); /* same, two bytes */
    assert_base64_invalid("YW-j"); /* the URL alphabet is not accepted */
    assert_base64_invalid("YW_j");
    assert_base64_invalid("YW.j");
    assert_base64_invalid("\"YW\\0j\""); /* a NUL */
    assert_base64_invalid("\"YWJj\\u00e9\"");
}

static void test_token_rotation(void **state)
{
    write_file("token", "tok-1\n");
    kube_config *c = parse_ok("current-context: d\n"
                              "contexts: [{name: d, context: {cluster: local, user: sa}}]\n"
                              "users: [{name: sa, user: {tokenFile: token}}]\n" SIMPLE_CLUSTER,
                              NULL);
    assert_token(c, "tok-1");
    assert_token(c, "tok-1");

    /* Rewritten in place with a different size. */
    write_file("token", "token-two\n");
    assert_token(c, "token-two");

    /* Replaced by rename with the same size: a new inode. */
    write_file("token.new", "tok-3");
    _cleanup_free_ char *from = tmp_path("token.new"), *to = tmp_path("token");
    assert_int_equal(rename(from, to), 0);
    assert_token(c, "tok-3");

    /* Gone: an error, and back again: fine. */
    assert_int_equal(unlink(to), 0);
    moat_error err = MOAT_ERROR_INIT;
    char *t = (char *)0x1;
    assert_int_equal(kube_config_token(c, &t, &err), -1);
    assert_ptr_equal(t, (char *)0x1);
    assert_int_equal(err.code, MOAT_E_IO);
    assert_non_null(strstr(err.message, "token file: "));
    assert_non_null(strstr(err.message, "/token: No such file or directory"));
    moat_error_clear(&err);

    write_file("token", " \n");
    assert_int_equal(kube_config_token(c, &t, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_non_null(strstr(err.message, "no token in it"));
    moat_error_clear(&err);

    write_file("token", "tok-4");
    assert_token(c, "tok-4");
    kube_config_free(c);
}

static void test_token_symlink_swap(void **state)
{
    /* The kubelet's projected volumes: token -> ..data/token, ..data -> ..<timestamp>, and a
     * rotation swaps ..data atomically. The path must be followed anew each time. */
    make_dir("sa");
    make_dir("sa/..v1");
    make_dir("sa/..v2");
    write_file("sa/..v1/token", "first");
    write_file("sa/..v2/token", "second");
    _cleanup_free_ char *data = tmp_path("sa/..data"), *tmpl = tmp_path("sa/..data_tmp");
    _cleanup_free_ char *token = tmp_path("sa/token");
    assert_int_equal(symlink("..v1", data), 0);
    assert_int_equal(symlink("..data/token", token), 0);

    kube_config *c = parse_ok("current-context: d\n"
                              "contexts: [{name: d, context: {cluster: local, user: sa}}]\n"
                              "users: [{name: sa, user: {tokenFile: sa/token}}]\n" SIMPLE_CLUSTER,
                              NULL);
    assert_token(c, "first");
    assert_int_equal(symlink("..v2", tmpl), 0);
    assert_int_equal(rename(tmpl, data), 0);
    assert_token(c, "second");
    kube_config_free(c);
}

static void *token_reader(void *arg)
{
    kube_config *c = arg;
    for (int i = 0; i < 200; i++) {
        char *t = NULL;
        if (kube_config_token(c, &t, NULL) == 0) {
            if (strncmp(t, "tok-", 4) != 0)
                return (void *)1;
            free(t);
        }
    }
    return NULL;
}

static void test_token_threads(void **state)
{
    write_file("token", "tok-0");
    kube_config *c = parse_ok("current-context: d\n"
                              "contexts: [{name: d, context: {cluster: local, user: sa}}]\n"
                              "users: [{name: sa, user: {tokenFile: token}}]\n" SIMPLE_CLUSTER,
                              NULL);
    pthread_t th[4];
    for (size_t i = 0; i < ELEMENTSOF(th); i++)
        assert_int_equal(pthread_create(&th[i], NULL, token_reader, c), 0);
    _cleanup_free_ char *from = tmp_path("token.new"), *to = tmp_path("token");
    for (int i = 0; i < 50; i++) {
        char text[32];
        snprintf(text, sizeof(text), "tok-%d", i);
        write_file("token.new", text);
        assert_int_equal(rename(from, to), 0);
    }
    for (size_t i = 0; i < ELEMENTSOF(th); i++) {
        void *r;
        assert_int_equal(pthread_join(th[i], &r), 0);
        assert_null(r);
    }
    assert_token(c, "tok-49");
    kube_config_free(c);
}

/* Environment variables the tests change, restored after each. */
static const char *const env_names[] = {"KUBECONFIG", "KUBERNETES_SERVICE_HOST",
                                        "KUBERNETES_SERVICE_PORT", "HOME"};
static char *env_saved[ELEMENTSOF(env_names)];

static int setup_env(void **state)
{
    for (size_t i = 0; i < ELEMENTSOF(env_names); i++) {
        const char *v = getenv(env_names[i]);
        env_saved[i] = v ? strdup(v) : NULL;
    }
    return setup(state);
}

static int teardown_env(void **state)
{
    for (size_t i = 0; i < ELEMENTSOF(env_names); i++) {
        if (env_saved[i])
            setenv(env_names[i], env_saved[i], 1);
        else
            unsetenv(env_names[i]);
        free(env_saved[i]);
        env_saved[i] = NULL;
    }
    return teardown(state);
}

static void test_in_cluster(void **state)
{
    make_dir("sa");
    write_file("sa/token", "sa-token-1\n");
    write_file("sa/ca.crt", "cluster ca\n");
    write_file("sa/namespace", "moat-system");
    _cleanup_free_ char *sa = tmp_path("sa");

    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    moat_error err = MOAT_ERROR_INIT;
    kube_config *c = NULL;
    if (kube_config_in_cluster(&c, sa, &err) < 0)
        fail_msg("%s", err.message);
    assert_string_equal(kube_config_server(c), "https://10.96.0.1:443");
    assert_string_equal(kube_config_namespace(c), "moat-system");
    assert_string_equal(kube_config_context(c), "in-cluster");
    assert_null(kube_config_tls_server_name(c));
    assert_false(kube_config_insecure(c));
    assert_blob(c, kube_config_ca, "cluster ca\n");
    assert_null(kube_config_client_cert(c, NULL));
    assert_token(c, "sa-token-1");
    write_file("sa/token", "sa-token-rotated\n");
    assert_token(c, "sa-token-rotated");
    kube_config_free(c);

    /* IPv6, and no namespace file. */
    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    _cleanup_free_ char *ns = tmp_path("sa/namespace");
    assert_int_equal(unlink(ns), 0);
    assert_int_equal(kube_config_in_cluster(&c, sa, &err), 0);
    assert_string_equal(kube_config_server(c), "https://[fd00:10:96::1]:6443");
    assert_string_equal(kube_config_namespace(c), "default");
    kube_config_free(c);

    /* Errors. */
    write_file("sa/namespace", "Not/Valid\n");
    c = (kube_config *)0x1;
    assert_int_equal(kube_config_in_cluster(&c, sa, &err), -1);
    assert_ptr_equal(c, (kube_config *)0x1);
    assert_non_null(strstr(err.message, "namespace: not a valid namespace"));
    moat_error_clear(&err);
    assert_int_equal(unlink(ns), 0);

    setenv("KUBERNETES_SERVICE_PORT", "99999", 1);
    assert_int_equal(kube_config_in_cluster(&c, sa, &err), -1);
    assert_string_equal(err.message,
                        "in-cluster config: KUBERNETES_SERVICE_PORT \"99999\" is not a port");
    moat_error_clear(&err);

    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    setenv("KUBERNETES_SERVICE_HOST", "evil.example/x?", 1);
    assert_int_equal(kube_config_in_cluster(&c, sa, &err), -1);
    assert_non_null(strstr(err.message, "is not a host"));
    moat_error_clear(&err);

    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(kube_config_in_cluster(&c, sa, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_string_equal(err.message, "in-cluster config: KUBERNETES_SERVICE_HOST and "
                                     "KUBERNETES_SERVICE_PORT must be set");
    moat_error_clear(&err);

    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    _cleanup_free_ char *token = tmp_path("sa/token");
    assert_int_equal(unlink(token), 0);
    assert_int_equal(kube_config_in_cluster(&c, sa, &err), -1);
    assert_int_equal(err.code, MOAT_E_IO);
    assert_non_null(strstr(err.message, "/sa/token: No such file or directory"));
    moat_error_clear(&err);

    _cleanup_free_ char *empty = tmp_path("empty");
    make_dir("empty");
    assert_int_equal(kube_config_in_cluster(&c, empty, &err), -1);
    assert_non_null(strstr(err.message, "/empty/ca.crt: No such file or directory"));
    moat_error_clear(&err);
}

static void test_load_default(void **state)
{
    make_dir("a");
    write_file("a/config",
               "current-context: from-env\n"
               "contexts: [{name: from-env, context: {cluster: local}}]\n" SIMPLE_CLUSTER);
    make_dir(".kube");
    write_file(".kube/config", "current-context: from-home\n"
                               "contexts: [{name: from-home, context: {cluster: local}}, "
                               "{name: other, context: {cluster: local}}]\n" SIMPLE_CLUSTER);
    _cleanup_free_ char *a = tmp_path("a/config");
    _cleanup_free_ char *list = NULL;
    assert_true(asprintf(&list, "::%s:/does/not/exist", a) > 0);

    moat_error err = MOAT_ERROR_INIT;
    kube_config *c = NULL;
    setenv("KUBECONFIG", list, 1);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1); /* $KUBECONFIG comes first */
    if (kube_config_load_default(&c, NULL, &err) < 0)
        fail_msg("%s", err.message);
    assert_string_equal(kube_config_context(c), "from-env");
    kube_config_free(c);

    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    setenv("HOME", tmp, 1);
    assert_int_equal(kube_config_load_default(&c, NULL, &err), 0);
    assert_string_equal(kube_config_context(c), "from-home");
    kube_config_free(c);
    assert_int_equal(kube_config_load_default(&c, "other", &err), 0);
    assert_string_equal(kube_config_context(c), "other");
    kube_config_free(c);

    setenv("KUBECONFIG", ":", 1); /* no file in it: as if unset */
    assert_int_equal(kube_config_load_default(&c, NULL, &err), 0);
    assert_string_equal(kube_config_context(c), "from-home");
    kube_config_free(c);

    unsetenv("HOME");
    assert_int_equal(kube_config_load_default(&c, NULL, &err), -1);
    assert_non_null(strstr(err.message, "no $HOME"));
    moat_error_clear(&err);

    /* In a cluster, without $KUBECONFIG: the default service-account directory. */
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    if (access("/var/run/secrets/kubernetes.io/serviceaccount/token", F_OK) != 0) {
        assert_int_equal(kube_config_load_default(&c, NULL, &err), -1);
        assert_non_null(strstr(err.message, "in-cluster config: "
                                            "/var/run/secrets/kubernetes.io/serviceaccount/"));
        moat_error_clear(&err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_inline_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_minimal_and_insecure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_selection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unused_entries_not_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alias_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_symlink_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_cluster, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_load_default, setup_env, teardown_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
