#include "units.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* More significant digits than this cannot fit int64 milli-units anyway. */
#define QUANTITY_MAX_DIGITS 30
#define I128_LIMIT          ((__int128)INT64_MAX)

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Multiplies *v by 10^e (e >= 0), failing once the value passes INT64_MAX. */
static int scale_up(__int128 *v, int e, int b)
{
    for (; e > 0; e--) {
        *v *= 10;
        if (*v > I128_LIMIT)
            return -1;
    }
    for (; b > 0; b--) {
        *v *= 1024;
        if (*v > I128_LIMIT)
            return -1;
    }
    return 0;
}

int moat_quantity_parse(int64_t *ret_milli, const char *text, moat_error *err)
{
    if (!text || !*text)
        return moat_error_set(err, MOAT_E_INVALID, "quantity is empty");

    const char *p = text;
    int negative = 0;
    if (*p == '+' || *p == '-')
        negative = *p++ == '-';

    __int128 mantissa = 0;
    int digits = 0, frac = 0, seen_point = 0, any_digit = 0;
    for (; is_digit(*p) || (*p == '.' && !seen_point); p++) {
        if (*p == '.') {
            seen_point = 1;
            continue;
        }
        any_digit = 1;
        if (mantissa == 0 && *p == '0') {
            frac += seen_point; /* leading zeros carry no value but do shift */
            continue;
        }
        if (++digits > QUANTITY_MAX_DIGITS)
            return moat_error_set(err, MOAT_E_RANGE, "quantity \"%s\" has too many digits", text);
        mantissa = mantissa * 10 + (*p - '0');
        frac += seen_point;
    }
    if (!any_digit)
        return moat_error_set(err, MOAT_E_INVALID, "quantity \"%s\" has no number", text);

    int exp10 = 3, exp1024 = 0; /* 3: the result is in milli-units */
    /* "E" and "Ei" are suffixes (exa, exbi); any other text after e/E is an exponent. */
    if ((*p == 'e' || *p == 'E') && p[1] && strcmp(p, "Ei") != 0) {
        p++;
        int eneg = 0, e = 0, edigits = 0;
        if (*p == '+' || *p == '-')
            eneg = *p++ == '-';
        for (; is_digit(*p); p++, edigits++)
            if (e < 1000)
                e = e * 10 + (*p - '0');
        if (!edigits)
            return moat_error_set(err, MOAT_E_INVALID, "quantity \"%s\" has an empty exponent",
                                  text);
        exp10 += eneg ? -e : e;
    } else if (*p) {
        static const struct {
            const char *suffix;
            int exp10, exp1024;
        } suffixes[] = {
            {"Ki", 0, 1}, {"Mi", 0, 2}, {"Gi", 0, 3}, {"Ti", 0, 4}, {"Pi", 0, 5},
            {"Ei", 0, 6}, {"n", -9, 0}, {"u", -6, 0}, {"m", -3, 0}, {"k", 3, 0},
            {"M", 6, 0},  {"G", 9, 0},  {"T", 12, 0}, {"P", 15, 0}, {"E", 18, 0},
        };
        size_t i;
        for (i = 0; i < ELEMENTSOF(suffixes); i++)
            if (strcmp(p, suffixes[i].suffix) == 0)
                break;
        if (i == ELEMENTSOF(suffixes))
            return moat_error_set(err, MOAT_E_INVALID, "quantity \"%s\" has an unknown suffix",
                                  text);
        exp10 += suffixes[i].exp10;
        exp1024 = suffixes[i].exp1024;
        p += strlen(p);
    }
    if (*p)
        return moat_error_set(err, MOAT_E_INVALID, "quantity \"%s\" has trailing characters", text);

    /* "1.000Ei" is 1Ei: trailing fractional zeros must not make an exact value overflow. */
    while (frac > 0 && mantissa != 0 && mantissa % 10 == 0) {
        mantissa /= 10;
        frac--;
    }
    exp10 -= frac;
    __int128 v = mantissa;
    if (v != 0) {
        if (exp10 < 0) {
            /* Scale binary first so no precision is lost, then divide rounding up. */
            if (scale_up(&v, 0, exp1024) < 0)
                goto range;
            if (exp10 < -36) {
                v = 1; /* a positive value far below one milli rounds up to it */
            } else {
                __int128 div = 1;
                for (int e = exp10; e < 0; e++)
                    div *= 10;
                v = (v + div - 1) / div;
            }
        } else if (scale_up(&v, exp10, exp1024) < 0) {
            goto range;
        }
        if (v > I128_LIMIT)
            goto range;
    }
    *ret_milli = negative ? -(int64_t)v : (int64_t)v;
    return 0;
range:
    return moat_error_set(err, MOAT_E_RANGE, "quantity \"%s\" is too large", text);
}

int moat_duration_parse(int64_t *ret_ns, const char *text, moat_error *err)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {
        {"ns", 1},
        {"us", 1000},
        {"\xc2\xb5s", 1000}, /* U+00B5 micro */
        {"\xce\xbcs", 1000},
        /* U+03BC mu */ {"ms", 1000000},
        {"s", 1000000000LL},
        {"m", 60000000000LL},
        {"h", 3600000000000LL},
    };

    if (!text || !*text)
        return moat_error_set(err, MOAT_E_INVALID, "duration is empty");

    const char *p = text;
    int negative = 0;
    if (*p == '+' || *p == '-')
        negative = *p++ == '-';
    if (strcmp(p, "0") == 0) {
        *ret_ns = 0;
        return 0;
    }
    if (!*p)
        return moat_error_set(err, MOAT_E_INVALID, "duration \"%s\" has no number", text);

    __int128 total = 0;
    while (*p) {
        __int128 whole = 0, frac = 0, frac_scale = 1;
        int any = 0;
        for (; is_digit(*p); p++, any = 1) {
            whole = whole * 10 + (*p - '0');
            if (whole > I128_LIMIT)
                goto range;
        }
        if (*p == '.') {
            p++;
            for (; is_digit(*p); p++, any = 1)
                if (frac_scale < 1000000000000000000LL) { /* further digits cannot matter */
                    frac = frac * 10 + (*p - '0');
                    frac_scale *= 10;
                }
        }
        if (!any)
            return moat_error_set(err, MOAT_E_INVALID,
                                  "duration \"%s\" has a unit without a number", text);
        size_t i, len = 0;
        for (i = 0; i < ELEMENTSOF(units); i++) {
            len = strlen(units[i].unit);
            /* The table lists "ms" before "m" and "s", so the longer unit wins. */
            if (strncmp(p, units[i].unit, len) == 0)
                break;
        }
        if (i == ELEMENTSOF(units))
            return moat_error_set(err, MOAT_E_INVALID,
                                  "duration \"%s\" lacks a unit or has an unknown one (ns, us, ms, "
                                  "s, m, h)",
                                  text);
        p += len;
        total += whole * units[i].ns + frac * units[i].ns / frac_scale;
        if (total > I128_LIMIT)
            goto range;
    }
    *ret_ns = negative ? -(int64_t)total : (int64_t)total;
    return 0;
range:
    return moat_error_set(err, MOAT_E_RANGE, "duration \"%s\" is too long", text);
}

void moat_duration_format(char *buf, size_t size, int64_t ns)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {
        {"h", 3600 * 1000000000LL},
        {"m", 60 * 1000000000LL},
        {"s", 1000000000LL},
        {"ms", 1000000},
        {"us", 1000},
    };
    for (size_t i = 0; i < ELEMENTSOF(units); i++)
        if (ns != 0 && ns % units[i].ns == 0) {
            snprintf(buf, size, "%" PRId64 "%s", ns / units[i].ns, units[i].unit);
            return;
        }
    snprintf(buf, size, "%" PRId64 "ns", ns);
}

int64_t moat_rfc3339_parse(const char *text)
{
    struct tm tm = {0};
    if (!text)
        return -1;
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -1;
    if (*end == '.')
        for (end++; *end >= '0' && *end <= '9'; end++)
            ;
    if (*end != 'Z' || end[1])
        return -1; /* the API server always writes UTC with Z */
    return (int64_t)timegm(&tm);
}

void moat_rfc3339_format(char *buf, size_t len, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
