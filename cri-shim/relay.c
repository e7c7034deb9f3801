#include "relay.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "libmoat/cri/bytes.h"
#include "libmoat/clock.h"
#include "libmoat/log.h"
#include "libmoat/macro.h"

/* What each completion on the queue means for its call. */
typedef enum {
    T_ACCEPTED,     /* a new call from downstream (kubelet) */
    T_DOWN_RECV,    /* a message (or the end) from downstream */
    T_UP_SENT,      /* a message sent upstream */
    T_UP_HALFCLOSE, /* the end of downstream's messages sent upstream */
    T_UP_MD_SENT,   /* the request's initial metadata sent upstream */
    T_UP_MD,        /* upstream's initial metadata */
    T_DOWN_MD_SENT, /* ... relayed downstream */
    T_UP_RECV,      /* a message (or the end) from upstream */
    T_DOWN_SENT,    /* ... relayed downstream */
    T_UP_STATUS,    /* upstream's status */
    T_DOWN_STATUS,  /* the status sent downstream */
    T_DOWN_CLOSED,  /* downstream's end: finished or cancelled */
    T_UNARY_UP,     /* a unary call's whole exchange with upstream */
    T_UNARY_DOWN,   /* ... and downstream: the answer, the status and the caller's close */
    T_COUNT
} tag_kind;

typedef struct call call;
typedef struct {
    call *c;
    tag_kind kind;
} tag;

struct call {
    shim_relay *r;
    tag tags[T_COUNT];
    grpc_call *down, *up;
    grpc_call_details details;
    grpc_metadata_array request_md, up_md, up_trailing;
    char *method;
    bool intercepted, unary, started_up, up_stream_done, status_in, status_sent, down_closed;
    bool down_sending;
    int cancelled;
    int pending; /* batches started and not yet completed */
    grpc_byte_buffer *down_msg, *up_msg, *sending_up, *sending_down;
    /* Metadata arrays handed to batches stay alive until the call ends. */
    grpc_metadata *up_send_md, *down_send_md, *down_trailing_md;
    grpc_status_code up_status;
    grpc_slice up_details;
    const char *up_error;
    grpc_slice refuse_details;
    int final_status;
    int64_t started_ns;
    grpc_byte_buffer *parked_msg; /* a request the hook put off (SHIM_HOOK_LATER) */
    call *next_parked;
};

struct shim_relay {
    grpc_server *server;
    grpc_channel *channel;
    grpc_completion_queue *cq;
    shim_hooks hooks;
    char *listen_path;
    pthread_t thread;
    tag shutdown_tag;
    atomic_uint active;
    atomic_bool stopping;
    bool thread_started;
    call *parked; /* calls whose hook said "later", asked again each tick (relay thread) */
};

/* How often a put-off request is put to its hook again. */
#define PARK_TICK_NS 1000000

/* ---- bytes <-> byte buffers ------------------------------------------------------------ */

/* Metadata the gRPC library sets itself: relaying it would be refused or duplicated. */
static bool relayable(const grpc_metadata *md)
{
    const char *k = (const char *)GRPC_SLICE_START_PTR(md->key);
    size_t n = GRPC_SLICE_LENGTH(md->key);
    static const char *const reserved[] = {"user-agent", "content-type", "te", "host"};
    if (n == 0 || k[0] == ':' || (n >= 5 && memcmp(k, "grpc-", 5) == 0))
        return false;
    for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
        if (n == strlen(reserved[i]) && memcmp(k, reserved[i], n) == 0)
            return false;
    return true;
}

/* Copies the relayable entries of src into a new array (shallow: the slices stay owned by
 * src, which outlives the batch that sends them). */
static grpc_metadata *relay_md(const grpc_metadata_array *src, size_t *ret_count)
{
    grpc_metadata *out = calloc(src->count ? src->count : 1, sizeof(*out));
    size_t n = 0;
    for (size_t i = 0; out && i < src->count; i++)
        if (relayable(&src->metadata[i]))
            out[n++] = src->metadata[i];
    *ret_count = n;
    return out;
}

/* ---- the call state machine ------------------------------------------------------------ */

static void start(call *c, grpc_call *target, grpc_op *ops, size_t n, tag_kind kind)
{
    c->pending++;
    grpc_call_error e = grpc_call_start_batch(target, ops, n, &c->tags[kind], NULL);
    if (e != GRPC_CALL_OK) {
        c->pending--;
        if (kind == T_UNARY_DOWN)
            c->down_closed = true; /* nothing more will come from the caller's side */
        log_warn(c->method, "relay: starting a batch (%d) failed: %d", kind, e);
    }
}

static void request_new_call(shim_relay *r);

static void call_free(call *c)
{
    shim_relay *r = c->r;
    if (r->hooks.on_done && c->method)
        r->hooks.on_done(r->hooks.user, c->method, c->final_status, moat_mono_ns() - c->started_ns);
    if (c->up)
        grpc_call_unref(c->up);
    if (c->down)
        grpc_call_unref(c->down);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->request_md);
    grpc_metadata_array_destroy(&c->up_md);
    grpc_metadata_array_destroy(&c->up_trailing);
    grpc_slice_unref(c->up_details);
    grpc_slice_unref(c->refuse_details);
    if (c->down_msg)
        grpc_byte_buffer_destroy(c->down_msg);
    if (c->up_msg)
        grpc_byte_buffer_destroy(c->up_msg);
    if (c->sending_up)
        grpc_byte_buffer_destroy(c->sending_up);
    if (c->sending_down)
        grpc_byte_buffer_destroy(c->sending_down);
    if (c->parked_msg)
        grpc_byte_buffer_destroy(c->parked_msg);
    gpr_free((void *)c->up_error); /* the library's debug string: ours to free */
    free(c->up_send_md);
    free(c->down_send_md);
    free(c->down_trailing_md);
    free(c->method);
    free(c);
    atomic_fetch_sub(&r->active, 1);
}

static void down_recv(call *c)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &c->down_msg;
    start(c, c->down, &op, 1, T_DOWN_RECV);
}

static void up_recv(call *c)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &c->up_msg;
    start(c, c->up, &op, 1, T_UP_RECV);
}

static void send_status_down(call *c, grpc_status_code code, grpc_slice *details, grpc_metadata *md,
                             size_t md_count, bool with_initial_md)
{
    grpc_op ops[3] = {{0}};
    size_t n = 0;
    if (with_initial_md)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details = details;
    ops[n].data.send_status_from_server.trailing_metadata = md;
    ops[n].data.send_status_from_server.trailing_metadata_count = md_count;
    n++;
    if (c->unary) { /* a unary call waits for the caller's close only with its answer */
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
        n++;
    }
    c->final_status = code;
    c->status_sent = true;
    start(c, c->down, ops, n, c->unary ? T_UNARY_DOWN : T_DOWN_STATUS);
}

/* Upstream's status goes down once every message before it has. */
static void maybe_finish(call *c)
{
    if (!c->status_in || !c->up_stream_done || c->down_sending || c->status_sent)
        return;
    size_t n;
    c->down_trailing_md = relay_md(&c->up_trailing, &n);
    send_status_down(c, c->up_status, &c->up_details, c->down_trailing_md, n, false);
}

static void start_upstream(call *c, grpc_byte_buffer *first)
{
    shim_relay *r = c->r;
    c->up = grpc_channel_create_call(r->channel, NULL, GRPC_PROPAGATE_DEFAULTS, r->cq,
                                     c->details.method, NULL, c->details.deadline, NULL);
    c->started_up = true;
    size_t n;
    c->up_send_md = relay_md(&c->request_md, &n);
    grpc_op op = {.op = GRPC_OP_SEND_INITIAL_METADATA};
    op.data.send_initial_metadata.count = n;
    op.data.send_initial_metadata.metadata = c->up_send_md;
    start(c, c->up, &op, 1, T_UP_MD_SENT);

    grpc_op recv_md = {.op = GRPC_OP_RECV_INITIAL_METADATA};
    recv_md.data.recv_initial_metadata.recv_initial_metadata = &c->up_md;
    start(c, c->up, &recv_md, 1, T_UP_MD);

    grpc_op status = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
    status.data.recv_status_on_client.trailing_metadata = &c->up_trailing;
    status.data.recv_status_on_client.status = &c->up_status;
    status.data.recv_status_on_client.status_details = &c->up_details;
    status.data.recv_status_on_client.error_string = &c->up_error;
    start(c, c->up, &status, 1, T_UP_STATUS);

    if (first) {
        grpc_op send = {.op = GRPC_OP_SEND_MESSAGE};
        c->sending_up = first;
        send.data.send_message.send_message = first;
        start(c, c->up, &send, 1, T_UP_SENT);
    } else {
        down_recv(c);
    }
}

/* A unary call upstream in one batch: headers, the request, the half-close and every
 * receive. One completion instead of a dozen, and one write each way. */
static void start_unary_upstream(call *c, grpc_byte_buffer *msg)
{
    shim_relay *r = c->r;
    /* A child of the downstream call: gRPC core itself cancels it when the caller cancels
     * or goes away, so a unary call needs no RECV_CLOSE_ON_SERVER of its own until the
     * answer goes down (one completion less per call). */
    c->up = grpc_channel_create_call(r->channel, c->down, GRPC_PROPAGATE_DEFAULTS, r->cq,
                                     c->details.method, NULL, c->details.deadline, NULL);
    c->started_up = true;
    c->sending_up = msg;
    size_t n;
    c->up_send_md = relay_md(&c->request_md, &n);
    grpc_op ops[6] = {{0}};
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = n;
    ops[0].data.send_initial_metadata.metadata = c->up_send_md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = msg;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->up_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->up_msg;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->up_trailing;
    ops[5].data.recv_status_on_client.status = &c->up_status;
    ops[5].data.recv_status_on_client.status_details = &c->up_details;
    ops[5].data.recv_status_on_client.error_string = &c->up_error;
    start(c, c->up, ops, 6, T_UNARY_UP);
}

/* A response from upstream as the hooks want it sent down: msg itself, or (when the call is
 * intercepted and the hook replaces it) the replacement, msg destroyed. */
static grpc_byte_buffer *response_hooked(call *c, grpc_byte_buffer *msg)
{
    shim_relay *r = c->r;
    if (!c->intercepted || !r->hooks.on_response)
        return msg;
    size_t len = 0, out_len = 0;
    uint8_t *in = cri_bytes_from_buffer(msg, &len), *out = NULL;
    if (in && r->hooks.on_response(r->hooks.user, c->method, in, len, &out, &out_len) == 1) {
        grpc_byte_buffer_destroy(msg);
        msg = cri_bytes_to_buffer(out, out_len);
        free(out);
    }
    free(in);
    return msg;
}

/* A unary call's answer downstream in one batch: headers, the response, the status. */
static void on_unary_up(call *c)
{
    c->status_in = true;
    grpc_byte_buffer *msg = c->up_msg;
    c->up_msg = NULL;
    if (msg)
        msg = response_hooked(c, msg);
    c->sending_down = msg;
    size_t n_md, n_trail;
    c->down_send_md = relay_md(&c->up_md, &n_md);
    c->down_trailing_md = relay_md(&c->up_trailing, &n_trail);
    grpc_op ops[4] = {{0}};
    size_t n = 0;
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = n_md;
    ops[n].data.send_initial_metadata.metadata = c->down_send_md;
    n++;
    if (msg) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = msg;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = c->up_status;
    ops[n].data.send_status_from_server.status_details = &c->up_details;
    ops[n].data.send_status_from_server.trailing_metadata = c->down_trailing_md;
    ops[n].data.send_status_from_server.trailing_metadata_count = n_trail;
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
    n++;
    c->final_status = c->up_status;
    c->status_sent = true;
    start(c, c->down, ops, n, T_UNARY_DOWN);
}

static void refuse(call *c, int status, const char *message)
{
    c->refuse_details = grpc_slice_from_copied_string(message ? message : "refused");
    send_status_down(c, (grpc_status_code)status, &c->refuse_details, NULL, 0, true);
}

static void on_accepted(call *c, bool ok)
{
    shim_relay *r = c->r;
    if (!ok) { /* the server is shutting down */
        c->pending = 0;
        call_free(c);
        return;
    }
    if (!atomic_load(&r->stopping))
        request_new_call(r);
    c->started_ns = moat_mono_ns();
    c->method = grpc_slice_to_c_string(c->details.method);
    c->intercepted = r->hooks.wants && r->hooks.wants(r->hooks.user, c->method);
    c->unary = c->intercepted || (r->hooks.unary && r->hooks.unary(r->hooks.user, c->method));

    if (c->unary) {
        down_recv(c); /* the request first: a hook may rewrite or refuse it */
        return;
    }
    grpc_op close = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
    close.data.recv_close_on_server.cancelled = &c->cancelled;
    start(c, c->down, &close, 1, T_DOWN_CLOSED);
    start_upstream(c, NULL);
}

/* An intercepted unary request before it goes upstream: the hook sends it on (changed or
 * not), refuses it, or puts it off; a put-off request waits in the parked list (msg kept)
 * and is asked about again each tick (retry_parked) until the hook decides or the caller's
 * deadline passes. Returns whether the call was parked. */
static bool ask_hook(call *c, grpc_byte_buffer *msg)
{
    shim_relay *r = c->r;
    size_t len = 0, out_len = 0;
    uint8_t *in = cri_bytes_from_buffer(msg, &len), *out = NULL;
    int status = SHIM_INTERNAL;
    char *message = NULL;
    int v = in ? r->hooks.on_request(r->hooks.user, c->method, in, len, &out, &out_len, &status,
                                     &message)
               : -1;
    free(in);
    if (v == SHIM_HOOK_LATER) {
        gpr_timespec deadline = gpr_convert_clock_type(c->details.deadline, GPR_CLOCK_MONOTONIC);
        if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), deadline) < 0) {
            c->parked_msg = msg;
            return true;
        }
        v = -1;
        status = SHIM_DEADLINE_EXCEEDED;
        message = strdup("the call's deadline passed while moat-cri waited for the egress wall");
    }
    if (v < 0) {
        grpc_byte_buffer_destroy(msg);
        refuse(c, status, message ? message : "out of memory");
        free(message);
        return false;
    }
    if (v == 1) {
        grpc_byte_buffer_destroy(msg);
        msg = cri_bytes_to_buffer(out, out_len);
        free(out);
    }
    start_unary_upstream(c, msg);
    return false;
}

static void retry_parked(shim_relay *r)
{
    call **link = &r->parked;
    while (*link) {
        call *c = *link;
        grpc_byte_buffer *msg = c->parked_msg;
        c->parked_msg = NULL;
        if (ask_hook(c, msg))
            link = &c->next_parked;
        else
            *link = c->next_parked;
    }
}

static void on_down_recv(call *c, bool ok)
{
    shim_relay *r = c->r;
    grpc_byte_buffer *msg = ok ? c->down_msg : NULL;
    c->down_msg = NULL;

    if (c->unary && !c->started_up) {
        if (!msg) {
            /* No request (the caller went away, or sent none): nothing to relay. */
            refuse(c, SHIM_INVALID_ARGUMENT, "the call carried no request message");
            return;
        }
        if (!c->intercepted) {
            start_unary_upstream(c, msg);
            return;
        }
        if (ask_hook(c, msg)) {
            c->next_parked = r->parked;
            r->parked = c;
        }
        return;
    }
    if (!c->up || c->status_in) {
        if (msg)
            grpc_byte_buffer_destroy(msg); /* upstream has ended: nothing more goes there */
        return;
    }
    if (!msg) {
        grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};
        start(c, c->up, &op, 1, T_UP_HALFCLOSE);
        return;
    }
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    c->sending_up = msg;
    op.data.send_message.send_message = msg;
    start(c, c->up, &op, 1, T_UP_SENT);
}

static void on_up_sent(call *c, bool ok)
{
    if (c->sending_up) {
        grpc_byte_buffer_destroy(c->sending_up);
        c->sending_up = NULL;
    }
    if (!ok)
        return; /* the upstream call ended: its status tells why */
    down_recv(c);
}

static void on_up_md(call *c, bool ok)
{
    size_t n;
    c->down_send_md = relay_md(&c->up_md, &n);
    grpc_op op = {.op = GRPC_OP_SEND_INITIAL_METADATA};
    op.data.send_initial_metadata.count = n;
    op.data.send_initial_metadata.metadata = c->down_send_md;
    start(c, c->down, &op, 1, T_DOWN_MD_SENT);
}

static void on_up_recv(call *c, bool ok)
{
    grpc_byte_buffer *msg = ok ? c->up_msg : NULL;
    c->up_msg = NULL;
    if (!msg) {
        c->up_stream_done = true;
        maybe_finish(c);
        return;
    }
    msg = response_hooked(c, msg);
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    c->sending_down = msg;
    c->down_sending = true;
    op.data.send_message.send_message = msg;
    start(c, c->down, &op, 1, T_DOWN_SENT);
}

static void on_down_sent(call *c, bool ok)
{
    grpc_byte_buffer_destroy(c->sending_down);
    c->sending_down = NULL;
    c->down_sending = false;
    if (ok)
        up_recv(c);
    else
        c->up_stream_done = true; /* downstream went away */
    maybe_finish(c);
}

static void handle(tag *t, bool ok)
{
    call *c = t->c;
    c->pending--;
    switch (t->kind) {
    case T_ACCEPTED:
        on_accepted(c, ok);
        return; /* frees c itself when !ok */
    case T_DOWN_RECV:
        on_down_recv(c, ok);
        break;
    case T_UP_SENT:
        on_up_sent(c, ok);
        break;
    case T_UP_HALFCLOSE:
        break;
    case T_UP_MD_SENT:
        break;
    case T_UP_MD:
        on_up_md(c, ok);
        break;
    case T_DOWN_MD_SENT:
        up_recv(c);
        break;
    case T_UP_RECV:
        on_up_recv(c, ok);
        break;
    case T_DOWN_SENT:
        on_down_sent(c, ok);
        break;
    case T_UP_STATUS:
        c->status_in = true;
        maybe_finish(c);
        break;
    case T_DOWN_STATUS:
        break;
    case T_UNARY_UP:
        if (c->sending_up) {
            grpc_byte_buffer_destroy(c->sending_up);
            c->sending_up = NULL;
        }
        on_unary_up(c);
        break;
    case T_UNARY_DOWN:
        c->down_closed = true;
        break;
    case T_DOWN_CLOSED:
        c->down_closed = true;
        if (c->cancelled && c->up && !c->status_in)
            grpc_call_cancel(c->up, NULL); /* the caller gave up: so does upstream */
        break;
    case T_COUNT:
        break;
    }
    /* A status that could not be relayed (upstream never answered, downstream gone). */
    if (c->down_closed && !c->status_sent && c->status_in && c->pending == 0) {
        c->status_sent = true;
        c->final_status = c->up_status;
    }
    if (c->pending == 0 && c->down_closed && (c->status_sent || !c->started_up))
        call_free(c);
}

static void request_new_call(shim_relay *r)
{
    call *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error(NULL, "relay: out of memory; not accepting calls");
        return;
    }
    c->r = r;
    for (int k = 0; k < T_COUNT; k++)
        c->tags[k] = (tag){c, (tag_kind)k};
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->request_md);
    grpc_metadata_array_init(&c->up_md);
    grpc_metadata_array_init(&c->up_trailing);
    c->up_details = grpc_empty_slice();
    c->refuse_details = grpc_empty_slice();
    atomic_fetch_add(&r->active, 1);
    c->pending = 1;
    if (grpc_server_request_call(r->server, &c->down, &c->details, &c->request_md, r->cq, r->cq,
                                 &c->tags[T_ACCEPTED]) != GRPC_CALL_OK) {
        c->pending = 0;
        call_free(c);
    }
}

static void *loop(void *arg)
{
    shim_relay *r = arg;
    bool server_down = false, cq_down = false;
    for (;;) {
        gpr_timespec until = r->parked
                                 ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                gpr_time_from_nanos(PARK_TICK_NS, GPR_TIMESPAN))
                                 : gpr_inf_future(GPR_CLOCK_MONOTONIC);
        grpc_event ev = grpc_completion_queue_next(r->cq, until, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (r->parked)
            retry_parked(r);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &r->shutdown_tag)
            server_down = true;
        else
            handle(ev.tag, ev.success != 0);
        /* The queue also carries the upstream calls, which the server's shutdown does not
         * wait for: shut it down only once no call of ours is left to start a batch. */
        if (server_down && !cq_down && atomic_load(&r->active) == 0) {
            grpc_completion_queue_shutdown(r->cq);
            cq_down = true;
        }
    }
    return NULL;
}

/* ---- the socket -------------------------------------------------------------------------- */

/* A socket file left by a shim that died is removed; one a live process answers on is not. */
static int clear_stale_socket(const char *path, moat_error *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : moat_error_set_errno(err, errno, "stat %s", path);
    if (!S_ISSOCK(st.st_mode))
        return moat_error_set(err, MOAT_E_INVALID, "%s exists and is not a socket", path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return moat_error_set(err, MOAT_E_INVALID, "socket path %s is too long", path);
    strcpy(sa.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return moat_error_set_errno(err, errno, "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return moat_error_set(err, MOAT_E_INVALID, "%s: another process is listening on it", path);
    if (unlink(path) < 0)
        return moat_error_set_errno(err, errno, "removing the stale socket %s", path);
    return 0;
}

static void relay_destroy(shim_relay *r);

/* A relay whose thread never ran: its queue is drained here, on the caller's thread (the
 * server's shutdown and the cancelled request for the next call), then it is freed and
 * its socket removed. */
static void stop_unstarted(shim_relay *r)
{
    atomic_store(&r->stopping, true);
    grpc_server_shutdown_and_notify(r->server, r->cq, &r->shutdown_tag);
    grpc_server_cancel_all_calls(r->server);
    loop(r);
    relay_destroy(r);
}

int shim_relay_start(shim_relay **out, const char *listen_path, unsigned socket_mode,
                     const char *upstream_path, const shim_hooks *hooks, moat_error *err)
{
    if (clear_stale_socket(listen_path, err) < 0)
        return -1;
    shim_relay *r = calloc(1, sizeof(*r));
    if (!r)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    r->hooks = *hooks;
    r->listen_path = strdup(listen_path);
    if (!r->listen_path) {
        free(r);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }

    grpc_arg server_args[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = SHIM_MAX_MESSAGE}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = SHIM_MAX_MESSAGE}},
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_BDP_PROBE, {.integer = 0}},
    };
    grpc_channel_args sargs = {ELEMENTSOF(server_args), server_args};
    /* containerd gone: calls fail at once (UNAVAILABLE) rather than wait, and the channel
     * tries again soon, so the shim reconnects by itself when it returns. */
    grpc_arg channel_args[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = SHIM_MAX_MESSAGE}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = SHIM_MAX_MESSAGE}},
        {GRPC_ARG_INTEGER, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, {.integer = 100}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, {.integer = 100}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = 1000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_RETRIES, {.integer = 0}},
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_BDP_PROBE, {.integer = 0}},
    };
    grpc_channel_args cargs = {ELEMENTSOF(channel_args), channel_args};

    _cleanup_free_ char *target = NULL, *listen_target = NULL;
    if (asprintf(&target, "unix:%s", upstream_path) < 0 ||
        asprintf(&listen_target, "unix:%s", listen_path) < 0) {
        free(r->listen_path);
        free(r);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    grpc_channel_credentials *ccreds = grpc_insecure_credentials_create();
    r->channel = grpc_channel_create(target, ccreds, &cargs);
    grpc_channel_credentials_release(ccreds);

    r->cq = grpc_completion_queue_create_for_next(NULL);
    r->server = grpc_server_create(&sargs, NULL);
    grpc_server_register_completion_queue(r->server, r->cq, NULL);
    grpc_server_credentials *screds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(r->server, listen_target, screds);
    grpc_server_credentials_release(screds);
    if (port == 0) {
        grpc_server_destroy(r->server);
        grpc_completion_queue_shutdown(r->cq);
        grpc_completion_queue_destroy(r->cq);
        grpc_channel_destroy(r->channel);
        free(r->listen_path);
        free(r);
        return moat_error_set(err, MOAT_E_IO, "cannot listen on %s", listen_path);
    }
    grpc_server_start(r->server);
    request_new_call(r);
    /* The socket is the runtime's whole API: a mode that did not take is not a warning. */
    int e = chmod(listen_path, socket_mode) < 0 ? errno : 0;
    if (e != 0) {
        stop_unstarted(r);
        return moat_error_set_errno(err, e, "chmod %o %s", socket_mode, listen_path);
    }
    e = pthread_create(&r->thread, NULL, loop, r);
    if (e != 0) {
        stop_unstarted(r);
        return moat_error_set_errno(err, e, "starting the relay thread");
    }
    r->thread_started = true;
    *out = r;
    return 0;
}

void shim_relay_stop(shim_relay *r, int64_t grace_ns)
{
    if (!r)
        return;
    atomic_store(&r->stopping, true);
    grpc_server_shutdown_and_notify(r->server, r->cq, &r->shutdown_tag);
    /* The shutdown ends the request for the next call, so from now on `active` counts just
     * the calls in flight. */
    int64_t deadline = moat_mono_ns() + grace_ns;
    while (atomic_load(&r->active) > 0 && moat_mono_ns() < deadline)
        usleep(10000);
    unsigned left = atomic_load(&r->active);
    if (left > 0)
        log_warn(NULL, "relay: cancelling %u calls still running", left);
    grpc_server_cancel_all_calls(r->server);
    if (r->thread_started)
        pthread_join(r->thread, NULL);
    relay_destroy(r);
}

static void relay_destroy(shim_relay *r)
{
    grpc_server_destroy(r->server);
    grpc_completion_queue_destroy(r->cq);
    grpc_channel_destroy(r->channel);
    unlink(r->listen_path);
    free(r->listen_path);
    free(r);
}
