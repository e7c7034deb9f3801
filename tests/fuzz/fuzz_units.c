/* libFuzzer target: the quantity and duration parsers, which read Sandbox specs and
 * config files. Any input must give a value or an error, never a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/units.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    moat_error err = MOAT_ERROR_INIT;
    int64_t v;
    if (moat_quantity_parse(&v, text, &err) < 0 && !err.message)
        abort(); /* a failure must always say why */
    moat_error_clear(&err);
    if (moat_duration_parse(&v, text, &err) < 0 && !err.message)
        abort();
    moat_error_clear(&err);
    free(text);
    return 0;
}
