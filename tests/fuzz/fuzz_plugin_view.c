/* libFuzzer target: a Sandbox as the server returned it (any JSON) read into what
 * `kubectl moat ls` and `get` print; every string of the view is set, and printing it
 * never fails. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kubectl-moat/view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *obj = json_loadb((const char *)data, size, 0, NULL);
    if (!obj)
        return 0;
    sandbox_view v;
    sandbox_view_read(&v, obj);
    const char *strings[] = {
        v.name, v.phase, v.mode, v.isolation, v.runtime,         v.handler,
        v.why,  v.node,  v.pod,  v.message,   v.finished_reason, v.scheduled_message};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        if (!strings[i])
            abort();
    if (v.has_exit_code && (v.exit_code < 0 || v.exit_code > 255))
        abort();
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
        json_t *items = json_pack("[O]", obj);
        view_print_detail(devnull, &v, 1765000000);
        view_print_table(devnull, items, 1765000000);
        json_decref(items);
        fclose(devnull);
    }
    json_decref(obj);
    return 0;
}
