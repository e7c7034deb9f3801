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

#include "isolation/wall.h"
#include "libmoat/egress.h"

typedef struct {
    char sent[32768]; /* every command since the last reset, as sent */
    int runs;
    bool fail_next;
    bool fail_writes;    /* every transaction (a run without output) fails */
    const char *sets[4]; /* the JSON "list set" answers: walled4, walled6, dns4, dns6 */
    const char *tables;  /* the JSON "list tables" answer */
    const char *chain;   /* the JSON "list chain" answer */
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
    *ret_json = strdup(answer);
    return 0;
}

static void reset(fake_nft *f)
{
    f->sent[0] = '\0';
    f->runs = 0;
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
    /* one transaction for the table, then one listing per set */
    assert_int_equal(f.runs, 5);
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
    assert_int_equal(iso_wall_add(w, "sb1", addr, 1, NULL, 0, &err), 0);

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

    /* the kernel holds exactly what the wall knows: nothing was lost */
    f.sets[0] = "{\"nftables\": [{\"set\": {\"name\": \"walled4\", \"elem\": "
                "[{\"elem\": {\"val\": \"10.88.0.5\", \"comment\": \"sb1\"}}]}}]}";
    f.chain = "{\"nftables\": [{\"chain\": {}}, {\"rule\": {}}, {\"rule\": {}}]}";
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), 0);
    assert_false(restored);
    /* ... but a rule gone is a change */
    f.chain = "{\"nftables\": [{\"chain\": {}}, {\"rule\": {}}]}";
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), 0);
    assert_true(restored);
    /* nftables refusing is an error, counted by the caller */
    f.fail_writes = true;
    assert_int_equal(iso_wall_reassert(w, extra, 1, &restored, &err), -1);
    assert_non_null(strstr(err.message, "putting table inet moat back"));
    moat_error_clear(&err);
    iso_wall_free(w);
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
    iso_nft nft;
    iso_wall *w = open_wall(&f, &nft);
    assert_true(iso_wall_has(w, "sb1"));
    assert_false(iso_wall_has(w, "sb2"));
    assert_int_equal(iso_wall_count(w), 1); /* the element without a comment is nobody's */

    /* The same facts again: nothing to send. */
    moat_error err = MOAT_ERROR_INIT;
    const char *addr[] = {"10.88.0.5"}, *dns[] = {"10.96.0.10"};
    assert_int_equal(iso_wall_add(w, "sb1", addr, 1, dns, 1, &err), 0);
    /* only the UDP element was read back: sb1 is written again in one transaction, TCP too */
    assert_int_equal(f.runs, 1);
    assert_non_null(strstr(f.sent, "10.88.0.5 . 10.96.0.10 . 6 . 53 comment \"sb1\""));
    reset(&f);
    assert_int_equal(iso_wall_add(w, "sb1", addr, 1, dns, 1, &err), 0);
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
    assert_int_equal(iso_wall_add(w, "sb1", addrs, 2, dns, 2, &err), 0);
    assert_int_equal(f.runs, 1);
    assert_string_equal(f.sent, "add element inet moat walled4 { 10.88.0.7 comment \"sb1\" }\n"
                                "add element inet moat dns4 { 10.88.0.7 . 10.96.0.10 . 17 . 53 "
                                "comment \"sb1\" }\n"
                                "add element inet moat dns4 { 10.88.0.7 . 10.96.0.10 . 6 . 53 "
                                "comment \"sb1\" }\n"
                                "add element inet moat walled6 { fd00::7 comment \"sb1\" }\n"
                                "add element inet moat dns6 { fd00::7 . fd00::a . 17 . 53 "
                                "comment \"sb1\" }\n"
                                "add element inet moat dns6 { fd00::7 . fd00::a . 6 . 53 "
                                "comment \"sb1\" }\n\n");
    assert_true(iso_wall_has(w, "sb1"));
    assert_int_equal(iso_wall_count(w), 1);

    /* sb2 gets 10.88.0.7 (sb1 is gone): sb1's elements on it go in the same transaction. */
    reset(&f);
    const char *a2[] = {"10.88.0.7"};
    assert_int_equal(iso_wall_add(w, "sb2", a2, 1, NULL, 0, &err), 0);
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
    assert_int_equal(iso_wall_add(w, "sb3", a3, 1, NULL, 0, &err), -1);
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
        assert_int_equal(iso_wall_add(w, cases[i].id, a, 1, d, cases[i].dns ? 1 : 0, &err), -1);
        assert_int_equal(err.code, MOAT_E_INVALID);
        if (!strstr(err.message, cases[i].words))
            fail_msg("case %zu: %s", i, err.message);
        moat_error_clear(&err);
    }
    assert_int_equal(iso_wall_add(w, "sb1", ok, 0, NULL, 0, &err), -1);
    assert_non_null(strstr(err.message, "has no address"));
    moat_error_clear(&err);
    assert_int_equal(f.runs, 0);
    iso_wall_free(w);
}

static void test_dns_remove_and_delete(void **state)
{
    (void)state;
    fake_nft f = {0};
    iso_nft nft;
    iso_wall *w = open_wall(&f, &nft);
    moat_error err = MOAT_ERROR_INIT;
    const char *dns[] = {"10.96.0.10"};
    assert_int_equal(iso_wall_set_dns(w, "sb1", dns, 1, &err), -1);
    assert_int_equal(err.code, MOAT_E_NOTFOUND);
    moat_error_clear(&err);

    const char *a[] = {"10.88.0.7"};
    assert_int_equal(iso_wall_add(w, "sb1", a, 1, NULL, 0, &err), 0);
    reset(&f);
    assert_int_equal(iso_wall_set_dns(w, "sb1", dns, 1, &err), 0);
    /* the address stays walled throughout: deleted and added back in one transaction */
    assert_int_equal(f.runs, 1);
    assert_non_null(
        strstr(f.sent, "add element inet moat dns4 { 10.88.0.7 . 10.96.0.10 . 17 . 53"));
    assert_non_null(strstr(f.sent, "add element inet moat walled4 { 10.88.0.7 comment \"sb1\" }"));
    reset(&f);
    assert_int_equal(iso_wall_set_dns(w, "sb1", dns, 1, &err), 0);
    assert_int_equal(f.runs, 0);

    assert_int_equal(iso_wall_remove(w, "sb1", &err), 0);
    assert_string_equal(f.sent,
                        "delete element inet moat walled4 { 10.88.0.7 }\n"
                        "delete element inet moat dns4 { 10.88.0.7 . 10.96.0.10 . 17 . 53 }\n"
                        "delete element inet moat dns4 { 10.88.0.7 . 10.96.0.10 . 6 . 53 }\n\n");
    assert_false(iso_wall_has(w, "sb1"));
    reset(&f);
    assert_int_equal(iso_wall_remove(w, "sb1", &err), 0);
    assert_int_equal(f.runs, 0);
    iso_wall_free(w);

    /* delete: only a table that is there */
    f.tables = "{\"nftables\": [{\"metainfo\": {}}, {\"table\": {\"family\": \"inet\", "
               "\"name\": \"other\"}}]}";
    assert_int_equal(iso_wall_delete(&nft, "moat", &err), 0);
    assert_null(strstr(f.sent, "delete table"));
    f.tables = "{\"nftables\": [{\"table\": {\"family\": \"inet\", \"name\": \"moat\"}}]}";
    assert_int_equal(iso_wall_delete(&nft, "moat", &err), 0);
    assert_non_null(strstr(f.sent, "delete table inet moat\n"));
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
        cmocka_unit_test(test_dns_remove_and_delete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
