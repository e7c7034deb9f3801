/* The CRI client of every Moat program that calls a runtime (the node agent, the installer's
 * check, moat-cri's look at a pod's network, the benchmark): unary calls over the runtime's
 * unix socket, and the few RuntimeService messages the agent and the shim read (Version,
 * ListPodSandbox, PodSandboxStatus).
 *
 * The transport is "call a method with request bytes, get response bytes or a status";
 * the messages are encoded and decoded with protobuf-c from libmoat/cri/cri.proto, whose
 * field numbers are upstream k8s.io/cri-api runtime/v1's. */
#ifndef MOAT_CRI_CRI_H
#define MOAT_CRI_CRI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libmoat/error.h"

/* Largest response accepted (the kubelet's own cap is 16 MiB too). */
#define CRI_MAX_MESSAGE (16 * 1024 * 1024)

#define CRI_VERSION            "/runtime.v1.RuntimeService/Version"
#define CRI_LIST_POD_SANDBOX   "/runtime.v1.RuntimeService/ListPodSandbox"
#define CRI_POD_SANDBOX_STATUS "/runtime.v1.RuntimeService/PodSandboxStatus"
#define CRI_LIST_CONTAINERS    "/runtime.v1.RuntimeService/ListContainers"
#define CRI_LIST_SANDBOX_STATS "/runtime.v1.RuntimeService/ListPodSandboxStats"

/* The label kubelet puts on every pod sandbox: the Pod's metadata.uid. */
#define CRI_LABEL_POD_UID "io.kubernetes.pod.uid"

typedef struct cri_client cri_client;

/* A client for endpoint: "unix:///path", "unix:/path" or a plain absolute path. The channel
 * connects lazily (and reconnects by itself). grpc_init must have run (in main). Fails with
 * MOAT_E_INVALID for another scheme, MOAT_E_NOMEM when out of memory. */
int cri_client_new(cri_client **out, const char *endpoint, moat_error *err);

/* The same with gRPC's retries off, transparent ones included, as on moat-cri's own
 * upstream channel: every call costs one attempt, what a benchmark of the relay compares. */
int cri_client_new_without_retries(cri_client **out, const char *endpoint, moat_error *err);

/* A second client on c's channel (the same connection), with a completion queue of its
 * own: one client is used by one thread at a time, so threads that call at once each take
 * one. The channel lives until its last client is freed. MOAT_E_NOMEM when out of memory. */
int cri_client_share(cri_client **out, cri_client *c, moat_error *err);

/* Accepts NULL. */
void cri_client_free(cri_client *c);

/* One unary call of method ("/runtime.v1.RuntimeService/Version") with the request bytes,
 * within timeout_ms. On success *ret_resp (malloc'd, caller frees; NULL for an empty
 * message) and *ret_len hold the response. A non-OK gRPC status fails with MOAT_E_NETWORK
 * for UNAVAILABLE and DEADLINE_EXCEEDED, MOAT_E_NOTFOUND for NOT_FOUND and MOAT_E_IO for
 * any other, the message naming the method, the status code and its details; a response
 * above CRI_MAX_MESSAGE is refused by the channel (RESOURCE_EXHAUSTED). */
int cri_client_call(cri_client *c, uint8_t **ret_resp, size_t *ret_len, const char *method,
                    const uint8_t *req, size_t req_len, long timeout_ms, moat_error *err);

/* A pod sandbox as ListPodSandbox reports it. Strings are owned and never NULL. */
typedef struct {
    char *id;
    char *pod_uid;           /* metadata.uid */
    char *namespace_, *name; /* metadata.namespace and .name: the Pod's */
    uint32_t attempt;
    int state; /* 0 SANDBOX_READY, 1 SANDBOX_NOTREADY */
    int64_t created_at;
    char *runtime_handler;
    bool moat_keys; /* a label or annotation key under MOAT_KEY_PREFIX ("moat.dev/") */
    /* A Session's idle timeout: its MOAT_ANNOTATION_IDLE_TIMEOUT in seconds; 0 when absent or
     * not a whole number from 1 to 86400. */
    int64_t session_idle_s;
} cri_sandbox;

typedef struct {
    cri_sandbox *items;
    size_t n;
} cri_sandbox_list;

void cri_sandbox_list_clear(cri_sandbox_list *l);

/* The newest sandbox of the list: the highest attempt, then the latest created_at; NULL
 * for an empty list. Borrowed from l. */
const cri_sandbox *cri_sandbox_list_newest(const cri_sandbox_list *l);

/* Whether s is the newest of l's sandboxes of its pod (same pod_uid), as above. */
bool cri_sandbox_is_newest(const cri_sandbox_list *l, const cri_sandbox *s);

/* What PodSandboxStatus says about one sandbox: its runtime handler and the shim's
 * decision annotations (NULL when the annotation is absent). Strings are owned. */
typedef struct {
    char *id;              /* never NULL once decoded */
    char *pod_uid;         /* never NULL once decoded ("" without metadata) */
    char *runtime_handler; /* never NULL once decoded ("" for the runtime's default) */
    int state;
    char *decision_runtime, *decision_handler, *decision_reason;
} cri_sandbox_status;

void cri_sandbox_status_clear(cri_sandbox_status *s);

/* Encodes a ListPodSandboxRequest whose filter selects label io.kubernetes.pod.uid =
 * pod_uid (all sandboxes when pod_uid is NULL). *ret is malloc'd. */
int cri_list_request_encode(uint8_t **ret, size_t *ret_len, const char *pod_uid, moat_error *err);

/* Decodes a ListPodSandboxResponse into *out (cleared by the caller afterwards). Fails with
 * MOAT_E_INVALID when the bytes are not that message, *out untouched. */
int cri_list_response_decode(cri_sandbox_list *out, const uint8_t *data, size_t len,
                             moat_error *err);

/* Encodes a PodSandboxStatusRequest for sandbox_id (verbose off). *ret is malloc'd. */
int cri_status_request_encode(uint8_t **ret, size_t *ret_len, const char *sandbox_id,
                              moat_error *err);

/* Decodes a PodSandboxStatusResponse into *out. A response without a status fails with
 * MOAT_E_INVALID, as do bytes that are not that message; *out is untouched on failure. */
int cri_status_response_decode(cri_sandbox_status *out, const uint8_t *data, size_t len,
                               moat_error *err);

/* Where a sandbox's network is, from the runtime's own record of it (a verbose
 * PodSandboxStatus; containerd's info "info": sandboxMetadata.Metadata.NetNSPath and the sandbox
 * config's dns_config.servers as kubelet gave them at RunPodSandbox). Owned; clear with
 * cri_sandbox_network_clear. */
typedef struct {
    char *netns; /* never NULL once decoded */
    char **dns;  /* NULL-terminated, maybe empty */
    size_t n_dns;
} cri_sandbox_network;

void cri_sandbox_network_clear(cri_sandbox_network *n);

/* Decodes a verbose PodSandboxStatusResponse into *out. MOAT_E_INVALID when the bytes are
 * not that message, carry no runtime record, or one without a network namespace path (a
 * runtime other than containerd 2.x, or a pod on the node's network). */
int cri_network_response_decode(cri_sandbox_network *out, const uint8_t *data, size_t len,
                                moat_error *err);

/* A verbose PodSandboxStatus of sandbox_id, decoded as above. */
int cri_sandbox_network_get(cri_client *c, cri_sandbox_network *out, const char *sandbox_id,
                            long timeout_ms, moat_error *err);

/* The runtime's Version: "<runtime_name> <runtime_version>" (caller frees). A runtime that
 * answers without a name is MOAT_E_INVALID. */
int cri_version(cri_client *c, char **ret, long timeout_ms, moat_error *err);

/* A container as ListContainers reports it: its ID and its pod sandbox's. Owned. */
typedef struct {
    char *id, *pod_sandbox_id;
} cri_container;

typedef struct {
    cri_container *items;
    size_t n;
} cri_container_list;

void cri_container_list_clear(cri_container_list *l);

/* Decodes a ListContainersResponse; MOAT_E_INVALID when it does not decode. */
int cri_containers_response_decode(cri_container_list *out, const uint8_t *data, size_t len,
                                   moat_error *err);

/* Every container (ListContainers without a filter; *out cleared by the caller). */
int cri_list_containers(cri_client *c, cri_container_list *out, long timeout_ms, moat_error *err);

/* A pod sandbox's CPU as ListPodSandboxStats reports it (the pod's cgroup): the total CPU
 * time its processes used, at a time stamp. Owned. */
typedef struct {
    char *id;
    bool has_cpu;         /* the runtime gave both figures */
    int64_t timestamp_ns; /* wall clock, nanoseconds since the epoch */
    uint64_t usage_ns;    /* usage_core_nano_seconds */
} cri_sandbox_cpu;

typedef struct {
    cri_sandbox_cpu *items;
    size_t n;
} cri_sandbox_cpu_list;

void cri_sandbox_cpu_list_clear(cri_sandbox_cpu_list *l);

/* Decodes a ListPodSandboxStatsResponse; MOAT_E_INVALID when it does not decode. */
int cri_sandbox_stats_response_decode(cri_sandbox_cpu_list *out, const uint8_t *data, size_t len,
                                      moat_error *err);

/* Every pod sandbox's CPU (ListPodSandboxStats without a filter). */
int cri_list_sandbox_cpu(cri_client *c, cri_sandbox_cpu_list *out, long timeout_ms,
                         moat_error *err);

/* ListPodSandbox of every sandbox (*out cleared by the caller). */
int cri_list_sandboxes(cri_client *c, cri_sandbox_list *out, long timeout_ms, moat_error *err);

/* PodSandboxStatus of one sandbox. MOAT_E_NOTFOUND when the runtime no longer has it. */
int cri_sandbox_status_get(cri_client *c, cri_sandbox_status *out, const char *sandbox_id,
                           long timeout_ms, moat_error *err);

#endif
