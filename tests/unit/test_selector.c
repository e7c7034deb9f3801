#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "libmoat/selector.h"

static kube_selector *parse_ok(const char *text)
{
    moat_error err = MOAT_ERROR_INIT;
    kube_selector *s = NULL;
    if (kube_selector_parse(&s, text, &err) != 0)
        fail_msg("selector \"%s\": %s", text, err.message);
    assert_non_null(s);
    assert_null(err.message);
    return s;
}

/* Parses text, checks its canonical form, and that the form is a fixed point. */
static void assert_canonical(const char *text, const char *want)
{
    kube_selector *s = parse_ok(text);
    char *got = kube_selector_string(s);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("selector \"%s\": canonical \"%s\", want \"%s\"", text, got, want);
    kube_selector *again = parse_ok(got);
    char *got_again = kube_selector_string(again);
    assert_non_null(got_again);
    assert_string_equal(got_again, got);
    free(got_again);
    kube_selector_free(again);
    free(got);
    kube_selector_free(s);
}

/* Fails to parse with code; the message is compared in full when want is not NULL. */
static void assert_parse_error(const char *text, moat_error_code code, const char *want)
{
    moat_error err = MOAT_ERROR_INIT;
    kube_selector *s = (kube_selector *)0x1; /* out-parameters are written only on success */
    assert_int_equal(kube_selector_parse(&s, text, &err), -1);
    assert_ptr_equal(s, (kube_selector *)0x1);
    assert_non_null(err.message);
    if (err.code != code)
        fail_msg("selector \"%s\": code %d, want %d (%s)", text, err.code, code, err.message);
    if (want && strcmp(err.message, want) != 0)
        fail_msg("selector \"%s\":\n got: %s\nwant: %s", text, err.message, want);
    moat_error_clear(&err);
}

/* Fails with MOAT_E_INVALID and a message that names this 1-based position. */
static void assert_error_at(const char *text, size_t position)
{
    moat_error err = MOAT_ERROR_INIT;
    kube_selector *s = NULL;
    assert_int_equal(kube_selector_parse(&s, text, &err), -1);
    assert_null(s);
    assert_int_equal(err.code, MOAT_E_INVALID);
    char want[64];
    snprintf(want, sizeof(want), ": position %zu: ", position);
    if (!strstr(err.message, want))
        fail_msg("selector \"%s\": want%sin \"%s\"", text, want, err.message);
    moat_error_clear(&err);
}

/* Matching against labels given as JSON text ("null" for a JSON null; NULL for no object). */
static bool matches(const char *selector, const char *labels_json)
{
    json_t *labels = NULL;
    if (labels_json) {
        json_error_t jerr;
        labels = json_loads(labels_json, JSON_DECODE_ANY, &jerr);
        if (!labels)
            fail_msg("bad test JSON %s: %s", labels_json, jerr.text);
    }
    kube_selector *s = parse_ok(selector);
    bool r = kube_selector_matches(s, labels);
    kube_selector_free(s);
    json_decref(labels);
    return r;
}

static void test_parse_operators(void **state)
{
    assert_canonical("a=b", "a=b");
    assert_canonical("a==b", "a==b"); /* kept apart from "=", as String() does */
    assert_canonical("a!=b", "a!=b");
    assert_canonical("a in (b,c)", "a in (b,c)");
    assert_canonical("a notin (b,c)", "a notin (b,c)");
    assert_canonical("a", "a");
    assert_canonical("!a", "!a");
    assert_canonical("a>5", "a>5");
    assert_canonical("a<5", "a<5");
    assert_canonical("a=", "a=");
    assert_canonical("a!=", "a!=");
    assert_canonical("a=,b", "a=,b");
    assert_canonical("example.com/a=b", "example.com/a=b");
    assert_canonical("k8s.io/app-name.v_1=A.b-c_9", "k8s.io/app-name.v_1=A.b-c_9");
    assert_canonical("a in(b)", "a in (b)");
    assert_canonical("a notin(b)", "a notin (b)");
    /* "in" and "notin" are operators only where an operator is expected. */
    assert_canonical("in=notin", "in=notin");
    assert_canonical("notin in (in,notin)", "notin in (in,notin)");
    assert_canonical("!in", "!in");
}

static void test_parse_sets(void **state)
{
    assert_canonical("a in (c,b,c)", "a in (b,c)"); /* sorted, duplicates dropped */
    assert_canonical("a in (b)", "a in (b)");
    /* The empty value, written the ways labels.Parse accepts. */
    assert_canonical("a in ()", "a in ()");
    assert_canonical("a in (,)", "a in ()");
    assert_canonical("a in (b,)", "a in (,b)");
    assert_canonical("a in (,b)", "a in (,b)");
    assert_canonical("a in (b,,c)", "a in (,b,c)");
    assert_canonical("a notin ()", "a notin ()");
}

static void test_parse_whitespace(void **state)
{
    assert_canonical(" a = b , c != d ", "a=b,c!=d");
    assert_canonical("\ta\tin\t(\tb\t,\tc\t)\n", "a in (b,c)");
    assert_canonical("a notin (b, c)", "a notin (b,c)");
    assert_canonical("a in ( b , c )", "a in (b,c)");
    assert_canonical("! a", "!a");
    assert_canonical("\r\na\r\n", "a");
    assert_canonical("a = ", "a=");
    assert_canonical("a == b", "a==b");
    assert_canonical("a > 10", "a>10");
}

static void test_parse_empty(void **state)
{
    const char *empties[] = {"", " ", "\t\r\n "};
    for (size_t i = 0; i < ELEMENTSOF(empties); i++) {
        kube_selector *s = parse_ok(empties[i]);
        char *text = kube_selector_string(s);
        assert_string_equal(text, "");
        free(text);
        assert_true(kube_selector_matches(s, NULL));
        json_t *labels = json_pack("{s:s, s:i}", "a", "b", "n", 1);
        assert_true(kube_selector_matches(s, labels));
        json_decref(labels);
        kube_selector_free(s);
    }
    assert_true(matches("", "[1]")); /* no requirement to fail */
}

static void test_parse_order(void **state)
{
    assert_canonical("b=1,a=2", "a=2,b=1");
    assert_canonical("z,!y,x in (1),w notin (2),v!=3,u==4,t=5,s>6,r<7",
                     "r<7,s>6,t=5,u==4,v!=3,w notin (2),x in (1),!y,z");
    /* Keys compare bytewise, as Go strings do. */
    assert_canonical("a.b=1,a=2,B=3,a/b=4", "B=3,a=2,a.b=1,a/b=4");
    /* Requirements on one key come out in a fixed order whatever the input order. */
    assert_canonical("a!=2,a=1", "a=1,a!=2");
    assert_canonical("a=1,a!=2", "a=1,a!=2");
    assert_canonical("a in (c),a in (b)", "a in (b),a in (c)");
    assert_canonical("a in (b,c),a in (b)", "a in (b),a in (b,c)");
    assert_canonical("a=1,a=1", "a=1,a=1"); /* kept, as Kubernetes keeps them */
}

static void test_parse_errors(void **state)
{
    assert_parse_error("a in (b", MOAT_E_INVALID,
                       "label selector \"a in (b\": position 8: expected ')'");
    assert_parse_error("a in (b c)", MOAT_E_INVALID,
                       "label selector \"a in (b c)\": position 9: found 'c', expected ',' or ')'");
    assert_parse_error("a in (", MOAT_E_INVALID,
                       "label selector \"a in (\": position 7: expected ')'");
    assert_parse_error("a in (b,", MOAT_E_INVALID,
                       "label selector \"a in (b,\": position 9: expected ')'");
    assert_parse_error("a=b c", MOAT_E_INVALID,
                       "label selector \"a=b c\": position 5: found 'c', expected ',' or end of "
                       "string");
    assert_parse_error(
        "=b", MOAT_E_INVALID,
        "label selector \"=b\": position 1: found '=', expected a key, '!' or end of string");
    assert_parse_error("a=b,", MOAT_E_INVALID,
                       "label selector \"a=b,\": position 5: expected a key after ','");
    assert_parse_error("a=b, ", MOAT_E_INVALID,
                       "label selector \"a=b, \": position 6: expected a key after ','");
    assert_parse_error("a=b,,c", MOAT_E_INVALID,
                       "label selector \"a=b,,c\": position 5: found ',', expected a key after "
                       "','");
    assert_parse_error("a in b", MOAT_E_INVALID,
                       "label selector \"a in b\": position 6: found 'b', expected '('");
    assert_parse_error("a in", MOAT_E_INVALID, "label selector \"a in\": position 5: expected '('");
    assert_parse_error("a b", MOAT_E_INVALID,
                       "label selector \"a b\": position 3: found 'b', expected an operator (=, "
                       "==, !=, in, notin, >, <)");
    assert_parse_error("a@b=c", MOAT_E_INVALID,
                       "label selector \"a@b=c\": position 1: invalid key 'a@b': its name must "
                       "consist of alphanumerics, '-', '_' or '.', and start and end with an "
                       "alphanumeric");
    assert_parse_error("a=b@", MOAT_E_INVALID,
                       "label selector \"a=b@\": position 3: invalid value 'b@': it must consist "
                       "of alphanumerics, '-', '_' or '.', and start and end with an "
                       "alphanumeric");
    assert_parse_error("!a=b", MOAT_E_INVALID,
                       "label selector \"!a=b\": position 3: found '=', expected ',' or end of "
                       "string after a '!' requirement");
    assert_parse_error("!", MOAT_E_INVALID, "label selector \"!\": position 2: expected a key");
    assert_parse_error("a in (,,)", MOAT_E_INVALID,
                       "label selector \"a in (,,)\": position 9: found ')', expected a value or "
                       "','");
    /* Quotes, backslashes and control bytes are escaped: a message stays one line. */
    assert_parse_error("a=\"x\\\n", MOAT_E_INVALID,
                       "label selector \"a=\\\"x\\\\\\x0a\": position 3: invalid value '\"x\\\\': "
                       "it must consist of alphanumerics, '-', '_' or '.', and start and end "
                       "with an alphanumeric");
    assert_parse_error(NULL, MOAT_E_INVALID, "label selector is NULL");
}

static void test_parse_error_positions(void **state)
{
    /* empty keys */
    assert_error_at(",", 1);
    assert_error_at(" ,a", 2);
    assert_error_at("=a", 1);
    assert_error_at("!=a", 1);
    assert_error_at("a=b,=c", 5);
    assert_error_at("a/=b", 1);
    assert_error_at("/a=b", 1);
    assert_error_at("a//b", 1);
    /* bad characters */
    assert_error_at("-a", 1);
    assert_error_at("a-", 1);
    assert_error_at("a_b.c-d,x y", 11);
    assert_error_at("a/b/c", 1);
    assert_error_at("Example.com/a", 1); /* a DNS prefix is lowercase */
    assert_error_at("ex_ample.com/a", 1);
    assert_error_at("-example.com/a", 1);
    assert_error_at("example..com/a", 1);
    assert_error_at("example.com./a", 1);
    assert_error_at("a=-b", 3);
    assert_error_at("a=b-", 3);
    assert_error_at("a in (b,-c)", 9);
    assert_error_at("a=\xc3\xa9", 3);
    assert_error_at("a;b", 1);
    /* operators and parentheses in the wrong place */
    assert_error_at("a=(b)", 3);
    assert_error_at("a in (b))", 9);
    assert_error_at("a in ((b)", 7);
    assert_error_at("a in (b,=)", 9);
    assert_error_at("a in (b),", 10);
    assert_error_at("a notin", 8);
    assert_error_at("a notin b", 9);
    assert_error_at("a=b=c", 4);
    assert_error_at("a!b", 2);
    assert_error_at("!!a", 2);
    assert_error_at("a,,b", 3);
    assert_error_at("(a)", 1);
    assert_error_at("a in (b) c", 10);
    /* the integer comparisons */
    assert_error_at("a>", 3);
    assert_error_at("a<,b", 3);
    assert_error_at("a>b", 3);
    assert_error_at("a>-1", 3); /* not a valid label value */
    assert_error_at("a>1.5", 3);
    assert_error_at("a>9223372036854775808", 3); /* over int64 */
    assert_error_at("a>>1", 3);
    assert_error_at("a<=1", 3);
}

static void test_parse_lengths(void **state)
{
    char text[512];
    const char *n63 = "a12345678901234567890123456789012345678901234567890123456789012";
    assert_int_equal(strlen(n63), 63);

    snprintf(text, sizeof(text), "%s=%s", n63, n63);
    assert_canonical(text, text);
    snprintf(text, sizeof(text), "%sb", n63); /* name of 64 */
    assert_error_at(text, 1);
    snprintf(text, sizeof(text), "a=%sb", n63); /* value of 64 */
    assert_parse_error(text, MOAT_E_INVALID, NULL);
    assert_error_at(text, 3);
    snprintf(text, sizeof(text), "a in (b, %sb)", n63);
    assert_error_at(text, 10);

    /* A prefix of 253: four labels of 63 and a dot each, then "a". */
    char prefix[300] = "";
    for (int i = 0; i < 4; i++)
        strcat(strcat(prefix, i ? "." : ""), "p12345678901234567890123456789012345678901234567890"
                                             "123456789012");
    assert_int_equal(strlen(prefix), 4 * 63 + 3);
    prefix[253] = '\0';
    assert_int_equal(strlen(prefix), 253);
    snprintf(text, sizeof(text), "%s/%s=x", prefix, n63);
    assert_canonical(text, text);
    snprintf(text, sizeof(text), "%sq/a=x", prefix); /* prefix of 254 */
    assert_error_at(text, 1);
}

static void test_parse_caps(void **state)
{
    moat_error err = MOAT_ERROR_INIT;
    kube_selector *s = NULL;
    char text[KUBE_SELECTOR_MAX_LEN + 2];

    /* KUBE_SELECTOR_MAX_REQUIREMENTS, and one more. */
    size_t len = 0;
    for (int i = 0; i < KUBE_SELECTOR_MAX_REQUIREMENTS; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%sk%d", i ? "," : "", i);
    kube_selector_free(parse_ok(text));
    snprintf(text + len, sizeof(text) - len, ",k64");
    assert_int_equal(kube_selector_parse(&s, text, &err), -1);
    assert_null(s);
    assert_int_equal(err.code, MOAT_E_NOMEM);
    assert_non_null(strstr(err.message, ": position 247: more than 64 requirements"));
    moat_error_clear(&err);

    /* KUBE_SELECTOR_MAX_LEN bytes (trailing blanks count), and one more. */
    memset(text, ' ', KUBE_SELECTOR_MAX_LEN + 1);
    memcpy(text, "a=b", 3);
    text[KUBE_SELECTOR_MAX_LEN] = '\0';
    assert_canonical(text, "a=b");
    text[KUBE_SELECTOR_MAX_LEN] = ' ';
    text[KUBE_SELECTOR_MAX_LEN + 1] = '\0';
    assert_parse_error(text, MOAT_E_NOMEM, "label selector is longer than 4096 bytes");

    /* 64 "kNN in(<55 v>)": 4095 bytes, but the canonical form adds a space to each. */
    len = 0;
    for (int i = 0; i < KUBE_SELECTOR_MAX_REQUIREMENTS; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%sk%02d in(%055d)", i ? "," : "",
                                i, 0);
    assert_int_equal(len, 4095);
    assert_parse_error(text, MOAT_E_NOMEM,
                       "label selector: canonical form is longer than 4096 bytes");
    /* With 54-character values the canonical form, 64 bytes longer, still fits. */
    len = 0;
    for (int i = 0; i < KUBE_SELECTOR_MAX_REQUIREMENTS; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%sk%02d in(%054d)", i ? "," : "",
                                i, 0);
    s = parse_ok(text);
    char *canonical = kube_selector_string(s);
    assert_int_equal(strlen(canonical), len + KUBE_SELECTOR_MAX_REQUIREMENTS);
    free(canonical);
    kube_selector_free(s);
}

static void test_match_operators(void **state)
{
    const char *app = "{\"app\": \"web\", \"tier\": \"1\", \"empty\": \"\"}";
    assert_true(matches("app=web", app));
    assert_true(matches("app==web", app));
    assert_false(matches("app=db", app));
    assert_false(matches("app=", app));
    assert_true(matches("empty=", app));
    assert_false(matches("empty=x", app));
    assert_true(matches("app!=db", app));
    assert_false(matches("app!=web", app));
    assert_true(matches("app in (db, web)", app));
    assert_false(matches("app in (db, api)", app));
    assert_true(matches("empty in (,x)", app));
    assert_true(matches("empty in ()", app));
    assert_false(matches("app notin (db, web)", app));
    assert_true(matches("app notin (db, api)", app));
    assert_true(matches("app", app));
    assert_false(matches("!app", app));
    assert_true(matches("empty", app)); /* present with an empty value */
    assert_true(matches("app=web,tier=1,empty", app));
    assert_false(matches("app=web,tier=2", app));
    assert_true(matches("tier>0", app));
    assert_false(matches("tier>1", app));
    assert_true(matches("tier<2", app));
    assert_false(matches("tier<1", app));
    assert_false(matches("app>0", app)); /* not an integer */
    assert_false(matches("app<0", app));
}

static void test_match_missing(void **state)
{
    /* As in Kubernetes: a negative requirement holds when the key is absent. */
    const char *labels = "{\"other\": \"x\"}";
    assert_false(matches("app=web", labels));
    assert_false(matches("app==web", labels));
    assert_false(matches("app=", labels));
    assert_true(matches("app!=web", labels));
    assert_true(matches("app!=", labels));
    assert_false(matches("app in (web)", labels));
    assert_false(matches("app in ()", labels));
    assert_true(matches("app notin (web)", labels));
    assert_true(matches("app notin ()", labels));
    assert_false(matches("app", labels));
    assert_true(matches("!app", labels));
    assert_false(matches("app>0", labels));
    assert_false(matches("app<9", labels));

    /* No labels at all: NULL, a JSON null, an empty object. */
    const char *none[] = {NULL, "null", "{}"};
    for (size_t i = 0; i < ELEMENTSOF(none); i++) {
        assert_false(matches("app=web", none[i]));
        assert_true(matches("app!=web", none[i]));
        assert_true(matches("app notin (web)", none[i]));
        assert_true(matches("!app", none[i]));
        assert_false(matches("app", none[i]));
        assert_true(matches("!a,b!=c,d notin (e)", none[i]));
    }
}

static void test_match_odd_labels(void **state)
{
    /* A non-string value never matches, whatever the operator. */
    const char *odd = "{\"n\": 1, \"t\": true, \"o\": {}, \"z\": null, \"app\": \"web\"}";
    const char *keys[] = {"n", "t", "o", "z"};
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        const char *forms[][2] = {{"", "=1"},    {"", "!=1"}, {"", " in (1)"}, {"", " notin (1)"},
                                  {"", ""},      {"!", ""},   {"", ">0"},      {"", "<9"},
                                  {"", "=true"}, {"", "="}};
        for (size_t j = 0; j < ELEMENTSOF(forms); j++) {
            char text[64];
            snprintf(text, sizeof(text), "%s%s%s", forms[j][0], keys[i], forms[j][1]);
            if (matches(text, odd))
                fail_msg("\"%s\" matched a non-string value", text);
        }
    }
    assert_true(matches("app=web,!missing", odd)); /* other keys still work */

    /* Labels that are not an object fail every requirement. */
    assert_false(matches("!a", "[]"));
    assert_false(matches("a!=b", "\"a=b\""));
    assert_false(matches("!a", "3"));

    /* A NUL inside a label value is not the shorter value. */
    json_t *labels = json_object();
    json_object_set_new(labels, "a", json_stringn("b\0c", 3));
    kube_selector *s = parse_ok("a=b");
    assert_false(kube_selector_matches(s, labels));
    kube_selector_free(s);
    s = parse_ok("a!=b");
    assert_true(kube_selector_matches(s, labels));
    kube_selector_free(s);
    json_decref(labels);

    /* Integers as strconv.ParseInt reads a label value. */
    assert_true(matches("a>5", "{\"a\": \"+6\"}"));
    assert_true(matches("a<5", "{\"a\": \"-6\"}"));
    assert_true(matches("a<1", "{\"a\": \"-9223372036854775808\"}"));
    assert_false(matches("a<1", "{\"a\": \"-9223372036854775809\"}"));
    assert_true(matches("a>9223372036854775806", "{\"a\": \"9223372036854775807\"}"));
    assert_false(matches("a>1", "{\"a\": \"\"}"));
    assert_false(matches("a>1", "{\"a\": \"5 \"}"));
    assert_false(matches("a>1", "{\"a\": \"-\"}"));
    assert_true(matches("a>07", "{\"a\": \"08\"}"));
}

static void test_null_arguments(void **state)
{
    kube_selector_free(NULL);
    assert_null(kube_selector_string(NULL));
    assert_false(kube_selector_matches(NULL, NULL));
    kube_selector *s = NULL;
    assert_int_equal(kube_selector_parse(&s, "a=", NULL), 0); /* err may be NULL */
    kube_selector_free(s);
    s = NULL;
    assert_int_equal(kube_selector_parse(&s, "a=(", NULL), -1);
    assert_null(s);
}

static void test_round_trip(void **state)
{
    const char *inputs[] = {
        "x in (foo,,baz),y,z notin ()",
        " ! a , b in ( c ) , d notin(e,f,e) , g == h , i != , j > 3 , k < 04 ",
        "example.com/role in (db, web), tier=backend, !example.com/legacy",
        "a,a,a=1,a==1,a!=1,a in (1),a notin (1),!a,a>1,a<1",
        "in in (in), notin notin (notin)",
    };
    const char *maps[] = {
        NULL,
        "{\"x\": \"foo\", \"y\": \"\", \"a\": \"1\"}",
        "{\"example.com/role\": \"web\", \"tier\": \"backend\"}",
        "{\"b\": \"c\", \"g\": \"h\", \"j\": \"4\", \"k\": \"3\"}",
        "{\"in\": \"in\"}",
    };
    for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
        kube_selector *s = parse_ok(inputs[i]);
        char *text = kube_selector_string(s);
        kube_selector *again = parse_ok(text);
        char *text_again = kube_selector_string(again);
        assert_string_equal(text_again, text);
        for (size_t j = 0; j < ELEMENTSOF(maps); j++) {
            json_t *labels = maps[j] ? json_loads(maps[j], 0, NULL) : NULL;
            assert_int_equal(kube_selector_matches(s, labels),
                             kube_selector_matches(again, labels));
            json_decref(labels);
        }
        free(text_again);
        kube_selector_free(again);
        free(text);
        kube_selector_free(s);
    }
    assert_canonical("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()");
    assert_canonical(" ! a , b in ( c ) , d notin(e,f,e) , g == h , i != , j > 3 , k < 04 ",
                     "!a,b in (c),d notin (e,f),g==h,i!=,j>3,k<04");
}

static void assert_from_labels(const char *labels_json, const char *want)
{
    json_t *labels = labels_json ? json_loads(labels_json, JSON_DECODE_ANY, NULL) : NULL;
    if (labels_json && !labels)
        fail_msg("bad test JSON %s", labels_json);
    char *got = kube_selector_from_labels(labels);
    if (!want) {
        if (got)
            fail_msg("labels %s: got \"%s\", want NULL", labels_json, got);
    } else {
        if (!got)
            fail_msg("labels %s: got NULL, want \"%s\"", labels_json, want);
        assert_string_equal(got, want);
        /* It parses to a selector that its own labels satisfy, and is already canonical. */
        kube_selector *s = parse_ok(got);
        char *canonical = kube_selector_string(s);
        assert_string_equal(canonical, got);
        assert_true(kube_selector_matches(s, labels));
        free(canonical);
        kube_selector_free(s);
    }
    free(got);
    json_decref(labels);
}

/* from_labels of a large map: the length, and that the result parses and matches. */
static void assert_from_labels_object(const json_t *labels, size_t want_len)
{
    char *text = kube_selector_from_labels(labels);
    assert_non_null(text);
    assert_int_equal(strlen(text), want_len);
    assert_true(strncmp(text, "k00=v", 5) == 0);
    kube_selector *s = parse_ok(text);
    assert_true(kube_selector_matches(s, labels));
    kube_selector_free(s);
    free(text);
}

static void test_from_labels(void **state)
{
    assert_from_labels("{\"b\": \"2\", \"a\": \"1\", \"a.b\": \"3\", \"a/b\": \"4\"}",
                       "a=1,a.b=3,a/b=4,b=2");
    assert_from_labels("{\"app\": \"web\"}", "app=web");
    assert_from_labels("{\"app\": \"\"}", "app=");
    assert_from_labels("{\"moat.dev/sandbox\": \"s1\", \"Z\": \"z\"}", "Z=z,moat.dev/sandbox=s1");
    assert_from_labels("{}", "");
    assert_from_labels(NULL, "");
    assert_from_labels("null", "");
    /* Nothing that would change the meaning of the result. */
    assert_from_labels("{\"a\": 1}", NULL);
    assert_from_labels("{\"a\": null}", NULL);
    assert_from_labels("{\"a\": \"x,b=c\"}", NULL);
    assert_from_labels("{\"a\": \"x)\"}", NULL);
    assert_from_labels("{\"a b\": \"c\"}", NULL);
    assert_from_labels("{\"\": \"c\"}", NULL);
    assert_from_labels("{\"!a\": \"c\"}", NULL);
    assert_from_labels("[\"a\"]", NULL);
    assert_from_labels("\"a=b\"", NULL);

    json_t *labels = json_object();
    json_object_setn_new(labels, "a\0b", 3, json_string("c"));
    assert_null(kube_selector_from_labels(labels));
    json_decref(labels);
    labels = json_object();
    json_object_set_new(labels, "a", json_stringn("c\0d", 3));
    assert_null(kube_selector_from_labels(labels));
    json_decref(labels);

    /* The result always parses: at most KUBE_SELECTOR_MAX_REQUIREMENTS labels... */
    labels = json_object();
    for (int i = 0; i < KUBE_SELECTOR_MAX_REQUIREMENTS + 1; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%02d", i);
        json_object_set_new(labels, key, json_string("v"));
    }
    assert_null(kube_selector_from_labels(labels));
    json_object_del(labels, "k64");
    assert_from_labels_object(labels, 64 * 6 - 1);
    json_decref(labels);

    /* ...and at most KUBE_SELECTOR_MAX_LEN bytes: 61 "kNN=<63>" take 4147, 60 take 4079. */
    const char *v63 = "v12345678901234567890123456789012345678901234567890123456789012";
    labels = json_object();
    for (int i = 0; i < 61; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%02d", i);
        json_object_set_new(labels, key, json_string(v63));
    }
    assert_null(kube_selector_from_labels(labels));
    json_object_del(labels, "k60");
    assert_from_labels_object(labels, 60 * 68 - 1);
    json_decref(labels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_operators),
        cmocka_unit_test(test_parse_sets),
        cmocka_unit_test(test_parse_whitespace),
        cmocka_unit_test(test_parse_empty),
        cmocka_unit_test(test_parse_order),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_error_positions),
        cmocka_unit_test(test_parse_lengths),
        cmocka_unit_test(test_parse_caps),
        cmocka_unit_test(test_match_operators),
        cmocka_unit_test(test_match_missing),
        cmocka_unit_test(test_match_odd_labels),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_from_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
