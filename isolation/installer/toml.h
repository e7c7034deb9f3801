/* A scanner of TOML's structure (containerd's configuration): one event per table header
 * and per key/value line, with the dotted key split into segments; values are skipped
 * whole and handed over as text. Errors name the line. */
#ifndef MOAT_ISO_TOML_H
#define MOAT_ISO_TOML_H

#include <stdbool.h>
#include <stddef.h>

#include "libmoat/error.h"

#define TOML_MAX_SEGMENTS 32 /* dotted key parts in one key or header */

typedef struct {
    char *seg[TOML_MAX_SEGMENTS];
    size_t n;
} toml_kpath;

void toml_kpath_clear(toml_kpath *k);

typedef struct toml_scanner toml_scanner;

/* One event per table header (key == NULL) and per key/value line (key set; table is the
 * current table). pos is where the line starts. Returns < 0 to stop with err set. */
typedef int (*toml_scan_fn)(toml_scanner *sc, void *ud, bool array_header, const toml_kpath *table,
                            const toml_kpath *key, const char *val, size_t vlen, size_t pos);

/* Scans s[0..len) line by line, calling fn for every header and key/value line; base_line
 * is the line number of s[0] minus one (for errors). 0, or -1 with err set. */
int toml_scan(const char *s, size_t len, size_t base_line, toml_scan_fn fn, void *ud,
              moat_error *err);

/* For an event handler: fails the scan at pos ("line N: what"), or names the line of pos. */
int toml_fail(toml_scanner *sc, size_t pos, const char *what);
size_t toml_line_at(const toml_scanner *sc, size_t pos);

/* Whether c may stand in a bare key (A-Z a-z 0-9 _ -): a key of others needs quotes. */
bool toml_bare_char(int c);

/* The error the scan reports into (an event handler may set it itself). */
moat_error *toml_error(toml_scanner *sc);

#endif
