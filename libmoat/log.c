#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"

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

/* The record as one JSON line (no newline; caller frees): msg cut to its first keep bytes
 * (moved back to a UTF-8 boundary) with a note of how much of full was cut. */
static char *record(moat_log_level level, const char *ts, const char *key, const char *msg,
                    size_t keep, size_t full)
{
    json_t *rec = json_object();
    if (!rec)
        return NULL;
    json_object_set_new(rec, "ts", json_string(ts));
    json_object_set_new(rec, "level", json_string(level_names[level]));
    json_object_set_new(rec, "component", json_string(logger.component));
    if (key)
        json_object_set_new(rec, "key", json_stringn(key, strnlen(key, MOAT_LOG_MAX_KEY)));
    json_t *m = NULL;
    if (msg && keep < full) {
        while (keep > 0 && ((unsigned char)msg[keep] & 0xC0) == 0x80)
            keep--;
        char *cut = NULL;
        if (asprintf(&cut, "%.*s [%zu bytes cut]", (int)keep, msg, full - keep) >= 0)
            m = json_string(cut);
        free(cut);
    } else if (msg) {
        m = json_string(msg);
    }
    /* json_string() refuses invalid UTF-8; keep the record rather than lose it. */
    json_object_set_new(rec, "msg", m ? m : json_string("<message not representable>"));
    char *line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    return line;
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

    /* One record must stay one write(2) of at most PIPE_BUF bytes, or records from two
     * threads (or processes sharing the pipe) interleave: the message is cut, at a UTF-8
     * boundary, until the record fits; JSON escaping can make it six times longer. */
    size_t keep = msg ? strlen(msg) : 0, full = keep;
    for (int tries = 0; tries < 8; tries++) {
        _cleanup_free_ char *line = record(level, ts, key, msg, keep, full);
        if (!line)
            return;
        size_t len = strlen(line);
        if (len + 1 <= PIPE_BUF || keep == 0 || tries == 7) {
            line[len] = '\n'; /* json_dumps' terminator becomes the newline */
            /* a failed write loses the record: there is nowhere left to say so */
            (void)moat_write_all(logger.fd, line, len + 1);
            return;
        }
        /* as much of the message as the escaping seen so far leaves room for */
        keep = (size_t)((double)keep * (PIPE_BUF - 256) / (double)len);
    }
}
