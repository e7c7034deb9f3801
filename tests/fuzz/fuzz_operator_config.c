/* libFuzzer target: the operator's configuration parser (YAML written by a cluster admin,
 * rendered by Helm). Any input gives a configuration or an error naming why. */
#include <stdint.h>
#include <stdlib.h>

#include "operator/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    operator_config *cfg = NULL;
    moat_error err = MOAT_ERROR_INIT;
    int r = operator_config_parse(&cfg, (const char *)data, size, "fuzz", &err);
    if (r < 0 && !err.message)
        abort();
    if (r == 0 && (!cfg || cfg->workers < 1 || cfg->default_cpu_milli > cfg->max_cpu_milli))
        abort(); /* an accepted configuration keeps its invariants */
    operator_config_free(cfg);
    moat_error_clear(&err);
    return 0;
}
