#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "libmoat/settings.h"
#include "libmoat/strv.h"
#include "libmoat/egress.h"
#include "libmoat/names.h"
#include "libmoat/textfile.h"
#include "libmoat/units.h"

/* The file, and the text handed to operator_config_parse(). */
#define OPERATOR_CONFIG_MAX_BYTES (1024 * 1024)

/* ---- the keys --------------------------------------------------------------------------- */

typedef enum {
    KIND_SECTION,  /* a mapping of further keys */
    KIND_STRING,   /* a non-empty string */
    KIND_POLICY,   /* an imagePullPolicy */
    KIND_QUANTITY, /* a positive Kubernetes quantity */
    KIND_DURATION, /* a positive Go duration */
    KIND_INT,      /* a whole number between min and max */
    KIND_LABELS,   /* a non-empty mapping of label name to value */
    KIND_LIST,     /* a sequence of non-empty strings, maybe empty; def is comma-separated */
    KIND_CIDRS,    /* a KIND_LIST of CIDRs (libmoat/egress.h) */
} setting_kind;

typedef enum {
    S_RUNTIME_CLASSES,
    S_RC_AUTO,
    S_RC_VM,
    S_RC_GVISOR,
    S_NODES,
    S_MANAGED_LABEL,
    S_HYPERVISOR_LABEL,
    S_GPU_MODE_LABEL,
    S_DEFAULTS,
    S_DEFAULT_CPU,
    S_DEFAULT_MEMORY,
    S_DEFAULT_STORAGE,
    S_DEFAULT_TIMEOUT,
    S_DEFAULT_TTL,
    S_DEFAULT_SESSION_TIMEOUT,
    S_DEFAULT_IDLE_TIMEOUT,
    S_MAXIMUMS,
    S_MAX_CPU,
    S_MAX_MEMORY,
    S_MAX_STORAGE,
    S_MAX_GPUS,
    S_MAX_TIMEOUT,
    S_IMAGE_PULL_POLICY,
    S_GPU,
    S_GPU_CONTAINER_RESOURCE,
    S_GPU_VM_RESOURCE,
    S_GPU_PRODUCT_LABEL,
    S_GPU_TAINT_KEY,
    S_NETWORK,
    S_DNS_NAMESPACE,
    S_DNS_POD_LABELS,
    S_CLUSTER_CIDRS,
    S_WORKERS,
    S_PLACEMENT,
    S_PLACEMENT_NODE_KEYS,
    S_PLACEMENT_TOLERATION_KEYS,
    S_SECURITY,
    S_MARK_KEY_FILE,
    S_REQUIRED_POLICIES,
    S_SESSIONS,
    S_HELPER_IMAGE,
    S_COUNT
} setting_id;

typedef struct {
    const char *path; /* dotted, as errors name it */
    setting_kind kind;
    const char *def; /* the default, as the file would spell it; NULL for sections and labels */
    bool has_str;    /* the text is kept in the char * at offset str */
    size_t str;
    size_t num; /* offset of the int64_t (quantity, duration), int (KIND_INT) or char **
                   (KIND_LIST) */
    int min, max;
} setting;

#define STR(f) .has_str = true, .str = offsetof(operator_config, f)
#define NUM(f) .num = offsetof(operator_config, f)

/* Every key operator.yaml may hold; config.h documents them. The defaults go through the
 * same conversion as the file's values, so the two cannot disagree. */
static const setting settings[S_COUNT] = {
    [S_RUNTIME_CLASSES] = {.path = "runtimeClasses", .kind = KIND_SECTION},
    [S_RC_AUTO] = {"runtimeClasses.auto", KIND_STRING, MOAT_RUNTIMECLASS_AUTO,
                   STR(runtime_class_auto)},
    [S_RC_VM] = {"runtimeClasses.vm", KIND_STRING, MOAT_RUNTIMECLASS_VM, STR(runtime_class_vm)},
    [S_RC_GVISOR] = {"runtimeClasses.gvisor", KIND_STRING, MOAT_RUNTIMECLASS_GVISOR,
                     STR(runtime_class_gvisor)},

    [S_NODES] = {.path = "nodes", .kind = KIND_SECTION},
    [S_MANAGED_LABEL] = {"nodes.managedLabel", KIND_STRING, MOAT_NODE_LABEL_MANAGED,
                         STR(managed_node_label)},
    [S_HYPERVISOR_LABEL] = {"nodes.hypervisorLabel", KIND_STRING, MOAT_NODE_LABEL_HYPERVISOR,
                            STR(hypervisor_node_label)},
    [S_GPU_MODE_LABEL] = {"nodes.gpuModeLabel", KIND_STRING, MOAT_NODE_LABEL_GPU_MODE,
                          STR(gpu_mode_node_label)},

    [S_DEFAULTS] = {.path = "defaults", .kind = KIND_SECTION},
    [S_DEFAULT_CPU] = {"defaults.cpu", KIND_QUANTITY, "1", STR(default_cpu),
                       NUM(default_cpu_milli)},
    [S_DEFAULT_MEMORY] = {"defaults.memory", KIND_QUANTITY, "512Mi", STR(default_memory),
                          NUM(default_memory_milli)},
    [S_DEFAULT_STORAGE] = {"defaults.ephemeralStorage", KIND_QUANTITY, "1Gi", STR(default_storage),
                           NUM(default_storage_milli)},
    [S_DEFAULT_TIMEOUT] = {"defaults.timeout", KIND_DURATION, "5m", NUM(default_timeout_ns)},
    [S_DEFAULT_TTL] = {"defaults.ttlAfterFinished", KIND_DURATION, "10m", NUM(default_ttl_ns)},
    [S_DEFAULT_SESSION_TIMEOUT] = {"defaults.sessionTimeout", KIND_DURATION, "1h",
                                   NUM(default_session_timeout_ns)},
    [S_DEFAULT_IDLE_TIMEOUT] = {"defaults.idleTimeout", KIND_DURATION, "15m",
                                NUM(default_idle_timeout_ns)},

    [S_MAXIMUMS] = {.path = "maximums", .kind = KIND_SECTION},
    [S_MAX_CPU] = {"maximums.cpu", KIND_QUANTITY, "8", NUM(max_cpu_milli)},
    [S_MAX_MEMORY] = {"maximums.memory", KIND_QUANTITY, "32Gi", NUM(max_memory_milli)},
    [S_MAX_STORAGE] = {"maximums.ephemeralStorage", KIND_QUANTITY, "100Gi", NUM(max_storage_milli)},
    [S_MAX_GPUS] = {"maximums.gpus", KIND_INT, "8", NUM(max_gpus), .min = 0, .max = 8},
    [S_MAX_TIMEOUT] = {"maximums.timeout", KIND_DURATION, "24h", NUM(max_timeout_ns)},

    [S_IMAGE_PULL_POLICY] = {"imagePullPolicy", KIND_POLICY, "IfNotPresent",
                             STR(image_pull_policy)},

    [S_GPU] = {.path = "gpu", .kind = KIND_SECTION},
    [S_GPU_CONTAINER_RESOURCE] = {"gpu.containerResource", KIND_STRING, "nvidia.com/gpu",
                                  STR(gpu_container_resource)},
    [S_GPU_VM_RESOURCE] = {"gpu.vmResource", KIND_STRING, "nvidia.com/pgpu", STR(gpu_vm_resource)},
    [S_GPU_PRODUCT_LABEL] = {"gpu.productLabel", KIND_STRING, "nvidia.com/gpu.product",
                             STR(gpu_product_label)},
    [S_GPU_TAINT_KEY] = {"gpu.taintKey", KIND_STRING, "nvidia.com/gpu", STR(gpu_taint_key)},

    [S_NETWORK] = {.path = "network", .kind = KIND_SECTION},
    [S_DNS_NAMESPACE] = {"network.dnsNamespace", KIND_STRING, "kube-system", STR(dns_namespace)},
    [S_DNS_POD_LABELS] = {.path = "network.dnsPodLabels", .kind = KIND_LABELS},
    [S_CLUSTER_CIDRS] = {"network.clusterCIDRs", KIND_CIDRS, "", NUM(cluster_cidrs)},

    [S_WORKERS] = {"workers", KIND_INT, "4", NUM(workers), .min = 1, .max = 64},

    [S_PLACEMENT] = {.path = "placement", .kind = KIND_SECTION},
    [S_PLACEMENT_NODE_KEYS] = {"placement.nodeSelectorKeys", KIND_LIST, "",
                               NUM(placement_node_selector_keys)},
    [S_PLACEMENT_TOLERATION_KEYS] = {"placement.tolerationKeys", KIND_LIST, "",
                                     NUM(placement_toleration_keys)},

    [S_SECURITY] = {.path = "security", .kind = KIND_SECTION},
    [S_MARK_KEY_FILE] = {"security.markKeyFile", KIND_STRING, OPERATOR_MARK_KEY_FILE,
                         STR(mark_key_file)},
    [S_REQUIRED_POLICIES] = {"security.requiredPolicies", KIND_LIST, MOAT_POLICIES_DEFAULT,
                             NUM(required_policies)},

    [S_SESSIONS] = {.path = "sessions", .kind = KIND_SECTION},
    [S_HELPER_IMAGE] = {"sessions.helperImage", KIND_STRING, OPERATOR_HELPER_IMAGE_DEFAULT,
                        STR(helper_image)},
};

/* Each default, checked against its maximum once the whole file is read. */
static const struct {
    setting_id def, max;
} limits[] = {
    {S_DEFAULT_CPU, S_MAX_CPU},
    {S_DEFAULT_MEMORY, S_MAX_MEMORY},
    {S_DEFAULT_STORAGE, S_MAX_STORAGE},
    {S_DEFAULT_TIMEOUT, S_MAX_TIMEOUT},
    {S_DEFAULT_SESSION_TIMEOUT, S_MAX_TIMEOUT},
    {S_DEFAULT_IDLE_TIMEOUT, S_MAX_TIMEOUT},
};

#define DEFAULT_DNS_LABEL_KEY   "k8s-app"
#define DEFAULT_DNS_LABEL_VALUE "kube-dns"

/* ---- helpers ---------------------------------------------------------------------------- */

static void *field_at(operator_config *c, size_t offset)
{
    return (char *)c + offset;
}

static void operator_config_freep(operator_config **c)
{
    operator_config_free(*c);
}

/* A whole number written in decimal digits only; saturates at a billion, which is above every
 * range checked. Returns false for anything else ("+4", "0x10", "4.0", ""). */
static bool parse_int(int64_t *ret, const char *text)
{
    if (!*text)
        return false;
    int64_t v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        if (v < 1000000000)
            v = v * 10 + (*p - '0');
    }
    *ret = v;
    return true;
}

/* Replaces the list at st's offset with v (NULL-terminated, owned; taken). */
static void set_list(operator_config *c, const setting *st, char ***v)
{
    char ***slot = field_at(c, st->num);
    moat_strv_free(*slot);
    *slot = TAKE_PTR(*v);
}

/* A default list: comma-separated names, "" for none. */
static int set_list_text(operator_config *c, const setting *st, const char *text, moat_error *err)
{
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    _cleanup_strv_ char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    size_t i = 0;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        if (len > 0 && !(v[i++] = strndup(p, len)))
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        p += len + (p[len] == ',');
    }
    set_list(c, st, &v);
    return 0;
}

/* Converts `text` for st and stores it in c. Nothing is written when it fails; the error does
 * not name the key (the caller adds it). */
static int set_value(operator_config *c, const setting *st, const char *text, moat_error *err)
{
    int64_t v = 0;
    switch (st->kind) {
    case KIND_STRING:
        if (!*text)
            return moat_error_set(err, MOAT_E_INVALID, "must not be empty");
        break;
    case KIND_POLICY:
        if (strcmp(text, "Always") != 0 && strcmp(text, "IfNotPresent") != 0 &&
            strcmp(text, "Never") != 0)
            return moat_error_set(err, MOAT_E_INVALID,
                                  "\"%s\" is not Always, IfNotPresent or Never", text);
        break;
    case KIND_QUANTITY:
        if (moat_quantity_parse(&v, text, err) < 0)
            return -1;
        if (v <= 0)
            return moat_error_set(err, MOAT_E_RANGE, "quantity \"%s\" is not positive", text);
        break;
    case KIND_DURATION:
        if (moat_duration_parse(&v, text, err) < 0)
            return -1;
        if (v <= 0)
            return moat_error_set(err, MOAT_E_RANGE, "duration \"%s\" is not positive", text);
        break;
    case KIND_INT:
        if (!parse_int(&v, text))
            return moat_error_set(err, MOAT_E_INVALID, "\"%s\" is not a whole number", text);
        if (v < st->min || v > st->max)
            return moat_error_set(err, MOAT_E_RANGE, "%s is not between %d and %d", text, st->min,
                                  st->max);
        break;
    case KIND_LIST:
    case KIND_CIDRS:
        return set_list_text(c, st, text, err);
    case KIND_SECTION:
    case KIND_LABELS:
        return moat_error_set(err, MOAT_E_INVALID, "not a single value");
    }

    if (st->has_str) {
        char *s = strdup(text);
        if (!s)
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        char **slot = field_at(c, st->str);
        free(*slot);
        *slot = s;
    }
    if (st->kind == KIND_QUANTITY || st->kind == KIND_DURATION)
        *(int64_t *)field_at(c, st->num) = v;
    else if (st->kind == KIND_INT)
        *(int *)field_at(c, st->num) = (int)v;
    return 0;
}

/* Replaces c's DNS pod labels with keys/values (NULL-terminated, owned; taken on success). */
static void set_labels(operator_config *c, char ***keys, char ***values)
{
    moat_strv_free(c->dns_pod_label_keys);
    moat_strv_free(c->dns_pod_label_values);
    c->dns_pod_label_keys = TAKE_PTR(*keys);
    c->dns_pod_label_values = TAKE_PTR(*values);
}

/* ---- the file, through libmoat's settings loader ------------------------------------ */

typedef struct {
    operator_config *c;
    char *text[S_COUNT]; /* each value the file gave (copies), for the limits' messages */
} parse_state;

static const char *text_of(const parse_state *s, setting_id id)
{
    return s->text[id] ? s->text[id] : settings[id].def;
}

static const char *setting_path(size_t i)
{
    return settings[i].path;
}

static moat_setting_shape setting_shape(size_t i)
{
    switch (settings[i].kind) {
    case KIND_SECTION:
        return MOAT_SETTING_SECTION;
    case KIND_LABELS:
        return MOAT_SETTING_MAP;
    case KIND_LIST:
    case KIND_CIDRS:
        return MOAT_SETTING_LIST;
    default:
        return MOAT_SETTING_SCALAR;
    }
}

static int take_scalar(void *user, size_t i, const char *text, moat_error *err)
{
    parse_state *s = user;
    if (set_value(s->c, &settings[i], text, err) < 0)
        return -1;
    free(s->text[i]);
    if (!(s->text[i] = strdup(text)))
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    return 0;
}

static int take_list(void *user, size_t i, char ***items, size_t n, moat_error *err)
{
    parse_state *s = user;
    const setting *st = &settings[i];
    for (size_t k = 0; st->kind == KIND_CIDRS && k < n; k++)
        if (!moat_cidr_valid((*items)[k], NULL))
            return moat_error_set(err, MOAT_E_INVALID,
                                  "%s[%zu]: \"%s\" is not a CIDR (address/prefix length)", st->path,
                                  k, (*items)[k]);
    set_list(s->c, st, items);
    return 0;
}

static int take_map(void *user, size_t i, char ***keys, char ***values, size_t n, moat_error *err)
{
    parse_state *s = user;
    /* An empty podSelector would let sandboxes reach every pod in the DNS namespace. */
    if (n == 0)
        return moat_error_set(err, MOAT_E_INVALID,
                              "%s: no labels; an empty selector matches every pod",
                              settings[i].path);
    set_labels(s->c, keys, values);
    return 0;
}

static int check_limits(const parse_state *s, moat_error *err)
{
    for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
        const setting *def = &settings[limits[i].def], *max = &settings[limits[i].max];
        int64_t d = *(const int64_t *)field_at(s->c, def->num);
        int64_t m = *(const int64_t *)field_at(s->c, max->num);
        if (d > m)
            return moat_error_set(err, MOAT_E_RANGE, "%s: %s is above %s %s", def->path,
                                  text_of(s, limits[i].def), max->path, text_of(s, limits[i].max));
    }
    return 0;
}

static int parse_document(operator_config *c, const char *text, size_t len, moat_error *err)
{
    parse_state st = {.c = c};
    moat_settings s = {.n = S_COUNT,
                       .path = setting_path,
                       .shape = setting_shape,
                       .map_key_noun = "label name",
                       .scalar = take_scalar,
                       .list = take_list,
                       .map = take_map,
                       .user = &st};
    int r = moat_settings_parse(&s, text, len, err);
    if (r == 0)
        r = check_limits(&st, err);
    for (size_t i = 0; i < S_COUNT; i++)
        free(st.text[i]);
    return r;
}

static int parse_text(operator_config **out, const char *text, size_t len, moat_error *err)
{
    if (len > OPERATOR_CONFIG_MAX_BYTES)
        return moat_error_set(err, MOAT_E_NOMEM, "larger than 1 MiB");
    _cleanup_(operator_config_freep) operator_config *c = NULL;
    if (operator_config_new_default(&c, err) < 0 || parse_document(c, text, len, err) < 0)
        return -1;
    *out = TAKE_PTR(c);
    return 0;
}

/* ---- public API ------------------------------------------------------------------------- */

int operator_config_new_default(operator_config **out, moat_error *err)
{
    _cleanup_(operator_config_freep) operator_config *c = calloc(1, sizeof(*c));
    if (!c)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < S_COUNT; i++)
        if (settings[i].def && set_value(c, &settings[i], settings[i].def, err) < 0)
            return moat_error_prefix(err, "default %s", settings[i].path);

    _cleanup_strv_ char **keys = calloc(2, sizeof(char *));
    _cleanup_strv_ char **values = calloc(2, sizeof(char *));
    if (!keys || !values || !(keys[0] = strdup(DEFAULT_DNS_LABEL_KEY)) ||
        !(values[0] = strdup(DEFAULT_DNS_LABEL_VALUE)))
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    set_labels(c, &keys, &values);

    *out = TAKE_PTR(c);
    return 0;
}

int operator_config_parse(operator_config **out, const char *text, size_t len, const char *origin,
                          moat_error *err)
{
    if (parse_text(out, text, len, err) < 0)
        return moat_error_prefix(err, "%s", origin ? origin : "operator config");
    return 0;
}

int operator_config_load(operator_config **out, const char *path, moat_error *err)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    if (moat_read_text(&text, &len, path, OPERATOR_CONFIG_MAX_BYTES, err) < 0)
        return -1;
    return operator_config_parse(out, text, len, path, err);
}

void operator_config_free(operator_config *c)
{
    if (!c)
        return;
    free(c->runtime_class_auto);
    free(c->runtime_class_vm);
    free(c->runtime_class_gvisor);
    free(c->managed_node_label);
    free(c->hypervisor_node_label);
    free(c->gpu_mode_node_label);
    free(c->default_cpu);
    free(c->default_memory);
    free(c->default_storage);
    free(c->image_pull_policy);
    free(c->gpu_container_resource);
    free(c->gpu_vm_resource);
    free(c->gpu_product_label);
    free(c->gpu_taint_key);
    free(c->dns_namespace);
    moat_strv_free(c->dns_pod_label_keys);
    moat_strv_free(c->dns_pod_label_values);
    moat_strv_free(c->cluster_cidrs);
    moat_strv_free(c->placement_node_selector_keys);
    moat_strv_free(c->placement_toleration_keys);
    free(c->mark_key_file);
    moat_strv_free(c->required_policies);
    free(c->helper_image);
    free(c);
}
