/* moat-init's stat and list (init/listing.c): the entry line's fields, RFC 3339 times, and
 * a real directory tree listed in order, to a depth, symlinks not followed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "init/files.h"
#include "init/listing.h"

static void test_time(void **state)
{
    (void)state;
    char buf[LISTING_TIME_SIZE];
    struct timespec ts = {.tv_sec = 1796558400, .tv_nsec = 123999999};
    assert_int_equal(listing_time_format(buf, sizeof(buf), &ts), 0);
    assert_string_equal(buf, "2026-12-06T12:00:00.123Z"); /* milliseconds cut, not rounded */
    ts = (struct timespec){0};
    assert_int_equal(listing_time_format(buf, sizeof(buf), &ts), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    ts = (struct timespec){.tv_sec = -1, .tv_nsec = 500000000};
    assert_int_equal(listing_time_format(buf, sizeof(buf), &ts), 0);
    assert_string_equal(buf, "1969-12-31T23:59:59.500Z");
    ts = (struct timespec){.tv_sec = 1796558400};
    assert_int_equal(listing_time_format(buf, 24, &ts), -1); /* no room for the 'Z' */
}

static void test_type(void **state)
{
    (void)state;
    assert_string_equal(listing_type_name(S_IFREG | 0644), "file");
    assert_string_equal(listing_type_name(S_IFDIR), "dir");
    assert_string_equal(listing_type_name(S_IFLNK), "symlink");
    assert_string_equal(listing_type_name(S_IFIFO), "other");
    assert_string_equal(listing_type_name(S_IFCHR), "other");
}

static void test_entry(void **state)
{
    (void)state;
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    assert_non_null(f);
    struct stat st = {.st_mode = S_IFLNK | 0777, .st_size = 5};
    st.st_mtim = (struct timespec){.tv_sec = 1796558400, .tv_nsec = 7000000};
    assert_int_equal(listing_entry_print(f, "l\"nk", 4, "/d/l\"nk", &st, "/tgt"), 0);
    st = (struct stat){.st_mode = S_IFREG | 04755, .st_size = 1};
    assert_int_equal(listing_entry_print(f, "f", 1, "f", &st, NULL), 0);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(out, "{\"name\":\"l\\\"nk\",\"path\":\"/d/l\\\"nk\",\"type\":\"symlink\","
                             "\"size\":5,\"mode\":\"0777\",\"mtime\":\"2026-12-06T12:00:00.007Z\","
                             "\"target\":\"/tgt\"}\n"
                             "{\"name\":\"f\",\"path\":\"f\",\"type\":\"file\",\"size\":1,"
                             "\"mode\":\"4755\",\"mtime\":\"1970-01-01T00:00:00.000Z\"}\n");
    free(out);
}

/* A tree in a fresh directory: b/ (with c/deep, and z), a (file), l -> b (symlink). */
static int tree_setup(void **state)
{
    char tmpl[] = "/tmp/test_init_listing.XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    if (!dir)
        return -1;
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(mkdir("b", 0755), 0);
    assert_int_equal(mkdir("b/c", 0700), 0);
    assert_int_equal(mkdir("b/c/deep", 0755), 0);
    int fd = open("b/z", O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    fd = open("a", O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "hello", 5), 5);
    close(fd);
    assert_int_equal(symlink("b", "l"), 0);
    *state = strdup(dir);
    return 0;
}

static int tree_teardown(void **state)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(files_remove(*state, true, &err), 0);
    free(*state);
    return 0;
}

/* The "path" of each line of a listing, one per line. */
static char *listed(const char *dir, unsigned depth, int want)
{
    char *out = NULL, *errs = NULL;
    size_t out_size = 0, errs_size = 0;
    FILE *f = open_memstream(&out, &out_size);
    FILE *e = open_memstream(&errs, &errs_size);
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    assert_int_equal(listing_list(f, e, dir, depth, &err), want);
    fclose(f);
    fclose(e);
    assert_string_equal(errs, "");
    free(errs);
    /* keep only the paths */
    char *paths = calloc(1, out_size + 1);
    assert_non_null(paths);
    if (!paths)
        return NULL;
    for (char *line = out, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        char *p = strstr(line, "\"path\":\"");
        assert_non_null(p);
        if (!p)
            break;
        p += strlen("\"path\":\"");
        strncat(paths, p, (size_t)(strchr(p, '"') - p));
        strcat(paths, "\n");
    }
    free(out);
    return paths;
}

static void test_list(void **state)
{
    (void)state;
    char *got = listed(".", 1, 0);
    assert_string_equal(got, "./a\n./b\n./l\n");
    free(got);
    got = listed(".", 2, 0);
    assert_string_equal(got, "./a\n./b\n./b/c\n./b/z\n./l\n"); /* l is not followed */
    free(got);
    got = listed("./", 5, 0);
    assert_string_equal(got, "./a\n./b\n./b/c\n./b/c/deep\n./b/z\n./l\n");
    free(got);
    got = listed("b/c/deep", 3, 0);
    assert_string_equal(got, "");
    free(got);
}

static void test_list_errors(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    FILE *devnull = fopen("/dev/null", "w");
    assert_non_null(devnull);
    if (!devnull)
        return;
    assert_int_equal(listing_list(devnull, devnull, "a", 1, &err), -1);
    assert_string_equal(err.code, "ENOTDIR");
    assert_int_equal(listing_list(devnull, devnull, "missing", 1, &err), -1);
    assert_string_equal(err.code, "ENOENT");
    assert_string_equal(err.path, "missing");
    fclose(devnull);
    init_error_clear(&err); /* skip() jumps past the cleanup */

    /* an unreadable directory below: an error line, and the rest is still listed */
    if (geteuid() == 0)
        skip(); /* root reads it anyway */
    assert_int_equal(chmod("b/c", 0), 0);
    char *out = NULL, *errs = NULL;
    size_t n1 = 0, n2 = 0;
    FILE *f = open_memstream(&out, &n1), *e = open_memstream(&errs, &n2);
    assert_int_equal(listing_list(f, e, ".", 3, &err), 1);
    fclose(f);
    fclose(e);
    assert_non_null(strstr(out, "\"path\":\"./b/z\""));
    assert_non_null(strstr(errs, "\"error\":\"EACCES\""));
    free(out);
    free(errs);
    assert_int_equal(chmod("b/c", 0700), 0);
}

static void test_stat(void **state)
{
    (void)state;
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    assert_int_equal(listing_stat(f, "l", &err), 0);
    assert_int_equal(listing_stat(f, "b/", &err), 0);
    assert_int_equal(listing_stat(f, "nothing", &err), -1);
    fclose(f);
    assert_string_equal(err.code, "ENOENT");
    assert_string_equal(err.op, "stat");
    assert_non_null(strstr(out, "{\"name\":\"l\",\"path\":\"l\",\"type\":\"symlink\",\"size\":1,"
                                "\"mode\":\"0777\""));
    assert_non_null(strstr(out, "\"target\":\"b\"}\n"));
    assert_non_null(strstr(out, "{\"name\":\"b\",\"path\":\"b/\",\"type\":\"dir\""));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_type),
        cmocka_unit_test(test_entry),
        cmocka_unit_test_setup_teardown(test_list, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_list_errors, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_stat, tree_setup, tree_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
