/* Golden files for the unit tests of generated text: tests/golden/installer, found through
 * MOAT_GOLDEN_DIR (a compile definition in tests/CMakeLists.txt); MOAT_UPDATE_GOLDEN=1
 * rewrites them from what the code now produces. Include after <cmocka.h>. */
#ifndef MOAT_TESTS_GOLDEN_H
#define MOAT_TESTS_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *golden_read(const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", MOAT_GOLDEN_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("golden file %s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void golden_check(const char *name, const char *got)
{
    if (getenv("MOAT_UPDATE_GOLDEN")) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", MOAT_GOLDEN_DIR, name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fputs(got, f);
        fclose(f);
        return;
    }
    char *want = golden_read(name);
    if (strcmp(want, got) != 0)
        fail_msg("%s differs from the golden file; got:\n%s", name, got);
    free(want);
}

#endif
