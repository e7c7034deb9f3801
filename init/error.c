#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "init/error.h"
#include "init/json.h"

static void error_reset(init_error *err, const char *op, const char *path)
{
    free(err->path);
    err->path = path ? strdup(path) : NULL; /* out of memory: the line goes without it */
    err->op = op;
}

void init_error_errno_(init_error *err, int errnum, const char *op, const char *path)
{
    if (!err)
        return;
    error_reset(err, op, path);
    const char *name = strerrorname_np(errnum);
    err->code = name ? name : "EIO";
    err->errnum = errnum;
    err->status = INIT_EXIT_FAILURE;
    snprintf(err->message, sizeof(err->message), "%s", strerror(errnum));
}

void init_error_set_(init_error *err, const char *code, int status, const char *op,
                     const char *path, const char *fmt, ...)
{
    if (!err)
        return;
    error_reset(err, op, path);
    err->code = code;
    err->errnum = 0;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

void init_error_print(const init_error *err, FILE *f)
{
    json_line j;
    json_line_begin(&j, f);
    json_line_string(&j, "error", err->code ? err->code : "EIO");
    if (err->op)
        json_line_string(&j, "op", err->op);
    if (err->path)
        json_line_string(&j, "path", err->path);
    json_line_string(&j, "message", err->message);
    (void)json_line_end(&j);
}

void init_error_clear(init_error *err)
{
    if (!err)
        return;
    free(err->path);
    *err = (init_error)INIT_ERROR_INIT;
}
