#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#include "cri-shim/wall.h"
#include "libmoat/settings.h"
#include "libmoat/strv.h"
#include "libmoat/egress.h"
#include "libmoat/names.h"
#include "libmoat/textfile.h"

/* The file, and the text handed to shim_config_parse(). */
#define SHIM_CONFIG_MAX_BYTES (1024 * 1024)

/* A unix socket's path must fit sun_path with its NUL. */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* ---- the keys --------------------------------------------------------------------------- */

typedef enum {
    KIND_SECTION,  /* a mapping of further keys */
    KIND_SOCKET,   /* an absolute path that fits a unix socket address */
    KIND_PATH,     /* an absolute path */
    KIND_ADDRESS,  /* host:port */
    KIND_HANDLER,  /* a RuntimeClass handler: a DNS label */
    KIND_RUNTIME,  /* a containerd handler: a non-empty string */
    KIND_GPU_MODE, /* container | vm-passthrough | none */
    KIND_MODE,     /* octal permission bits, none for others */
    KIND_GROUP,    /* a group name or number; empty for none */
    KIND_ASSUME,   /* kvm | mshv | none; empty: probe */
    KIND_WALL,     /* nftables | none */
    KIND_TABLE,    /* an nftables table name: letters, digits, _ */
    KIND_CIDRS,    /* a list of CIDRs (a YAML sequence; comma-separated from a flag) */
} setting_kind;

typedef enum {
    S_LISTEN,
    S_UPSTREAM,
    S_METRICS,
    S_HANDLERS,
    S_H_AUTO,
    S_H_VM,
    S_H_GVISOR,
    S_RUNTIMES,
    S_R_RUNSC,
    S_R_RUNSC_NONET,
    S_R_RUNSC_NVPROXY,
    S_R_KATA_CLH,
    S_R_KATA_GPU,
    S_GPU_MODE,
    S_PROBE,
    S_PROBE_KVM,
    S_PROBE_MSHV,
    S_PROBE_ASSUME,
    S_SOCKET_MODE,
    S_SOCKET_GROUP,
    S_WALL,
    S_WALL_MODE,
    S_WALL_TABLE,
    S_WALL_CIDRS,
    S_COUNT
} setting_id;

typedef struct {
    const char *path; /* dotted, as errors name it */
    setting_kind kind;
    const char *def; /* the default, as the file would spell it; NULL for sections */
    size_t field;    /* offset of the char * (the unsigned int of KIND_MODE, the char ** of
                        KIND_CIDRS) */
} setting;

#define F(f) offsetof(shim_config, f)

/* Every key cri.yaml may hold; config.h documents them. The defaults go through the same
 * checks as the file's values, so the two cannot disagree. */
static const setting settings[S_COUNT] = {
    [S_LISTEN] = {"listen", KIND_SOCKET, "/run/moat/cri.sock", F(listen)},
    [S_UPSTREAM] = {"upstream", KIND_SOCKET, "/run/containerd/containerd.sock", F(upstream)},
    [S_METRICS] = {"metrics", KIND_ADDRESS, "127.0.0.1:9466", F(metrics)},

    [S_HANDLERS] = {.path = "handlers", .kind = KIND_SECTION},
    [S_H_AUTO] = {"handlers.auto", KIND_HANDLER, MOAT_RUNTIMECLASS_AUTO, F(handler_auto)},
    [S_H_VM] = {"handlers.vm", KIND_HANDLER, MOAT_RUNTIMECLASS_VM, F(handler_vm)},
    [S_H_GVISOR] = {"handlers.gvisor", KIND_HANDLER, MOAT_RUNTIMECLASS_GVISOR, F(handler_gvisor)},

    [S_RUNTIMES] = {.path = "runtimes", .kind = KIND_SECTION},
    [S_R_RUNSC] = {"runtimes.runsc", KIND_RUNTIME, MOAT_HANDLER_RUNSC, F(runsc)},
    [S_R_RUNSC_NONET] = {"runtimes.runscNoNetwork", KIND_RUNTIME, MOAT_HANDLER_RUNSC_NONET,
                         F(runsc_nonet)},
    [S_R_RUNSC_NVPROXY] = {"runtimes.runscNvproxy", KIND_RUNTIME, MOAT_HANDLER_RUNSC_NVPROXY,
                           F(runsc_nvproxy)},
    [S_R_KATA_CLH] = {"runtimes.kataClh", KIND_RUNTIME, MOAT_HANDLER_KATA_CLH, F(kata_clh)},
    [S_R_KATA_GPU] = {"runtimes.kataGpu", KIND_RUNTIME, MOAT_HANDLER_KATA_QEMU_NV_GPU, F(kata_gpu)},

    [S_GPU_MODE] = {"gpuMode", KIND_GPU_MODE, MOAT_GPU_MODE_NONE, F(gpu_mode)},

    [S_PROBE] = {.path = "probe", .kind = KIND_SECTION},
    [S_PROBE_KVM] = {"probe.kvm", KIND_PATH, "/dev/kvm", F(probe_kvm)},
    [S_PROBE_MSHV] = {"probe.mshv", KIND_PATH, "/dev/mshv", F(probe_mshv)},
    [S_PROBE_ASSUME] = {"probe.assume", KIND_ASSUME, "", F(probe_assume)},

    [S_SOCKET_MODE] = {"socketMode", KIND_MODE, "0660", F(socket_mode)},
    [S_SOCKET_GROUP] = {"socketGroup", KIND_GROUP, "", F(socket_group)},

    [S_WALL] = {.path = "egressWall", .kind = KIND_SECTION},
    [S_WALL_MODE] = {"egressWall.mode", KIND_WALL, SHIM_WALL_NFTABLES, F(wall_mode)},
    [S_WALL_TABLE] = {"egressWall.table", KIND_TABLE, "moat", F(wall_table)},
    [S_WALL_CIDRS] = {"egressWall.clusterCIDRs", KIND_CIDRS, "", F(wall_cluster_cidrs)},
};

/* ---- values ----------------------------------------------------------------------------- */

static void *field_at(shim_config *c, size_t offset)
{
    return (char *)c + offset;
}

static const char *string_at(const shim_config *c, setting_id id)
{
    return *(char *const *)((const char *)c + settings[id].field);
}

static void shim_config_freep(shim_config **c)
{
    shim_config_free(*c);
}

/* Kubernetes' RFC 1123 label: what a RuntimeClass's handler must be, so anything else could
 * never arrive from kubelet. */
static bool is_dns_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return false;
    return true;
}

/* A port: decimal digits only, 1..65535. */
static bool is_port(const char *s)
{
    if (!*s || strlen(s) > 5)
        return false;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    return v >= 1 && v <= 65535;
}

static int check_address(const char *text, moat_error *err)
{
    const char *colon = strrchr(text, ':');
    if (!colon || !is_port(colon + 1))
        return moat_error_set(err, MOAT_E_INVALID,
                              "\"%s\" is not host:port with a port from 1 to 65535", text);
    size_t hlen = (size_t)(colon - text);
    /* Listening on every interface is a choice to write down, not a default to fall into. */
    if (hlen == 0)
        return moat_error_set(err, MOAT_E_INVALID,
                              "\"%s\" has no host; write 0.0.0.0%s for every interface", text,
                              colon);
    bool bracketed = text[0] == '[';
    if (bracketed != (text[hlen - 1] == ']') || (bracketed && hlen < 3) ||
        (!bracketed && memchr(text, ':', hlen)))
        return moat_error_set(err, MOAT_E_INVALID,
                              "\"%s\": an IPv6 host goes in brackets, e.g. [::1]:9466", text);
    return 0;
}

/* An octal mode: octal digits only, read as octal whether the file quoted them or not
 * (YAML 1.1 would read 0660 as 432 and 660 as decimal; nobody means that). */
static int parse_mode(unsigned int *ret, const char *text, moat_error *err)
{
    if (!*text || strspn(text, "01234567") != strlen(text))
        return moat_error_set(err, MOAT_E_INVALID, "\"%s\" is not an octal mode such as \"0660\"",
                              text);
    unsigned long v = 0;
    for (const char *p = text; *p && v <= 0777; p++)
        v = v * 8 + (unsigned long)(*p - '0');
    if (v > 0777)
        return moat_error_set(err, MOAT_E_RANGE, "\"%s\" is above 0777", text);
    /* Whoever reaches the socket can start any container through containerd. */
    if (v & 0007)
        return moat_error_set(err, MOAT_E_RANGE,
                              "\"%s\" lets every local user use the CRI socket; "
                              "give access through socketGroup instead",
                              text);
    *ret = (unsigned int)v;
    return 0;
}

/* Checks `text` for st and stores it in c. Nothing is written when it fails; the error does
 * not name the key (the caller adds it). */
/* Replaces the CIDR list at st's field with items (n of them, copied), each checked. */
static int set_cidrs(shim_config *c, const setting *st, const char *const *items, size_t n,
                     bool name_key, moat_error *err)
{
    char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!moat_cidr_valid(items[i], NULL)) {
            moat_strv_free(v);
            return moat_error_set(err, MOAT_E_INVALID,
                                  "%s[%zu]: \"%s\" is not a CIDR (address/prefix length)",
                                  name_key ? st->path : "", i, items[i]);
        }
        if (!(v[i] = strdup(items[i]))) {
            moat_strv_free(v);
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        }
    }
    char ***slot = field_at(c, st->field);
    moat_strv_free(*slot);
    *slot = v;
    return 0;
}

static int set_value(shim_config *c, const setting *st, const char *text, moat_error *err)
{
    if (st->kind == KIND_SECTION)
        return moat_error_set(err, MOAT_E_INVALID, "a section, not a single value");
    if (st->kind == KIND_CIDRS) {
        /* from a flag or a default: comma-separated */
        _cleanup_free_ char *copy = strdup(text);
        const char *items[64];
        size_t n = 0;
        if (!copy)
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        for (char *save = NULL, *t = strtok_r(copy, ",", &save); t;
             t = strtok_r(NULL, ",", &save)) {
            if (n == ELEMENTSOF(items))
                return moat_error_set(err, MOAT_E_RANGE, "more than %zu CIDRs", ELEMENTSOF(items));
            items[n++] = t;
        }
        return set_cidrs(c, st, items, n, false, err);
    }
    if (st->kind == KIND_MODE) {
        unsigned int mode = 0;
        if (parse_mode(&mode, text, err) < 0)
            return -1;
        *(unsigned int *)field_at(c, st->field) = mode;
        return 0;
    }

    if (!*text && st->kind != KIND_GROUP && st->kind != KIND_ASSUME)
        return moat_error_set(err, MOAT_E_INVALID, "must not be empty");
    switch (st->kind) {
    case KIND_SOCKET:
    case KIND_PATH:
        if (text[0] != '/')
            return moat_error_set(err, MOAT_E_INVALID, "\"%s\" is not an absolute path", text);
        if (st->kind == KIND_SOCKET && strlen(text) > SOCKET_PATH_MAX)
            return moat_error_set(err, MOAT_E_RANGE,
                                  "\"%s\" is longer than a unix socket's path can be (%zu bytes)",
                                  text, SOCKET_PATH_MAX);
        break;
    case KIND_ADDRESS:
        if (check_address(text, err) < 0)
            return -1;
        break;
    case KIND_HANDLER:
        if (!is_dns_label(text))
            return moat_error_set(err, MOAT_E_INVALID,
                                  "\"%s\" is not a RuntimeClass handler (a lowercase DNS label)",
                                  text);
        break;
    case KIND_GPU_MODE:
        if (strcmp(text, MOAT_GPU_MODE_CONTAINER) != 0 && strcmp(text, MOAT_GPU_MODE_VM) != 0 &&
            strcmp(text, MOAT_GPU_MODE_NONE) != 0)
            return moat_error_set(err, MOAT_E_INVALID,
                                  "\"%s\" is not " MOAT_GPU_MODE_CONTAINER ", " MOAT_GPU_MODE_VM
                                  " or " MOAT_GPU_MODE_NONE,
                                  text);
        break;
    case KIND_ASSUME:
        if (*text && strcmp(text, MOAT_HYPERVISOR_KVM) != 0 &&
            strcmp(text, MOAT_HYPERVISOR_MSHV) != 0 && strcmp(text, MOAT_HYPERVISOR_NONE) != 0)
            return moat_error_set(err, MOAT_E_INVALID,
                                  "\"%s\" is not " MOAT_HYPERVISOR_KVM ", " MOAT_HYPERVISOR_MSHV
                                  " or " MOAT_HYPERVISOR_NONE,
                                  text);
        break;
    case KIND_WALL:
        if (strcmp(text, SHIM_WALL_NFTABLES) != 0 && strcmp(text, SHIM_WALL_NONE) != 0)
            return moat_error_set(err, MOAT_E_INVALID,
                                  "\"%s\" is not " SHIM_WALL_NFTABLES " or " SHIM_WALL_NONE, text);
        break;
    case KIND_TABLE:
        if (!iso_wall_table_valid(text))
            return moat_error_set(err, MOAT_E_INVALID,
                                  "\"%s\" is not an nftables table name (up to %d letters, "
                                  "digits or _)",
                                  text, ISO_WALL_MAX_TABLE);
        break;
    case KIND_RUNTIME:
    case KIND_GROUP:
    case KIND_SECTION:
    case KIND_MODE:
    case KIND_CIDRS:
        break;
    }

    char *s = NULL;
    if (*text && !(s = strdup(text)))
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    char **slot = field_at(c, st->field);
    free(*slot);
    *slot = s;
    return 0;
}

/* ---- the file, through libmoat's settings loader ------------------------------------ */

static const char *setting_path(size_t i)
{
    return settings[i].path;
}

static moat_setting_shape setting_shape(size_t i)
{
    return settings[i].kind == KIND_SECTION ? MOAT_SETTING_SECTION
           : settings[i].kind == KIND_CIDRS ? MOAT_SETTING_LIST
                                            : MOAT_SETTING_SCALAR;
}

static int take_scalar(void *user, size_t i, const char *text, moat_error *err)
{
    return set_value(user, &settings[i], text, err);
}

static int take_list(void *user, size_t i, char ***items, size_t n, moat_error *err)
{
    return set_cidrs(user, &settings[i], (const char *const *)*items, n, true, err);
}

static int parse_document(shim_config *c, const char *text, size_t len, moat_error *err)
{
    moat_settings s = {.n = S_COUNT,
                       .path = setting_path,
                       .shape = setting_shape,
                       .scalar = take_scalar,
                       .list = take_list,
                       .user = c};
    if (moat_settings_parse(&s, text, len, err) < 0)
        return -1;
    return shim_config_check(c, err);
}

static int parse_text(shim_config **out, const char *text, size_t len, moat_error *err)
{
    if (len > SHIM_CONFIG_MAX_BYTES)
        return moat_error_set(err, MOAT_E_NOMEM, "larger than 1 MiB");
    _cleanup_(shim_config_freep) shim_config *c = NULL;
    if (shim_config_new_default(&c, err) < 0 || parse_document(c, text, len, err) < 0)
        return -1;
    *out = TAKE_PTR(c);
    return 0;
}

/* ---- public API ------------------------------------------------------------------------- */

int shim_config_new_default(shim_config **out, moat_error *err)
{
    _cleanup_(shim_config_freep) shim_config *c = calloc(1, sizeof(*c));
    if (!c)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < S_COUNT; i++)
        if (settings[i].def && set_value(c, &settings[i], settings[i].def, err) < 0)
            return moat_error_prefix(err, "default %s", settings[i].path);
    *out = TAKE_PTR(c);
    return 0;
}

int shim_config_parse(shim_config **out, const char *text, size_t len, const char *origin,
                      moat_error *err)
{
    if (parse_text(out, text, len, err) < 0)
        return moat_error_prefix(err, "%s", origin ? origin : "moat-cri config");
    return 0;
}

int shim_config_load(shim_config **out, const char *path, moat_error *err)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    if (moat_read_text(&text, &len, path, SHIM_CONFIG_MAX_BYTES, err) < 0)
        return -1;
    return shim_config_parse(out, text, len, path, err);
}

int shim_config_set(shim_config *c, const char *key, const char *value, moat_error *err)
{
    if (!c || !key || !value)
        return moat_error_set(err, MOAT_E_INVALID, "no configuration, key or value");
    for (size_t i = 0; i < S_COUNT; i++) {
        if (strcmp(settings[i].path, key) != 0)
            continue;
        if (set_value(c, &settings[i], value, err) < 0)
            return moat_error_prefix(err, "%s", key);
        return 0;
    }
    return moat_error_set(err, MOAT_E_INVALID, "%s: unknown key", key);
}

int shim_config_check(const shim_config *c, moat_error *err)
{
    static const setting_id handlers[] = {S_H_AUTO, S_H_VM, S_H_GVISOR};
    static const setting_id runtimes[] = {S_R_RUNSC, S_R_RUNSC_NONET, S_R_RUNSC_NVPROXY,
                                          S_R_KATA_CLH, S_R_KATA_GPU};

    if (!c)
        return moat_error_set(err, MOAT_E_INVALID, "no configuration");
    /* Fields set by hand (from flags) get the file's rule too. */
    for (size_t i = 0; i < S_COUNT; i++) {
        setting_kind k = settings[i].kind;
        if (k == KIND_SECTION || k == KIND_MODE || k == KIND_GROUP || k == KIND_ASSUME ||
            k == KIND_CIDRS)
            continue;
        const char *v = string_at(c, (setting_id)i);
        if (!v || !*v)
            return moat_error_set(err, MOAT_E_INVALID, "%s: must not be empty", settings[i].path);
    }

    /* kubelet names only the logical handler: two equal ones would make the choice a guess. */
    for (size_t i = 0; i < ELEMENTSOF(handlers); i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(string_at(c, handlers[i]), string_at(c, handlers[j])) == 0)
                return moat_error_set(err, MOAT_E_INVALID, "%s: \"%s\" is also %s",
                                      settings[handlers[i]].path, string_at(c, handlers[i]),
                                      settings[handlers[j]].path);
    /* A pod asking for a concrete handler directly would be rewritten, or a rewritten one
     * would look like a request. */
    for (size_t i = 0; i < ELEMENTSOF(handlers); i++)
        for (size_t j = 0; j < ELEMENTSOF(runtimes); j++)
            if (strcmp(string_at(c, handlers[i]), string_at(c, runtimes[j])) == 0)
                return moat_error_set(err, MOAT_E_INVALID,
                                      "%s: \"%s\" is also %s; a logical handler must not be a "
                                      "containerd handler",
                                      settings[handlers[i]].path, string_at(c, handlers[i]),
                                      settings[runtimes[j]].path);
    if (strcmp(c->listen, c->upstream) == 0)
        return moat_error_set(err, MOAT_E_INVALID,
                              "upstream: \"%s\" is also listen; moat-cri would relay to itself",
                              c->upstream);
    return 0;
}

void shim_config_free(shim_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < S_COUNT; i++)
        if (settings[i].kind == KIND_CIDRS)
            moat_strv_free(*(char ***)field_at(c, settings[i].field));
        else if (settings[i].kind != KIND_SECTION && settings[i].kind != KIND_MODE)
            free(*(char **)field_at(c, settings[i].field));
    free(c);
}
