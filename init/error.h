/* What moat-init tells its caller when something fails: one JSON line on stderr,
 * {"error":"ENOENT","op":"stat","path":"/x","message":"No such file or directory"}, and the
 * exit status that goes with it.
 *
 * A fallible function returns -1 (or a pid < 0) and fills the caller's init_error, on failure
 * only. The setters are macros whose value is the constant -1 (as libmoat/error.h's), so that
 * clang's analyzer sees that `return init_error_errno(...)` fails. */
#ifndef MOAT_INIT_ERROR_H
#define MOAT_INIT_ERROR_H

#include <stdio.h>

/* Exit statuses. A command's own status (0-255, 128+signal when a signal killed it) passes
 * through exec and init unchanged; these are the ones moat-init adds, after the conventions
 * of timeout(1), env(1) and the shells. */
#define INIT_EXIT_FAILURE    1   /* a file operation failed */
#define INIT_EXIT_USAGE      2   /* a bad command line */
#define INIT_EXIT_TIMEOUT    124 /* exec --timeout ran out; the process group was killed */
#define INIT_EXIT_INTERNAL   125 /* exec or init itself failed (--cwd, fork, signalfd) */
#define INIT_EXIT_CANNOT_RUN 126 /* the command was found but could not be executed */
#define INIT_EXIT_NOT_FOUND  127 /* the command was not found */
#define INIT_EXIT_DISCONNECT 129 /* exec: the reader of stdout or stderr went away */

#define INIT_ERROR_MESSAGE_MAX 512 /* longer messages are cut */

typedef struct {
    const char *code; /* the symbolic name: "ENOENT", "EUSAGE", "ETIMEDOUT"; NULL while unset */
    int errnum;       /* the errno behind code, 0 for EUSAGE and ETIMEDOUT */
    const char *op;   /* what failed ("stat", "exec"): a static string */
    char *path;       /* owned copy of the path it failed on; NULL when there is none */
    int status;       /* the exit status moat-init ends with for it */
    char message[INIT_ERROR_MESSAGE_MAX];
} init_error;

#define INIT_ERROR_INIT                                                                            \
    {                                                                                              \
        NULL, 0, NULL, NULL, 0,                                                                    \
        {                                                                                          \
            0                                                                                      \
        }                                                                                          \
    }
#define _cleanup_init_error_ __attribute__((cleanup(init_error_clear)))

#define INIT_ERROR_FAIL_(call)                                                                     \
    (__extension__({                                                                               \
        (void)(call);                                                                              \
        -1;                                                                                        \
    }))

/* Sets the error from errnum (code: its symbolic name, message: strerror) with op and path
 * (NULL for none; copied), status INIT_EXIT_FAILURE, and returns -1. Replaces an earlier
 * error. */
#define init_error_errno(...) INIT_ERROR_FAIL_(init_error_errno_(__VA_ARGS__))
void init_error_errno_(init_error *err, int errnum, const char *op, const char *path);

/* Sets an error that no errno names: code is a static string ("EUSAGE", "ETIMEDOUT"), status
 * the exit status; the message is formatted. Returns -1. */
#define init_error_set(...) INIT_ERROR_FAIL_(init_error_set_(__VA_ARGS__))
void init_error_set_(init_error *err, const char *code, int status, const char *op,
                     const char *path, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* A bad command line: code EUSAGE, status INIT_EXIT_USAGE. Returns -1. */
#define init_error_usage(err, op, ...)                                                             \
    init_error_set(err, "EUSAGE", INIT_EXIT_USAGE, op, NULL, __VA_ARGS__)

/* Writes the error as one JSON line to f and flushes it. Errors of the stream are ignored:
 * there is nowhere left to report them. */
void init_error_print(const init_error *err, FILE *f);

/* Frees the path and resets the error; accepts NULL. */
void init_error_clear(init_error *err);

#endif
