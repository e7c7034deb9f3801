/* The command lines of moat-init's subcommands, parsed without side effects. Every function
 * returns 0 and writes its out-parameter, or -1 with a usage error (EUSAGE, exit status 2)
 * whose message names the option and the value. getopt_long's state is reset on each call. */
#ifndef MOAT_INIT_ARGS_H
#define MOAT_INIT_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "init/error.h"

#define ARGS_TIMEOUT_MAX_S 1000000000LL /* about 31 years: keeps nanoseconds in an int64 */
#define ARGS_DEPTH_MAX     256          /* list --depth: one open directory per level */

/* Parses a duration in seconds, fractions allowed ("2", "0.5", ".25"), into nanoseconds;
 * digits past the ninth decimal round up, so a positive duration never becomes 0. Rejects
 * signs, exponents, units and values over ARGS_TIMEOUT_MAX_S. op names the caller. */
int args_duration_parse(int64_t *ret_ns, const char *text, const char *op, init_error *err);

/* Formats nanoseconds as seconds the way args_duration_parse reads them ("2s", "0.5s"). */
void args_duration_format(char *buf, size_t size, int64_t ns);

/* Parses a file mode in octal ("644", "0755", "04755"), at most 07777. */
int args_mode_parse(mode_t *ret_mode, const char *text, const char *op, init_error *err);

typedef struct {
    int64_t timeout_ns; /* 0: no timeout */
    const char *cwd;    /* NULL: stay where we are */
    char **env;         /* owned array of NAME=VALUE strings borrowed from argv, NULL-ended */
    char **argv;        /* borrowed from argv: the command and its arguments, NULL-ended */
    bool framed_stdin;  /* --framed-stdin: stdin is frames; its end is the client's going */
} args_exec;

/* `exec [--timeout SECONDS] [--cwd DIR] [--env NAME=VALUE]... [--framed-stdin] [--] CMD
 * ARGS...`: argv[0] is
 * "exec". Options end at the first word that is not one (or at "--"). The caller frees
 * out->env with args_exec_done. */
int args_exec_parse(args_exec *out, int argc, char **argv, init_error *err);
void args_exec_done(args_exec *a);

/* `init [[--] CMD ARGS...]`: argv[0] is "init". Writes the command (borrowed from argv), or
 * NULL when there is none. */
int args_init_parse(char ***ret_cmd, int argc, char **argv, init_error *err);

typedef enum {
    ARGS_OPT_MODE = 1 << 0,      /* --mode OCTAL */
    ARGS_OPT_PARENTS = 1 << 1,   /* --parents */
    ARGS_OPT_RECURSIVE = 1 << 2, /* --recursive */
    ARGS_OPT_DEPTH = 1 << 3,     /* --depth N */
    ARGS_OPT_FROM = 1 << 4,      /* --from FILE */
    ARGS_OPT_SIZE = 1 << 5,      /* --size BYTES */
} args_file_option;

typedef struct {
    const char *path; /* borrowed from argv */
    mode_t mode;      /* valid when has_mode */
    bool has_mode;
    bool parents;
    bool recursive;
    unsigned depth;   /* 1 unless --depth */
    const char *from; /* write --from: the file to copy instead of stdin; NULL: stdin */
    int64_t size;     /* write --size: the bytes stdin must hold; -1: any */
} args_file;

/* `<op> PATH [options]` for the file operations: argv[0] is the operation's name; allowed is
 * the set of args_file_option it takes. Options and PATH come in any order ("--" ends the
 * options); exactly one PATH. getopt_long may reorder argv. */
int args_file_parse(args_file *out, int argc, char **argv, unsigned allowed, init_error *err);

#endif
