/* A scanner of TOML's structure for containerd's configuration: table headers and key/value
 * lines, values skipped whole (strings, arrays, inline tables, multi-line strings), errors
 * naming the line. It reads structure only: what a value means is the caller's. */
#include "toml.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/strbuf.h"

#define MAX_DEPTH 64 /* nested arrays and inline tables */

struct toml_scanner {
    const char *s;
    size_t len, i;
    size_t base_line; /* the line number of s[0] minus one */
    moat_error *err;
};

void toml_kpath_clear(toml_kpath *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->seg[i]);
    k->n = 0;
}

size_t toml_line_at(const toml_scanner *sc, size_t pos)
{
    size_t line = sc->base_line + 1;
    for (size_t i = 0; i < pos && i < sc->len; i++)
        line += sc->s[i] == '\n';
    return line;
}

int toml_fail(toml_scanner *sc, size_t pos, const char *what)
{
    return moat_error_set(sc->err, MOAT_E_INVALID, "line %zu: %s", toml_line_at(sc, pos), what);
}

static int peek(const toml_scanner *sc, size_t ahead)
{
    return sc->i + ahead < sc->len ? (unsigned char)sc->s[sc->i + ahead] : -1;
}

static bool starts(const toml_scanner *sc, const char *lit)
{
    size_t n = strlen(lit);
    return sc->len - sc->i >= n && memcmp(sc->s + sc->i, lit, n) == 0;
}

static void skip_blank(toml_scanner *sc)
{
    while (peek(sc, 0) == ' ' || peek(sc, 0) == '\t')
        sc->i++;
}

static void skip_comment(toml_scanner *sc)
{
    if (peek(sc, 0) == '#')
        while (sc->i < sc->len && sc->s[sc->i] != '\n')
            sc->i++;
}

/* After a value or header: blanks, an optional comment, then a newline or the end. */
static int end_of_line(toml_scanner *sc)
{
    skip_blank(sc);
    skip_comment(sc);
    if (peek(sc, 0) == '\r' && peek(sc, 1) == '\n')
        sc->i++;
    if (sc->i >= sc->len)
        return 0;
    if (sc->s[sc->i] != '\n')
        return toml_fail(sc, sc->i, "unexpected text after the value");
    sc->i++;
    return 0;
}

static void put_utf8(moat_strbuf *b, uint32_t cp)
{
    if (cp < 0x80)
        moat_strbuf_appendf(b, "%c", (char)cp);
    else if (cp < 0x800)
        moat_strbuf_appendf(b, "%c%c", (char)(0xc0 | cp >> 6), (char)(0x80 | (cp & 0x3f)));
    else if (cp < 0x10000)
        moat_strbuf_appendf(b, "%c%c%c", (char)(0xe0 | cp >> 12), (char)(0x80 | ((cp >> 6) & 0x3f)),
                            (char)(0x80 | (cp & 0x3f)));
    else
        moat_strbuf_appendf(b, "%c%c%c%c", (char)(0xf0 | cp >> 18),
                            (char)(0x80 | ((cp >> 12) & 0x3f)), (char)(0x80 | ((cp >> 6) & 0x3f)),
                            (char)(0x80 | (cp & 0x3f)));
}

/* A one-line string, "basic" (escapes decoded) or 'literal'; *out (when out) gets its
 * text. NUL characters from \u0000 end the text early, which only matters for names. */
static int scan_string(toml_scanner *sc, char **out)
{
    size_t start = sc->i;
    char q = sc->s[sc->i++];
    bool keep = out != NULL; /* only names are kept; values are skipped */
    moat_strbuf b = {0};
    for (;;) {
        int c = peek(sc, 0);
        if (c < 0 || c == '\n') {
            free(b.buf);
            return toml_fail(sc, start, "unterminated string");
        }
        sc->i++;
        if (c == q)
            break;
        if (q == '"' && c == '\\') {
            int e = peek(sc, 0);
            sc->i++;
            const char *simple = strchr("btnfr\"\\", e < 0 ? 'x' : e);
            if (e > 0 && simple) {
                static const char map[] = "\b\t\n\f\r\"\\";
                if (keep)
                    moat_strbuf_appendf(&b, "%c", map[simple - "btnfr\"\\"]);
            } else if (e == 'u' || e == 'U') {
                size_t n = e == 'u' ? 4 : 8;
                uint32_t cp = 0;
                for (size_t k = 0; k < n; k++) {
                    int h = peek(sc, 0);
                    int v = h >= '0' && h <= '9'   ? h - '0'
                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                   : -1;
                    if (v < 0) {
                        free(b.buf);
                        return toml_fail(sc, start, "bad \\u escape in a string");
                    }
                    cp = cp << 4 | (uint32_t)v;
                    sc->i++;
                }
                if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                    free(b.buf);
                    return toml_fail(sc, start, "bad \\u escape in a string");
                }
                if (keep)
                    put_utf8(&b, cp);
            } else {
                free(b.buf);
                return toml_fail(sc, start, "bad escape in a string");
            }
        } else if (keep) {
            moat_strbuf_appendf(&b, "%c", (char)c);
        }
    }
    if (b.truncated) {
        free(b.buf);
        return moat_error_set(sc->err, MOAT_E_NOMEM, "out of memory scanning a string");
    }
    if (out) {
        *out = moat_strbuf_take(&b);
        if (!*out)
            return moat_error_set(sc->err, MOAT_E_NOMEM, "out of memory scanning a string");
    } else {
        free(b.buf);
    }
    return 0;
}

bool toml_bare_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* A dotted key: simple keys (bare, "basic", 'literal') joined by dots, blanks around. */
static int scan_key(toml_scanner *sc, toml_kpath *k)
{
    for (;;) {
        skip_blank(sc);
        if (k->n == TOML_MAX_SEGMENTS)
            return toml_fail(sc, sc->i, "key with too many dotted parts");
        int c = peek(sc, 0);
        char *seg = NULL;
        if (c == '"' || c == '\'') {
            if (scan_string(sc, &seg) < 0)
                return -1;
        } else if (toml_bare_char(c)) {
            size_t start = sc->i;
            while (toml_bare_char(peek(sc, 0)))
                sc->i++;
            seg = strndup(sc->s + start, sc->i - start);
            if (!seg)
                return moat_error_set(sc->err, MOAT_E_NOMEM, "out of memory scanning a key");
        } else {
            return toml_fail(sc, sc->i, "expected a key");
        }
        k->seg[k->n++] = seg;
        skip_blank(sc);
        if (peek(sc, 0) != '.')
            return 0;
        sc->i++;
    }
}

/* Skips blanks, newlines and comments (inside arrays). */
static void skip_space_nl(toml_scanner *sc)
{
    for (;;) {
        int c = peek(sc, 0);
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            sc->i++;
        else if (c == '#')
            skip_comment(sc);
        else
            return;
    }
}

static int skip_value(toml_scanner *sc, int depth);

static int skip_multiline(toml_scanner *sc, const char *delim)
{
    size_t start = sc->i;
    sc->i += 3;
    for (;;) {
        if (sc->i >= sc->len)
            return toml_fail(sc, start, "unterminated multi-line string");
        if (delim[0] == '"' && sc->s[sc->i] == '\\') {
            sc->i += 2; /* an escaped character, \" included, never closes the string */
            continue;
        }
        if (starts(sc, delim)) {
            sc->i += 3;
            /* up to two quotes right before the closing three belong to the string */
            for (int k = 0; k < 2 && peek(sc, 0) == delim[0]; k++)
                sc->i++;
            return 0;
        }
        sc->i++;
    }
}

static int skip_value(toml_scanner *sc, int depth)
{
    if (depth > MAX_DEPTH)
        return toml_fail(sc, sc->i, "values nested too deeply");
    int c = peek(sc, 0);
    if (starts(sc, "\"\"\""))
        return skip_multiline(sc, "\"\"\"");
    if (starts(sc, "'''"))
        return skip_multiline(sc, "'''");
    if (c == '"' || c == '\'')
        return scan_string(sc, NULL);
    if (c == '[') {
        size_t start = sc->i++;
        for (;;) {
            skip_space_nl(sc);
            if (peek(sc, 0) == ']') {
                sc->i++;
                return 0;
            }
            if (peek(sc, 0) < 0)
                return toml_fail(sc, start, "unterminated array");
            if (skip_value(sc, depth + 1) < 0)
                return -1;
            skip_space_nl(sc);
            if (peek(sc, 0) < 0)
                return toml_fail(sc, start, "unterminated array");
            if (peek(sc, 0) == ',')
                sc->i++;
            else if (peek(sc, 0) != ']')
                return toml_fail(sc, sc->i, "expected ',' or ']' in an array");
        }
    }
    if (c == '{') {
        size_t start = sc->i++;
        for (;;) {
            skip_space_nl(sc);
            if (peek(sc, 0) == '}') {
                sc->i++;
                return 0;
            }
            if (peek(sc, 0) < 0)
                return toml_fail(sc, start, "unterminated inline table");
            toml_kpath k = {0};
            int r = scan_key(sc, &k);
            toml_kpath_clear(&k);
            if (r < 0)
                return -1;
            skip_blank(sc);
            if (peek(sc, 0) != '=')
                return toml_fail(sc, sc->i, "expected '=' in an inline table");
            sc->i++;
            skip_blank(sc);
            if (skip_value(sc, depth + 1) < 0)
                return -1;
            skip_space_nl(sc);
            if (peek(sc, 0) < 0)
                return toml_fail(sc, start, "unterminated inline table");
            if (peek(sc, 0) == ',')
                sc->i++;
            else if (peek(sc, 0) != '}')
                return toml_fail(sc, sc->i, "expected ',' or '}' in an inline table");
        }
    }
    /* a scalar: number, boolean, date */
    size_t start = sc->i;
    while (sc->i < sc->len && !strchr(" \t\r\n,]}#", sc->s[sc->i]))
        sc->i++;
    if (sc->i == start)
        return toml_fail(sc, start, "expected a value");
    return 0;
}

int toml_scan(const char *s, size_t len, size_t base_line, toml_scan_fn fn, void *ud,
              moat_error *err)
{
    toml_scanner sc = {.s = s, .len = len, .base_line = base_line, .err = err};
    toml_kpath table = {0};
    int r = 0;
    while (sc.i < sc.len) {
        skip_space_nl(&sc);
        if (sc.i >= sc.len)
            break;
        size_t pos = sc.i;
        if (peek(&sc, 0) == '[') {
            bool array = peek(&sc, 1) == '[';
            sc.i += array ? 2 : 1;
            toml_kpath_clear(&table);
            if ((r = scan_key(&sc, &table)) < 0)
                break;
            skip_blank(&sc);
            if (!starts(&sc, array ? "]]" : "]")) {
                r = toml_fail(&sc, pos, "unterminated table header");
                break;
            }
            sc.i += array ? 2 : 1;
            if ((r = end_of_line(&sc)) < 0)
                break;
            if ((r = fn(&sc, ud, array, &table, NULL, NULL, 0, pos)) < 0)
                break;
            continue;
        }
        toml_kpath key = {0};
        r = scan_key(&sc, &key);
        if (r == 0) {
            skip_blank(&sc);
            if (peek(&sc, 0) != '=')
                r = toml_fail(&sc, sc.i, "expected '=' after a key");
        }
        size_t vstart = 0;
        if (r == 0) {
            sc.i++;
            skip_blank(&sc);
            vstart = sc.i;
            r = skip_value(&sc, 0);
        }
        size_t vend = sc.i;
        if (r == 0)
            r = end_of_line(&sc);
        if (r == 0)
            r = fn(&sc, ud, false, &table, &key, s + vstart, vend - vstart, pos);
        toml_kpath_clear(&key);
        if (r < 0)
            break;
    }
    toml_kpath_clear(&table);
    return r < 0 ? -1 : 0;
}

moat_error *toml_error(toml_scanner *sc)
{
    return sc->err;
}
