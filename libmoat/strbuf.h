/* A growing text buffer for rendering (Prometheus exposition and the like). */
#ifndef MOAT_STRBUF_H
#define MOAT_STRBUF_H

#include <stddef.h>

#include "macro.h"

/* The text caps at MOAT_STRBUF_MAX; what would go past it, or cannot be allocated, is left
 * out and the buffer is marked truncated. */
#define MOAT_STRBUF_MAX ((size_t)64 << 20)

typedef struct {
    char *buf; /* NUL-terminated once anything was appended; owned */
    size_t len, cap;
    int truncated;
} moat_strbuf;

/* Appends printf-formatted text. */
void moat_strbuf_appendf(moat_strbuf *b, const char *fmt, ...) _printf_(2, 3);

/* Hands the text over (caller frees; "" when empty, NULL only when out of memory) and
 * resets the buffer. */
char *moat_strbuf_take(moat_strbuf *b);

#endif
