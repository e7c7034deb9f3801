#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static struct {
    char component[64];
    moat_log_level level;
    int fd;
} logger = {"moat", MOAT_LOG_INFO, STDERR_FILENO};

void moat_log_init(const char *component, moat_log_level level, int fd)
{
    snprintf(logger.component, sizeof(logger.component), "%s", component ? component : "moat");
    logger.level = level;
    logger.fd = fd;
}

int moat_log_level_parse(moat_log_level *out, const char *name)
{
    for (size_t i = 0; name && i < ELEMENTSOF(level_names); i++)
        if (strcmp(name, level_names[i]) == 0) {
            *out = (moat_log_level)i;
            return 0;
        }
    return -1;
}

void moat_log(moat_log_level level, const char *key, const char *fmt, ...)
{
    if (level < logger.level || level > MOAT_LOG_ERROR)
        return;

    _cleanup_free_ char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);

    struct timespec now;
    struct tm tm;
    char ts[40];
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);

    json_t *rec = json_object();
    if (!rec)
        return;
    json_object_set_new(rec, "ts", json_string(ts));
    json_object_set_new(rec, "level", json_string(level_names[level]));
    json_object_set_new(rec, "component", json_string(logger.component));
    if (key)
        json_object_set_new(rec, "key", json_string(key));
    /* json_string() refuses invalid UTF-8; keep the record rather than lose it. */
    json_t *m = msg ? json_string(msg) : NULL;
    json_object_set_new(rec, "msg", m ? m : json_string("<message not representable>"));

    _cleanup_free_ char *line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    if (!line)
        return;
    size_t len = strlen(line);
    line[len] = '\n'; /* json_dumps' terminator becomes the newline; written as one record */
    ssize_t _unused_ r = write(logger.fd, line, len + 1);
}
