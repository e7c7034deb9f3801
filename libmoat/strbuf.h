/* The one growing buffer, for text and bytes (curl's dynbuf is the model): rendering
 * (Prometheus exposition, nft commands, configuration files) and receiving (HTTP bodies,
 * watch lines, files).
 *
 * It grows up to its cap (`max`; 0 is MOAT_STRBUF_MAX). An append that would pass the cap,
 * or that cannot be allocated, fails the buffer for good: every later append does nothing
 * and moat_strbuf_take() answers NULL. So a failed append never leaves a hole in the middle
 * of the text, and the one result a renderer must check is take's. The contents are always
 * NUL-terminated once anything was appended. */
#ifndef MOAT_STRBUF_H
#define MOAT_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

#define MOAT_STRBUF_MAX ((size_t)64 << 20)

typedef struct {
    char *buf; /* owned */
    size_t len, cap;
    size_t max;     /* the cap on len + 1; 0: MOAT_STRBUF_MAX */
    bool truncated; /* an append failed: the contents are not what was appended */
    bool over_cap;  /* ... because of the cap (else: out of memory) */
} moat_strbuf;

/* Appends printf-formatted text. */
void moat_strbuf_appendf(moat_strbuf *b, const char *fmt, ...) _printf_(2, 3);

/* Appends len bytes. 0, or -1 when the buffer has failed (now or before). */
int moat_strbuf_append(moat_strbuf *b, const void *data, size_t len);

/* Empties the buffer, keeping its memory and its cap, and clears a failure. */
void moat_strbuf_reset(moat_strbuf *b);

/* Hands the contents over (caller frees; "" when empty) and resets the buffer to nothing;
 * NULL when the buffer failed or out of memory. *ret_len (may be NULL) gets the length. */
char *moat_strbuf_take_len(moat_strbuf *b, size_t *ret_len) __attribute__((warn_unused_result));

static inline __attribute__((warn_unused_result)) char *moat_strbuf_take(moat_strbuf *b)
{
    return moat_strbuf_take_len(b, NULL);
}

/* Frees the contents and resets the buffer (its cap stays). */
void moat_strbuf_free(moat_strbuf *b);

#endif
