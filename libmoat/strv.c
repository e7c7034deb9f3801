#include "strv.h"

#include <stdlib.h>
#include <string.h>

void moat_strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

size_t moat_strv_len(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

char **moat_strv_copy(const char *const *v)
{
    if (!v)
        return NULL;
    size_t n = moat_strv_len((char *const *)v);
    char **c = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; c && i < n; i++)
        if (!(c[i] = strdup(v[i]))) {
            moat_strv_free(c);
            return NULL;
        }
    return c;
}
