/* libFuzzer target: moat-cri's configuration parser (YAML the installer writes and an admin
 * may edit). Any input gives a configuration that passes its own check, or an error. */
#include <stdint.h>
#include <stdlib.h>

#include "cri-shim/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shim_config *cfg = NULL;
    moat_error err = MOAT_ERROR_INIT;
    int r = shim_config_parse(&cfg, (const char *)data, size, "fuzz", &err);
    if (r < 0 && !err.message)
        abort();
    moat_error_clear(&err);
    if (r == 0 && shim_config_check(cfg, &err) < 0)
        abort(); /* an accepted configuration keeps its invariants */
    shim_config_free(cfg);
    moat_error_clear(&err);
    return 0;
}
