/* The egress wall's bookkeeping against a recording nftables backend: the commands it sends,
 * what it reads back, what it refuses before nftables sees anything. (The rules on the real
 * kernel, with real packets: tests/integration/shim/test_shim.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cri-shim/wall.h"
#include "libmoat/egress.h"

typedef struct {
    char sent[32768]; /* every command since the last reset, as sent */
    int runs;
    bool fail_next;
    bool fail_writes;    /* every transaction (a run without output) fails */
    const char *sets[4]; /* the JSON "list set" answers: walled4, walled6, dns4, dns6 */
    const char *tables;  /* the JSON "list tables" answer */
    const char *chain;   /* the JSON "list chain" answer */
    const char *netdev;  /* the JSON "list table netdev" answer */
} fake_nft;

static const char *const set_names[] = {"walled4", "walled6", "dns4", "dns6"};

static int fake_run(void *user, const char *commands, char **ret_json, moat_error *err)
{
    fake_nft *f = user;
    f->runs++;
    size_t l = strlen(f->sent);
    snprintf(f->sent + l, sizeof(f->sent) - l, "%s\n", commands);
    if (f->fail_next || (f->fail_writes && !ret_json)) {
        f->fail_next = false;
        return moat_error_set(err, MOAT_E_IO, "nftables: Could not process rule: No such file");
    }
    if (!ret_json)
        return 0;
    const char *answer = "{\"nftables\": [{\"metainfo\": {}}]}";
    for (size_t i = 0; i < 4; i++)
        if (strstr(commands, "list set") && strstr(commands, set_names[i]) && f->sets[i])
            answer = f->sets[i];
    if (strstr(commands, "list tables") && f->tables)
        answer = f->tables;
    if (strstr(commands, "list chain") && f->chain)
        answer = f->chain;
    if (strstr(commands, "list table netdev") && f->netdev)
        answer = f->netdev;
    *ret_json = strdup(answer);
    return 0;
}

static void reset(fake_nft *f)
{
    f->sent[0] = '\0';
    f->runs = 0;
}

/* Walls id with the given addresses and DNS servers on one interface ("lo": one that
 * exists, for a reassert). */
static int add(iso_wall *w, const char *id, iso_wall_mode mode, const char *const *addrs,
               size_t n_addrs, const char *const *dns, size_t n_dns, moat_error *err)
{
    static const char *const dev[] = {"lo"};
    iso_wall_pod pod = {id, mode, addrs, n_addrs, dns, n_dns, dev, 1};
    return iso_wall_add(w, &pod, err);
}

static iso_wall *open_wall(fake_nft *f, iso_nft *nft)
{
    *nft = (iso_nft){fake_run, f};
    iso_wall *w = NULL;
    moat_error err = MOAT_ERROR_INIT;
    if (iso_wall_open(&w, nft, ISO_WALL_TABLE, NULL, 0, &err) < 0)
        fail_msg("open: %s", err.message);
    reset(f);
    return w;
}

static void test_open_writes_table_ranges_and_rules(void **state)
{
    (void)state;
    fake_nft f = {0};
    iso_nft nft = {fake_run, &f};
    iso_wall *w = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_wall_open(&w, &nft, "moat", NULL, 0, &err), 0);
    assert_non_null(strstr(f.sent, "add table inet moat\n"));
    assert_non_null(strstr(f.sent, "add table netdev moat\n"));
    for (size_t i = 0; i < moat_egress_blocked_ipv4_count; i++)
        assert_non_null(strstr(f.sent, moat_egress_blocked_ipv4[i]));
    for (size_t i = 0; i < moat_egress_blocked_ipv6_count; i++)
        assert_non_null(strstr(f.sent, moat_egress_blocked_ipv6[i]));
    assert_non_null(strstr(f.sent, "flush set inet moat blocked4\n"));
    /* the walled elements survive an open: their sets are never flushed */
    assert_null(strstr(f.sent, "flush set inet moat walled4"));
    assert_null(strstr(f.sent, "flush set inet moat dns4"));
    assert_non_null(strstr(f.sent, "type filter hook forward priority filter - 10"));
    assert_non_null(strstr(f.sent, "type filter hook input priority filter - 10"));
    assert_non_null(strstr(f.sent, "add rule inet moat forward ip saddr @walled4 ip daddr "
                                   "@blocked4 ip saddr . ct original ip daddr . meta l4proto . "
                                   "th dport != @dns4 reject with icmpx admin-prohibited"));
    assert_non_null(strstr(f.sent, "add rule inet moat input ip6 saddr @walled6"));
    /* one transaction for the tables, then one listing per set and one of the chains */
    assert_int_equal(f.runs, 6);
    assert_int_equal(iso_wall_count(w), 0);
    iso_wall_free(w);

    /* a table name that could carry other commands: refused before nftables */
    reset(&f);
    assert_int_equal(iso_wall_open(&w, &nft, "moat; flush ruleset", NULL, 0, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_int_equal(f.runs, 0);
    moat_error_clear(&err);

    /* nftables refuses: the error says so, no object */
    f.fail_next = true;
    w = NULL;
    assert_int_equal(iso_wall_open(&w, &nft, "moat", NULL, 0, &err), -1);
    assert_null(w);
    assert_non_null(strstr(err.message, "egress wall: table inet moat: nftables: Could not"));
    moat_error_clear(&err);
}

/* The cluster's ranges and the node's addresses join the blocked sets, by family; anything
 * else is refused before nftables hears of it. */
static void test_extra_blocked_destinations(void **state)
{
    (void)state;
    fake_nft f = {0};
    iso_nft nft = {fake_run, &f};
    iso_wall *w = NULL;
    moat_error err = MOAT_ERROR_INIT;
    const char *bad[] = {"203.0.113.7", "10.0.0.0/33"};
    assert_int_equal(iso_wall_open(&w, &nft, "moat", bad, 2, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_non_null(strstr(err.message, "10.0.0.0/33"));
    assert_int_equal(f.runs, 0);
    moat_error_clear(&err);

    const char *extra[] = {"203.0.113.7", "2001:db8::/64", "198.51.100.0/24", "2001:DB8::1"};
    assert_int_equal(iso_wall_open(&w, &nft, "moat", extra, 4, &err), 0);
    const char *v4 = strstr(f.sent, "add element inet moat blocked4 {");
    const char *v6 = strstr(f.sent, "add element inet moat blocked6 {");
    assert_non_null(v4);
    assert_non_null(v6);
    assert_non_null(strstr(v4, ", 203.0.113.7, 198.51.100.0/24 }"));
    assert_non_null(strstr(v6, ", 2001:db8::/64, 2001:db8::1 }")); /* canonical text */
    iso_wall_free(w);
}

/* A reassert writes the whole wall again, the walled elements included, in one transaction,
 * and says whether the kernel had lost anything. */
static void test_reassert(void **state)
{
    (void)state;
    fake_nft f = {0};
    iso_nft nft;
    iso_wall *w = open_wall(&f, &nft);
    moat_error err = MOAT_ERROR_INIT;
    const char *addr[] = {"10.88.0.5"};
    assert_int_equal(add(w, "sb1", ISO_WALL_INTERNET, addr, 1, NULL, 0, &err), 0);

    /* the kernel (the fake) lists nothing: flushed */
    reset(&f);
    bool restored = false;
    const char *extra[] = {"192.0.2.1"};
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), 0);
    assert_true(restored);
    assert_non_null(strstr(f.sent, "add table inet moat"));
    assert_non_null(strstr(f.sent, "flush chain inet moat forward"));
    assert_non_null(strstr(f.sent, "add element inet moat walled4 { 10.88.0.5 comment \"sb1\" }"));
    assert_non_null(strstr(f.sent, ", 192.0.2.1 }"));
    /* the interface's chain with its rules, the pod's address in them */
    assert_non_null(strstr(f.sent, "add chain netdev moat internet/lo/sb1 { type filter hook "
                                   "ingress device \"lo\" priority -500; policy drop; }\n"
                                   "flush chain netdev moat internet/lo/sb1\n"
                                   "add rule netdev moat internet/lo/sb1 meta protocol ip ip "
                                   "saddr { 10.88.0.5 } accept\n"));

    /* the kernel holds exactly what the wall knows: nothing was lost */
    f.sets[0] = "{\"nftables\": [{\"set\": {\"name\": \"walled4\", \"elem\": "
                "[{\"elem\": {\"val\": \"10.88.0.5\", \"comment\": \"sb1\"}}]}}]}";
    f.chain = "{\"nftables\": [{\"chain\": {}}, {\"rule\": {}}, {\"rule\": {}}]}";
    static const char chain3[] =
        "{\"nftables\": [{\"chain\": {\"name\": \"internet/lo/sb1\"}}, {\"rule\": {\"chain\": "
        "\"internet/lo/sb1\"}}, {\"rule\": {\"chain\": \"internet/lo/sb1\"}}, {\"rule\": "
        "{\"chain\": \"internet/lo/sb1\"}}]}";
    f.netdev = chain3;
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), 0);
    assert_false(restored);
    /* ... but a rule gone is a change */
    f.chain = "{\"nftables\": [{\"chain\": {}}, {\"rule\": {}}]}";
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), 0);
    assert_true(restored);
    /* ... and so is one gone from the interface's chain */
    f.chain = "{\"nftables\": [{\"chain\": {}}, {\"rule\": {}}, {\"rule\": {}}]}";
    f.netdev = "{\"nftables\": [{\"chain\": {\"name\": \"internet/lo/sb1\"}}, {\"rule\": "
               "{\"chain\": \"internet/lo/sb1\"}}]}";
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), 0);
    assert_true(restored);
    /* ... or the chain itself */
    f.netdev = NULL;
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), 0);
    assert_true(restored);
    f.netdev = chain3;
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), 0);
    assert_false(restored);
    /* nftables refusing is an error, counted by the caller */
    f.fail_writes = true;
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), -1);
    assert_non_null(strstr(err.message, "putting table inet moat back"));
    moat_error_clear(&err);
    iso_wall_free(w);
}

static void note_mode(void *user, const char *id, iso_wall_mode mode)
{
    char *seen = user;
    size_t l = strlen(seen);
    snprintf(seen + l, 64 - l, "%s=%s ", id, mode == ISO_WALL_NONE ? "none" : "internet");
}

static void test_open_reads_back_what_the_kernel_holds(void **state)
{
    (void)state;
    fake_nft f = {0};
    f.sets[0] = "{\"nftables\": [{\"metainfo\": {}}, {\"set\": {\"name\": \"walled4\", \"elem\": "
                "[{\"elem\": {\"val\": \"10.88.0.5\", \"comment\": \"sb1\"}}, \"10.88.0.9\"]}}]}";
    f.sets[2] =
        "{\"nftables\": [{\"set\": {\"name\": \"dns4\", \"elem\": [{\"elem\": {\"val\": "
        "{\"concat\": [\"10.88.0.5\", \"10.96.0.10\", 17, 53]}, \"comment\": \"sb1\"}}]}}]}";
    f.netdev = "{\"nftables\": [{\"table\": {}}, {\"chain\": {\"name\": \"internet/lo/sb1\"}}, "
               "{\"chain\": {\"name\": \"none/veth0/sb9\"}}, {\"chain\": {\"name\": "
               "\"other\"}}, {\"chain\": {\"name\": \"odd/lo/sb8\"}}]}";
    iso_nft nft;
    iso_wall *w = open_wall(&f, &nft);
    f.netdev = NULL;
    assert_true(iso_wall_has(w, "sb1"));
    assert_false(iso_wall_has(w, "sb2"));
    assert_int_equal(iso_wall_count(w), 1); /* the element without a comment is nobody's */
    /* a chain of the wall's is read back with its mode; another name is not the wall's */
    assert_true(iso_wall_has(w, "sb9"));
    assert_false(iso_wall_has(w, "sb8"));
    char seen[64] = "";
    iso_wall_foreach(w, note_mode, seen);
    assert_string_equal(seen, "sb1=internet sb9=none ");

    /* The same facts again: nothing to send. */
    moat_error err = MOAT_ERROR_INIT;
    const char *addr[] = {"10.88.0.5"}, *dns[] = {"10.96.0.10"};
    assert_int_equal(add(w, "sb1", ISO_WALL_INTERNET, addr, 1, dns, 1, &err), 0);
    /* only the UDP element was read back: sb1 is written again in one transaction, TCP too */
    assert_int_equal(f.runs, 1);
    assert_non_null(strstr(f.sent, "10.88.0.5 . 10.96.0.10 . 6 . 53 comment \"sb1\""));
    reset(&f);
    assert_int_equal(add(w, "sb1", ISO_WALL_INTERNET, addr, 1, dns, 1, &err), 0);
    assert_int_equal(f.runs, 0);

    /* A pod that is not walled now has 10.88.0.9: the left-over element goes. */
    assert_int_equal(iso_wall_release(w, "10.88.0.9", "sb-new", &err), 0);
    assert_string_equal(f.sent, "delete element inet moat walled4 { 10.88.0.9 }\n\n");
    reset(&f);
    assert_int_equal(iso_wall_release(w, "10.88.0.9", "sb-new", &err), 0);
    assert_int_equal(f.runs, 0);
    /* ... and when it has sb1's address, sb1 is gone: all of sb1 goes. */
    assert_int_equal(iso_wall_release(w, "10.88.0.5", "sb-new", &err), 0);
    assert_non_null(strstr(f.sent, "delete element inet moat walled4 { 10.88.0.5 }"));
    assert_non_null(
        strstr(f.sent, "delete element inet moat dns4 { 10.88.0.5 . 10.96.0.10 . 17 . 53 }"));
    assert_non_null(strstr(f.sent, "delete chain netdev moat internet/lo/sb1\n"));
    assert_false(iso_wall_has(w, "sb1"));
    iso_wall_free(w);
}

static void test_add_is_canonical_one_transaction_and_moves_addresses(void **state)
{
    (void)state;
    fake_nft f = {0};
    iso_nft nft;
    iso_wall *w = open_wall(&f, &nft);
    moat_error err = MOAT_ERROR_INIT;
    const char *addrs[] = {"10.88.0.7", "FD00:0::7"}, *dns[] = {"10.96.0.10", "fd00::a"};
    assert_int_equal(add(w, "sb1", ISO_WALL_INTERNET, addrs, 2, dns, 2, &err), 0);
    assert_int_equal(f.runs, 1);
    const char *chain = strstr(f.sent, "add chain netdev");
    assert_non_null(chain);
    assert_string_equal(chain,
                        "add chain netdev moat internet/lo/sb1 { type filter hook ingress device "
                        "\"lo\" priority -500; policy drop; }\n"
                        "flush chain netdev moat internet/lo/sb1\n"
                        "add rule netdev moat internet/lo/sb1 meta protocol ip ip saddr { "
                        "10.88.0.7 } accept\n"
                        "add rule netdev moat internet/lo/sb1 meta protocol arp arp saddr ip { "
                        "10.88.0.7 } accept\n"
                        "add rule netdev moat internet/lo/sb1 meta protocol ip6 ip6 saddr { "
                        "fd00::7 } accept\n"
                        "add rule netdev moat internet/lo/sb1 meta protocol ip6 ip6 saddr { ::, "
                        "fe80::/10 } icmpv6 type { nd-router-solicit, nd-neighbor-solicit, "
                        "nd-neighbor-advert } accept\n"
                        "add rule netdev moat internet/lo/sb1 meta protocol { ip, ip6 } reject "
                        "with icmpx admin-prohibited\n\n");
    *(char *)chain = '\0';
    assert_string_equal(f.sent, "add element inet moat walled4 { 10.88.0.7 comment \"sb1\" }\n"
                                "add element inet moat dns4 { 10.88.0.7 . 10.96.0.10 . 17 . 53 "
                                "comment \"sb1\" }\n"
                                "add element inet moat dns4 { 10.88.0.7 . 10.96.0.10 . 6 . 53 "
                                "comment \"sb1\" }\n"
                                "add element inet moat walled6 { fd00::7 comment \"sb1\" }\n"
                                "add element inet moat dns6 { fd00::7 . fd00::a . 17 . 53 "
                                "comment \"sb1\" }\n"
                                "add element inet moat dns6 { fd00::7 . fd00::a . 6 . 53 "
                                "comment \"sb1\" }\n");
    assert_true(iso_wall_has(w, "sb1"));
    assert_int_equal(iso_wall_count(w), 1);

    /* sb2 gets 10.88.0.7 (sb1 is gone): sb1's elements on it go in the same transaction. */
    reset(&f);
    const char *a2[] = {"10.88.0.7"};
    assert_int_equal(add(w, "sb2", ISO_WALL_INTERNET, a2, 1, NULL, 0, &err), 0);
    assert_int_equal(f.runs, 1);
    assert_non_null(strstr(f.sent, "delete element inet moat walled4 { 10.88.0.7 }\n"));
    assert_non_null(
        strstr(f.sent, "delete element inet moat dns4 { 10.88.0.7 . 10.96.0.10 . 17 . 53 }"));
    assert_null(strstr(f.sent, "fd00::7 }")); /* sb1's other address is not sb2's business */
    assert_non_null(strstr(f.sent, "add element inet moat walled4 { 10.88.0.7 comment \"sb2\" }"));
    assert_true(iso_wall_has(w, "sb1")); /* by its IPv6 address */
    assert_true(iso_wall_has(w, "sb2"));
    assert_int_equal(iso_wall_count(w), 2);

    /* nftables refuses: the index is as before */
    reset(&f);
    f.fail_next = true;
    const char *a3[] = {"10.88.0.8"};
    assert_int_equal(add(w, "sb3", ISO_WALL_INTERNET, a3, 1, NULL, 0, &err), -1);
    assert_non_null(strstr(err.message, "egress wall: walling sandbox sb3: nftables"));
    moat_error_clear(&err);
    assert_false(iso_wall_has(w, "sb3"));
    assert_int_equal(iso_wall_count(w), 2);
    iso_wall_free(w);
}

static void test_bad_input_is_refused_before_nftables(void **state)
{
    (void)state;
    fake_nft f = {0};
    iso_nft nft;
    iso_wall *w = open_wall(&f, &nft);
    moat_error err = MOAT_ERROR_INIT;
    const char *ok[] = {"10.88.0.7"};
    struct {
        const char *id, *addr, *dns, *words;
    } cases[] = {
        {"sb\" }\nflush ruleset", "10.88.0.7", NULL, "sandbox id"},
        {"", "10.88.0.7", NULL, "sandbox id"},
        {"sb1", "10.88.0.07", NULL, "pod address \"10.88.0.07\" is not an IP address"},
        {"sb1", "10.88.0.7 }", NULL, "pod address"},
        {"sb1", "10.88.0.7", "dns.example", "DNS server \"dns.example\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *a[] = {cases[i].addr}, *d[] = {cases[i].dns};
        assert_int_equal(
            add(w, cases[i].id, ISO_WALL_INTERNET, a, 1, d, cases[i].dns ? 1 : 0, &err), -1);
        assert_int_equal(err.code, MOAT_E_INVALID);
        if (!strstr(err.message, cases[i].words))
            fail_msg("case %zu: %s", i, err.message);
        moat_error_clear(&err);
    }
    assert_int_equal(add(w, "sb1", ISO_WALL_INTERNET, ok, 0, NULL, 0, &err), -1);
    assert_non_null(strstr(err.message, "has no address"));
    moat_error_clear(&err);
    /* interfaces: at least one, and names that cannot carry commands or break a chain name */
    const char *none[] = {NULL}, *bad_dev[] = {"veth0\" }"}, *slash[] = {"a/b"},
               *long_dev[] = {"a234567890123456"};
    const char *const *devs[] = {none, bad_dev, slash, long_dev};
    for (size_t i = 0; i < 4; i++) {
        iso_wall_pod pod = {"sb1", ISO_WALL_INTERNET, ok, 1, NULL, 0, devs[i], i ? 1 : 0};
        assert_int_equal(iso_wall_add(w, &pod, &err), -1);
        assert_int_equal(err.code, MOAT_E_INVALID);
        assert_non_null(strstr(err.message, i ? "interface" : "no interface"));
        moat_error_clear(&err);
    }
    assert_int_equal(f.runs, 0);
    iso_wall_free(w);
}

/* Under None: no DNS elements whatever the pod was given, and a chain that lets nothing
 * from its interfaces through. Then remove and delete. */
static void test_none_remove_and_delete(void **state)
{
    (void)state;
    fake_nft f = {0};
    iso_nft nft;
    iso_wall *w = open_wall(&f, &nft);
    moat_error err = MOAT_ERROR_INIT;
    const char *a[] = {"10.88.0.7", "fd00::7"}, *dns[] = {"10.96.0.10"};
    const char *devs[] = {"veth1", "veth2"};
    iso_wall_pod pod = {"sb1", ISO_WALL_NONE, a, 2, dns, 1, devs, 2};
    assert_int_equal(iso_wall_add(w, &pod, &err), 0);
    assert_null(strstr(f.sent, "dns4"));
    for (size_t i = 0; i < 2; i++) {
        char want[256];
        snprintf(want, sizeof(want),
                 "add chain netdev moat none/%s/sb1 { type filter hook ingress device \"%s\" "
                 "priority -500; policy drop; }\nflush chain netdev moat none/%s/sb1\n"
                 "add rule netdev moat none/%s/sb1 meta protocol { ip, ip6 } reject with icmpx "
                 "admin-prohibited\n",
                 devs[i], devs[i], devs[i], devs[i]);
        assert_non_null(strstr(f.sent, want));
    }
    assert_null(strstr(f.sent, "saddr")); /* no source address lets anything through */
    reset(&f);
    assert_int_equal(iso_wall_add(w, &pod, &err), 0); /* the same facts: nothing sent */
    assert_int_equal(f.runs, 0);
    /* the same pod as Internet: its chains are replaced in one transaction */
    pod.mode = ISO_WALL_INTERNET;
    assert_int_equal(iso_wall_add(w, &pod, &err), 0);
    assert_int_equal(f.runs, 1);
    assert_non_null(strstr(f.sent, "delete chain netdev moat none/veth1/sb1\n"));
    assert_non_null(strstr(f.sent, "add chain netdev moat internet/veth1/sb1 {"));
    assert_non_null(strstr(f.sent, "10.88.0.7 . 10.96.0.10 . 17 . 53"));

    reset(&f);
    assert_int_equal(iso_wall_remove(w, "sb1", &err), 0);
    assert_int_equal(f.runs, 1);
    assert_non_null(strstr(f.sent, "delete element inet moat walled4 { 10.88.0.7 }\n"));
    assert_non_null(strstr(f.sent, "delete element inet moat walled6 { fd00::7 }\n"));
    assert_non_null(strstr(f.sent, "delete chain netdev moat internet/veth1/sb1\n"));
    assert_non_null(strstr(f.sent, "delete chain netdev moat internet/veth2/sb1\n"));
    assert_false(iso_wall_has(w, "sb1"));
    reset(&f);
    assert_int_equal(iso_wall_remove(w, "sb1", &err), 0);
    assert_int_equal(f.runs, 0);
    iso_wall_free(w);

    /* delete: only the tables that are there */
    f.tables = "{\"nftables\": [{\"metainfo\": {}}, {\"table\": {\"family\": \"inet\", "
               "\"name\": \"other\"}}]}";
    assert_int_equal(iso_wall_delete(&nft, "moat", &err), 0);
    assert_null(strstr(f.sent, "delete table"));
    f.tables = "{\"nftables\": [{\"table\": {\"family\": \"inet\", \"name\": \"moat\"}}, "
               "{\"table\": {\"family\": \"netdev\", \"name\": \"moat\"}}]}";
    assert_int_equal(iso_wall_delete(&nft, "moat", &err), 0);
    assert_non_null(strstr(f.sent, "delete table inet moat\n"));
    assert_non_null(strstr(f.sent, "delete table netdev moat\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_writes_table_ranges_and_rules),
        cmocka_unit_test(test_open_reads_back_what_the_kernel_holds),
        cmocka_unit_test(test_extra_blocked_destinations),
        cmocka_unit_test(test_reassert),
        cmocka_unit_test(test_add_is_canonical_one_transaction_and_moves_addresses),
        cmocka_unit_test(test_bad_input_is_refused_before_nftables),
        cmocka_unit_test(test_none_remove_and_delete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
