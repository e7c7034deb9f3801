#include "wall.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/egress.h"
#include "libmoat/strv.h"
#include "libmoat/macro.h"
#include "libmoat/strbuf.h"

#define MAX_ID 128

/* The four sets of elements the wall owns, by index; ENTRY_CHAIN: a pod interface's chain
 * in the netdev table. */
enum { SET_WALLED4, SET_WALLED6, SET_DNS4, SET_DNS6, SET__COUNT, ENTRY_CHAIN = SET__COUNT };
static const char *const set_names[SET__COUNT] = {"walled4", "walled6", "dns4", "dns6"};

#define MAX_DEVICE 15 /* IFNAMSIZ - 1 */
#define MAX_CHAIN  (8 + 1 + MAX_DEVICE + 1 + MAX_ID)

/* One element in the kernel: its set, its text in nft's syntax ("10.88.0.5",
 * "10.88.0.5 . 10.96.0.10 . 17 . 53"), the address it walls and the sandbox it belongs
 * to ("" for an element without a comment: not ours to keep, released on reuse). For
 * ENTRY_CHAIN, the element is the chain's name ("<mode>/<device>/<sandbox id>": nft 1.0.6
 * lists neither a chain's device nor its comment in JSON, so the name carries both) and
 * addr is "". doomed: in the transaction being built, as a "delete". */
typedef struct {
    int set;
    char *element, *addr, *id;
    bool doomed;
} wall_entry;

static bool is_address_set(int set)
{
    return set == SET_WALLED4 || set == SET_WALLED6;
}

struct iso_wall {
    const iso_nft *nft;
    char *table;
    char **extra4, **extra6; /* more blocked destinations, NULL-terminated */
    wall_entry *entries;
    size_t n, cap;
};

/* checks */

/* 1 to max bytes, each a letter, a digit or one of extra. */
static bool name_ok(const char *s, size_t max, const char *extra)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > max)
        return false;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr(extra, *c)))
            return false;
    return true;
}

bool iso_wall_table_valid(const char *table)
{
    return name_ok(table, ISO_WALL_MAX_TABLE, "_");
}

/* Sandbox ids go into nft comments in double quotes: no quote, no backslash, no space. */
static bool valid_id(const char *id)
{
    return name_ok(id, MAX_ID, "_-.");
}

/* Interface names go into nft in double quotes and into chain names: no quote, no '/'. */
static bool valid_device(const char *dev)
{
    return name_ok(dev, MAX_DEVICE, "_.-");
}

static const char *mode_name(iso_wall_mode mode)
{
    return mode == ISO_WALL_NONE ? "none" : "internet";
}

/* "<mode>/<device>/<id>" back into its parts; false for a chain that is not the wall's. */
static bool chain_parse(const char *name, iso_wall_mode *ret_mode, char dev[MAX_DEVICE + 1],
                        char id[MAX_ID + 1])
{
    const char *a = strchr(name, '/'), *b = a ? strchr(a + 1, '/') : NULL;
    if (!b || (size_t)(b - a - 1) > MAX_DEVICE || strlen(b + 1) > MAX_ID)
        return false;
    if ((size_t)(a - name) == 4 && strncmp(name, "none", 4) == 0)
        *ret_mode = ISO_WALL_NONE;
    else if ((size_t)(a - name) == 8 && strncmp(name, "internet", 8) == 0)
        *ret_mode = ISO_WALL_INTERNET;
    else
        return false;
    snprintf(dev, MAX_DEVICE + 1, "%.*s", (int)(b - a - 1), a + 1);
    snprintf(id, MAX_ID + 1, "%s", b + 1);
    return valid_device(dev) && valid_id(id);
}

/* The canonical text of an address (so "10.0.0.01" is refused and "::FFFF:a00:1" and
 * "::ffff:10.0.0.1" are one element), its family in *ret_v6. */
static int canonical(char out[INET6_ADDRSTRLEN], bool *ret_v6, const char *addr, const char *what,
                     moat_error *err)
{
    unsigned char bin[sizeof(struct in6_addr)];
    if (addr && inet_pton(AF_INET, addr, bin) == 1) {
        inet_ntop(AF_INET, bin, out, INET6_ADDRSTRLEN);
        *ret_v6 = false;
        return 0;
    }
    if (addr && inet_pton(AF_INET6, addr, bin) == 1) {
        inet_ntop(AF_INET6, bin, out, INET6_ADDRSTRLEN);
        *ret_v6 = true;
        return 0;
    }
    return moat_error_set(err, MOAT_E_INVALID, "egress wall: %s \"%s\" is not an IP address", what,
                          addr ? addr : "");
}

/* the index */

static void entry_clear(wall_entry *e)
{
    free(e->element);
    free(e->addr);
    free(e->id);
}

static int index_add(iso_wall *w, int set, const char *element, const char *addr, const char *id)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        wall_entry *grown = realloc(w->entries, cap * sizeof(*grown));
        if (!grown)
            return -1;
        w->entries = grown;
        w->cap = cap;
    }
    wall_entry e = {set, strdup(element), strdup(addr), strdup(id), false};
    if (!e.element || !e.addr || !e.id) {
        entry_clear(&e);
        return -1;
    }
    w->entries[w->n++] = e;
    return 0;
}

static void index_drop(iso_wall *w, size_t i)
{
    entry_clear(&w->entries[i]);
    w->entries[i] = w->entries[--w->n];
}

/* Appends the entry's "delete element" to b and dooms it; unmark() then drops the doomed
 * (the transaction went through) or spares them (it did not). */
static void doom(iso_wall *w, moat_strbuf *b, wall_entry *e)
{
    if (e->set == ENTRY_CHAIN)
        moat_strbuf_appendf(b, "delete chain netdev %s %s\n", w->table, e->element);
    else
        moat_strbuf_appendf(b, "delete element inet %s %s { %s }\n", w->table, set_names[e->set],
                            e->element);
    e->doomed = true;
}

/* Dooms every entry not yet doomed that matches id, or addr when id is NULL. */
static void mark(iso_wall *w, moat_strbuf *b, const char *id, const char *addr)
{
    for (size_t i = 0; i < w->n; i++) {
        wall_entry *e = &w->entries[i];
        if (!e->doomed && (id ? strcmp(e->id, id) == 0 : strcmp(e->addr, addr) == 0))
            doom(w, b, e);
    }
}

static void unmark(iso_wall *w, bool drop)
{
    for (size_t i = w->n; i-- > 0;)
        if (w->entries[i].doomed) {
            if (drop)
                index_drop(w, i);
            else
                w->entries[i].doomed = false;
        }
}

static int run(iso_wall *w, moat_strbuf *b, moat_error *err)
{
    if (b->truncated)
        return moat_error_set(err, MOAT_E_NOMEM, "egress wall: out of memory");
    _cleanup_free_ char *cmds = moat_strbuf_take(b);
    if (!cmds)
        return moat_error_set(err, MOAT_E_NOMEM, "egress wall: out of memory");
    return w->nft->run(w->nft->user, cmds, NULL, err);
}

/* reading the kernel's elements back */

/* nft's JSON for one element value: a string, a number, or {"concat": [...]}. */
static int element_text(moat_strbuf *b, json_t *val)
{
    if (json_is_string(val))
        moat_strbuf_appendf(b, "%s", json_string_value(val));
    else if (json_is_integer(val))
        moat_strbuf_appendf(b, "%lld", (long long)json_integer_value(val));
    else {
        json_t *parts = json_object_get(val, "concat");
        if (!json_is_array(parts) || json_array_size(parts) == 0)
            return -1;
        size_t i;
        json_t *p;
        json_array_foreach (parts, i, p) {
            if (i)
                moat_strbuf_appendf(b, " . ");
            if (!json_is_string(p) && !json_is_integer(p))
                return -1;
            if (element_text(b, p) < 0)
                return -1;
        }
    }
    return 0;
}

static int read_set(iso_wall *w, int set, moat_error *err)
{
    _cleanup_free_ char *cmd = NULL, *out = NULL;
    if (asprintf(&cmd, "list set inet %s %s", w->table, set_names[set]) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "egress wall: out of memory");
    if (w->nft->run(w->nft->user, cmd, &out, err) < 0)
        return moat_error_prefix(err, "egress wall: reading %s", set_names[set]);
    json_error_t jerr;
    json_t *doc _cleanup_(json_decrefp) = json_loads(out, 0, &jerr);
    json_t *items = json_object_get(doc, "nftables");
    if (!json_is_array(items))
        return moat_error_set(err, MOAT_E_INVALID, "egress wall: %s: nft's JSON has no list",
                              set_names[set]);
    size_t i;
    json_t *item;
    json_array_foreach (items, i, item) {
        json_t *elems = json_object_get(json_object_get(item, "set"), "elem");
        size_t k;
        json_t *el;
        json_array_foreach (elems, k, el) {
            json_t *inner = json_object_get(el, "elem");
            json_t *val = inner ? json_object_get(inner, "val") : el;
            const char *id = inner ? json_string_value(json_object_get(inner, "comment")) : NULL;
            moat_strbuf b = {0};
            _cleanup_free_ char *text = NULL;
            if (element_text(&b, val) < 0 || !(text = moat_strbuf_take(&b))) {
                free(moat_strbuf_take(&b));
                return moat_error_set(err, MOAT_E_INVALID,
                                      "egress wall: %s: an element nft lists is not understood",
                                      set_names[set]);
            }
            /* The walled address is the element or, for DNS, its first part. */
            char addr[INET6_ADDRSTRLEN];
            size_t alen = strcspn(text, " ");
            snprintf(addr, sizeof(addr), "%.*s", (int)alen, text);
            if (index_add(w, set, text, addr, id && valid_id(id) ? id : "") < 0)
                return moat_error_set(err, MOAT_E_NOMEM, "egress wall: out of memory");
        }
    }
    return 0;
}

/* reading the kernel's chains back */

/* The netdev table as nft's JSON (caller frees). */
static int list_netdev(const iso_wall *w, json_t **ret_doc, moat_error *err)
{
    _cleanup_free_ char *cmd = NULL, *out = NULL;
    if (asprintf(&cmd, "list table netdev %s", w->table) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "egress wall: out of memory");
    if (w->nft->run(w->nft->user, cmd, &out, err) < 0)
        return moat_error_prefix(err, "egress wall: reading table netdev %s", w->table);
    json_t *doc = json_loads(out, 0, NULL);
    if (!json_is_array(json_object_get(doc, "nftables"))) {
        json_decref(doc);
        return moat_error_set(err, MOAT_E_INVALID,
                              "egress wall: table netdev %s: nft's JSON has no list", w->table);
    }
    *ret_doc = doc;
    return 0;
}

/* The wall's chains in doc into the index. */
static int index_chains(iso_wall *w, json_t *doc, moat_error *err)
{
    size_t i;
    json_t *item;
    json_array_foreach (json_object_get(doc, "nftables"), i, item) {
        const char *name =
            json_string_value(json_object_get(json_object_get(item, "chain"), "name"));
        iso_wall_mode mode;
        char dev[MAX_DEVICE + 1], id[MAX_ID + 1];
        if (name && chain_parse(name, &mode, dev, id) &&
            index_add(w, ENTRY_CHAIN, name, "", id) < 0)
            return moat_error_set(err, MOAT_E_NOMEM, "egress wall: out of memory");
    }
    return 0;
}

/* Rules in the chain named chain, per doc. */
static size_t rules_in(json_t *doc, const char *chain)
{
    size_t i, n = 0;
    json_t *item;
    json_array_foreach (json_object_get(doc, "nftables"), i, item) {
        const char *c = json_string_value(json_object_get(json_object_get(item, "rule"), "chain"));
        n += c && strcmp(c, chain) == 0;
    }
    return n;
}

/* the chains of the pod interfaces */

/* Rules chain_commands writes. */
static size_t chain_rules(iso_wall_mode mode, size_t n4, size_t n6)
{
    return mode == ISO_WALL_NONE ? 1 : (n4 ? 2 : 0) + (n6 ? 2 : 0) + 1;
}

static void addr_list(moat_strbuf *b, const char *const *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        moat_strbuf_appendf(b, "%s%s", i ? ", " : "", a[i]);
}

/* The chain that walls one pod interface, at its ingress: before the bridge, the node's
 * routing or netfilter's inet hooks see a packet. Under None nothing from the interface
 * passes. Under Internet only what carries one of the pod's own addresses as its source
 * (ARP included), and IPv6 neighbour discovery from a link-local or unspecified source
 * when the pod has an IPv6 address; then the inet table's rules judge the destination.
 * Other IP is rejected (administratively prohibited), anything else dropped. */
static void chain_commands(const iso_wall *w, moat_strbuf *b, const char *chain, const char *dev,
                           iso_wall_mode mode, const char *const *v4, size_t n4,
                           const char *const *v6, size_t n6)
{
    const char *t = w->table;
    moat_strbuf_appendf(b,
                        "add chain netdev %s %s { type filter hook ingress device \"%s\" "
                        "priority -500; policy drop; }\nflush chain netdev %s %s\n",
                        t, chain, dev, t, chain);
    if (mode == ISO_WALL_INTERNET && n4) {
        moat_strbuf_appendf(b, "add rule netdev %s %s meta protocol ip ip saddr { ", t, chain);
        addr_list(b, v4, n4);
        moat_strbuf_appendf(b, " } accept\nadd rule netdev %s %s meta protocol arp arp saddr ip { ",
                            t, chain);
        addr_list(b, v4, n4);
        moat_strbuf_appendf(b, " } accept\n");
    }
    if (mode == ISO_WALL_INTERNET && n6) {
        moat_strbuf_appendf(b, "add rule netdev %s %s meta protocol ip6 ip6 saddr { ", t, chain);
        addr_list(b, v6, n6);
        moat_strbuf_appendf(b,
                            " } accept\nadd rule netdev %s %s meta protocol ip6 ip6 saddr { ::, "
                            "fe80::/10 } icmpv6 type { nd-router-solicit, nd-neighbor-solicit, "
                            "nd-neighbor-advert } accept\n",
                            t, chain);
    }
    moat_strbuf_appendf(b,
                        "add rule netdev %s %s meta protocol { ip, ip6 } reject with icmpx "
                        "admin-prohibited\n",
                        t, chain);
}

/* The walled addresses the index holds for id, by family (borrowed). */
static void index_addrs(const iso_wall *w, const char *id, const char *v4[8], size_t *n4,
                        const char *v6[8], size_t *n6)
{
    *n4 = *n6 = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wall_entry *e = &w->entries[i];
        if (strcmp(e->id, id) != 0)
            continue;
        if (e->set == SET_WALLED4 && *n4 < 8)
            v4[(*n4)++] = e->addr;
        else if (e->set == SET_WALLED6 && *n6 < 8)
            v6[(*n6)++] = e->addr;
    }
}

/* the wall */

static void ranges(moat_strbuf *b, const char *table, const char *set, const char *const *cidrs,
                   size_t n, char *const *extra)
{
    moat_strbuf_appendf(b, "flush set inet %s %s\nadd element inet %s %s { ", table, set, table,
                        set);
    for (size_t i = 0; i < n; i++)
        moat_strbuf_appendf(b, "%s%s", i ? ", " : "", cidrs[i]);
    for (; extra && *extra; extra++)
        moat_strbuf_appendf(b, ", %s", *extra);
    moat_strbuf_appendf(b, " }\n");
}

/* Splits extra into w's IPv4 and IPv6 lists (replacing them); each entry a CIDR or an
 * address. */
static int set_extra(iso_wall *w, const char *const *extra, size_t n, moat_error *err)
{
    char **v4 = calloc(n + 1, sizeof(char *)), **v6 = calloc(n + 1, sizeof(char *));
    size_t n4 = 0, n6 = 0;
    if (!v4 || !v6)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        bool is_v6 = false;
        char c[INET6_ADDRSTRLEN];
        const char *text = extra[i];
        if (!moat_cidr_valid(text, &is_v6)) {
            moat_error perr = MOAT_ERROR_INIT;
            if (canonical(c, &is_v6, text, "blocked destination", &perr) < 0) {
                moat_error_clear(&perr);
                moat_strv_free(v4);
                moat_strv_free(v6);
                return moat_error_set(err, MOAT_E_INVALID,
                                      "egress wall: blocked destination \"%s\" is not a CIDR or "
                                      "an address",
                                      text ? text : "");
            }
            text = c;
        }
        char *copy = strdup(text);
        if (!copy)
            goto nomem;
        if (is_v6)
            v6[n6++] = copy;
        else
            v4[n4++] = copy;
    }
    moat_strv_free(w->extra4);
    moat_strv_free(w->extra6);
    w->extra4 = v4;
    w->extra6 = v6;
    return 0;
nomem:
    moat_strv_free(v4);
    moat_strv_free(v6);
    return moat_error_set(err, MOAT_E_NOMEM, "egress wall: out of memory");
}

/* The table, its sets, the blocked ranges and the rules, as nft commands. */
static void base_commands(const iso_wall *w, moat_strbuf *b)
{
    const char *t = w->table;
    moat_strbuf_appendf(
        b,
        "add table inet %s\n"
        "add table netdev %s\n"
        "add set inet %s blocked4 { type ipv4_addr; flags interval; auto-merge; }\n"
        "add set inet %s blocked6 { type ipv6_addr; flags interval; auto-merge; }\n"
        "add set inet %s walled4 { type ipv4_addr; }\n"
        "add set inet %s walled6 { type ipv6_addr; }\n"
        "add set inet %s dns4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; }\n"
        "add set inet %s dns6 { type ipv6_addr . ipv6_addr . inet_proto . inet_service; }\n",
        t, t, t, t, t, t, t, t);
    ranges(b, t, "blocked4", moat_egress_blocked_ipv4, moat_egress_blocked_ipv4_count, w->extra4);
    ranges(b, t, "blocked6", moat_egress_blocked_ipv6, moat_egress_blocked_ipv6_count, w->extra6);
    static const char *const hooks[] = {"forward", "input"};
    for (size_t i = 0; i < ELEMENTSOF(hooks); i++) {
        const char *h = hooks[i];
        moat_strbuf_appendf(
            b,
            "add chain inet %s %s { type filter hook %s priority filter - 10; policy accept; }\n"
            "flush chain inet %s %s\n"
            "add rule inet %s %s ip saddr @walled4 ip daddr @blocked4 ip saddr . ct original ip "
            "daddr . meta l4proto . th dport != @dns4 reject with icmpx admin-prohibited\n"
            "add rule inet %s %s ip6 saddr @walled6 ip6 daddr @blocked6 ip6 saddr . ct original "
            "ip6 daddr . meta l4proto . th dport != @dns6 reject with icmpx admin-prohibited\n",
            t, h, h, t, h, t, h, t, h);
    }
}

int iso_wall_open(iso_wall **out, const iso_nft *nft, const char *table, const char *const *extra,
                  size_t n_extra, moat_error *err)
{
    if (!iso_wall_table_valid(table))
        return moat_error_set(err, MOAT_E_INVALID,
                              "egress wall: table \"%s\" is not 1 to %d letters, digits or _",
                              table ? table : "", ISO_WALL_MAX_TABLE);
    iso_wall *w = calloc(1, sizeof(*w));
    if (!w || !(w->table = strdup(table))) {
        free(w);
        return moat_error_set(err, MOAT_E_NOMEM, "egress wall: out of memory");
    }
    w->nft = nft;
    if (set_extra(w, extra, n_extra, err) < 0) {
        iso_wall_free(w);
        return -1;
    }

    moat_strbuf b = {0};
    base_commands(w, &b);
    if (run(w, &b, err) < 0) {
        iso_wall_free(w);
        return moat_error_prefix(err, "egress wall: table inet %s", table);
    }
    for (int s = 0; s < SET__COUNT; s++)
        if (read_set(w, s, err) < 0) {
            iso_wall_free(w);
            return -1;
        }
    json_t *doc _cleanup_(json_decrefp) = NULL;
    if (list_netdev(w, &doc, err) < 0 || index_chains(w, doc, err) < 0) {
        iso_wall_free(w);
        return -1;
    }
    *out = w;
    return 0;
}

/* Whether the kernel holds the tables with their rules and exactly the walled elements and
 * chains of the index, each chain with its rules. Any failure to read counts as "no". */
static bool kernel_matches(iso_wall *w)
{
    iso_wall scratch = {.nft = w->nft, .table = w->table};
    moat_error err = MOAT_ERROR_INIT;
    json_t *doc _cleanup_(json_decrefp) = NULL;
    bool same = true;
    for (int s = 0; s < SET__COUNT && same; s++)
        same = read_set(&scratch, s, &err) == 0;
    same = same && list_netdev(w, &doc, &err) == 0 && index_chains(&scratch, doc, &err) == 0;
    same = same && scratch.n == w->n;
    for (size_t i = 0; same && i < w->n; i++) {
        const wall_entry *e = &w->entries[i];
        bool found = false;
        for (size_t k = 0; k < scratch.n && !found; k++)
            found = scratch.entries[k].set == e->set &&
                    strcmp(scratch.entries[k].element, e->element) == 0;
        same = found;
        if (same && e->set == ENTRY_CHAIN) {
            iso_wall_mode mode = ISO_WALL_INTERNET;
            char dev[MAX_DEVICE + 1], id[MAX_ID + 1];
            const char *v4[8], *v6[8];
            size_t n4, n6;
            chain_parse(e->element, &mode, dev, id);
            index_addrs(w, e->id, v4, &n4, v6, &n6);
            same = rules_in(doc, e->element) == chain_rules(mode, n4, n6);
        }
    }
    for (size_t i = 0; i < scratch.n; i++)
        entry_clear(&scratch.entries[i]);
    free(scratch.entries);
    /* the inet rules: two per chain */
    static const char *const hooks[] = {"forward", "input"};
    for (size_t i = 0; same && i < ELEMENTSOF(hooks); i++) {
        _cleanup_free_ char *cmd = NULL, *out = NULL;
        if (asprintf(&cmd, "list chain inet %s %s", w->table, hooks[i]) < 0 ||
            w->nft->run(w->nft->user, cmd, &out, &err) < 0) {
            same = false;
            break;
        }
        json_t *chain _cleanup_(json_decrefp) = json_loads(out, 0, NULL);
        size_t k, rules = 0;
        json_t *item;
        json_array_foreach (json_object_get(chain, "nftables"), k, item)
            rules += json_object_get(item, "rule") != NULL;
        same = rules == 2;
    }
    moat_error_clear(&err);
    return same;
}

int iso_wall_reassert(iso_wall *w, const char *const *extra, size_t n_extra, bool *ret_restored,
                      moat_error *err)
{
    bool same = kernel_matches(w);
    if (set_extra(w, extra, n_extra, err) < 0)
        return -1;
    moat_strbuf b = {0};
    base_commands(w, &b);
    /* "add element" of an element that is there is no error: the index, whole. A chain is
     * written again with its rules; one whose interface is gone (the pod went without its
     * RemovePodSandbox passing here) waits for its removal: an older kernel refuses a chain
     * on a missing device, and that would fail the whole transaction. */
    for (size_t i = 0; i < w->n; i++) {
        const wall_entry *e = &w->entries[i];
        if (e->set == ENTRY_CHAIN) {
            iso_wall_mode mode = ISO_WALL_INTERNET;
            char dev[MAX_DEVICE + 1], id[MAX_ID + 1];
            const char *v4[8], *v6[8];
            size_t n4, n6;
            if (!chain_parse(e->element, &mode, dev, id) || if_nametoindex(dev) == 0)
                continue;
            index_addrs(w, e->id, v4, &n4, v6, &n6);
            chain_commands(w, &b, e->element, dev, mode, v4, n4, v6, n6);
        } else if (*e->id)
            moat_strbuf_appendf(&b, "add element inet %s %s { %s comment \"%s\" }\n", w->table,
                                set_names[e->set], e->element, e->id);
        else
            moat_strbuf_appendf(&b, "add element inet %s %s { %s }\n", w->table, set_names[e->set],
                                e->element);
    }
    if (run(w, &b, err) < 0)
        return moat_error_prefix(err, "egress wall: putting table inet %s back", w->table);
    if (ret_restored)
        *ret_restored = !same;
    return 0;
}

bool iso_wall_has(const iso_wall *w, const char *sandbox_id)
{
    for (size_t i = 0; sandbox_id && i < w->n; i++)
        if (strcmp(w->entries[i].id, sandbox_id) == 0)
            return true;
    return false;
}

size_t iso_wall_count(const iso_wall *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wall_entry *e = &w->entries[i];
        if (!is_address_set(e->set))
            continue;
        bool first = true;
        for (size_t k = 0; k < i && first; k++)
            if (is_address_set(w->entries[k].set) && strcmp(w->entries[k].id, e->id) == 0)
                first = false;
        n += first && *e->id;
    }
    return n;
}

/* What the index would hold for the sandbox after an add: the walled addresses, then the
 * DNS elements. */
typedef struct {
    int set;
    char element[MAX_CHAIN + 1 > 2 * INET6_ADDRSTRLEN + 32 ? MAX_CHAIN + 1
                                                           : 2 * INET6_ADDRSTRLEN + 32];
    char addr[INET6_ADDRSTRLEN];
} wanted;

static bool same_as_index(const iso_wall *w, const char *id, const wanted *want, size_t n)
{
    size_t have = 0;
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->entries[i].id, id) == 0)
            have++;
    if (have != n)
        return false;
    for (size_t k = 0; k < n; k++) {
        bool found = false;
        for (size_t i = 0; i < w->n && !found; i++)
            found = w->entries[i].set == want[k].set && strcmp(w->entries[i].id, id) == 0 &&
                    strcmp(w->entries[i].element, want[k].element) == 0;
        if (!found)
            return false;
    }
    return true;
}

int iso_wall_add(iso_wall *w, const iso_wall_pod *pod, moat_error *err)
{
    const char *sandbox_id = pod->id;
    if (!valid_id(sandbox_id))
        return moat_error_set(err, MOAT_E_INVALID,
                              "egress wall: sandbox id \"%s\" is not 1 to %d of [A-Za-z0-9_.-]",
                              sandbox_id ? sandbox_id : "", MAX_ID);
    if (pod->n_addrs == 0)
        return moat_error_set(err, MOAT_E_INVALID, "egress wall: sandbox %s has no address",
                              sandbox_id);
    if (pod->n_devices == 0)
        return moat_error_set(err, MOAT_E_INVALID,
                              "egress wall: sandbox %s has no interface on the node", sandbox_id);
    size_t n_dns = pod->mode == ISO_WALL_INTERNET ? pod->n_dns : 0;
    if (pod->n_addrs > 8 || n_dns > 8 || pod->n_devices > 8)
        return moat_error_set(err, MOAT_E_RANGE,
                              "egress wall: sandbox %s: %zu addresses, %zu DNS servers and %zu "
                              "interfaces, at most 8 of each",
                              sandbox_id, pod->n_addrs, n_dns, pod->n_devices);
    for (size_t d = 0; d < pod->n_devices; d++)
        if (!valid_device(pod->devices[d]))
            return moat_error_set(err, MOAT_E_INVALID,
                                  "egress wall: sandbox %s: interface \"%s\" is not 1 to %d of "
                                  "[A-Za-z0-9_.-]",
                                  sandbox_id, pod->devices[d] ? pod->devices[d] : "", MAX_DEVICE);
    /* 8 addresses, each with up to 8 servers over two protocols; 8 chains. */
    wanted want[8 + 8 * 8 * 2 + 8];
    size_t n = 0;
    char dns_c[8][INET6_ADDRSTRLEN];
    bool dns_v6[8] = {false};
    for (size_t k = 0; k < n_dns; k++)
        if (canonical(dns_c[k], &dns_v6[k], pod->dns[k], "DNS server", err) < 0)
            return -1;
    const char *v4[8], *v6[8];
    size_t n4 = 0, n6 = 0;
    for (size_t a = 0; a < pod->n_addrs; a++) {
        bool is_v6 = false;
        char addr[INET6_ADDRSTRLEN];
        if (canonical(addr, &is_v6, pod->addrs[a], "pod address", err) < 0)
            return -1;
        wanted *x = &want[n++];
        x->set = is_v6 ? SET_WALLED6 : SET_WALLED4;
        snprintf(x->addr, sizeof(x->addr), "%s", addr);
        snprintf(x->element, sizeof(x->element), "%s", addr);
        if (is_v6)
            v6[n6++] = x->addr;
        else
            v4[n4++] = x->addr;
        for (size_t k = 0; k < n_dns; k++) {
            if (dns_v6[k] != is_v6)
                continue; /* a server of the other family: that address cannot use it */
            static const char *const protos[] = {"17", "6"}; /* UDP, TCP: by number */
            for (size_t p = 0; p < ELEMENTSOF(protos); p++) {
                x = &want[n++];
                x->set = is_v6 ? SET_DNS6 : SET_DNS4;
                snprintf(x->addr, sizeof(x->addr), "%s", addr);
                snprintf(x->element, sizeof(x->element), "%.46s . %.46s . %.2s . %d", addr,
                         dns_c[k], protos[p], MOAT_EGRESS_DNS_PORT);
            }
        }
    }
    size_t first_chain = n;
    for (size_t d = 0; d < pod->n_devices; d++) {
        wanted *x = &want[n++];
        x->set = ENTRY_CHAIN;
        x->addr[0] = '\0';
        snprintf(x->element, sizeof(x->element), "%s/%s/%s", mode_name(pod->mode), pod->devices[d],
                 sandbox_id);
    }
    if (same_as_index(w, sandbox_id, want, n))
        return 0;

    /* One transaction: out go this sandbox's old elements and chains and any other element
     * on its addresses; in go the new ones. */
    moat_strbuf b = {0};
    mark(w, &b, sandbox_id, NULL);
    for (size_t k = 0; k < first_chain; k++)
        if (is_address_set(want[k].set))
            mark(w, &b, NULL, want[k].addr);
    for (size_t k = 0; k < first_chain; k++)
        moat_strbuf_appendf(&b, "add element inet %s %s { %s comment \"%s\" }\n", w->table,
                            set_names[want[k].set], want[k].element, sandbox_id);
    for (size_t d = 0; d < pod->n_devices; d++)
        chain_commands(w, &b, want[first_chain + d].element, pod->devices[d], pod->mode, v4, n4, v6,
                       n6);
    if (run(w, &b, err) < 0) {
        unmark(w, false);
        return moat_error_prefix(err, "egress wall: walling sandbox %s", sandbox_id);
    }
    unmark(w, true);
    for (size_t k = 0; k < n; k++)
        if (index_add(w, want[k].set, want[k].element, want[k].addr, sandbox_id) < 0)
            return moat_error_set(err, MOAT_E_NOMEM,
                                  "egress wall: sandbox %s is walled, but out of memory "
                                  "recording it",
                                  sandbox_id);
    return 0;
}

void iso_wall_foreach(const iso_wall *w, void (*fn)(void *user, const char *id, iso_wall_mode mode),
                      void *user)
{
    for (size_t i = 0; i < w->n; i++) {
        const wall_entry *e = &w->entries[i];
        if (!*e->id)
            continue;
        bool first = true;
        for (size_t k = 0; k < i && first; k++)
            first = strcmp(w->entries[k].id, e->id) != 0;
        if (!first)
            continue;
        iso_wall_mode mode = ISO_WALL_INTERNET;
        for (size_t k = i; k < w->n; k++) {
            char dev[MAX_DEVICE + 1], id[MAX_ID + 1];
            iso_wall_mode m;
            if (w->entries[k].set == ENTRY_CHAIN && strcmp(w->entries[k].id, e->id) == 0 &&
                chain_parse(w->entries[k].element, &m, dev, id) && m == ISO_WALL_NONE)
                mode = ISO_WALL_NONE;
        }
        fn(user, e->id, mode);
    }
}

int iso_wall_remove(iso_wall *w, const char *sandbox_id, moat_error *err)
{
    if (!sandbox_id || !*sandbox_id || !iso_wall_has(w, sandbox_id))
        return 0;
    moat_strbuf b = {0};
    mark(w, &b, sandbox_id, NULL);
    if (run(w, &b, err) < 0) {
        unmark(w, false);
        return moat_error_prefix(err, "egress wall: unwalling sandbox %s", sandbox_id);
    }
    unmark(w, true);
    return 0;
}

int iso_wall_release(iso_wall *w, const char *addr, const char *sandbox_id, moat_error *err)
{
    char c[INET6_ADDRSTRLEN];
    bool v6 = false;
    if (canonical(c, &v6, addr, "pod address", err) < 0)
        return -1;
    /* Called for every ready pod that is not walled, at each of its statuses: mostly
     * nothing to do, found without building anything. */
    const char *keep = sandbox_id ? sandbox_id : "";
    bool any = false;
    for (size_t i = 0; i < w->n && !any; i++)
        any = strcmp(w->entries[i].addr, c) == 0 && strcmp(w->entries[i].id, keep) != 0;
    if (!any)
        return 0;
    /* Every element on the address that is not sandbox_id's, and what else those sandboxes
     * had: a sandbox whose address went to another pod is gone. Dooming frees nothing, so
     * the ids stay valid while marking. */
    moat_strbuf b = {0};
    for (size_t i = 0; i < w->n; i++) {
        wall_entry *e = &w->entries[i];
        if (e->doomed || strcmp(e->addr, c) != 0 || strcmp(e->id, keep) == 0)
            continue;
        if (*e->id)
            mark(w, &b, e->id, NULL);
        else
            doom(w, &b, e);
    }
    if (run(w, &b, err) < 0) {
        unmark(w, false);
        return moat_error_prefix(err, "egress wall: releasing %s", c);
    }
    unmark(w, true);
    return 0;
}

void iso_wall_free(iso_wall *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        entry_clear(&w->entries[i]);
    free(w->entries);
    free(w->table);
    moat_strv_free(w->extra4);
    moat_strv_free(w->extra6);
    free(w);
}
