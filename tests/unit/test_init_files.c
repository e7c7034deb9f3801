/* moat-init's file operations (init/files.c) on a real directory: write's mode and its
 * temporary file, read, mkdir, remove without following symlinks, exists. */
#include <dirent.h>
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

static int dir_setup(void **state)
{
    char tmpl[] = "/tmp/test_init_files.XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    if (!dir)
        return -1;
    assert_int_equal(chdir(dir), 0);
    *state = strdup(dir);
    return 0;
}

static int dir_teardown(void **state)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(files_remove(*state, true, &err), 0);
    free(*state);
    return 0;
}

/* An fd to read text from: a temporary file holding it, at offset 0. */
static int input(const char *text)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    if (!f)
        return -1;
    fputs(text, f);
    fflush(f);
    int fd = dup(fileno(f));
    fclose(f);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static char *slurp(const char *path)
{
    static char buf[4096];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

/* How many entries the directory has ("." and ".." left out). */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void write_file(const char *path, const char *text, mode_t mode, bool has_mode, bool parents)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    int fd = input(text);
    if (files_write(f, fd, path, mode, has_mode, parents, -1, &err) < 0)
        fail_msg("write %s: %s %s", path, err.code, err.message);
    close(fd);
    fclose(f);
    char want[1024];
    char cwd[256];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(want, sizeof(want), "{\"path\":\"%s/%s\",\"size\":%zu}\n", cwd, path, strlen(text));
    assert_string_equal(out, want);
    free(out);
}

static void test_write(void **state)
{
    (void)state;
    mode_t old = umask(077);
    write_file("f", "one", 0, false, false);
    assert_string_equal(slurp("f"), "one");
    struct stat st;
    assert_int_equal(stat("f", &st), 0);
    assert_int_equal(st.st_mode & 07777, FILES_FILE_MODE); /* not the umask's */

    assert_int_equal(chmod("f", 0600), 0);
    write_file("f", "two, longer", 0, false, false);
    assert_string_equal(slurp("f"), "two, longer");
    assert_int_equal(stat("f", &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600); /* the replaced file's */

    write_file("f", "", 0755, true, false);
    assert_string_equal(slurp("f"), "");
    assert_int_equal(stat("f", &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);

    /* a symlink is replaced, its target untouched */
    assert_int_equal(symlink("f", "l"), 0);
    write_file("l", "via link", 0, false, false);
    assert_int_equal(lstat("l", &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_string_equal(slurp("f"), "");

    write_file("p/q/r", "deep", 0, false, true);
    assert_string_equal(slurp("p/q/r"), "deep");
    assert_int_equal(stat("p/q", &st), 0);
    assert_int_equal(st.st_mode & 07777, FILES_DIR_MODE & ~077u);
    umask(old);
    assert_int_equal(entries("."), 3); /* f, l, p: no temporary file left */
}

static void test_write_errors(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    FILE *devnull = fopen("/dev/null", "w");
    assert_non_null(devnull);
    if (!devnull)
        return;
    int fd = input("data");
    assert_int_equal(files_write(devnull, fd, "missing/f", 0, false, false, -1, &err), -1);
    assert_string_equal(err.code, "ENOENT");
    assert_int_equal(err.status, INIT_EXIT_FAILURE);
    assert_int_equal(mkdir("d", 0755), 0);
    assert_int_equal(files_write(devnull, fd, "d", 0, false, false, -1, &err), -1);
    assert_string_equal(err.code, "EISDIR");
    assert_int_equal(files_write(devnull, fd, "d/", 0, false, false, -1, &err), -1);
    assert_string_equal(err.code, "EISDIR");
    /* input that fails midway (a directory's fd reads EISDIR): the temporary file goes */
    int bad = open("d", O_RDONLY | O_DIRECTORY);
    assert_int_equal(files_write(devnull, bad, "d/f", 0, false, false, -1, &err), -1);
    assert_string_equal(err.code, "EISDIR");
    assert_string_equal(err.op, "read");
    assert_int_equal(entries("d"), 0);
    close(bad);
    close(fd);
    fclose(devnull);
}

static void test_read(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    write_file("f", "payload\n", 0, false, false);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(files_read(pipefd[1], "f", &err), 0);
    close(pipefd[1]);
    char buf[64] = {0};
    assert_int_equal(read(pipefd[0], buf, sizeof(buf)), 8);
    assert_string_equal(buf, "payload\n");
    close(pipefd[0]);
    assert_int_equal(mkdir("d", 0755), 0);
    assert_int_equal(files_read(STDOUT_FILENO, "d", &err), -1);
    assert_string_equal(err.code, "EISDIR");
    assert_int_equal(files_read(STDOUT_FILENO, "nothing", &err), -1);
    assert_string_equal(err.code, "ENOENT");
}

static void test_mkdir_remove(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    assert_int_equal(files_mkdir("a/b", false, &err), -1);
    assert_string_equal(err.code, "ENOENT");
    assert_int_equal(files_mkdir("a/b//c/", true, &err), 0);
    assert_int_equal(files_mkdir("a/b/c", true, &err), 0); /* there already: fine */
    assert_int_equal(files_mkdir("a/b/c", false, &err), -1);
    assert_string_equal(err.code, "EEXIST");
    write_file("a/f", "x", 0, false, false);
    assert_int_equal(files_mkdir("a/f/g", true, &err), -1);
    assert_string_equal(err.code, "ENOTDIR");

    /* a symlink out of the tree: removed, what it points to kept */
    assert_int_equal(mkdir("outside", 0755), 0);
    write_file("outside/keep", "k", 0, false, false);
    assert_int_equal(symlink("../../outside", "a/b/out"), 0);
    assert_int_equal(files_remove("a", false, &err), -1);
    assert_string_equal(err.code, "ENOTEMPTY");
    assert_int_equal(files_remove("a", true, &err), 0);
    assert_int_equal(files_exists("a", &err), 0);
    assert_int_equal(files_exists("outside/keep", &err), 1);
    assert_int_equal(files_remove("a", true, &err), -1);
    assert_string_equal(err.code, "ENOENT");

    assert_int_equal(symlink("nowhere", "dangling"), 0);
    assert_int_equal(files_exists("dangling", &err), 1);
    assert_int_equal(files_exists("outside/keep/x", &err), 0); /* ENOTDIR */
    assert_int_equal(files_remove("dangling", false, &err), 0);
    assert_int_equal(files_remove("outside/keep", false, &err), 0);
    assert_int_equal(files_remove("outside", false, &err), 0); /* empty now */
    assert_int_equal(entries("."), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_write_errors, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_read, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_mkdir_remove, dir_setup, dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
