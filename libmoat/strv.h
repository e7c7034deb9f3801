/* String vectors: NULL-terminated arrays of malloc'd strings, owned with the array. The
 * one set of helpers for them (lists from configuration, interface names, argv). */
#ifndef MOAT_STRV_H
#define MOAT_STRV_H

#include <stddef.h>

#include "macro.h"

/* Frees every string and the array. Accepts NULL. */
void moat_strv_free(char **v);

/* The strings before the NULL; 0 for NULL. */
size_t moat_strv_len(char *const *v);

/* A deep copy of v (NULL for NULL, or when out of memory: check v first). */
char **moat_strv_copy(const char *const *v);

static inline void moat_strv_freep(char ***v)
{
    moat_strv_free(*v);
}
#define _cleanup_strv_ _cleanup_(moat_strv_freep)

#endif
