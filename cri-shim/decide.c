#include "decide.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "libmoat/names.h"

/* The reason of a decision that ran out of memory; shim_decision_clear() never frees it.
 * (libmoat/error.c keeps its out-of-memory message the same way.) */
static char oom_reason[] = "out of memory while choosing the runtime";

/* What "no network" means for each runtime, appended to the decision's reason. */
#define NONET_GVISOR "no network requested: gVisor with --network=none"
#define NONET_KATA                                                                                 \
    "no network requested: Kata keeps the pod's network, so the NetworkPolicy is the only "        \
    "network wall"
/* There is no nvproxy handler without a network stack yet. Refusing GPU sandboxes without
 * network would push their users to ask for Internet egress, which is worse than running
 * them with nvproxy behind the egress-none NetworkPolicy; the reason says so. */
#define NONET_NVPROXY                                                                              \
    "no network requested: gVisor with nvproxy keeps its network stack, so the NetworkPolicy "     \
    "is the only network wall"

typedef enum { MODE_AUTO, MODE_VM, MODE_GVISOR } moat_mode;

static void oom(shim_decision *out)
{
    *out = (shim_decision){.verdict = SHIM_REFUSE, .reason = oom_reason};
}

/* Fills *out with the verdict and a reason of fmt, followed by "; <note>" when note is set.
 * A REWRITE to an unset handler becomes a REFUSE rather than a request without one. */
_printf_(6, 7) static void finish(shim_decision *out, shim_verdict verdict, const char *handler,
                                  const char *runtime, const char *note, const char *fmt, ...)
{
    va_list ap;
    _cleanup_free_ char *base = NULL;
    va_start(ap, fmt);
    int r = vasprintf(&base, fmt, ap);
    va_end(ap);
    if (r < 0) {
        base = NULL; /* vasprintf leaves it undefined */
        oom(out);
        return;
    }

    char *reason = NULL;
    if (verdict == SHIM_REWRITE && (!handler || !*handler)) {
        verdict = SHIM_REFUSE;
        handler = runtime = NULL;
        r = asprintf(&reason, "no containerd handler is configured for this choice: %s", base);
    } else if (note) {
        r = asprintf(&reason, "%s; %s", base, note);
    } else {
        reason = TAKE_PTR(base);
    }
    if (r < 0) {
        oom(out);
        return;
    }
    *out = (shim_decision){
        .verdict = verdict, .handler = handler, .runtime = runtime, .reason = reason};
}

#define refuse(out, ...) finish(out, SHIM_REFUSE, NULL, NULL, NULL, __VA_ARGS__)

static bool same(const char *a, const char *b)
{
    return a && b && *a && strcmp(a, b) == 0;
}

/* gVisor without GPUs; the reason is prefix followed by why. */
static void gvisor(shim_decision *out, const shim_handlers *h, const shim_pod_facts *pod,
                   const char *prefix, const char *why)
{
    if (pod->no_network)
        finish(out, SHIM_REWRITE, h->runsc_nonet, MOAT_RUNTIME_GVISOR, NONET_GVISOR, "%s%s", prefix,
               why);
    else
        finish(out, SHIM_REWRITE, h->runsc, MOAT_RUNTIME_GVISOR, NULL, "%s%s", prefix, why);
}

/* h->gpu_mode, with unset meaning none. */
static const char *gpu_mode_of(const shim_handlers *h)
{
    return h->gpu_mode && *h->gpu_mode ? h->gpu_mode : MOAT_GPU_MODE_NONE;
}

/* gVisor with nvproxy for a pod with GPUs, on a node whose GPU mode is container; refused
 * elsewhere as "<needs> GPU mode container<how>; this node's GPU mode is ...". The reason
 * is prefix followed by what was chosen. */
static void gvisor_gpus(shim_decision *out, const shim_handlers *h, const shim_pod_facts *pod,
                        const char *needs, const char *how, const char *prefix)
{
    if (strcmp(gpu_mode_of(h), MOAT_GPU_MODE_CONTAINER) != 0)
        refuse(out, "%s GPU mode " MOAT_GPU_MODE_CONTAINER "%s; this node's GPU mode is %s", needs,
               how, gpu_mode_of(h));
    else
        finish(out, SHIM_REWRITE, h->runsc_nvproxy, MOAT_RUNTIME_GVISOR,
               pod->no_network ? NONET_NVPROXY : NULL,
               "%sGPUs in container mode: gVisor with nvproxy", prefix);
}

static void decide_vm(shim_decision *out, const shim_handlers *h, bool usable, const char *why,
                      const shim_pod_facts *pod)
{
    const char *note = pod->no_network ? NONET_KATA : NULL;
    if (!usable)
        refuse(out, "isolation VM needs a usable hypervisor on this node: %s", why);
    else if (pod->gpu_count == 0)
        finish(out, SHIM_REWRITE, h->kata_clh, MOAT_RUNTIME_KATA, note,
               "isolation VM requested; %s", why);
    else if (strcmp(gpu_mode_of(h), MOAT_GPU_MODE_VM) != 0)
        refuse(out,
               "isolation VM with GPUs needs GPU mode " MOAT_GPU_MODE_VM
               "; this node's GPU mode is %s",
               gpu_mode_of(h));
    else
        finish(out, SHIM_REWRITE, h->kata_gpu, MOAT_RUNTIME_KATA, note,
               "isolation VM requested; %s; GPUs in vm-passthrough mode: Kata with GPU passthrough",
               why);
}

static void decide_auto(shim_decision *out, const shim_handlers *h, bool usable, const char *why,
                        const shim_pod_facts *pod)
{
    if (pod->gpu_count > 0) {
        /* The operator gives an Auto sandbox the driver's container GPUs and places it on
         * container-mode nodes, so passthrough devices would never be allocated to it: on
         * any other node the request cannot be honoured, hypervisor or not. */
        gvisor_gpus(out, h, pod, "isolation Auto with GPUs needs", " (gVisor with nvproxy)", "");
    } else if (usable) {
        finish(out, SHIM_REWRITE, h->kata_clh, MOAT_RUNTIME_KATA,
               pod->no_network ? NONET_KATA : NULL, "%s", why);
    } else {
        gvisor(out, h, pod, "no usable hypervisor: ", why);
    }
}

static void decide_gvisor(shim_decision *out, const shim_handlers *h, const shim_pod_facts *pod)
{
    if (pod->gpu_count == 0)
        gvisor(out, h, pod, "isolation GVisor requested", "");
    else
        gvisor_gpus(out, h, pod, "isolation GVisor with GPUs needs", " (nvproxy)",
                    "isolation GVisor requested; ");
}

void shim_decide(shim_decision *out, const shim_handlers *h, const iso_probe_result *probe,
                 const shim_pod_facts *pod)
{
    *out = (shim_decision){.verdict = SHIM_PASS};
    if (!h || !pod) {
        refuse(out, "no handlers or pod to decide on");
        return;
    }

    moat_mode mode;
    if (same(pod->runtime_handler, h->handler_auto))
        mode = MODE_AUTO;
    else if (same(pod->runtime_handler, h->handler_vm))
        mode = MODE_VM;
    else if (same(pod->runtime_handler, h->handler_gvisor))
        mode = MODE_GVISOR;
    else
        return; /* not ours: runc pods, system pods, other RuntimeClasses */

    /* Any of these hands the sandbox the host, whatever runtime runs it. */
    if (pod->privileged)
        refuse(out, "a Moat sandbox is never privileged");
    else if (pod->host_network)
        refuse(out, "a Moat sandbox never shares the host's network namespace");
    else if (pod->host_pid)
        refuse(out, "a Moat sandbox never shares the host's pid namespace");
    else if (pod->host_ipc)
        refuse(out, "a Moat sandbox never shares the host's ipc namespace");
    else if (pod->gpu_count < 0)
        refuse(out, "GPU count %d is negative", pod->gpu_count);
    else if (pod->malformed)
        refuse(out, "%s", pod->malformed);
    else if (pod->forbidden_annotation)
        refuse(out,
               "a Moat sandbox may not carry the pod annotation %s (Kata and CDI overrides are "
               "not the pod author's)",
               pod->forbidden_annotation);
    if (out->verdict == SHIM_REFUSE)
        return;

    bool usable = probe && probe->usable;
    const char *why = probe && probe->reason ? probe->reason
                      : usable               ? "hypervisor usable"
                                             : "the host was not probed";
    switch (mode) {
    case MODE_VM:
        decide_vm(out, h, usable, why, pod);
        break;
    case MODE_AUTO:
        decide_auto(out, h, usable, why, pod);
        break;
    case MODE_GVISOR:
        decide_gvisor(out, h, pod);
        break;
    }
}

void shim_decision_clear(shim_decision *d)
{
    if (!d)
        return;
    if (d->reason != oom_reason)
        free(d->reason);
    *d = (shim_decision){0};
}
