/* libFuzzer target: turning an error answer (any bytes, any HTTP code) into a classified
 * moat_error. The body must always be kept, and a reason always chosen. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    long status = 100 + (data[0] << 8 | data[1]) % 500;
    moat_error err = MOAT_ERROR_INIT;
    if (kube_status_to_error(&err, status, (const char *)data + 2, size - 2, "fuzz") != -1)
        abort();
    if (err.code != MOAT_E_KUBE || !err.message || !err.body || err.http_status != status ||
        memcmp(err.body, data + 2, size - 2) != 0)
        abort();
    (void)kube_reason_name((kube_reason)err.kube_reason);
    moat_error_clear(&err);
    return 0;
}
