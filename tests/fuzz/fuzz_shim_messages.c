/* libFuzzer target: the decoding (and re-encoding) of the CRI messages moat-cri intercepts.
 * Any bytes from kubelet or containerd give a decision, a pass-through or an error, never a
 * crash; a rewritten request always decodes again. */
#include <stdint.h>
#include <stdlib.h>

#include "cri-shim/messages.h"
#include "libmoat/cri/cri.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const shim_handlers h = {
        "moat-auto",     "moat-vm",  "moat-gvisor",          "runsc",    "runsc-nonet",
        "runsc-nvproxy", "kata-clh", "kata-qemu-nvidia-gpu", "container"};
    iso_probe_result probe = {
        .usable = size % 2 == 0, .hypervisor = size % 2 == 0 ? "kvm" : NULL, .reason = "fuzz"};
    uint8_t *out = NULL;
    size_t len = 0;
    char *pod = NULL;
    shim_decision d = {0};
    moat_error err = MOAT_ERROR_INIT;
    int r = shim_run_pod_sandbox_rewrite(data, size, &h, &probe, &out, &len, &d, &pod, &err);
    if (r < 0 && !err.message)
        abort();
    if (r == 1) {
        Moat__Cri__RunPodSandboxRequest *req =
            moat__cri__run_pod_sandbox_request__unpack(NULL, len, out);
        if (!req)
            abort();
        moat__cri__run_pod_sandbox_request__free_unpacked(req, NULL);
    }
    free(out);
    free(pod);
    shim_decision_clear(&d);
    moat_error_clear(&err);

    const char *names[] = {"moat-auto", "moat-vm"};
    out = NULL;
    if (shim_status_add_handlers(data, size, names, 2, &out, &len, &err) < 0 && !err.message)
        abort();
    free(out);
    moat_error_clear(&err);

    /* the egress wall's readers: facts or an error, never a crash or a leak */
    shim_wall_facts f = {0};
    if (shim_sandbox_status_facts(data, size, &f, &err) < 0 && !err.message)
        abort();
    if (f.n_addrs > 8)
        abort();
    shim_wall_facts_clear(&f);
    moat_error_clear(&err);
    if (shim_create_container_facts(data, size, &f, &err) < 0 && !err.message)
        abort();
    if (f.n_dns > 8)
        abort();
    shim_wall_facts_clear(&f);
    moat_error_clear(&err);
    char *id = NULL;
    if (shim_remove_pod_sandbox_id(data, size, &id, &err) < 0 && !err.message)
        abort();
    free(id);
    moat_error_clear(&err);
    return 0;
}
