/* libFuzzer target: the CRI responses the node agent decodes (ListPodSandbox,
 * PodSandboxStatus) and the isolation report it writes from them. Any bytes from the runtime
 * give a list, a status or an error, never a crash; a report is always valid JSON. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "isolation/agent/agent.h"
#include "libmoat/cri/cri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moat_error err = MOAT_ERROR_INIT;
    cri_sandbox_list list = {0};
    if (cri_list_response_decode(&list, data, size, &err) < 0) {
        if (!err.message)
            abort();
    } else {
        const cri_sandbox *newest = cri_sandbox_list_newest(&list);
        if (list.n > 0 && !newest)
            abort();
    }
    cri_sandbox_list_clear(&list);
    moat_error_clear(&err);

    cri_sandbox_status st = {0};
    if (cri_status_response_decode(&st, data, size, &err) < 0) {
        if (!err.message)
            abort();
    } else {
        if (!st.id || !st.pod_uid || !st.runtime_handler)
            abort();
        char *report = agent_report_json(&st, "runc", false);
        if (report) {
            json_t *j = json_loads(report, 0, NULL);
            if (!j)
                abort();
            json_decref(j);
            free(report);
        }
    }
    cri_sandbox_status_clear(&st);
    moat_error_clear(&err);
    return 0;
}
