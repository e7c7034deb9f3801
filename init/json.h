/* A tiny JSON writer: one object per line, written field by field to a stdio stream, so no
 * value is ever held in memory twice. Strings are byte strings: '"', '\' and the control
 * characters below 0x20 (as \u00XX) are escaped, every other byte (UTF-8 or not) is passed
 * through as it is. */
#ifndef MOAT_INIT_JSON_H
#define MOAT_INIT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Writes the len bytes at s as a quoted, escaped JSON string. */
void json_string_write(FILE *f, const char *s, size_t len);

typedef struct {
    FILE *f;
    bool first;
} json_line;

/* Starts an object on f. */
void json_line_begin(json_line *j, FILE *f);

/* Adds "key":"value" (value NUL-terminated), "key":"value" of len bytes, "key":N. */
void json_line_string(json_line *j, const char *key, const char *value);
void json_line_stringn(json_line *j, const char *key, const char *value, size_t len);
void json_line_uint(json_line *j, const char *key, uint64_t value);

/* Ends the object and the line and flushes f. Returns 0, or -1 with errno when the stream
 * failed (EPIPE: its reader went away). */
int json_line_end(json_line *j);

#endif
