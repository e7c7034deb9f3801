#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t cap_of(const moat_strbuf *b)
{
    return b->max ? b->max : MOAT_STRBUF_MAX;
}

static void fail(moat_strbuf *b, bool over_cap)
{
    b->truncated = true;
    b->over_cap = over_cap;
}

/* Room for need more bytes and the NUL; false (the buffer failed) when it cannot be had. */
static bool reserve(moat_strbuf *b, size_t need)
{
    if (b->truncated)
        return false;
    if (need >= cap_of(b) || b->len + need + 1 > cap_of(b)) {
        fail(b, true);
        return false;
    }
    if (b->len + need + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need + 1)
        cap *= 2;
    if (cap > cap_of(b))
        cap = cap_of(b);
    char *p = realloc(b->buf, cap);
    if (!p) {
        fail(b, false);
        return false;
    }
    b->buf = p;
    b->cap = cap;
    return true;
}

void moat_strbuf_appendf(moat_strbuf *b, const char *fmt, ...)
{
    if (b->truncated)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fail(b, false);
        return;
    }
    if (b->buf && (size_t)n < b->cap - b->len) {
        b->len += (size_t)n;
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int moat_strbuf_append(moat_strbuf *b, const void *data, size_t len)
{
    if (!reserve(b, len))
        return -1;
    if (len)
        memcpy(b->buf + b->len, data, len);
    b->len += len;
    b->buf[b->len] = '\0';
    return 0;
}

void moat_strbuf_reset(moat_strbuf *b)
{
    b->len = 0;
    if (b->buf)
        b->buf[0] = '\0';
    b->truncated = b->over_cap = false;
}

char *moat_strbuf_take_len(moat_strbuf *b, size_t *ret_len)
{
    char *s = NULL;
    size_t len = 0;
    if (!b->truncated) {
        s = b->buf ? b->buf : strdup("");
        len = b->len;
        b->buf = NULL;
    }
    moat_strbuf_free(b);
    if (ret_len)
        *ret_len = len;
    return s;
}

void moat_strbuf_free(moat_strbuf *b)
{
    free(b->buf);
    *b = (moat_strbuf){.max = b->max};
}
