/* libFuzzer target: the installer's edit of kubelet's files (it rewrites host files). Any
 * KubeletConfiguration it accepts comes back naming exactly the endpoint it was given; a
 * flags file gets the endpoint wherever it had the flag. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isolation/installer/install.h"

#define ENDPOINT "unix:///run/moat/cri.sock"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char *out = NULL, *got = NULL;
    moat_error err = MOAT_ERROR_INIT;
    if (iso_kubelet_config_set_endpoint(&out, text, size, ENDPOINT, &err) == 0) {
        /* the edit took: read back, the file names the endpoint */
        if (iso_kubelet_config_get_endpoint(&got, out, strlen(out), &err) < 0 || !got ||
            strcmp(got, ENDPOINT) != 0)
            abort();
    } else if (!err.message) {
        abort();
    }
    free(out);
    free(got);
    moat_error_clear(&err);
    out = NULL;
    bool found = false;
    if (iso_kubelet_flags_set_endpoint(&out, &found, text, size, ENDPOINT, &err) == 0) {
        if (!out || (found && !strstr(out, ENDPOINT)))
            abort();
    } else if (!err.message) {
        abort();
    }
    free(out);
    moat_error_clear(&err);
    return 0;
}
