/* Errors that carry context up to the one place that logs them (crun's libcrun_error_t).
 *
 * A fallible function returns an int < 0 (or NULL) and, on failure only, fills the
 * caller's moat_error. Callers that pass the error on add context with
 * moat_error_prefix() rather than replacing the message. */
#ifndef MOAT_ERROR_H
#define MOAT_ERROR_H

#include "macro.h"

typedef enum {
    MOAT_E_OK = 0,
    MOAT_E_INVALID,  /* bad input: a config key, a field, a parse */
    MOAT_E_RANGE,    /* a value outside its allowed range */
    MOAT_E_NOMEM,    /* allocation failed or a named cap was exceeded */
    MOAT_E_IO,       /* a system call failed; see errno_value */
    MOAT_E_NOTFOUND, /* the thing asked for does not exist */
    MOAT_E_KUBE,     /* the API server answered with an error: see the kube_* fields */
    MOAT_E_NETWORK,  /* the request did not get an answer (connect, TLS, timeout) */
    MOAT_E_CANCELED, /* the operation was stopped by its caller */
} moat_error_code;

typedef struct {
    moat_error_code code;
    int errno_value; /* the errno behind MOAT_E_IO, else 0 */
    char *message;   /* owned; NULL while no error is set */
    /* Set with MOAT_E_KUBE only (see libmoat/kube.h): */
    int kube_reason;  /* a kube_reason: from the Status body's reason, never guessed */
    long http_status; /* the HTTP status of the answer */
    char *body;       /* owned: the response body as received, never dropped */
} moat_error;

#define MOAT_ERROR_INIT                                                                            \
    {                                                                                              \
        MOAT_E_OK, 0, NULL, 0, 0, NULL                                                             \
    }
#define _cleanup_error_ _cleanup_(moat_error_clear)

/* The three setters below are macros whose value is the constant -1, so that a reader of
 * one translation unit (the compiler, clang's static analyzer) sees that
 * `return moat_error_set(...)` fails: a function whose out-parameters are written only on
 * success is then never taken for one that returned 0 without writing them. */
#define MOAT_ERROR_FAIL_(call)                                                                     \
    (__extension__({                                                                               \
        (void)(call);                                                                              \
        -1;                                                                                        \
    }))

/* Sets the error (replacing any earlier one) and returns -1, so a failing function can
 * end with `return moat_error_set(err, ...)`. A NULL err is allowed: nothing is kept. */
#define moat_error_set(...) MOAT_ERROR_FAIL_(moat_error_set_(__VA_ARGS__))
void moat_error_set_(moat_error *err, moat_error_code code, const char *fmt, ...) _printf_(3, 4);

/* Like moat_error_set with MOAT_E_IO and errno_value = errnum; appends strerror(errnum). */
#define moat_error_set_errno(...) MOAT_ERROR_FAIL_(moat_error_set_errno_(__VA_ARGS__))
void moat_error_set_errno_(moat_error *err, int errnum, const char *fmt, ...) _printf_(3, 4);

/* Prepends "<context>: " to the message of a set error; returns -1. */
#define moat_error_prefix(...) MOAT_ERROR_FAIL_(moat_error_prefix_(__VA_ARGS__))
void moat_error_prefix_(moat_error *err, const char *fmt, ...) _printf_(2, 3);

/* Frees the message and resets the error; accepts NULL. */
void moat_error_clear(moat_error *err);

#endif
