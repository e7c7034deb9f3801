#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void moat_strbuf_appendf(moat_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = cap <= MOAT_STRBUF_MAX ? realloc(b->buf, cap) : NULL;
        if (!p) {
            b->truncated = 1;
            return;
        }
        b->buf = p;
        b->cap = cap;
    }
}

char *moat_strbuf_take(moat_strbuf *b)
{
    char *s = b->buf ? b->buf : strdup("");
    *b = (moat_strbuf){0};
    return s;
}
