#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Used when even the message cannot be allocated: the code still tells the story. */
static char oom_message[] = "out of memory while formatting an error";

static void set_message(moat_error *err, char *msg)
{
    if (err->message != oom_message)
        free(err->message);
    err->message = msg ? msg : oom_message;
}

static void clear_kube(moat_error *err)
{
    free(err->body);
    err->body = NULL;
    err->kube_reason = 0;
    err->http_status = 0;
}

/* fmt with its arguments, followed by ": tail" when tail is given; NULL when out of memory. */
static char *vformat(const char *tail, const char *fmt, va_list ap) _printf_(2, 0);
static char *vformat(const char *tail, const char *fmt, va_list ap)
{
    char *head = NULL, *msg = NULL;
    if (vasprintf(&head, fmt, ap) < 0)
        return NULL;
    if (!tail)
        return head;
    if (asprintf(&msg, "%s: %s", head, tail) < 0)
        msg = NULL;
    free(head);
    return msg;
}

void moat_error_set_(moat_error *err, moat_error_code code, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(NULL, fmt, ap);
    va_end(ap);
    clear_kube(err);
    err->code = code;
    err->errno_value = 0;
    set_message(err, msg);
}

void moat_error_set_errno_(moat_error *err, int errnum, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(strerror(errnum), fmt, ap);
    va_end(ap);
    clear_kube(err);
    err->code = MOAT_E_IO;
    err->errno_value = errnum;
    set_message(err, msg);
}

void moat_error_prefix_(moat_error *err, const char *fmt, ...)
{
    if (!err || !err->message)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(err->message, fmt, ap);
    va_end(ap);
    if (msg) /* out of memory: the message without the context is still the story */
        set_message(err, msg);
}

void moat_error_clear(moat_error *err)
{
    if (!err)
        return;
    if (err->message != oom_message)
        free(err->message);
    err->message = NULL;
    err->code = MOAT_E_OK;
    err->errno_value = 0;
    clear_kube(err);
}
