/* JSON-lines logging to one file descriptor (stderr by default).
 *
 * One line per record: {"ts", "level", "component", "key", "msg"}. The logger is the only
 * mutable global in Moat; library code logs at debug only, and the caller that decides
 * what to do about a failure logs it once, with the object's key. Thread-safe: each
 * record is written with a single write(2) of at most PIPE_BUF bytes (a longer message is
 * cut, at a UTF-8 boundary, and says how many bytes it lost; a key is cut to
 * MOAT_LOG_MAX_KEY), so records never interleave. */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

#include "macro.h"

#define MOAT_LOG_MAX_KEY 512

typedef enum {
    MOAT_LOG_DEBUG = 0,
    MOAT_LOG_INFO,
    MOAT_LOG_WARN,
    MOAT_LOG_ERROR,
} moat_log_level;

/* Sets the component name (copied), the lowest level written, and the destination fd. */
void moat_log_init(const char *component, moat_log_level level, int fd);

/* Parses "debug", "info", "warn" or "error" into *out. Returns 0, or -1 (out untouched)
 * for any other string. */
int moat_log_level_parse(moat_log_level *out, const char *name);

/* Writes one record if level is enabled. key names the object the record is about
 * ("namespace/name"), or is NULL. */
void moat_log(moat_log_level level, const char *key, const char *fmt, ...) _printf_(3, 4);

#define log_debug(key, ...) moat_log(MOAT_LOG_DEBUG, key, __VA_ARGS__)
#define log_info(key, ...)  moat_log(MOAT_LOG_INFO, key, __VA_ARGS__)
#define log_warn(key, ...)  moat_log(MOAT_LOG_WARN, key, __VA_ARGS__)
#define log_error(key, ...) moat_log(MOAT_LOG_ERROR, key, __VA_ARGS__)

#endif
