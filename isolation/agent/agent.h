/* The node agent: publishes what this node can run as labels on its Node, and what each pod
 * really runs as an annotation on the Pod.
 *
 * Node labels come from a small set of facts (agent_facts): the usable hypervisor, the
 * runtimes available, the GPU mode. The labels are a pure function of the facts, and the
 * patch that applies them is a JSON merge patch of metadata.labels holding exactly Moat's
 * node keys (the ones agent_label_is_owned() accepts): the new values, and null for a
 * Moat key the node has but the facts no longer give. A merge patch needs no
 * resourceVersion and cannot touch a key it does not name, so kubelet's and the admins'
 * labels are left alone whatever they do meanwhile; the admission policy checks exactly
 * that (isolation/agent/admission-policy.yaml). (Server-side apply would also drop the keys
 * it stops sending, but it fights over keys someone else set first, such as an admin's
 * moat.dev/managed=true set before the agent ran, and sends a larger body for the same
 * change.)
 *
 * The report on a Pod is the annotation moat.dev/isolation-report, JSON
 * {"runtime","handler","reason","verified"}: the shim's decision read back from the pod
 * sandbox's annotations (CRI PodSandboxStatus), verified when the sandbox's runtime_handler
 * as the runtime reports it equals the decision's handler. Which pods are on the node, and
 * their names, come from the runtime too (CRI ListPodSandbox): the agent may patch Pods
 * but never list, watch or get them (RBAC cannot keep a read to one node). */
#ifndef MOAT_ISO_AGENT_H
#define MOAT_ISO_AGENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libmoat/cri/cri.h"
#include "isolation/probe/report.h"
#include "libmoat/error.h"
#include "libmoat/kube.h"

typedef enum {
    AGENT_HYPERVISOR_NONE = 0, /* no usable one */
    AGENT_HYPERVISOR_KVM,
    AGENT_HYPERVISOR_MSHV,
} agent_hypervisor;

typedef enum {
    AGENT_GPU_NONE = 0,
    AGENT_GPU_CONTAINER, /* NVIDIA driver on the host: gVisor with nvproxy */
    AGENT_GPU_VM,        /* GPUs bound to vfio-pci: passthrough into Kata VMs */
} agent_gpu_mode;

/* Bits of agent_facts.runtimes. */
#define AGENT_RUNTIME_GVISOR (1u << 0) /* runsc and containerd-shim-runsc-v1 installed */
#define AGENT_RUNTIME_KATA   (1u << 1) /* Kata's shim and a hypervisor configuration */
#define AGENT_RUNTIME_ALL    (AGENT_RUNTIME_GVISOR | AGENT_RUNTIME_KATA)

/* What the agent labels: the node's facts. */
typedef struct {
    agent_hypervisor hypervisor;
    unsigned runtimes;
    agent_gpu_mode gpu_mode;
} agent_facts;

bool agent_facts_equal(const agent_facts *a, const agent_facts *b);

/* The label values: "kvm"/"mshv"/"none", "container"/"vm-passthrough"/"none". Static. */
const char *agent_hypervisor_name(agent_hypervisor h);
const char *agent_gpu_mode_name(agent_gpu_mode m);

/* The labels for f, a new object {key: value}: moat.dev/managed=true,
 * moat.dev/hypervisor, moat.dev/gpu-mode, and moat.dev/runtime.<name>=true for each
 * runtime that can run here. Kata counts only with a usable hypervisor: installed without
 * one it cannot start a VM. NULL when out of memory. */
json_t *agent_facts_labels(const agent_facts *f);

/* True for the node label keys the agent owns: moat.dev/managed, moat.dev/hypervisor,
 * moat.dev/gpu-mode and every moat.dev/runtime.<name>. Other moat.dev/ keys (an admin's)
 * are not the agent's. */
bool agent_label_is_owned(const char *key);

/* The merge patch that makes node's labels carry labels: {"metadata":{"labels":{...}}}
 * with each key of labels whose value differs and null for each owned key node has but
 * labels lacks. *ret is NULL when nothing would change. node may be NULL (no labels). */
int agent_node_patch(json_t **ret, const json_t *node, const json_t *labels, moat_error *err);

/* The facts from the host report (isolation/probe/report.h, its contract for publishers): the
 * hypervisor only when usable (iso_report_hypervisor_label()), gVisor and Kata when
 * runtimes.gvisor/kata.available, the GPU mode from iso_report_gpu_mode(). */
void agent_facts_from_report(agent_facts *out, const iso_report *r);

/* f as a facts file's JSON text (what agent_facts_parse reads); caller frees, NULL when
 * out of memory. */
char *agent_facts_json(const agent_facts *f);

/* Parses a facts file (JSON): {"hypervisor": "kvm"|"mshv"|"none", "runtimes": ["gvisor",
 * "kata"], "gpuMode": "none"|"container"|"vm-passthrough"}; a missing key is none. An
 * unknown key or value fails with MOAT_E_INVALID naming origin and the key. */
int agent_facts_parse(agent_facts *out, const char *text, size_t len, const char *origin,
                      moat_error *err);

/* Parses a hypervisor name ("kvm", "mshv", "none"); -1 for anything else. */
int agent_hypervisor_parse(agent_hypervisor *out, const char *name);

/* Where the agent's facts come from; tests set their answer. probe() fills *out and
 * returns 0, or returns < 0 with err set. *ret_reason (may be NULL; owned by the caller)
 * says why, for the log. */
typedef struct agent_facts_ops {
    int (*probe)(void *impl, agent_facts *out, char **ret_reason, moat_error *err);
    void *impl;
} agent_facts_ops;

/* The real host report (iso_report_collect()) under cfg (borrowed; NULL: this host's
 * defaults). The reason for the log is the hypervisor probe's. */
agent_facts_ops agent_facts_host(const iso_report_config *cfg);

/* The facts read from a file (agent_facts_parse) each time they are asked for. path is
 * borrowed. */
agent_facts_ops agent_facts_file(const char *path);

/* True when a pod sandbox is Moat's: it carries a moat.dev/ label or annotation (the
 * operator's labels and annotations on a Sandbox's Pod, moat-cri's decision), or its
 * handler is a logical Moat one (moat-auto, moat-vm, moat-gvisor: config mode). */
bool agent_sandbox_wants_moat(const cri_sandbox *s);

/* The runtime a concrete handler belongs to: runsc* -> "gvisor", kata* -> "kata", "" ->
 * default_runtime (containerd's default runtime, "runc" on Moat's nodes), any other -> the
 * handler itself. Static or borrowed. */
const char *agent_runtime_of_handler(const char *handler, const char *default_runtime);

/* The isolation report (compact JSON text; caller frees) for a sandbox status. Its runtime
 * and handler are always what the runtime recorded (st->runtime_handler through
 * agent_runtime_of_handler), never the decision annotations, which a pod's author can write
 * wherever moat-cri does not overwrite them; verified is true (the runtime's own record).
 * The reason is the shim's decision reason when the decision names exactly that handler and
 * runtime; otherwise it says the decision disagreed, or that there was none. In config mode
 * (no moat-cri on the node) decisions are ignored and the reason says which of the shim's
 * guarantees the node does not give. NULL when out of memory. */
char *agent_report_json(const cri_sandbox_status *st, const char *default_runtime,
                        bool config_mode);

/* The merge patch setting a Session Pod's MOAT_ANNOTATION_LAST_ACTIVITY to the RFC 3339
 * time of when_s, with the Pod's uid. NULL when out of memory. */
json_t *agent_activity_patch(const char *uid, int64_t when_s);

/* The latest modification time (wall seconds) of the activity files of a pod sandbox in
 * dir: the one named by its ID and those named by its containers' IDs; -1 when none. */
int64_t agent_activity_latest(const char *dir, const char *sandbox_id,
                              const cri_container_list *containers);

/* The merge patch setting a Pod's report annotation to report, with the Pod's uid: the
 * API server refuses it (the uid is immutable) when the Pod of that name is another one.
 * NULL when out of memory. */
json_t *agent_pod_patch(const char *uid, const char *report);

/* The CRI side, so tests can answer it: every pod sandbox (cri_list_sandboxes), and one's
 * status (cri_sandbox_status_get; MOAT_E_NOTFOUND when gone); for Sessions (session.h),
 * every container (cri_list_containers) and every pod's CPU (cri_list_sandbox_cpu): NULL
 * when sessions are not judged. */
typedef struct agent_cri_ops {
    int (*list)(void *impl, cri_sandbox_list *out, moat_error *err);
    int (*status)(void *impl, cri_sandbox_status *out, const char *sandbox_id, moat_error *err);
    int (*containers)(void *impl, cri_container_list *out, moat_error *err);
    int (*cpu)(void *impl, cri_sandbox_cpu_list *out, moat_error *err);
    void *impl;
} agent_cri_ops;

/* The real CRI client (borrowed). */
agent_cri_ops agent_cri_client(cri_client *c);

/* A Sandbox is Ready once its Pod runs and its node has reported the isolation: the report
 * lags the sandbox's start by up to this much (kubelet's own status lags by up to 1 s). */
#define AGENT_PODS_INTERVAL_NS (500 * 1000000LL)
/* How often Sessions' activity and CPU are looked at (with a listing at least this far from
 * the last look): an interval under 1% of a CPU is an idle one (session.h). */
#define AGENT_SESSIONS_INTERVAL_NS (2 * 1000000000LL)

typedef struct {
    const char *node_name;       /* required */
    const char *default_runtime; /* NULL: "runc" */
    bool report_all;             /* report every pod on the node, not only Moat's */
    bool config_mode;            /* no moat-cri on the node (agent_report_json) */
    int64_t probe_interval_ns;   /* 0: 60 s; also how often every report is written again */
    /* 0: AGENT_PODS_INTERVAL_NS; how often the runtime's sandboxes are listed: the longest
     * a new pod waits for its isolation report */
    int64_t pods_interval_ns;
    /* moat-cri's record of Exec, Attach and PortForward starts (cri-shim/activity.h); NULL
     * or missing: a Session's activity is its CPU alone (config mode) */
    const char *activity_dir;
} agent_options;

typedef struct agent agent;

/* An agent for the node. Borrows client, facts and cri, which must outlive it; copies
 * opts' strings. Starts nothing. */
int agent_new(agent **out, kube_client *client, const agent_options *opts,
              const agent_facts_ops *facts, const agent_cri_ops *cri, moat_error *err);

/* Works until agent_stop(): labels the Node at once and every probe interval; lists the
 * runtime's pod sandboxes at once and every pods interval and reports each new one on its
 * Pod (patched by name: the agent reads no Pod from the API), and each Session's last
 * activity (session.h; MOAT_ANNOTATION_LAST_ACTIVITY, with the Pod's uid as precondition).
 * Returns 0 after agent_stop(). */
int agent_run(agent *a, moat_error *err);

/* Probes and labels again now (SIGHUP). Thread-safe. */
void agent_reprobe(agent *a);

/* Makes agent_run() return. Thread-safe. */
void agent_stop(agent *a);

/* Ready (for /readyz): the node has been labelled since agent_run() started and the
 * runtime's sandboxes were listed. Thread-safe. */
bool agent_ready(agent *a);

/* Prometheus text (caller frees; NULL when out of memory): node labelling and pod
 * reports by result, probe failures, and the facts last labelled (the hypervisor, the
 * runtimes, the GPU mode, as gauges). Thread-safe. */
char *agent_metrics(agent *a);

/* Accepts NULL. */
void agent_free(agent *a);

#endif
