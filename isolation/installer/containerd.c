#include "containerd.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "isolation/gvisor/runsc.h"
#include "isolation/installer/toml.h"
#include "libmoat/strbuf.h"

/* The CRI plugin that holds the runtimes, by config version (containerd docs/cri/config.md:
 * `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]` in containerd
 * 1.x's version 2, `[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]`
 * in 2.x's version 3). */
#define PLUGIN_V2 "io.containerd.grpc.v1.cri"
#define PLUGIN_V3 "io.containerd.cri.v1.runtime"

#define BEGIN_NL ISO_CONTAINERD_BEGIN " (newline added)"
#define BLOCK_NOTE                                                                                 \
    "# Moat's containerd runtimes. Do not edit between the BEGIN and END lines: Moat's\n"          \
    "# installer rewrites them on every run and removes them on uninstall.\n"

#define MAX_HANDLERS 64
#define TABLE_FMT    "[plugins.\"%s\".containerd.runtimes.%s%s]\n"

void iso_runtime_paths_default(iso_runtime_paths *out)
{
    *out = (iso_runtime_paths){
        .runsc = "/usr/local/bin/runsc",
        .runsc_config_dir = "/etc/moat/runsc",
        .kata_shim = "/opt/kata/bin/containerd-shim-kata-v2",
        .kata_clh_config =
            "/opt/kata/share/defaults/kata-containers/runtimes/clh/configuration-clh.toml",
        .kata_gpu_config = "/opt/kata/share/defaults/kata-containers/runtimes/qemu-nvidia-gpu/"
                           "configuration-qemu-nvidia-gpu.toml",
    };
}

int iso_containerd_path_check(const char *what, const char *path, moat_error *err)
{
    if (!path || !*path)
        return moat_error_set(err, MOAT_E_INVALID, "%s: no path given", what);
    if (path[0] != '/')
        return moat_error_set(err, MOAT_E_INVALID, "%s: %s is not an absolute path", what, path);
    for (const unsigned char *c = (const unsigned char *)path; *c; c++)
        if (*c < 0x20 || *c == 0x7f || *c == '"' || *c == '\\')
            return moat_error_set(err, MOAT_E_INVALID,
                                  "%s: the path holds a quote, backslash or control character",
                                  what);
    return 0;
}

int iso_containerd_handler_check(const char *handler, moat_error *err)
{
    size_t n = handler ? strlen(handler) : 0;
    if (n == 0 || n > 63)
        return moat_error_set(err, MOAT_E_INVALID, "handler name must have 1 to 63 characters");
    for (size_t i = 0; i < n; i++) {
        char c = handler[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0 && i < n - 1);
        if (!ok)
            return moat_error_set(err, MOAT_E_INVALID,
                                  "handler %s: not a DNS label (a-z, 0-9, '-' inside)", handler);
    }
    return 0;
}

/* ---- what the scan looks for ---------------------------------------------------------- */

static bool seg_is(const toml_kpath *k, size_t i, const char *v)
{
    return i < k->n && strcmp(k->seg[i], v) == 0;
}

/* table ++ key, borrowed segments (not owned). */
static void full_path(toml_kpath *out, const toml_kpath *table, const toml_kpath *key)
{
    out->n = 0;
    for (size_t i = 0; i < table->n && out->n < TOML_MAX_SEGMENTS; i++)
        out->seg[out->n++] = table->seg[i];
    for (size_t i = 0; key && i < key->n && out->n < TOML_MAX_SEGMENTS; i++)
        out->seg[out->n++] = key->seg[i];
}

/* Whether the first n segments of k are plugins.<plugin>.containerd.runtimes's first n. */
static bool runtimes_prefix(const toml_kpath *k, size_t n, const char *plugin)
{
    const char *want[] = {"plugins", plugin, "containerd", "runtimes"};
    for (size_t i = 0; i < n; i++)
        if (!seg_is(k, i, want[i]))
            return false;
    return true;
}

typedef struct {
    bool seen_version;
    long version;
    size_t version_pos;
} version_scan;

static int on_version(toml_scanner *sc, void *ud, bool array, const toml_kpath *table,
                      const toml_kpath *key, const char *val, size_t vlen, size_t pos)
{
    (void)array;
    version_scan *v = ud;
    if (!key || table->n != 0 || key->n != 1 || strcmp(key->seg[0], "version") != 0)
        return 0;
    long n = 0;
    bool ok = vlen > 0 && vlen <= 6;
    for (size_t i = 0; ok && i < vlen; i++) {
        ok = val[i] >= '0' && val[i] <= '9';
        n = n * 10 + (val[i] - '0');
    }
    if (!ok)
        return toml_fail(sc, pos, "version is not a small integer");
    v->seen_version = true;
    v->version = n;
    v->version_pos = pos;
    return 0;
}

static int check_text(const char *text, size_t len, moat_error *err)
{
    if (len > ISO_CONTAINERD_MAX_CONFIG)
        return moat_error_set(err, MOAT_E_RANGE, "containerd config of %zu bytes (at most %zu)",
                              len, ISO_CONTAINERD_MAX_CONFIG);
    if (memchr(text, '\0', len))
        return moat_error_set(err, MOAT_E_INVALID, "containerd config holds a NUL byte");
    return 0;
}

int iso_containerd_version_detect(iso_containerd_version *out, const char *text, size_t len,
                                  moat_error *err)
{
    if (check_text(text, len, err) < 0)
        return -1;
    version_scan v = {0};
    if (toml_scan(text, len, 0, on_version, &v, err) < 0)
        return moat_error_prefix(err, "containerd config");
    if (!v.seen_version)
        return moat_error_set(err, MOAT_E_INVALID,
                              "containerd config has no `version` line, so it is version 1 "
                              "(containerd 1.0-1.2's format): Moat writes versions 2 "
                              "(containerd 1.x), 3 and 4 (containerd 2.x); convert it first "
                              "with `containerd config migrate`");
    if (v.version < 2 || v.version > 4)
        return moat_error_set(err, MOAT_E_INVALID,
                              "containerd config version %ld is not one Moat writes (2, 3, 4)",
                              v.version);
    *out = (iso_containerd_version)v.version;
    return 0;
}

/* ---- the block ------------------------------------------------------------------------ */

static const char *runtime_type(iso_runtime_kind k)
{
    switch (k) {
    case ISO_RUNTIME_RUNSC:
    case ISO_RUNTIME_RUNSC_NONET:
    case ISO_RUNTIME_RUNSC_NVPROXY:
        return "io.containerd.runsc.v1";
    case ISO_RUNTIME_KATA_CLH:
        return "io.containerd.kata-clh.v2";
    case ISO_RUNTIME_KATA_GPU:
        return "io.containerd.kata-qemu-nvidia-gpu.v2";
    }
    return NULL;
}

int iso_containerd_block(char **out, iso_containerd_version v, const iso_runtime_entry *e, size_t n,
                         const iso_runtime_paths *p, moat_error *err)
{
    if (v != ISO_CONTAINERD_V2 && v != ISO_CONTAINERD_V3 && v != ISO_CONTAINERD_V4)
        return moat_error_set(err, MOAT_E_INVALID, "containerd config version %d", (int)v);
    if (n == 0 || n > MAX_HANDLERS)
        return moat_error_set(err, MOAT_E_INVALID, "1 to %d handlers, not %zu", MAX_HANDLERS, n);
    const char *plugin = v == ISO_CONTAINERD_V2 ? PLUGIN_V2 : PLUGIN_V3;
    moat_strbuf b = {0};
    moat_strbuf_appendf(&b, "%s\n%s", ISO_CONTAINERD_BEGIN, BLOCK_NOTE);
    for (size_t i = 0; i < n; i++) {
        const char *h = e[i].handler;
        if (iso_containerd_handler_check(h, err) < 0)
            goto fail;
        for (size_t j = 0; j < i; j++)
            if (strcmp(e[j].handler, h) == 0) {
                moat_error_set(err, MOAT_E_INVALID, "handler %s is listed twice", h);
                goto fail;
            }
        const char *type = runtime_type(e[i].kind);
        if (!type) {
            moat_error_set(err, MOAT_E_INVALID, "handler %s: unknown runtime kind %d", h,
                           (int)e[i].kind);
            goto fail;
        }
        moat_strbuf_appendf(&b, TABLE_FMT, plugin, h, "");
        moat_strbuf_appendf(&b, "  runtime_type = \"%s\"\n", type);
        if (e[i].kind == ISO_RUNTIME_KATA_CLH || e[i].kind == ISO_RUNTIME_KATA_GPU) {
            bool gpu = e[i].kind == ISO_RUNTIME_KATA_GPU;
            const char *config = gpu ? p->kata_gpu_config : p->kata_clh_config;
            if (iso_containerd_path_check("kata shim", p->kata_shim, err) < 0 ||
                iso_containerd_path_check(gpu ? "kata GPU config" : "kata clh config", config,
                                          err) < 0) {
                moat_error_prefix(err, "handler %s", h);
                goto fail;
            }
            /* As kata-deploy writes them (tools/packaging/kata-deploy/scripts/containerd.sh):
             * the shim by path, privileged pods without the host's devices; but unlike
             * kata-deploy, no pod_annotations: "io.katacontainers..." would let any pod's
             * author set hypervisor, kernel and virtiofsd arguments, "cdi.k8s.io/..." ask for
             * devices. GPUs come from the device plugin (CRI's CDI devices), nothing else. */
            moat_strbuf_appendf(&b, "  runtime_path = \"%s\"\n", p->kata_shim);
            moat_strbuf_appendf(&b, "  privileged_without_host_devices = true\n");
            moat_strbuf_appendf(&b, TABLE_FMT, plugin, h, ".options");
            moat_strbuf_appendf(&b, "  ConfigPath = \"%s\"\n", config);
        } else {
            _cleanup_free_ char *path = NULL;
            if (iso_runsc_toml_path(&path, p, h, err) < 0)
                goto fail;
            /* gvisor.dev/docs/user_guide/containerd/configuration: the shim reads its
             * runsc.toml from ConfigPath, with this TypeUrl. */
            moat_strbuf_appendf(&b, TABLE_FMT, plugin, h, ".options");
            moat_strbuf_appendf(&b, "  TypeUrl = \"io.containerd.runsc.v1.options\"\n");
            moat_strbuf_appendf(&b, "  ConfigPath = \"%s\"\n", path);
        }
    }
    moat_strbuf_appendf(&b, "%s\n", ISO_CONTAINERD_END);
    if (b.truncated) {
        free(b.buf);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory writing the containerd block");
    }
    *out = moat_strbuf_take(&b);
    return *out ? 0 : moat_error_set(err, MOAT_E_NOMEM, "out of memory");
fail:
    free(b.buf);
    return -1;
}

/* ---- markers -------------------------------------------------------------------------- */

typedef struct {
    bool found;
    bool added_nl; /* the BEGIN line says merge added the newline before it */
    size_t begin;  /* the BEGIN line's first byte */
    size_t end;    /* just past the END line (and its newline) */
} block_span;

static bool line_is(const char *line, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(line, lit, n) == 0;
}

static bool line_starts(const char *line, size_t n, const char *lit)
{
    return n >= strlen(lit) && memcmp(line, lit, strlen(lit)) == 0;
}

static int find_block(block_span *out, const char *text, size_t len, moat_error *err)
{
    block_span b = {0};
    bool open = false;
    size_t line = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t next = nl ? (size_t)(nl - text) + 1 : len;
        size_t n = (nl ? (size_t)(nl - text) : len) - i;
        if (n > 0 && text[i + n - 1] == '\r')
            n--;
        line++;
        const char *l = text + i;
        if (line_starts(l, n, ISO_CONTAINERD_BEGIN)) {
            if (!line_is(l, n, ISO_CONTAINERD_BEGIN) && !line_is(l, n, BEGIN_NL))
                return moat_error_set(err, MOAT_E_INVALID,
                                      "line %zu: not a marker Moat writes: %.*s", line, (int)n, l);
            if (open || b.found)
                return moat_error_set(err, MOAT_E_INVALID,
                                      "line %zu: a second moat-managed block begins", line);
            open = true;
            b.begin = i;
            b.added_nl = line_is(l, n, BEGIN_NL);
        } else if (line_starts(l, n, ISO_CONTAINERD_END)) {
            if (!line_is(l, n, ISO_CONTAINERD_END))
                return moat_error_set(err, MOAT_E_INVALID,
                                      "line %zu: not a marker Moat writes: %.*s", line, (int)n, l);
            if (!open)
                return moat_error_set(err, MOAT_E_INVALID,
                                      "line %zu: moat-managed block ends without beginning", line);
            open = false;
            b.found = true;
            b.end = next;
        }
        i = next;
    }
    if (open)
        return moat_error_set(err, MOAT_E_INVALID, "the moat-managed block has no `%s` line",
                              ISO_CONTAINERD_END);
    *out = b;
    return 0;
}

/* The text without the block; the newline merge added goes too (when the block ends the
 * file, as merge left it). */
static char *without_block(const char *text, size_t len, const block_span *b)
{
    size_t begin = b->begin, end = b->end;
    if (b->found && b->added_nl && end == len && begin > 0 && text[begin - 1] == '\n')
        begin--;
    size_t keep = b->found ? begin + (len - end) : len;
    char *s = malloc(keep + 1);
    if (!s)
        return NULL;
    if (b->found) {
        memcpy(s, text, begin);
        memcpy(s + begin, text + end, len - end);
    } else {
        memcpy(s, text, len);
    }
    s[keep] = '\0';
    return s;
}

int iso_containerd_unmerge(char **out, const char *text, size_t len, moat_error *err)
{
    if (check_text(text, len, err) < 0)
        return -1;
    block_span b;
    if (find_block(&b, text, len, err) < 0)
        return moat_error_prefix(err, "containerd config");
    char *s = without_block(text, len, &b);
    if (!s)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    *out = s;
    return 0;
}

/* ---- merge ---------------------------------------------------------------------------- */

typedef struct {
    const char *plugin; /* NULL until the first table */
    char *handlers[MAX_HANDLERS];
    size_t n;
} block_scan;

static int on_block(toml_scanner *sc, void *ud, bool array, const toml_kpath *table,
                    const toml_kpath *key, const char *val, size_t vlen, size_t pos)
{
    (void)val, (void)vlen;
    block_scan *bs = ud;
    if (key) {
        if (table->n == 0)
            return toml_fail(sc, pos, "a key outside the block's tables");
        return 0;
    }
    const char *plugin = seg_is(table, 1, PLUGIN_V2) ? PLUGIN_V2 : PLUGIN_V3;
    if (array || table->n < 5 || !runtimes_prefix(table, 4, plugin))
        return toml_fail(sc, pos, "a table that is not a containerd runtime");
    if (bs->plugin && strcmp(bs->plugin, plugin) != 0)
        return toml_fail(sc, pos, "tables for both config versions");
    bs->plugin = plugin;
    const char *h = table->seg[4];
    for (size_t i = 0; i < bs->n; i++)
        if (strcmp(bs->handlers[i], h) == 0)
            return 0;
    if (bs->n == MAX_HANDLERS)
        return toml_fail(sc, pos, "too many handlers");
    if (!(bs->handlers[bs->n] = strdup(h)))
        return moat_error_set(toml_error(sc), MOAT_E_NOMEM, "out of memory");
    bs->n++;
    return 0;
}

typedef struct {
    const block_scan *block;
} conflict_scan;

static void render_path(moat_strbuf *b, const toml_kpath *k, size_t n)
{
    for (size_t i = 0; i < n && i < k->n; i++) {
        const char *s = k->seg[i];
        bool bare = *s != '\0';
        for (const char *c = s; *c; c++)
            bare = bare && toml_bare_char((unsigned char)*c);
        moat_strbuf_appendf(b, bare ? "%s%s" : "%s\"%s\"", i ? "." : "", s);
    }
}

static int conflict(toml_scanner *sc, size_t pos, const toml_kpath *k, size_t n, const char *why)
{
    moat_strbuf b = {0};
    render_path(&b, k, n);
    moat_error_set(toml_error(sc), MOAT_E_INVALID, "line %zu: [%s]: %s", toml_line_at(sc, pos),
                   b.buf ? b.buf : "", why);
    free(b.buf);
    return -1;
}

static int on_user(toml_scanner *sc, void *ud, bool array, const toml_kpath *table,
                   const toml_kpath *key, const char *val, size_t vlen, size_t pos)
{
    (void)val, (void)vlen;
    const block_scan *bs = ((conflict_scan *)ud)->block;
    toml_kpath full;
    full_path(&full, table, key);
    if (full.n >= 5 && runtimes_prefix(&full, 4, bs->plugin)) {
        for (size_t i = 0; i < bs->n; i++)
            if (strcmp(full.seg[4], bs->handlers[i]) == 0)
                return conflict(sc, pos, &full, 5,
                                "the file already defines a runtime that Moat manages; remove "
                                "it (Moat's block defines it) or choose another handler name");
    }
    /* `runtimes = {...}`, `containerd = {...}` and the like: TOML forbids adding tables to
     * an inline table, and an array of tables is no table either. */
    if ((key || array) && full.n <= 4 && runtimes_prefix(&full, full.n, bs->plugin))
        return conflict(sc, pos, &full, full.n,
                        "defined as an inline value or array, which Moat's runtime tables "
                        "cannot extend; write it as [table] headers");
    return 0;
}

static int on_suffix(toml_scanner *sc, void *ud, bool array, const toml_kpath *table,
                     const toml_kpath *key, const char *val, size_t vlen, size_t pos)
{
    (void)ud, (void)array, (void)val, (void)vlen;
    if (key && table->n == 0)
        return toml_fail(sc, pos,
                         "a key/value line right after the moat-managed block would belong to the "
                         "block's last table; move it above the block");
    return 0;
}

static size_t count_lines(const char *s, size_t n)
{
    size_t l = 0;
    for (size_t i = 0; i < n; i++)
        l += s[i] == '\n';
    return l;
}

int iso_containerd_merge(char **out, const char *text, size_t len, const char *block,
                         moat_error *err)
{
    size_t blen = strlen(block);
    if (check_text(text, len, err) < 0)
        return -1;
    /* The block: exactly the form iso_containerd_block writes. */
    block_span bb;
    if (blen < sizeof(ISO_CONTAINERD_BEGIN) ||
        memcmp(block, ISO_CONTAINERD_BEGIN "\n", sizeof(ISO_CONTAINERD_BEGIN)) != 0 ||
        block[blen - 1] != '\n' || find_block(&bb, block, blen, NULL) < 0 || !bb.found ||
        bb.begin != 0 || bb.end != blen)
        return moat_error_set(err, MOAT_E_INVALID,
                              "Moat's block: not one block from its BEGIN to its END line");
    block_scan bs = {0};
    int r = -1;
    char *base = NULL;
    moat_strbuf o = {0};
    if (toml_scan(block, blen, 0, on_block, &bs, err) < 0) {
        moat_error_prefix(err, "Moat's block");
        goto done;
    }
    if (bs.n == 0) {
        moat_error_set(err, MOAT_E_INVALID, "Moat's block defines no runtime");
        goto done;
    }

    block_span b;
    if (find_block(&b, text, len, err) < 0) {
        moat_error_prefix(err, "containerd config");
        goto done;
    }
    if (!(base = without_block(text, len, &b))) {
        moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        goto done;
    }
    size_t base_len = strlen(base);
    iso_containerd_version v;
    if (iso_containerd_version_detect(&v, base, base_len, err) < 0)
        goto done;
    const char *want = v == ISO_CONTAINERD_V2 ? PLUGIN_V2 : PLUGIN_V3;
    if (strcmp(bs.plugin, want) != 0) {
        moat_error_set(err, MOAT_E_INVALID,
                       "containerd config is version %d, Moat's block is for version %s", (int)v,
                       v == ISO_CONTAINERD_V2 ? "3 or 4" : "2");
        goto done;
    }
    conflict_scan cs = {.block = &bs};
    if (toml_scan(base, base_len, 0, on_user, &cs, err) < 0) {
        moat_error_prefix(err, "containerd config");
        goto done;
    }
    if (b.found &&
        toml_scan(text + b.end, len - b.end, count_lines(text, b.end), on_suffix, NULL, err) < 0) {
        moat_error_prefix(err, "containerd config");
        goto done;
    }

    /* In place of the old block, or at the end; the BEGIN line keeps saying whether merge
     * added the newline before it. */
    const char *body = block + sizeof(ISO_CONTAINERD_BEGIN); /* past the BEGIN line */
    if (b.found) {
        moat_strbuf_appendf(&o, "%.*s%s\n%s%.*s", (int)b.begin, text,
                            b.added_nl ? BEGIN_NL : ISO_CONTAINERD_BEGIN, body, (int)(len - b.end),
                            text + b.end);
    } else {
        bool nl = len > 0 && text[len - 1] != '\n';
        moat_strbuf_appendf(&o, "%.*s%s%s\n%s", (int)len, text, nl ? "\n" : "",
                            nl ? BEGIN_NL : ISO_CONTAINERD_BEGIN, body);
    }
    if (o.truncated || !o.buf) {
        moat_error_set(err, MOAT_E_NOMEM, "out of memory merging the containerd config");
        goto done;
    }
    *out = moat_strbuf_take(&o);
    r = 0;
done:
    free(o.buf);
    free(base);
    for (size_t i = 0; i < bs.n; i++)
        free(bs.handlers[i]);
    return r;
}
