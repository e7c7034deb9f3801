#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "golden.h"

#include "isolation/installer/containerd.h"
#include "libmoat/names.h"

/* ---- fixtures ------------------------------------------------------------------------- */

static const iso_runtime_entry all[] = {
    {MOAT_HANDLER_RUNSC, ISO_RUNTIME_RUNSC},
    {MOAT_HANDLER_RUNSC_NONET, ISO_RUNTIME_RUNSC_NONET},
    {MOAT_HANDLER_RUNSC_NVPROXY, ISO_RUNTIME_RUNSC_NVPROXY},
    {MOAT_HANDLER_KATA_CLH, ISO_RUNTIME_KATA_CLH},
    {MOAT_HANDLER_KATA_QEMU_NV_GPU, ISO_RUNTIME_KATA_GPU},
};

static iso_runtime_paths paths(void)
{
    iso_runtime_paths p;
    iso_runtime_paths_default(&p);
    return p;
}

static char *block_for(iso_containerd_version v)
{
    iso_runtime_paths p = paths();
    char *b = NULL;
    moat_error err = MOAT_ERROR_INIT;
    if (iso_containerd_block(&b, v, all, ELEMENTSOF(all), &p, &err) < 0)
        fail_msg("block: %s", err.message);
    return b;
}

static char *merge_ok(const char *text, const char *block)
{
    char *out = NULL;
    moat_error err = MOAT_ERROR_INIT;
    if (iso_containerd_merge(&out, text, strlen(text), block, &err) < 0)
        fail_msg("merge: %s", err.message);
    return out;
}

static char *unmerge_ok(const char *text)
{
    char *out = NULL;
    moat_error err = MOAT_ERROR_INIT;
    if (iso_containerd_unmerge(&out, text, strlen(text), &err) < 0)
        fail_msg("unmerge: %s", err.message);
    return out;
}

/* The merge must fail with MOAT_E_INVALID and a message holding `words`. */
static void merge_refused(const char *text, const char *block, const char *words)
{
    char *out = (char *)"untouched";
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_containerd_merge(&out, text, strlen(text), block, &err), -1);
    assert_string_equal(out, "untouched");
    assert_int_equal(err.code, MOAT_E_INVALID);
    if (!strstr(err.message, words))
        fail_msg("expected \"%s\" in: %s", words, err.message);
    moat_error_clear(&err);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_blocks_match_golden(void **state)
{
    (void)state;
    char *v2 = block_for(ISO_CONTAINERD_V2), *v3 = block_for(ISO_CONTAINERD_V3),
         *v4 = block_for(ISO_CONTAINERD_V4);
    golden_check("block-v2.toml", v2);
    golden_check("block-v3.toml", v3);
    assert_string_equal(v3, v4); /* versions 3 and 4 keep the runtimes in one place */
    assert_non_null(
        strstr(v2, "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]"));
    assert_null(strstr(v2, "io.containerd.cri.v1.runtime"));
    free(v2), free(v3), free(v4);
}

static void test_config_mode_names(void **state)
{
    (void)state;
    /* config mode: the logical handlers straight to a kind */
    iso_runtime_entry e[] = {{MOAT_RUNTIMECLASS_AUTO, ISO_RUNTIME_RUNSC},
                             {MOAT_RUNTIMECLASS_GVISOR, ISO_RUNTIME_RUNSC}};
    iso_runtime_paths p = paths();
    char *b = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_containerd_block(&b, ISO_CONTAINERD_V3, e, 2, &p, &err), 0);
    assert_non_null(strstr(b, ".containerd.runtimes.moat-auto]\n"));
    assert_non_null(strstr(b, "ConfigPath = \"/etc/moat/runsc/moat-gvisor.toml\"\n"));
    free(b);
}

static void test_block_refusals(void **state)
{
    (void)state;
    iso_runtime_paths p = paths();
    char *b = NULL;
    moat_error err = MOAT_ERROR_INIT;
    struct {
        const char *handler;
        const char *words;
    } bad[] = {{"Runsc", "DNS label"},  {"-runsc", "DNS label"}, {"run.sc", "DNS label"},
               {"runsc-", "DNS label"}, {"", "1 to 63"},         {"x\"y", "DNS label"}};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        iso_runtime_entry e = {bad[i].handler, ISO_RUNTIME_RUNSC};
        assert_int_equal(iso_containerd_block(&b, ISO_CONTAINERD_V3, &e, 1, &p, &err), -1);
        assert_non_null(strstr(err.message, bad[i].words));
        moat_error_clear(&err);
    }
    iso_runtime_entry twice[] = {{"runsc", ISO_RUNTIME_RUNSC}, {"runsc", ISO_RUNTIME_RUNSC_NONET}};
    assert_int_equal(iso_containerd_block(&b, ISO_CONTAINERD_V3, twice, 2, &p, &err), -1);
    assert_non_null(strstr(err.message, "twice"));
    moat_error_clear(&err);
    p.kata_clh_config = "/opt/kata/a\"b.toml";
    iso_runtime_entry kata = {"kata-clh", ISO_RUNTIME_KATA_CLH};
    assert_int_equal(iso_containerd_block(&b, ISO_CONTAINERD_V3, &kata, 1, &p, &err), -1);
    assert_non_null(strstr(err.message, "kata-clh"));
    moat_error_clear(&err);
    p = paths();
    p.runsc_config_dir = "etc/moat";
    assert_int_equal(iso_containerd_block(&b, ISO_CONTAINERD_V3, all, 1, &p, &err), -1);
    assert_non_null(strstr(err.message, "not an absolute path"));
    moat_error_clear(&err);
    assert_int_equal(iso_containerd_block(&b, (iso_containerd_version)1, all, 1, &p, &err), -1);
    moat_error_clear(&err);
    assert_int_equal(iso_containerd_block(&b, ISO_CONTAINERD_V3, all, 0, &p, &err), -1);
    moat_error_clear(&err);
}

static void test_version_detect(void **state)
{
    (void)state;
    struct {
        const char *text;
        int want; /* 0: refused */
        const char *words;
    } cases[] = {
        {"version = 2\n", 2, NULL},
        {"version = 3\n", 3, NULL},
        {"version = 4\n", 4, NULL},
        {"# comment\n\nversion=3 # trailing\n[grpc]\n", 3, NULL},
        {"\"version\" = 2\r\n", 2, NULL},
        {"root = \"/x\"\nversion = 3", 3, NULL},
        {"", 0, "version 1"},
        {"[plugins.cri]\nversion = 3\n", 0, "version 1"}, /* a table's key, not the file's */
        {"[plugins.cri]\n", 0, "version 1"},
        {"version = 5\n", 0, "version 5"},
        {"version = 1\n", 0, "version 1"},
        {"version = \"3\"\n", 0, "line 1"},
        {"version = 3\n[unclosed\n", 0, "line 2"},
        {"version = 3\nkey = \"unterminated\n", 0, "line 2: unterminated string"},
        {"version = 3\nx = \"\"\"\nnever closed\n", 0, "line 2: unterminated multi-line"},
        {"version = 3\nx = [1, 2\n", 0, "line 2: unterminated array"},
        {"version = 3\nx = 1 2\n", 0, "unexpected text"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        iso_containerd_version v = (iso_containerd_version)0;
        moat_error err = MOAT_ERROR_INIT;
        int r = iso_containerd_version_detect(&v, cases[i].text, strlen(cases[i].text), &err);
        if (cases[i].want) {
            if (r != 0)
                fail_msg("case %zu: %s", i, err.message);
            assert_int_equal(v, cases[i].want);
        } else {
            assert_int_equal(r, -1);
            assert_int_equal(v, 0);
            if (!strstr(err.message, cases[i].words))
                fail_msg("case %zu: expected \"%s\" in: %s", i, cases[i].words, err.message);
            moat_error_clear(&err);
        }
    }
}

/* Merge into a realistic file: the golden result, the same bytes on a second merge, the
 * original bytes back from unmerge. */
static void merge_roundtrip(const char *base_name, iso_containerd_version v, const char *golden,
                            const char *unmerged_name)
{
    char *base = golden_read(base_name);
    char *block = block_for(v);
    iso_containerd_version got;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_containerd_version_detect(&got, base, strlen(base), &err), 0);
    assert_int_equal(got, v);
    char *once = merge_ok(base, block);
    golden_check(golden, once);
    char *twice = merge_ok(once, block);
    assert_string_equal(once, twice);
    char *back = unmerge_ok(once);
    char *want = unmerged_name ? golden_read(unmerged_name) : strdup(base);
    assert_string_equal(back, want);
    /* and a file without a block comes back from unmerge untouched */
    char *again = unmerge_ok(back);
    assert_string_equal(again, back);
    free(base), free(block), free(once), free(twice), free(back), free(want), free(again);
}

static void test_merge_empty_v3(void **state)
{
    (void)state;
    merge_roundtrip("base-empty-v3.toml", ISO_CONTAINERD_V3, "merged-empty-v3.toml", NULL);
}

static void test_merge_node_v3(void **state)
{
    (void)state;
    merge_roundtrip("base-node-v3.toml", ISO_CONTAINERD_V3, "merged-node-v3.toml", NULL);
}

static void test_merge_user_v2(void **state)
{
    (void)state;
    merge_roundtrip("base-user-v2.toml", ISO_CONTAINERD_V2, "merged-user-v2.toml", NULL);
}

static void test_merge_replaces_an_existing_block_in_place(void **state)
{
    (void)state;
    merge_roundtrip("base-with-block-v3.toml", ISO_CONTAINERD_V3, "merged-with-block-v3.toml",
                    "base-with-block-v3.unmerged.toml");
    char *merged = golden_read("merged-with-block-v3.toml");
    assert_null(strstr(merged, "/etc/old-moat/runsc.toml"));
    /* still where it was: before the user's cni table */
    assert_true(strstr(merged, ISO_CONTAINERD_END) <
                strstr(merged, "[plugins.\"io.containerd.cri.v1.runtime\".cni]"));
    free(merged);
}

static void test_no_final_newline_and_crlf(void **state)
{
    (void)state;
    char *block = block_for(ISO_CONTAINERD_V3);
    const char *texts[] = {"version = 3", "version = 3\r\n[grpc]\r\n  address = \"/x\"\r\n",
                           "version = 3\n[grpc]\n  address = \"/x\" # no newline"};
    for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
        char *once = merge_ok(texts[i], block);
        char *twice = merge_ok(once, block);
        assert_string_equal(once, twice);
        char *back = unmerge_ok(once);
        assert_string_equal(back, texts[i]);
        free(once), free(twice), free(back);
    }
    char *once = merge_ok("version = 3", block);
    assert_true(strncmp(once, "version = 3\n# BEGIN moat-managed (newline added)\n", 49) == 0);
    free(once);
    free(block);
}

static void test_refuses_version_1_and_mismatch(void **state)
{
    (void)state;
    char *v3 = block_for(ISO_CONTAINERD_V3), *v2 = block_for(ISO_CONTAINERD_V2);
    merge_refused("[plugins.cri.containerd]\n  snapshotter = \"overlayfs\"\n", v3, "version 1");
    merge_refused("version = 3\n", v2, "version 3, Moat's block is for version 2");
    merge_refused("version = 2\n", v3, "version 2, Moat's block is for version 3 or 4");
    char *ok = merge_ok("version = 4\n", v3);
    free(ok);
    free(v3), free(v2);
}

static void test_refuses_a_user_defined_moat_handler(void **state)
{
    (void)state;
    char *v3 = block_for(ISO_CONTAINERD_V3);
    const char *texts[] = {
        /* as node.sh writes it */
        "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]\n"
        "  runtime_type = \"io.containerd.runsc.v1\"\n",
        /* literal quotes and blanks */
        "version = 3\n[ plugins . 'io.containerd.cri.v1.runtime' . containerd . runtimes . "
        "runsc ]\n",
        /* only its options table, with an escaped name */
        "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes."
        "\"run\\u0073c\".options]\n",
        /* a dotted key */
        "version = 3\n[plugins]\n  \"io.containerd.cri.v1.runtime\".containerd.runtimes."
        "kata-clh.runtime_type = \"x\"\n",
        /* another Moat handler, at the end of a long file */
        "version = 3\n[a]\nb = 1\n[plugins.\"io.containerd.cri.v1.runtime\".containerd."
        "runtimes.runsc-nonet]\n",
    };
    for (size_t i = 0; i < ELEMENTSOF(texts); i++)
        merge_refused(texts[i], v3, "already defines a runtime that Moat manages");
    merge_refused(texts[0], v3,
                  "line 2: [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]");
    /* an inline runtimes table cannot take Moat's tables */
    merge_refused("version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n"
                  "runtimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } }\n",
                  v3, "inline value");
    merge_refused("version = 3\nplugins = {}\n", v3, "inline value");
    /* a user's own runtime, and the other version's plugin, are fine */
    char *ok = merge_ok("version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd."
                        "runtimes.runsc2]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd."
                        "runtimes.runsc]\n",
                        v3);
    free(ok);
    free(v3);
}

static void test_refuses_malformed_markers_and_text(void **state)
{
    (void)state;
    char *v3 = block_for(ISO_CONTAINERD_V3);
    merge_refused("version = 3\n# BEGIN moat-managed\n[x]\n", v3, "no `# END moat-managed`");
    merge_refused("version = 3\n# END moat-managed\n", v3, "ends without beginning");
    merge_refused("version = 3\n# BEGIN moat-managed\n# END moat-managed\n"
                  "# BEGIN moat-managed\n# END moat-managed\n",
                  v3, "second moat-managed block");
    merge_refused("version = 3\n# BEGIN moat-managed by hand\n", v3, "not a marker");
    merge_refused("version = 3\n# BEGIN moat-managed\n# END moat-managed\nkey = 1\n", v3,
                  "right after the moat-managed block");
    char *out = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_containerd_merge(&out, "version = 3\n\0x", 14, v3, &err), -1);
    assert_non_null(strstr(err.message, "NUL"));
    moat_error_clear(&err);
    assert_int_equal(iso_containerd_unmerge(&out, "version = 3\n# END moat-managed\n", 31, &err),
                     -1);
    moat_error_clear(&err);
    size_t big = ISO_CONTAINERD_MAX_CONFIG + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, '#', big);
    assert_int_equal(iso_containerd_merge(&out, huge, big, v3, &err), -1);
    assert_int_equal(err.code, MOAT_E_RANGE);
    moat_error_clear(&err);
    free(huge);
    /* a block that is not Moat's form */
    merge_refused("version = 3\n", "[x]\n", "not one block");
    merge_refused("version = 3\n", "# BEGIN moat-managed\n[x]\n# END moat-managed\n",
                  "not a containerd runtime");
    merge_refused("version = 3\n", "# BEGIN moat-managed\n# END moat-managed\n", "no runtime");
    free(v3);
}

static void test_strings_that_look_like_tables(void **state)
{
    (void)state;
    char *v3 = block_for(ISO_CONTAINERD_V3);
    /* a table header inside multi-line strings is text, not a table */
    const char *text =
        "version = 3\n"
        "x = \"\"\"\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]\n"
        "\\\"\"\" still inside \"\"\"\"\n"
        "y = '''\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]'''\n"
        "z = [ [1, 2], {a = \"]\"}, # comment ]\n  \"#\" ]\n";
    char *once = merge_ok(text, v3);
    char *back = unmerge_ok(once);
    assert_string_equal(back, text);
    free(once), free(back), free(v3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_match_golden),
        cmocka_unit_test(test_config_mode_names),
        cmocka_unit_test(test_block_refusals),
        cmocka_unit_test(test_version_detect),
        cmocka_unit_test(test_merge_empty_v3),
        cmocka_unit_test(test_merge_node_v3),
        cmocka_unit_test(test_merge_user_v2),
        cmocka_unit_test(test_merge_replaces_an_existing_block_in_place),
        cmocka_unit_test(test_no_final_newline_and_crlf),
        cmocka_unit_test(test_refuses_version_1_and_mismatch),
        cmocka_unit_test(test_refuses_a_user_defined_moat_handler),
        cmocka_unit_test(test_refuses_malformed_markers_and_text),
        cmocka_unit_test(test_strings_that_look_like_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
