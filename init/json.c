#include <inttypes.h>
#include <string.h>

#include "init/json.h"

void json_string_write(FILE *f, const char *s, size_t len)
{
    putc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            putc('\\', f);
            putc(c, f);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            putc(c, f);
        }
    }
    putc('"', f);
}

void json_line_begin(json_line *j, FILE *f)
{
    j->f = f;
    j->first = true;
    putc('{', f);
}

static void json_line_key(json_line *j, const char *key)
{
    if (!j->first)
        putc(',', j->f);
    j->first = false;
    json_string_write(j->f, key, strlen(key));
    putc(':', j->f);
}

void json_line_string(json_line *j, const char *key, const char *value)
{
    json_line_stringn(j, key, value, strlen(value));
}

void json_line_stringn(json_line *j, const char *key, const char *value, size_t len)
{
    json_line_key(j, key);
    json_string_write(j->f, value, len);
}

void json_line_uint(json_line *j, const char *key, uint64_t value)
{
    json_line_key(j, key);
    fprintf(j->f, "%" PRIu64, value);
}

int json_line_end(json_line *j)
{
    fputs("}\n", j->f);
    /* fflush reports the error of this write; ferror one that an earlier, buffered write
     * hit (errno is still that of the failed write(2): nothing has run since). */
    if (fflush(j->f) != 0 || ferror(j->f))
        return -1;
    return 0;
}
