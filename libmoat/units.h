/* Parsers for the two unit formats a Sandbox and the config files use:
 * Kubernetes resource quantities ("500m", "1.5Gi", "2e3") and Go durations ("5m",
 * "1h30m", "1.5s"), the same formats the API server's schema and CEL accept; and the
 * API server's RFC 3339 times. */
#ifndef MOAT_UNITS_H
#define MOAT_UNITS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Parses a Kubernetes quantity into thousandths of its unit (CPU "500m" -> 500,
 * memory "1Ki" -> 1024000), rounding a finer fraction up, as the API server's
 * MilliValue() does. Returns 0 and writes *ret_milli, or -1 with MOAT_E_INVALID for a
 * malformed string and MOAT_E_RANGE for a value whose milli form overflows int64. */
int moat_quantity_parse(int64_t *ret_milli, const char *text, moat_error *err);

/* Parses a Go duration string into nanoseconds. Negative durations are accepted (the
 * caller decides whether they make sense). Returns 0 and writes *ret_ns, or -1 with
 * MOAT_E_INVALID (malformed) or MOAT_E_RANGE (overflows int64 nanoseconds). */
int moat_duration_parse(int64_t *ret_ns, const char *text, moat_error *err);

/* ns as the shortest Go duration in one unit that moat_duration_parse reads back exactly
 * ("24h", "15m", "90s", "250ms", "7ns"). */
void moat_duration_format(char *buf, size_t size, int64_t ns);

/* Seconds since the epoch of an RFC 3339 time as the API server writes it, in UTC with Z
 * ("2026-11-24T05:30:00Z", fractions ignored), or -1. */
int64_t moat_rfc3339_parse(const char *text);

/* Formats seconds since the epoch as RFC 3339 UTC into buf (at least 32 bytes). */
void moat_rfc3339_format(char *buf, size_t len, int64_t t);

#endif
