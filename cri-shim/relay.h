/* The CRI relay: a gRPC server on a unix socket that forwards every call, of any method,
 * to an upstream gRPC server (containerd's CRI socket) and its answers back. This is Moat's
 * only gRPC server and, beside the CRI client (libmoat/cri/cri.c), the only module that uses
 * the gRPC core API (its maintainers call it unstable); the rest of the shim sees "a call
 * with a method name and bytes".
 *
 * Every method is relayed, including ones the shim does not know (they are taken with the
 * generic request_call, so a newer kubelet or containerd is never answered UNIMPLEMENTED by
 * the shim) and streaming calls: initial metadata, every message in both directions, the
 * status with its details and trailing metadata, the deadline, and cancellation. Messages
 * are limited to 16 MiB both ways (a larger one is RESOURCE_EXHAUSTED). All calls run on
 * one thread and one completion queue.
 *
 * Hooks see the unary calls they ask for: the request before it goes upstream (they may
 * rewrite it, refuse the call with a status, or put it off: SHIM_HOOK_LATER, when the
 * answer waits on another thread's work), and the response before it goes back. */
#ifndef MOAT_SHIM_RELAY_H
#define MOAT_SHIM_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libmoat/error.h"

#define SHIM_MAX_MESSAGE (16 * 1024 * 1024)

/* gRPC status codes the hooks use (the values of grpc_status_code). */
enum {
    SHIM_OK = 0,
    SHIM_INVALID_ARGUMENT = 3,
    SHIM_DEADLINE_EXCEEDED = 4,
    SHIM_FAILED_PRECONDITION = 9,
    SHIM_INTERNAL = 13,
    SHIM_UNAVAILABLE = 14,
};

#define SHIM_HOOK_LATER 2

typedef struct {
    /* Whether calls of this method ("/runtime.v1.RuntimeService/RunPodSandbox") go through
     * on_request / on_response; they must be unary. */
    bool (*wants)(void *user, const char *method);
    /* Whether the method is known to be unary (one request, one answer): such calls are
     * relayed with one batch each way, which saves most of a relay's cost. NULL, or false
     * for a method (an unknown one, a streaming one): the general streaming relay. */
    bool (*unary)(void *user, const char *method);
    /* The request: return 0 to send it unchanged, 1 with *ret_out (malloc'd, the relay
     * frees it) to send that instead, -1 with *ret_status and *ret_message (malloc'd) to
     * answer the caller with that status without asking upstream, or SHIM_HOOK_LATER to be
     * asked again (with the same request) about every millisecond, the other calls going
     * on meanwhile, until another answer or the call's deadline (DEADLINE_EXCEEDED). */
    int (*on_request)(void *user, const char *method, const uint8_t *in, size_t len,
                      uint8_t **ret_out, size_t *ret_len, int *ret_status, char **ret_message);
    /* The response: 0 unchanged, or 1 with a replacement as above. */
    int (*on_response)(void *user, const char *method, const uint8_t *in, size_t len,
                       uint8_t **ret_out, size_t *ret_len);
    /* Every finished call, with its final status and duration (for metrics). */
    void (*on_done)(void *user, const char *method, int status, int64_t duration_ns);
    void *user;
} shim_hooks;

typedef struct shim_relay shim_relay;

/* Listens on listen_path (a stale socket file is replaced; a live one is an error), with
 * the given file mode, and relays to the unix socket upstream_path. Starts the relay's
 * thread. hooks is copied. */
int shim_relay_start(shim_relay **out, const char *listen_path, unsigned socket_mode,
                     const char *upstream_path, const shim_hooks *hooks, moat_error *err);

/* Stops accepting calls, lets the calls in flight finish (cancelling those still running
 * after grace_ns), joins the thread and frees. Accepts NULL. */
void shim_relay_stop(shim_relay *r, int64_t grace_ns);

#endif
