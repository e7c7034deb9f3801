#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cri-shim/decide.h"
#include "libmoat/names.h"

/* Concrete names that differ from the defaults, so a test sees which field was taken. */
static const shim_handlers handlers = {
    .handler_auto = MOAT_RUNTIMECLASS_AUTO,
    .handler_vm = MOAT_RUNTIMECLASS_VM,
    .handler_gvisor = MOAT_RUNTIMECLASS_GVISOR,
    .runsc = "c-runsc",
    .runsc_nonet = "c-runsc-nonet",
    .runsc_nvproxy = "c-runsc-nvproxy",
    .kata_clh = "c-kata-clh",
    .kata_gpu = "c-kata-gpu",
    .gpu_mode = MOAT_GPU_MODE_NONE,
};

static const iso_probe_result kvm = {.usable = true, .hypervisor = "kvm", .reason = "kvm usable"};
static const iso_probe_result mshv = {
    .usable = true, .hypervisor = "mshv", .reason = "mshv usable"};
static const iso_probe_result nohv = {.reason = "no /dev/kvm and no /dev/mshv"};

#define NONET_GVISOR "no network requested: gVisor with --network=none"
#define NONET_KATA                                                                                 \
    "no network requested: Kata keeps the pod's network, so the NetworkPolicy is the only "        \
    "network wall"
#define NONET_NVPROXY                                                                              \
    "no network requested: gVisor with nvproxy keeps its network stack, so the NetworkPolicy "     \
    "is the only network wall"

typedef struct {
    const char *name;
    const char *gpu_mode;          /* NULL: the handlers' ("none") */
    const iso_probe_result *probe; /* may be NULL */
    shim_pod_facts pod;
    shim_verdict verdict;
    const char *handler, *runtime; /* want; NULL for PASS and REFUSE */
    const char *reason;            /* want, exactly; NULL for PASS */
} row;

#define AUTO   MOAT_RUNTIMECLASS_AUTO
#define VM     MOAT_RUNTIMECLASS_VM
#define GVISOR MOAT_RUNTIMECLASS_GVISOR
#define GV     MOAT_RUNTIME_GVISOR
#define KATA   MOAT_RUNTIME_KATA
#define NO_HV  "no /dev/kvm and no /dev/mshv"

static const row table[] = {
    /* Not a Moat handler: untouched, whatever the pod asks for. */
    {"runc", NULL, &kvm, {.runtime_handler = "runc"}, SHIM_PASS, NULL, NULL, NULL},
    {"default handler", NULL, &kvm, {.runtime_handler = ""}, SHIM_PASS, NULL, NULL, NULL},
    {"no handler", NULL, &kvm, {.runtime_handler = NULL}, SHIM_PASS, NULL, NULL, NULL},
    {"concrete kata-clh", NULL, &kvm, {.runtime_handler = "kata-clh"}, SHIM_PASS, NULL, NULL, NULL},
    {"concrete runsc", NULL, &nohv, {.runtime_handler = "runsc"}, SHIM_PASS, NULL, NULL, NULL},
    {"case matters", NULL, &kvm, {.runtime_handler = "Moat-Auto"}, SHIM_PASS, NULL, NULL, NULL},
    {"privileged runc",
     NULL,
     &kvm,
     {.runtime_handler = "runc", .privileged = true, .host_network = true},
     SHIM_PASS,
     NULL,
     NULL,
     NULL},

    /* Annotations: Kata and CDI overrides, malformed Moat ones; for runc they pass. */
    {"kata override on auto",
     NULL,
     &kvm,
     {.runtime_handler = AUTO,
      .forbidden_annotation = "io.katacontainers.config.hypervisor.kernel"},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox may not carry the pod annotation io.katacontainers.config.hypervisor.kernel "
     "(Kata and CDI overrides are not the pod author's)"},
    {"cdi on vm",
     NULL,
     &kvm,
     {.runtime_handler = VM, .forbidden_annotation = "cdi.k8s.io/gpu"},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox may not carry the pod annotation cdi.k8s.io/gpu (Kata and CDI overrides "
     "are not the pod author's)"},
    {"malformed on gvisor",
     NULL,
     &nohv,
     {.runtime_handler = GVISOR, .malformed = "annotation moat.dev/gpu-count is not 0 to 8"},
     SHIM_REFUSE,
     NULL,
     NULL,
     "annotation moat.dev/gpu-count is not 0 to 8"},
    {"kata override on runc",
     NULL,
     &kvm,
     {.runtime_handler = "runc", .forbidden_annotation = "io.katacontainers.x", .malformed = "x"},
     SHIM_PASS,
     NULL,
     NULL,
     NULL},

    /* Privilege and host namespaces, for each Moat handler. */
    {"auto privileged",
     NULL,
     &kvm,
     {.runtime_handler = AUTO, .privileged = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox is never privileged"},
    {"vm privileged",
     NULL,
     &kvm,
     {.runtime_handler = VM, .privileged = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox is never privileged"},
    {"gvisor privileged",
     NULL,
     &nohv,
     {.runtime_handler = GVISOR, .privileged = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox is never privileged"},
    {"auto hostNetwork",
     NULL,
     &kvm,
     {.runtime_handler = AUTO, .host_network = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox never shares the host's network namespace"},
    {"vm hostPID",
     NULL,
     &kvm,
     {.runtime_handler = VM, .host_pid = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox never shares the host's pid namespace"},
    {"gvisor hostIPC",
     NULL,
     &nohv,
     {.runtime_handler = GVISOR, .host_ipc = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox never shares the host's ipc namespace"},
    {"gvisor hostNetwork",
     NULL,
     &nohv,
     {.runtime_handler = GVISOR, .host_network = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox never shares the host's network namespace"},
    {"auto hostPID",
     NULL,
     &nohv,
     {.runtime_handler = AUTO, .host_pid = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox never shares the host's pid namespace"},
    {"vm hostIPC",
     NULL,
     &kvm,
     {.runtime_handler = VM, .host_ipc = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox never shares the host's ipc namespace"},
    {"privileged first",
     NULL,
     &kvm,
     {.runtime_handler = VM, .host_network = true, .host_ipc = true, .privileged = true},
     SHIM_REFUSE,
     NULL,
     NULL,
     "a Moat sandbox is never privileged"},
    {"negative GPUs",
     "container",
     &kvm,
     {.runtime_handler = AUTO, .gpu_count = -1},
     SHIM_REFUSE,
     NULL,
     NULL,
     "GPU count -1 is negative"},

    /* moat-vm */
    {"vm kvm",
     NULL,
     &kvm,
     {.runtime_handler = VM},
     SHIM_REWRITE,
     "c-kata-clh",
     KATA,
     "isolation VM requested; kvm usable"},
    {"vm mshv",
     NULL,
     &mshv,
     {.runtime_handler = VM},
     SHIM_REWRITE,
     "c-kata-clh",
     KATA,
     "isolation VM requested; mshv usable"},
    {"vm no network",
     NULL,
     &kvm,
     {.runtime_handler = VM, .no_network = true},
     SHIM_REWRITE,
     "c-kata-clh",
     KATA,
     "isolation VM requested; kvm usable; " NONET_KATA},
    {"vm no hypervisor",
     NULL,
     &nohv,
     {.runtime_handler = VM},
     SHIM_REFUSE,
     NULL,
     NULL,
     "isolation VM needs a usable hypervisor on this node: " NO_HV},
    {"vm not probed",
     NULL,
     NULL,
     {.runtime_handler = VM},
     SHIM_REFUSE,
     NULL,
     NULL,
     "isolation VM needs a usable hypervisor on this node: the host was not probed"},
    {"vm no hypervisor, GPUs",
     "vm-passthrough",
     &nohv,
     {.runtime_handler = VM, .gpu_count = 1},
     SHIM_REFUSE,
     NULL,
     NULL,
     "isolation VM needs a usable hypervisor on this node: " NO_HV},
    {"vm GPUs passthrough",
     "vm-passthrough",
     &kvm,
     {.runtime_handler = VM, .gpu_count = 2},
     SHIM_REWRITE,
     "c-kata-gpu",
     KATA,
     "isolation VM requested; kvm usable; GPUs in vm-passthrough mode: Kata with GPU "
     "passthrough"},
    {"vm GPUs passthrough no network",
     "vm-passthrough",
     &kvm,
     {.runtime_handler = VM, .gpu_count = 8, .no_network = true},
     SHIM_REWRITE,
     "c-kata-gpu",
     KATA,
     "isolation VM requested; kvm usable; GPUs in vm-passthrough mode: Kata with GPU "
     "passthrough; " NONET_KATA},
    {"vm GPUs container mode",
     "container",
     &kvm,
     {.runtime_handler = VM, .gpu_count = 1},
     SHIM_REFUSE,
     NULL,
     NULL,
     "isolation VM with GPUs needs GPU mode vm-passthrough; this node's GPU mode is container"},
    {"vm GPUs no GPU mode",
     "none",
     &kvm,
     {.runtime_handler = VM, .gpu_count = 1},
     SHIM_REFUSE,
     NULL,
     NULL,
     "isolation VM with GPUs needs GPU mode vm-passthrough; this node's GPU mode is none"},

    /* moat-auto */
    {"auto kvm",
     NULL,
     &kvm,
     {.runtime_handler = AUTO},
     SHIM_REWRITE,
     "c-kata-clh",
     KATA,
     "kvm usable"},
    {"auto mshv",
     NULL,
     &mshv,
     {.runtime_handler = AUTO},
     SHIM_REWRITE,
     "c-kata-clh",
     KATA,
     "mshv usable"},
    {"auto kvm no network",
     NULL,
     &kvm,
     {.runtime_handler = AUTO, .no_network = true},
     SHIM_REWRITE,
     "c-kata-clh",
     KATA,
     "kvm usable; " NONET_KATA},
    {"auto no hypervisor",
     NULL,
     &nohv,
     {.runtime_handler = AUTO},
     SHIM_REWRITE,
     "c-runsc",
     GV,
     "no usable hypervisor: " NO_HV},
    {"auto no hypervisor no network",
     NULL,
     &nohv,
     {.runtime_handler = AUTO, .no_network = true},
     SHIM_REWRITE,
     "c-runsc-nonet",
     GV,
     "no usable hypervisor: " NO_HV "; " NONET_GVISOR},
    {"auto not probed",
     NULL,
     NULL,
     {.runtime_handler = AUTO},
     SHIM_REWRITE,
     "c-runsc",
     GV,
     "no usable hypervisor: the host was not probed"},
    {"auto GPUs container, kvm",
     "container",
     &kvm,
     {.runtime_handler = AUTO, .gpu_count = 1},
     SHIM_REWRITE,
     "c-runsc-nvproxy",
     GV,
     "GPUs in container mode: gVisor with nvproxy"},
    {"auto GPUs container, no hypervisor",
     "container",
     &nohv,
     {.runtime_handler = AUTO, .gpu_count = 4},
     SHIM_REWRITE,
     "c-runsc-nvproxy",
     GV,
     "GPUs in container mode: gVisor with nvproxy"},
    {"auto GPUs container no network",
     "container",
     &nohv,
     {.runtime_handler = AUTO, .gpu_count = 1, .no_network = true},
     SHIM_REWRITE,
     "c-runsc-nvproxy",
     GV,
     "GPUs in container mode: gVisor with nvproxy; " NONET_NVPROXY},
    {"auto GPUs passthrough",
     "vm-passthrough",
     &kvm,
     {.runtime_handler = AUTO, .gpu_count = 1},
     SHIM_REFUSE,
     NULL,
     NULL,
     "isolation Auto with GPUs needs GPU mode container (gVisor with nvproxy); this node's GPU "
     "mode is vm-passthrough"},
    {"auto GPUs no GPU mode",
     NULL,
     &nohv,
     {.runtime_handler = AUTO, .gpu_count = 1},
     SHIM_REFUSE,
     NULL,
     NULL,
     "isolation Auto with GPUs needs GPU mode container (gVisor with nvproxy); this node's GPU "
     "mode is none"},

    /* moat-gvisor: the hypervisor does not matter. */
    {"gvisor kvm",
     NULL,
     &kvm,
     {.runtime_handler = GVISOR},
     SHIM_REWRITE,
     "c-runsc",
     GV,
     "isolation GVisor requested"},
    {"gvisor no hypervisor",
     NULL,
     &nohv,
     {.runtime_handler = GVISOR},
     SHIM_REWRITE,
     "c-runsc",
     GV,
     "isolation GVisor requested"},
    {"gvisor not probed",
     NULL,
     NULL,
     {.runtime_handler = GVISOR},
     SHIM_REWRITE,
     "c-runsc",
     GV,
     "isolation GVisor requested"},
    {"gvisor no network",
     NULL,
     &kvm,
     {.runtime_handler = GVISOR, .no_network = true},
     SHIM_REWRITE,
     "c-runsc-nonet",
     GV,
     "isolation GVisor requested; " NONET_GVISOR},
    {"gvisor GPUs container",
     "container",
     &kvm,
     {.runtime_handler = GVISOR, .gpu_count = 1},
     SHIM_REWRITE,
     "c-runsc-nvproxy",
     GV,
     "isolation GVisor requested; GPUs in container mode: gVisor with nvproxy"},
    {"gvisor GPUs container no network",
     "container",
     &nohv,
     {.runtime_handler = GVISOR, .gpu_count = 1, .no_network = true},
     SHIM_REWRITE,
     "c-runsc-nvproxy",
     GV,
     "isolation GVisor requested; GPUs in container mode: gVisor with nvproxy; " NONET_NVPROXY},
    {"gvisor GPUs passthrough",
     "vm-passthrough",
     &kvm,
     {.runtime_handler = GVISOR, .gpu_count = 1},
     SHIM_REFUSE,
     NULL,
     NULL,
     "isolation GVisor with GPUs needs GPU mode container (nvproxy); this node's GPU mode is "
     "vm-passthrough"},
    {"gvisor GPUs no GPU mode",
     "none",
     &nohv,
     {.runtime_handler = GVISOR, .gpu_count = 2},
     SHIM_REFUSE,
     NULL,
     NULL,
     "isolation GVisor with GPUs needs GPU mode container (nvproxy); this node's GPU mode is "
     "none"},
};

static const char *verdict_name(shim_verdict v)
{
    return v == SHIM_PASS ? "PASS" : v == SHIM_REWRITE ? "REWRITE" : "REFUSE";
}

/* The concrete field of h that the decision's handler must point at (borrowed, not copied). */
static const char *const *field_named(const shim_handlers *h, const char *value)
{
    const char *const *fields[] = {&h->runsc, &h->runsc_nonet, &h->runsc_nvproxy, &h->kata_clh,
                                   &h->kata_gpu};
    for (size_t i = 0; i < ELEMENTSOF(fields); i++)
        if (strcmp(*fields[i], value) == 0)
            return fields[i];
    return NULL;
}

static void check_row(const row *r, const shim_handlers *h)
{
    shim_decision d;
    memset(&d, 0xa5, sizeof d); /* shim_decide must fill every field */
    shim_decide(&d, h, r->probe, &r->pod);
    if (d.verdict != r->verdict)
        fail_msg("%s: verdict %s, want %s (reason: %s)", r->name, verdict_name(d.verdict),
                 verdict_name(r->verdict), d.reason ? d.reason : "(none)");
    if (r->handler) {
        if (!d.handler || strcmp(d.handler, r->handler) != 0)
            fail_msg("%s: handler %s, want %s", r->name, d.handler ? d.handler : "(none)",
                     r->handler);
        const char *const *field = field_named(h, r->handler);
        assert_non_null(field);
        assert_ptr_equal(d.handler, *field);
    } else if (d.handler) {
        fail_msg("%s: handler %s, want none", r->name, d.handler);
    }
    if (r->runtime) {
        if (!d.runtime || strcmp(d.runtime, r->runtime) != 0)
            fail_msg("%s: runtime %s, want %s", r->name, d.runtime ? d.runtime : "(none)",
                     r->runtime);
    } else if (d.runtime) {
        fail_msg("%s: runtime %s, want none", r->name, d.runtime);
    }
    if (r->reason) {
        if (!d.reason || strcmp(d.reason, r->reason) != 0)
            fail_msg("%s: reason\n  \"%s\", want\n  \"%s\"", r->name,
                     d.reason ? d.reason : "(none)", r->reason);
    } else if (d.reason) {
        fail_msg("%s: reason \"%s\", want none", r->name, d.reason);
    }
    shim_decision_clear(&d);
    assert_null(d.reason);
    assert_null(d.handler);
    assert_int_equal(d.verdict, SHIM_PASS);
}

static void test_table(void **state)
{
    for (size_t i = 0; i < ELEMENTSOF(table); i++) {
        shim_handlers h = handlers;
        if (table[i].gpu_mode)
            h.gpu_mode = table[i].gpu_mode;
        check_row(&table[i], &h);
    }
}

/* Every row again on a node whose GPU mode is unset: NULL and "" mean none. */
static void test_gpu_mode_unset(void **state)
{
    static const char *const unset[] = {NULL, ""};
    for (size_t u = 0; u < ELEMENTSOF(unset); u++)
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
            if (table[i].gpu_mode && strcmp(table[i].gpu_mode, "none") != 0)
                continue;
            shim_handlers h = handlers;
            h.gpu_mode = unset[u];
            check_row(&table[i], &h);
        }
}

/* The logical names are the configured ones, not the defaults. */
static void test_custom_logical_names(void **state)
{
    shim_handlers h = handlers;
    h.handler_auto = "sbx-auto";
    h.handler_vm = "sbx-vm";
    h.handler_gvisor = "sbx-gvisor";

    static const row rows[] = {
        {"default auto name", NULL, &kvm, {.runtime_handler = AUTO}, SHIM_PASS, NULL, NULL, NULL},
        {"default vm name",
         NULL,
         &kvm,
         {.runtime_handler = VM, .privileged = true},
         SHIM_PASS,
         NULL,
         NULL,
         NULL},
        {"custom auto",
         NULL,
         &kvm,
         {.runtime_handler = "sbx-auto"},
         SHIM_REWRITE,
         "c-kata-clh",
         KATA,
         "kvm usable"},
        {"custom vm",
         NULL,
         &nohv,
         {.runtime_handler = "sbx-vm"},
         SHIM_REFUSE,
         NULL,
         NULL,
         "isolation VM needs a usable hypervisor on this node: " NO_HV},
        {"custom gvisor",
         NULL,
         &kvm,
         {.runtime_handler = "sbx-gvisor", .no_network = true},
         SHIM_REWRITE,
         "c-runsc-nonet",
         GV,
         "isolation GVisor requested; " NONET_GVISOR},
    };
    for (size_t i = 0; i < ELEMENTSOF(rows); i++)
        check_row(&rows[i], &h);

    /* An unset logical name matches nothing, not the empty default handler. */
    h.handler_auto = NULL;
    h.handler_vm = "";
    static const row unset[] = {
        {"unset auto", NULL, &kvm, {.runtime_handler = ""}, SHIM_PASS, NULL, NULL, NULL},
        {"unset, NULL", NULL, &kvm, {.runtime_handler = NULL}, SHIM_PASS, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < ELEMENTSOF(unset); i++)
        check_row(&unset[i], &h);
}

/* A choice whose containerd handler is not configured is refused, not sent without one. */
static void test_unset_concrete_handler(void **state)
{
    shim_handlers h = handlers;
    h.runsc = "";
    h.kata_clh = NULL;
    static const row rows[] = {
        {"no runsc",
         NULL,
         &kvm,
         {.runtime_handler = GVISOR},
         SHIM_REFUSE,
         NULL,
         NULL,
         "no containerd handler is configured for this choice: isolation GVisor requested"},
        {"no kata-clh",
         NULL,
         &kvm,
         {.runtime_handler = VM, .no_network = true},
         SHIM_REFUSE,
         NULL,
         NULL,
         "no containerd handler is configured for this choice: isolation VM requested; kvm "
         "usable"},
        {"runsc-nonet still there",
         NULL,
         &kvm,
         {.runtime_handler = GVISOR, .no_network = true},
         SHIM_REWRITE,
         "c-runsc-nonet",
         GV,
         "isolation GVisor requested; " NONET_GVISOR},
    };
    for (size_t i = 0; i < ELEMENTSOF(rows); i++)
        check_row(&rows[i], &h);
}

/* A probe that says usable without a reason still gets one. */
static void test_probe_without_reason(void **state)
{
    iso_probe_result p = {.usable = true};
    row r = {"usable, no reason", NULL,         &p,   {.runtime_handler = AUTO},
             SHIM_REWRITE,        "c-kata-clh", KATA, "hypervisor usable"};
    check_row(&r, &handlers);
    iso_probe_result q = {.usable = false};
    row s = {"unusable, no reason",
             NULL,
             &q,
             {.runtime_handler = VM},
             SHIM_REFUSE,
             NULL,
             NULL,
             "isolation VM needs a usable hypervisor on this node: the host was not probed"};
    check_row(&s, &handlers);
}

static void test_no_inputs(void **state)
{
    shim_decision d;
    shim_pod_facts pod = {.runtime_handler = AUTO};
    shim_decide(&d, NULL, &kvm, &pod);
    assert_int_equal(d.verdict, SHIM_REFUSE);
    assert_string_equal(d.reason, "no handlers or pod to decide on");
    shim_decision_clear(&d);
    shim_decide(&d, &handlers, &kvm, NULL);
    assert_int_equal(d.verdict, SHIM_REFUSE);
    shim_decision_clear(&d);
}

/* The reason is the caller's to keep; the probe's strings are not borrowed. */
static void test_reason_owned(void **state)
{
    char reason[] = "no /dev/kvm and no /dev/mshv";
    iso_probe_result p = {.reason = reason};
    shim_pod_facts pod = {.runtime_handler = AUTO};
    shim_decision d;
    shim_decide(&d, &handlers, &p, &pod);
    memset(reason, 'x', sizeof reason - 1);
    assert_string_equal(d.reason, "no usable hypervisor: no /dev/kvm and no /dev/mshv");
    shim_decision_clear(&d);
}

static void test_clear(void **state)
{
    shim_decision_clear(NULL);
    shim_decision d = {0};
    shim_decision_clear(&d);
    shim_decision_clear(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_gpu_mode_unset),
        cmocka_unit_test(test_custom_logical_names),
        cmocka_unit_test(test_unset_concrete_handler),
        cmocka_unit_test(test_probe_without_reason),
        cmocka_unit_test(test_no_inputs),
        cmocka_unit_test(test_reason_owned),
        cmocka_unit_test(test_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
