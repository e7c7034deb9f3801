/* The settings loader on a small table of its own: every key reaches its setter, sections
 * nest, null keeps the default, and what the table does not say is refused naming the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "libmoat/settings.h"
#include "libmoat/strv.h"

static const struct {
    const char *path;
    moat_setting_shape shape;
} table[] = {
    {"name", MOAT_SETTING_SCALAR},     {"net", MOAT_SETTING_SECTION},
    {"net.port", MOAT_SETTING_SCALAR}, {"net.cidrs", MOAT_SETTING_LIST},
    {"labels", MOAT_SETTING_MAP},
};

static const char *path_of(size_t i)
{
    return table[i].path;
}

static moat_setting_shape shape_of(size_t i)
{
    return table[i].shape;
}

typedef struct {
    char seen[512]; /* what the setters got, in order */
    char **kept;    /* a list a setter took */
} got;

static void add(got *g, const char *text)
{
    size_t l = strlen(g->seen);
    snprintf(g->seen + l, sizeof(g->seen) - l, "%s", text);
}

static int on_scalar(void *user, size_t i, const char *text, moat_error *err)
{
    if (strcmp(text, "bad") == 0)
        return moat_error_set(err, MOAT_E_INVALID, "\"bad\" is not a value");
    add(user, table[i].path);
    add(user, "=");
    add(user, text);
    add(user, ";");
    return 0;
}

static int on_list(void *user, size_t i, char ***items, size_t n, moat_error *err)
{
    got *g = user;
    add(g, table[i].path);
    add(g, "=[");
    for (size_t k = 0; k < n; k++) {
        add(g, k ? "," : "");
        add(g, (*items)[k]);
    }
    add(g, "];");
    moat_strv_free(g->kept);
    g->kept = *items; /* taken */
    *items = NULL;
    return 0;
}

static int on_map(void *user, size_t i, char ***keys, char ***values, size_t n, moat_error *err)
{
    for (size_t k = 0; k < n; k++) {
        add(user, table[i].path);
        add(user, "=");
        add(user, (*keys)[k]);
        add(user, ":");
        add(user, (*values)[k]);
        add(user, ";");
    }
    return 0;
}

static int parse(got *g, const char *text, moat_error *err)
{
    moat_settings s = {.n = sizeof(table) / sizeof(table[0]),
                       .path = path_of,
                       .shape = shape_of,
                       .map_key_noun = "label name",
                       .scalar = on_scalar,
                       .list = on_list,
                       .map = on_map,
                       .user = g};
    return moat_settings_parse(&s, text, strlen(text), err);
}

static void test_values_reach_their_setters(void **state)
{
    (void)state;
    got g = {{0}, NULL};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(parse(&g,
                           "name: x\nnet:\n  port: 80\n  cidrs: [10.0.0.0/8, fd00::/8]\n"
                           "labels: {a: b, c: ~}\n",
                           &err),
                     0);
    assert_string_equal(g.seen, "name=x;net.port=80;net.cidrs=[10.0.0.0/8,fd00::/8];labels=a:b;"
                                "labels=c:;");
    assert_int_equal(moat_strv_len(g.kept), 2);
    moat_strv_free(g.kept);
    /* null keeps the default: no setter; an empty document sets nothing */
    got h = {{0}, NULL};
    assert_int_equal(parse(&h, "name:\nnet: ~\n", &err), 0);
    assert_int_equal(parse(&h, "", &err), 0);
    assert_string_equal(h.seen, "");
}

static void test_refusals_name_the_key(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"nme: x\n", "nme: unknown key"},
        {"net:\n  prot: 1\n", "net.prot: unknown key"},
        {"name: a\nname: b\n", "name: duplicate key"},
        {"net: 1\n", "net: expected a mapping, found a string"},
        {"net:\n  cidrs: x\n", "net.cidrs: expected a list, found a string"},
        {"net:\n  cidrs: [a, '']\n", "net.cidrs[1]: expected a non-empty string"},
        {"name: [x]\n", "name: expected a string, found a sequence"},
        {"name: bad\n", "name: \"bad\" is not a value"},
        {"labels: {'': x}\n", "labels: a label name is empty"},
        {"labels: {a: [1]}\n", "labels.a: expected a string, found a sequence"},
        {"labels: {a: 1, a: 2}\n", "labels.a: duplicate key"},
        {"- x\n", "expected a mapping at the top level, found a sequence"},
        {"name: \"a\\0b\"\n", "name: contains a NUL byte"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        got g = {{0}, NULL};
        moat_error err = MOAT_ERROR_INIT;
        assert_int_equal(parse(&g, cases[i].text, &err), -1);
        assert_int_equal(err.code, MOAT_E_INVALID);
        if (!strstr(err.message, cases[i].want))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.message, cases[i].want);
        moat_error_clear(&err);
        moat_strv_free(g.kept);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_reach_their_setters),
        cmocka_unit_test(test_refusals_name_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
