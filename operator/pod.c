#include "pod.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "libmoat/kobj.h"
#include "libmoat/macro.h"
#include "libmoat/names.h"
#include "libmoat/units.h"

#define NS_PER_S          1000000000LL
#define TTL_MAX_NS        (720LL * 3600 * NS_PER_S) /* the CRD's limit on ttlAfterFinished */
#define LABEL_VALUE_MAX   63
#define TERMINATION_GRACE 5 /* seconds: a sandbox has nothing worth a graceful shutdown */
#define MANAGED_NODE_TRUE "true"

/* A value from the Sandbox is quoted in a message at most this many bytes long, so a
 * megabyte of nonsense does not become a megabyte of status.message. */
#define SHOWN_MAX 64

/* A field path we format ourselves ("spec.env[12].valueFrom.secretKeyRef"); the only
 * outside text in one is a nodeSelector key, cut to SHOWN_MAX. */
#define FIELD_MAX 160

/* jansson's own json_decrefp, under the house name. */
#define _cleanup_json_ _cleanup_(json_decrefp)

typedef enum {
    ISOLATION_AUTO,
    ISOLATION_VM,
    ISOLATION_GVISOR,
} isolation_mode;

/* spec.isolation's values, indexed by isolation_mode. */
static const char *const isolation_names[] = {"Auto", "VM", "GVisor"};

/* What the checks found in a Sandbox; strings and values borrow from it. */
typedef struct {
    const char *name, *ns, *uid, *image, *working_dir;
    isolation_mode isolation;
    bool internet;
    bool session; /* spec.mode: Session */
    int64_t timeout_ns, idle_timeout_ns;
    const json_t *cpu, *memory, *storage; /* as given, or NULL for the configured default */
    int64_t gpu_count;
    const char *gpu_product;
} sandbox_params;

/* The length to print of s, cut at SHOWN_MAX bytes without splitting a UTF-8 sequence:
 * the message must stay valid UTF-8 to be written into status. */
static int shown_len(const char *s)
{
    size_t n = strnlen(s, SHOWN_MAX + 1);
    if (n <= SHOWN_MAX)
        return (int)n;
    n = SHOWN_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

static const char *shown_more(const char *s)
{
    return strnlen(s, SHOWN_MAX + 1) > SHOWN_MAX ? "..." : "";
}

/* Arguments for "%.*s%s": a value from the Sandbox, cut short when long. */
#define SHOWN(s) shown_len(s), (s), shown_more(s)

#define invalid(err, ...) moat_error_set((err), MOAT_E_INVALID, __VA_ARGS__)

static int nomem(moat_error *err)
{
    return moat_error_set(err, MOAT_E_NOMEM, "out of memory building the sandbox's Pod");
}

/* Steals v (NULL when its allocation failed). */
static int put(json_t *obj, const char *key, json_t *v, moat_error *err)
{
    return json_object_set_new(obj, key, v) < 0 ? nomem(err) : 0;
}

static int append(json_t *arr, json_t *v, moat_error *err)
{
    return json_array_append_new(arr, v) < 0 ? nomem(err) : 0;
}

/* parent.key: absent or null leaves *out NULL; another type is refused, naming
 * "<prefix>.<key>". parent may be NULL. */
static int opt_string(const char **out, const json_t *parent, const char *key, const char *prefix,
                      moat_error *err)
{
    json_t *v = json_object_get(parent, key);
    if (v && !json_is_null(v) && !json_is_string(v))
        return invalid(err, "%s.%s: not a string", prefix, key);
    *out = json_string_value(v);
    return 0;
}

static int opt_object(const json_t **out, const json_t *parent, const char *key, const char *prefix,
                      moat_error *err)
{
    json_t *v = json_object_get(parent, key);
    if (v && !json_is_null(v) && !json_is_object(v))
        return invalid(err, "%s.%s: not an object", prefix, key);
    *out = json_is_object(v) ? v : NULL;
    return 0;
}

static int opt_array(const json_t **out, const json_t *parent, const char *key, const char *prefix,
                     moat_error *err)
{
    json_t *v = json_object_get(parent, key);
    if (v && !json_is_null(v) && !json_is_array(v))
        return invalid(err, "%s.%s: not an array", prefix, key);
    *out = json_is_array(v) ? v : NULL;
    return 0;
}

/* A string that must be present and not empty. */
static int req_string(const char **out, const json_t *parent, const char *key, const char *prefix,
                      moat_error *err)
{
    const char *s = NULL;
    if (opt_string(&s, parent, key, prefix, err) < 0)
        return -1;
    if (!s)
        return invalid(err, "%s.%s: missing", prefix, key);
    if (!*s)
        return invalid(err, "%s.%s: empty", prefix, key);
    *out = s;
    return 0;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Every character of s is alphanumeric or in extra. */
static bool all_chars(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!is_alnum(*s) && !strchr(extra, *s))
            return false;
    return true;
}

/* A Kubernetes label value that is not empty: it is matched against node labels. */
static bool is_label_value(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= LABEL_VALUE_MAX && is_alnum(s[0]) && is_alnum(s[n - 1]) &&
           all_chars(s, "-_.");
}

/* "24h", "90m", "1500ms": the largest unit that divides ns exactly. */
/* A maximum from the configuration, in the form an admin would write it: "8", "500m",
 * "32Gi" (binary suffixes for byte quantities only). */
static void format_quantity(char *buf, size_t size, int64_t milli, bool bytes)
{
    static const char *const suffixes[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    if (milli % 1000 != 0) {
        snprintf(buf, size, "%" PRId64 "m", milli);
        return;
    }
    int64_t v = milli / 1000;
    int k = 0;
    while (bytes && v != 0 && v % 1024 == 0 && k < (int)ELEMENTSOF(suffixes)) {
        v /= 1024;
        k++;
    }
    snprintf(buf, size, "%" PRId64 "%s", v, k ? suffixes[k - 1] : "");
}

/* spec.mode: true for a Session. */
static int check_mode(bool *ret_session, const json_t *spec, moat_error *err)
{
    const char *text = NULL;

    if (opt_string(&text, spec, "mode", "spec", err) < 0)
        return -1;
    if (text && strcmp(text, "Session") != 0 && strcmp(text, "Run") != 0)
        return invalid(err, "spec.mode: \"%.*s%s\" is not Run or Session", SHOWN(text));
    *ret_session = text && strcmp(text, "Session") == 0;
    return 0;
}

/* spec.<key>: a positive Go duration of at most cfg's maximum timeout; def when absent. */
static int check_limit(int64_t *ret_ns, const json_t *spec, const char *key, int64_t def,
                       const operator_config *cfg, moat_error *err)
{
    const char *text = NULL;
    char max[32];
    int64_t ns;

    if (opt_string(&text, spec, key, "spec", err) < 0)
        return -1;
    if (!text) {
        *ret_ns = def;
        return 0;
    }
    moat_duration_format(max, sizeof max, cfg->max_timeout_ns);
    moat_error perr = MOAT_ERROR_INIT;
    if (moat_duration_parse(&ns, text, &perr) < 0) {
        bool range = perr.code == MOAT_E_RANGE;
        moat_error_clear(&perr);
        if (range)
            return invalid(err, "spec.%s: \"%.*s%s\" is above the cluster's maximum %s", key,
                           SHOWN(text), max);
        return invalid(err, "spec.%s: \"%.*s%s\" is not a duration", key, SHOWN(text));
    }
    if (ns <= 0)
        return invalid(err, "spec.%s: \"%.*s%s\" is not positive", key, SHOWN(text));
    if (ns > cfg->max_timeout_ns)
        return invalid(err, "spec.%s: \"%.*s%s\" is above the cluster's maximum %s", key,
                       SHOWN(text), max);
    *ret_ns = ns;
    return 0;
}

/* The mode's limits: spec.timeout (default by mode) and, for a Session, spec.idleTimeout
 * (a Run has none: 0). */
static int check_limits(bool *ret_session, int64_t *ret_timeout_ns, int64_t *ret_idle_ns,
                        const json_t *spec, const operator_config *cfg, moat_error *err)
{
    bool session = false;
    int64_t timeout_ns, idle_ns = 0;

    if (check_mode(&session, spec, err) < 0 ||
        check_limit(&timeout_ns, spec, "timeout",
                    session ? cfg->default_session_timeout_ns : cfg->default_timeout_ns, cfg,
                    err) < 0)
        return -1;
    if (session) {
        if (check_limit(&idle_ns, spec, "idleTimeout", cfg->default_idle_timeout_ns, cfg, err) < 0)
            return -1;
    } else if (json_object_get(spec, "idleTimeout")) {
        return invalid(err, "spec.idleTimeout: only a Session has an idleTimeout");
    }
    *ret_session = session;
    *ret_timeout_ns = timeout_ns;
    *ret_idle_ns = idle_ns;
    return 0;
}

static int check_ttl(int64_t *ret_ns, const json_t *spec, const operator_config *cfg,
                     moat_error *err)
{
    const char *text = NULL;
    char max[32];
    int64_t ns;

    if (opt_string(&text, spec, "ttlAfterFinished", "spec", err) < 0)
        return -1;
    if (!text) {
        *ret_ns = cfg->default_ttl_ns;
        return 0;
    }
    moat_duration_format(max, sizeof max, TTL_MAX_NS);
    moat_error perr = MOAT_ERROR_INIT;
    if (moat_duration_parse(&ns, text, &perr) < 0) {
        bool range = perr.code == MOAT_E_RANGE;
        moat_error_clear(&perr);
        if (range)
            return invalid(err, "spec.ttlAfterFinished: \"%.*s%s\" is above the maximum %s",
                           SHOWN(text), max);
        return invalid(err, "spec.ttlAfterFinished: \"%.*s%s\" is not a duration", SHOWN(text));
    }
    if (ns < 0)
        return invalid(err, "spec.ttlAfterFinished: \"%.*s%s\" is negative", SHOWN(text));
    if (ns > TTL_MAX_NS)
        return invalid(err, "spec.ttlAfterFinished: \"%.*s%s\" is above the maximum %s",
                       SHOWN(text), max);
    *ret_ns = ns;
    return 0;
}

int sandbox_timeout_ns(int64_t *ret_ns, const json_t *sandbox, const operator_config *cfg,
                       moat_error *err)
{
    bool session;
    int64_t idle_ns;
    return check_limits(&session, ret_ns, &idle_ns, kobj_get(sandbox, "spec"), cfg, err);
}

int sandbox_idle_timeout_ns(int64_t *ret_ns, const json_t *sandbox, const operator_config *cfg,
                            moat_error *err)
{
    bool session;
    int64_t timeout_ns;
    return check_limits(&session, &timeout_ns, ret_ns, kobj_get(sandbox, "spec"), cfg, err);
}

int sandbox_ttl_ns(int64_t *ret_ns, const json_t *sandbox, const operator_config *cfg,
                   moat_error *err)
{
    return check_ttl(ret_ns, kobj_get(sandbox, "spec"), cfg, err);
}

/* spec.resources.<key>: a positive quantity, a string or an integer, at most max_milli.
 * *out is the value as given (the Pod carries it unchanged) or NULL when absent. */
static int check_quantity(const json_t **out, const json_t *resources, const char *key,
                          int64_t max_milli, bool bytes, moat_error *err)
{
    json_t *v = json_object_get(resources, key);
    char given[32], max[32];
    const char *shown;
    int64_t milli = 0;
    bool above = false;

    if (!v || json_is_null(v)) {
        *out = NULL;
        return 0;
    }
    format_quantity(max, sizeof max, max_milli, bytes);
    if (json_is_integer(v)) {
        int64_t n = json_integer_value(v);
        snprintf(given, sizeof given, "%" PRId64, n);
        shown = given;
        if (n > INT64_MAX / 1000)
            above = true;
        else
            milli = n * 1000;
    } else if (json_is_string(v)) {
        shown = json_string_value(v);
        moat_error perr = MOAT_ERROR_INIT;
        if (moat_quantity_parse(&milli, shown, &perr) < 0) {
            above = perr.code == MOAT_E_RANGE;
            moat_error_clear(&perr);
            if (!above)
                return invalid(err, "spec.resources.%s: \"%.*s%s\" is not a quantity", key,
                               SHOWN(shown));
        }
    } else {
        return invalid(err, "spec.resources.%s: not a quantity (a string or an integer)", key);
    }
    if (!above && milli <= 0)
        return invalid(err, "spec.resources.%s: %.*s%s is not positive", key, SHOWN(shown));
    if (above || milli > max_milli)
        return invalid(err, "spec.resources.%s: %.*s%s is above the cluster's maximum %s", key,
                       SHOWN(shown), max);
    *out = v;
    return 0;
}

static int check_gpu(sandbox_params *p, const json_t *resources, const operator_config *cfg,
                     moat_error *err)
{
    const json_t *gpu = NULL;
    if (opt_object(&gpu, resources, "gpu", "spec.resources", err) < 0)
        return -1;

    json_t *count = json_object_get(gpu, "count");
    int64_t n = 0;
    if (count && !json_is_null(count)) {
        if (!json_is_integer(count))
            return invalid(err, "spec.resources.gpu.count: not an integer");
        n = json_integer_value(count);
        if (n < 0)
            return invalid(err, "spec.resources.gpu.count: %" PRId64 " is negative", n);
        if (n > cfg->max_gpus)
            return invalid(
                err, "spec.resources.gpu.count: %" PRId64 " is above the cluster's maximum %d", n,
                cfg->max_gpus);
    }

    const char *product = NULL;
    if (opt_string(&product, gpu, "product", "spec.resources.gpu", err) < 0)
        return -1;
    if (product) {
        /* It becomes a node-affinity value and an annotation. */
        if (!is_label_value(product))
            return invalid(err, "spec.resources.gpu.product: \"%.*s%s\" is not a GPU model name",
                           SHOWN(product));
        if (n == 0)
            return invalid(err, "spec.resources.gpu.product: needs count of at least 1");
    }
    p->gpu_count = n;
    p->gpu_product = product;
    return 0;
}

/* Everything about the Sandbox but the lists the container copies (built later). */
static int check_sandbox(sandbox_params *ret, const json_t *sandbox, const operator_config *cfg,
                         moat_error *err)
{
    sandbox_params p = {0};
    const json_t *metadata = NULL, *spec, *resources = NULL, *network = NULL;
    const char *s = NULL;

    if (!json_is_object(sandbox))
        return invalid(err, "sandbox: not an object");
    if (opt_object(&metadata, sandbox, "metadata", "sandbox", err) < 0)
        return -1;
    if (!metadata)
        return invalid(err, "metadata: missing");
    if (req_string(&p.name, metadata, "name", "metadata", err) < 0 ||
        req_string(&p.ns, metadata, "namespace", "metadata", err) < 0 ||
        req_string(&p.uid, metadata, "uid", "metadata", err) < 0)
        return -1;
    /* The name is also the value of MOAT_LABEL_SANDBOX, and a label value holds at most 63
     * characters while an object name may have 253. Refusing here says why; the API
     * server would only say the Pod is invalid. */
    if (strlen(p.name) > LABEL_VALUE_MAX)
        return invalid(err,
                       "metadata.name: \"%.*s%s\" is longer than %d characters, the most a "
                       "label value holds",
                       SHOWN(p.name), LABEL_VALUE_MAX);

    spec = json_object_get(sandbox, "spec");
    if (!spec || json_is_null(spec))
        return invalid(err, "spec: missing");
    if (!json_is_object(spec))
        return invalid(err, "spec: not an object");

    if (req_string(&p.image, spec, "image", "spec", err) < 0)
        return -1;
    for (s = p.image; *s; s++)
        if (strchr(" \t\n\v\f\r", *s))
            return invalid(err, "spec.image: \"%.*s%s\" contains whitespace", SHOWN(p.image));

    if (opt_string(&p.working_dir, spec, "workingDir", "spec", err) < 0)
        return -1;
    if (p.working_dir && p.working_dir[0] != '/')
        return invalid(err, "spec.workingDir: \"%.*s%s\" is not an absolute path",
                       SHOWN(p.working_dir));

    if (opt_string(&s, spec, "isolation", "spec", err) < 0)
        return -1;
    p.isolation = ISOLATION_AUTO;
    if (s) {
        size_t i;
        for (i = 0; i < ELEMENTSOF(isolation_names); i++)
            if (strcmp(s, isolation_names[i]) == 0)
                break;
        if (i == ELEMENTSOF(isolation_names))
            return invalid(err, "spec.isolation: \"%.*s%s\" is not Auto, VM or GVisor", SHOWN(s));
        p.isolation = (isolation_mode)i;
    }

    if (opt_object(&network, spec, "network", "spec", err) < 0 ||
        opt_string(&s, network, "egress", "spec.network", err) < 0)
        return -1;
    if (s && strcmp(s, "Internet") == 0)
        p.internet = true;
    else if (s && strcmp(s, "None") != 0)
        return invalid(err, "spec.network.egress: \"%.*s%s\" is not None or Internet", SHOWN(s));

    int64_t ttl;
    if (check_limits(&p.session, &p.timeout_ns, &p.idle_timeout_ns, spec, cfg, err) < 0 ||
        check_ttl(&ttl, spec, cfg, err) < 0)
        return -1;
    if (p.session && json_object_get(spec, "args") && !json_object_get(spec, "command"))
        return invalid(err, "spec.args: a Session's args need a command (its helper starts the "
                            "command, not the image's entrypoint)");

    if (opt_object(&resources, spec, "resources", "spec", err) < 0 ||
        check_quantity(&p.cpu, resources, "cpu", cfg->max_cpu_milli, false, err) < 0 ||
        check_quantity(&p.memory, resources, "memory", cfg->max_memory_milli, true, err) < 0 ||
        check_quantity(&p.storage, resources, "ephemeralStorage", cfg->max_storage_milli, true,
                       err) < 0 ||
        check_gpu(&p, resources, cfg, err) < 0)
        return -1;

    *ret = p;
    return 0;
}

/* spec.<key>, a list of strings, copied; NULL when absent or empty. */
static int build_strings(json_t **out, const json_t *spec, const char *key, moat_error *err)
{
    const json_t *list = NULL;
    json_t *item;
    size_t i;

    if (opt_array(&list, spec, key, "spec", err) < 0)
        return -1;
    if (!list || json_array_size(list) == 0) {
        *out = NULL;
        return 0;
    }
    json_array_foreach (list, i, item) {
        if (!json_is_string(item))
            return invalid(err, "spec.%s[%zu]: not a string", key, i);
    }
    json_t *copy = json_copy((json_t *)list); /* strings are immutable: a shallow copy is safe */
    if (!copy)
        return nomem(err);
    *out = copy;
    return 0;
}

static bool is_env_name(const char *s)
{
    return *s && !(*s >= '0' && *s <= '9') && all_chars(s, "-._");
}

static int build_env_var(json_t **out, const json_t *item, const char *field, moat_error *err)
{
    const char *name = NULL, *value = NULL, *secret = NULL, *key = NULL;
    const json_t *from = NULL, *ref = NULL;
    char ref_field[FIELD_MAX + sizeof ".valueFrom.secretKeyRef"];

    if (!json_is_object(item))
        return invalid(err, "%s: not an object", field);
    if (req_string(&name, item, "name", field, err) < 0 ||
        opt_string(&value, item, "value", field, err) < 0 ||
        opt_object(&from, item, "valueFrom", field, err) < 0)
        return -1;
    if (!is_env_name(name))
        return invalid(err, "%s.name: \"%.*s%s\" is not a valid variable name", field, SHOWN(name));
    if (value && from)
        return invalid(err, "%s: value and valueFrom are mutually exclusive", field);
    if (!from) {
        json_t *var = json_pack("{s:s, s:s*}", "name", name, "value", value);
        if (!var)
            return nomem(err);
        *out = var;
        return 0;
    }

    /* Only secretKeyRef: fieldRef and resourceFieldRef would let a Sandbox read what
     * the Pod knows about its node, and the schema has neither. */
    snprintf(ref_field, sizeof ref_field, "%s.valueFrom", field);
    if (opt_object(&ref, from, "secretKeyRef", ref_field, err) < 0)
        return -1;
    if (!ref)
        return invalid(err, "%s.secretKeyRef: missing", ref_field);
    snprintf(ref_field, sizeof ref_field, "%s.valueFrom.secretKeyRef", field);
    if (req_string(&secret, ref, "name", ref_field, err) < 0 ||
        req_string(&key, ref, "key", ref_field, err) < 0)
        return -1;
    if (!all_chars(key, "-._"))
        return invalid(err, "%s.key: \"%.*s%s\" is not a valid secret key", ref_field, SHOWN(key));
    json_t *optional = json_object_get(ref, "optional");
    if (optional && !json_is_null(optional) && !json_is_boolean(optional))
        return invalid(err, "%s.optional: not a boolean", ref_field);

    _cleanup_json_ json_t *sref = json_pack("{s:s, s:s}", "name", secret, "key", key);
    if (!sref)
        return nomem(err);
    if (json_is_boolean(optional) &&
        put(sref, "optional", json_boolean(json_is_true(optional)), err) < 0)
        return -1;
    json_t *var =
        json_pack("{s:s, s:{s:o}}", "name", name, "valueFrom", "secretKeyRef", TAKE_PTR(sref));
    if (!var)
        return nomem(err);
    *out = var;
    return 0;
}

static int build_env(json_t **out, const json_t *spec, moat_error *err)
{
    const json_t *list = NULL;
    json_t *item;
    size_t i;
    char field[FIELD_MAX];

    if (opt_array(&list, spec, "env", "spec", err) < 0)
        return -1;
    if (!list || json_array_size(list) == 0) {
        *out = NULL;
        return 0;
    }
    _cleanup_json_ json_t *env = json_array();
    if (!env)
        return nomem(err);
    json_array_foreach (list, i, item) {
        json_t *var = NULL;
        snprintf(field, sizeof field, "spec.env[%zu]", i);
        if (build_env_var(&var, item, field, err) < 0 || append(env, var, err) < 0)
            return -1;
    }
    *out = TAKE_PTR(env);
    return 0;
}

static int build_pull_secrets(json_t **out, const json_t *spec, moat_error *err)
{
    const json_t *list = NULL;
    json_t *item;
    size_t i;
    char field[FIELD_MAX];

    if (opt_array(&list, spec, "imagePullSecrets", "spec", err) < 0)
        return -1;
    if (!list || json_array_size(list) == 0) {
        *out = NULL;
        return 0;
    }
    _cleanup_json_ json_t *secrets = json_array();
    if (!secrets)
        return nomem(err);
    json_array_foreach (list, i, item) {
        const char *name;
        snprintf(field, sizeof field, "spec.imagePullSecrets[%zu]", i);
        if (!json_is_object(item))
            return invalid(err, "%s: not an object", field);
        if (req_string(&name, item, "name", field, err) < 0 ||
            append(secrets, json_pack("{s:s}", "name", name), err) < 0)
            return -1;
    }
    *out = TAKE_PTR(secrets);
    return 0;
}

/* A nodeSelector or toleration key the cluster's placement policy lets a Sandbox name:
 * Moat's own (moat.dev/...), one listed, or any when "*" is listed. */
static bool placement_allows(char *const *allowed, const char *key)
{
    if (strncmp(key, MOAT_KEY_PREFIX, strlen(MOAT_KEY_PREFIX)) == 0)
        return true;
    for (; *allowed; allowed++)
        if (strcmp(*allowed, "*") == 0 || strcmp(*allowed, key) == 0)
            return true;
    return false;
}

static bool placement_allows_any(char *const *allowed)
{
    for (; *allowed; allowed++)
        if (strcmp(*allowed, "*") == 0)
            return true;
    return false;
}

static int build_node_selector(json_t **out, const json_t *spec, const operator_config *cfg,
                               moat_error *err)
{
    const json_t *selector = NULL;
    const char *key;
    json_t *value;

    if (opt_object(&selector, spec, "nodeSelector", "spec", err) < 0)
        return -1;
    if (!selector || json_object_size(selector) == 0) {
        *out = NULL;
        return 0;
    }
    json_object_foreach ((json_t *)selector, key, value) {
        if (!json_is_string(value))
            return invalid(err, "spec.nodeSelector[\"%.*s%s\"]: not a string", SHOWN(key));
        /* Placement is the cluster's: a tenant's selector could aim a sandbox at a chosen
         * victim's node (kubernetes.io/hostname) or a dedicated pool. */
        if (!placement_allows(cfg->placement_node_selector_keys, key))
            return invalid(err,
                           "spec.nodeSelector[\"%.*s%s\"]: key not allowed by the cluster's "
                           "placement policy (placement.nodeSelectorKeys)",
                           SHOWN(key));
    }
    json_t *copy = json_copy((json_t *)selector);
    if (!copy)
        return nomem(err);
    *out = copy;
    return 0;
}

static bool one_of(const char *s, const char *const *values)
{
    for (; *values; values++)
        if (strcmp(s, *values) == 0)
            return true;
    return false;
}

static int build_toleration(json_t **out, const json_t *item, const char *field,
                            const operator_config *cfg, moat_error *err)
{
    static const char *const operators[] = {"Exists", "Equal", NULL};
    static const char *const effects[] = {"NoSchedule", "PreferNoSchedule", "NoExecute", NULL};
    const char *key = NULL, *op = NULL, *value = NULL, *effect = NULL;

    if (!json_is_object(item))
        return invalid(err, "%s: not an object", field);
    if (opt_string(&key, item, "key", field, err) < 0 ||
        opt_string(&op, item, "operator", field, err) < 0 ||
        opt_string(&value, item, "value", field, err) < 0 ||
        opt_string(&effect, item, "effect", field, err) < 0)
        return -1;
    if (op && !one_of(op, operators))
        return invalid(err, "%s.operator: \"%.*s%s\" is not Exists or Equal", field, SHOWN(op));
    if (effect && !one_of(effect, effects))
        return invalid(err,
                       "%s.effect: \"%.*s%s\" is not NoSchedule, PreferNoSchedule or NoExecute",
                       field, SHOWN(effect));
    bool exists = op && strcmp(op, "Exists") == 0;
    if (exists && value && *value)
        return invalid(err, "%s.value: must be empty when operator is Exists", field);
    if ((!key || !*key) && !exists)
        return invalid(err, "%s.key: may be empty only when operator is Exists", field);
    /* An empty key with Exists tolerates every taint: cordoned and dedicated nodes too. */
    if ((!key || !*key) && !placement_allows_any(cfg->placement_toleration_keys))
        return invalid(err,
                       "%s.key: an empty key tolerates every taint; not allowed by the cluster's "
                       "placement policy (placement.tolerationKeys has no \"*\")",
                       field);
    if (key && *key && !placement_allows(cfg->placement_toleration_keys, key))
        return invalid(err,
                       "%s.key: \"%.*s%s\" not allowed by the cluster's placement policy "
                       "(placement.tolerationKeys)",
                       field, SHOWN(key));
    json_t *seconds = json_object_get(item, "tolerationSeconds");
    if (seconds && !json_is_null(seconds) && !json_is_integer(seconds))
        return invalid(err, "%s.tolerationSeconds: not an integer", field);

    json_t *t = json_pack("{s:s*, s:s*, s:s*, s:s*}", "key", key, "operator", op, "value", value,
                          "effect", effect);
    if (!t)
        return nomem(err);
    if (json_is_integer(seconds) && put(t, "tolerationSeconds", json_copy(seconds), err) < 0) {
        json_decref(t);
        return -1;
    }
    *out = t;
    return 0;
}

static int build_tolerations(json_t **out, const json_t *spec, const sandbox_params *p,
                             const operator_config *cfg, moat_error *err)
{
    const json_t *list = NULL;
    json_t *item;
    size_t i;
    char field[FIELD_MAX];

    if (opt_array(&list, spec, "tolerations", "spec", err) < 0)
        return -1;
    _cleanup_json_ json_t *tolerations = json_array();
    if (!tolerations)
        return nomem(err);
    json_array_foreach (list, i, item) {
        json_t *t = NULL;
        snprintf(field, sizeof field, "spec.tolerations[%zu]", i);
        if (build_toleration(&t, item, field, cfg, err) < 0 || append(tolerations, t, err) < 0)
            return -1;
    }
    /* GPU nodes are tainted so that only pods asking for GPUs land there. */
    if (p->gpu_count > 0 && append(tolerations,
                                   json_pack("{s:s, s:s, s:s}", "key", cfg->gpu_taint_key,
                                             "operator", "Exists", "effect", "NoSchedule"),
                                   err) < 0)
        return -1;
    *out = json_array_size(tolerations) ? TAKE_PTR(tolerations) : NULL;
    return 0;
}

/* {key, operator: In, values: [v1, v2?]} */
static json_t *match_in(const char *key, const char *v1, const char *v2)
{
    return json_pack("{s:s, s:s, s:[s, s*]}", "key", key, "operator", "In", "values", v1, v2);
}

/* Required node affinity with one term, whose expressions are ANDed: managed nodes only;
 * for VM a node with a usable hypervisor; for GPUs a node whose GPUs are in the mode the
 * runtime needs, and of the model asked for. */
static int build_affinity(json_t **out, const sandbox_params *p, const operator_config *cfg,
                          moat_error *err)
{
    bool vm = p->isolation == ISOLATION_VM;
    _cleanup_json_ json_t *exprs = json_array();
    if (!exprs)
        return nomem(err);
    if (append(exprs, match_in(cfg->managed_node_label, MANAGED_NODE_TRUE, NULL), err) < 0)
        return -1;
    if (vm &&
        append(exprs,
               match_in(cfg->hypervisor_node_label, MOAT_HYPERVISOR_KVM, MOAT_HYPERVISOR_MSHV),
               err) < 0)
        return -1;
    if (p->gpu_count > 0 && append(exprs,
                                   match_in(cfg->gpu_mode_node_label,
                                            vm ? MOAT_GPU_MODE_VM : MOAT_GPU_MODE_CONTAINER, NULL),
                                   err) < 0)
        return -1;
    if (p->gpu_product &&
        append(exprs, match_in(cfg->gpu_product_label, p->gpu_product, NULL), err) < 0)
        return -1;

    json_t *affinity = json_pack("{s:{s:{s:[{s:o}]}}}", "nodeAffinity",
                                 "requiredDuringSchedulingIgnoredDuringExecution",
                                 "nodeSelectorTerms", "matchExpressions", TAKE_PTR(exprs));
    if (!affinity)
        return nomem(err);
    *out = affinity;
    return 0;
}

static json_t *quantity_value(const json_t *given, const char *def)
{
    return given ? json_copy((json_t *)given) : json_string(def);
}

/* One resource list; requests and limits each get their own. */
static int build_resource_list(json_t **out, const sandbox_params *p, const operator_config *cfg,
                               moat_error *err)
{
    _cleanup_json_ json_t *list = json_object();
    if (!list)
        return nomem(err);
    if (put(list, "cpu", quantity_value(p->cpu, cfg->default_cpu), err) < 0 ||
        put(list, "memory", quantity_value(p->memory, cfg->default_memory), err) < 0 ||
        put(list, "ephemeral-storage", quantity_value(p->storage, cfg->default_storage), err) < 0)
        return -1;
    if (p->gpu_count > 0) {
        char count[24];
        snprintf(count, sizeof count, "%" PRId64, p->gpu_count);
        /* Kata passes whole GPUs through with vfio-pci, which nodes advertise as another
         * resource than the driver's container GPUs. */
        const char *resource =
            p->isolation == ISOLATION_VM ? cfg->gpu_vm_resource : cfg->gpu_container_resource;
        if (put(list, resource, json_string(count), err) < 0)
            return -1;
    }
    *out = TAKE_PTR(list);
    return 0;
}

/* A Session's command: its helper as PID 1, starting the spec's command when there is one
 * (args go with it: the CRD refuses args without a command in a Session). */
static int build_session_command(json_t **out, const json_t *spec, moat_error *err)
{
    _cleanup_json_ json_t *command = NULL, *args = NULL;

    if (build_strings(&command, spec, "command", err) < 0 ||
        build_strings(&args, spec, "args", err) < 0)
        return -1;
    json_t *argv = json_pack("[s, s]", MOAT_HELPER_PATH, "init");
    if (!argv)
        return nomem(err);
    if (command &&
        (json_array_append_new(argv, json_string("--")) < 0 ||
         json_array_extend(argv, command) < 0 || (args && json_array_extend(argv, args) < 0))) {
        json_decref(argv);
        return nomem(err);
    }
    *out = argv;
    return 0;
}

static int build_container(json_t **out, const json_t *spec, const sandbox_params *p,
                           const operator_config *cfg, moat_error *err)
{
    _cleanup_json_ json_t *command = NULL, *args = NULL, *env = NULL, *requests = NULL,
                          *limits = NULL, *mounts = NULL;

    if (p->session) {
        if (build_session_command(&command, spec, err) < 0)
            return -1;
        mounts = json_pack("[{s:s, s:s, s:s, s:b}]", "name", MOAT_HELPER_VOLUME, "mountPath",
                           MOAT_HELPER_MOUNT, "subPath", MOAT_HELPER_SUBPATH, "readOnly", 1);
        if (!mounts)
            return nomem(err);
    } else if (build_strings(&command, spec, "command", err) < 0 ||
               build_strings(&args, spec, "args", err) < 0) {
        return -1;
    }
    if (build_env(&env, spec, err) < 0 || build_resource_list(&requests, p, cfg, err) < 0 ||
        build_resource_list(&limits, p, cfg, err) < 0)
        return -1;

    json_t *container =
        json_pack("{s:s, s:s, s:o*, s:o*, s:s*, s:o*, s:s, s:{s:o, s:o},"
                  " s:{s:b, s:b, s:{s:[s]}, s:b}, s:s, s:o*}",
                  "name", SANDBOX_CONTAINER_NAME, "image", p->image, "command", TAKE_PTR(command),
                  "args", TAKE_PTR(args), "workingDir", p->working_dir, "env", TAKE_PTR(env),
                  "imagePullPolicy", cfg->image_pull_policy, "resources", "requests",
                  TAKE_PTR(requests), "limits", TAKE_PTR(limits), "securityContext",
                  "allowPrivilegeEscalation", 0, "privileged", 0, "capabilities", "drop", "ALL",
                  /* Many images write to their own filesystem; the runtime's sandbox, not a
                   * read-only root, is the boundary. */
                  "readOnlyRootFilesystem", 0, "terminationMessagePolicy", "FallbackToLogsOnError",
                  "volumeMounts", TAKE_PTR(mounts));
    if (!container)
        return nomem(err);
    *out = container;
    return 0;
}

/* A Session's volumes: the helper, from the helper image (an image volume: read-only,
 * nothing required of the sandbox's own image); NULL for a Run. */
static int build_volumes(json_t **out, const sandbox_params *p, const operator_config *cfg,
                         moat_error *err)
{
    if (!p->session) {
        *out = NULL;
        return 0;
    }
    json_t *volumes = json_pack("[{s:s, s:{s:s, s:s}}]", "name", MOAT_HELPER_VOLUME, "image",
                                "reference", cfg->helper_image, "pullPolicy", "IfNotPresent");
    if (!volumes)
        return nomem(err);
    *out = volumes;
    return 0;
}

static int build_metadata(json_t **out, const sandbox_params *p, moat_error *err)
{
    const char *egress = p->internet ? MOAT_EGRESS_INTERNET : MOAT_EGRESS_NONE;
    char count[24];

    char idle[24];

    snprintf(count, sizeof count, "%" PRId64, p->gpu_count);
    /* Rounded up, as the deadline: an idle limit never cut short. */
    snprintf(idle, sizeof idle, "%" PRId64,
             (int64_t)(p->idle_timeout_ns / NS_PER_S + (p->idle_timeout_ns % NS_PER_S != 0)));
    _cleanup_json_ json_t *annotations =
        json_pack("{s:s, s:s, s:s, s:s*, s:s*}", MOAT_ANNOTATION_ISOLATION,
                  isolation_names[p->isolation], MOAT_ANNOTATION_NETWORK, egress,
                  MOAT_ANNOTATION_GPU_COUNT, count, MOAT_ANNOTATION_GPU_PRODUCT, p->gpu_product,
                  MOAT_ANNOTATION_IDLE_TIMEOUT, p->session ? idle : NULL);
    if (!annotations)
        return nomem(err);
    json_t *metadata =
        json_pack("{s:s, s:s, s:{s:s, s:s}, s:o, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}", "name",
                  p->name, "namespace", p->ns, "labels", MOAT_LABEL_SANDBOX, p->name,
                  MOAT_LABEL_EGRESS, egress, "annotations", TAKE_PTR(annotations),
                  "ownerReferences", "apiVersion", MOAT_API_GV, "kind", MOAT_SANDBOX_KIND, "name",
                  p->name, "uid", p->uid, "controller", 1, "blockOwnerDeletion", 1);
    if (!metadata)
        return nomem(err);
    *out = metadata;
    return 0;
}

static const char *runtime_class_for(isolation_mode isolation, const operator_config *cfg)
{
    switch (isolation) {
    case ISOLATION_VM:
        return cfg->runtime_class_vm;
    case ISOLATION_GVISOR:
        return cfg->runtime_class_gvisor;
    case ISOLATION_AUTO:
        break;
    }
    return cfg->runtime_class_auto;
}

int sandbox_pod_build(json_t **out, const json_t *sandbox, const operator_config *cfg,
                      moat_error *err)
{
    sandbox_params p;
    _cleanup_json_ json_t *metadata = NULL, *container = NULL, *pull_secrets = NULL,
                          *node_selector = NULL, *tolerations = NULL, *affinity = NULL,
                          *volumes = NULL;

    if (check_sandbox(&p, sandbox, cfg, err) < 0)
        return -1;
    const json_t *spec = json_object_get(sandbox, "spec");
    if (build_metadata(&metadata, &p, err) < 0 ||
        build_container(&container, spec, &p, cfg, err) < 0 ||
        build_pull_secrets(&pull_secrets, spec, err) < 0 ||
        build_node_selector(&node_selector, spec, cfg, err) < 0 ||
        build_tolerations(&tolerations, spec, &p, cfg, err) < 0 ||
        build_affinity(&affinity, &p, cfg, err) < 0 || build_volumes(&volumes, &p, cfg, err) < 0)
        return -1;

    const char *runtime_class = runtime_class_for(p.isolation, cfg);
    /* Rounded up: a deadline must never cut a sandbox's time short. */
    json_int_t deadline = p.timeout_ns / NS_PER_S + (p.timeout_ns % NS_PER_S != 0);

    json_t *pod = json_pack(
        "{s:s, s:s, s:o, s:{s:s, s:s, s:I, s:b, s:b, s:b, s:b, s:b, s:b, s:I, s:{s:{s:s}},"
        " s:o*, s:o*, s:o*, s:o, s:[o], s:o*}}",
        "apiVersion", "v1", "kind", "Pod", "metadata", TAKE_PTR(metadata), "spec",
        "runtimeClassName", runtime_class, "restartPolicy", "Never", "activeDeadlineSeconds",
        deadline, "automountServiceAccountToken", 0, "enableServiceLinks", 0, "hostNetwork", 0,
        "hostPID", 0, "hostIPC", 0, "shareProcessNamespace", 0, "terminationGracePeriodSeconds",
        (json_int_t)TERMINATION_GRACE, "securityContext", "seccompProfile", "type",
        "RuntimeDefault", "imagePullSecrets", TAKE_PTR(pull_secrets), "nodeSelector",
        TAKE_PTR(node_selector), "tolerations", TAKE_PTR(tolerations), "affinity",
        TAKE_PTR(affinity), "containers", TAKE_PTR(container), "volumes", TAKE_PTR(volumes));
    if (!pod)
        return nomem(err);
    *out = pod;
    return 0;
}
