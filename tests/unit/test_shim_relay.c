/* The relay (cri-shim/relay.c) between Moat's CRI client and an upstream gRPC server the test
 * runs itself (gRPC core, in-process, on a thread of its own, in the part of containerd):
 * bytes relayed unchanged on the unary and on the streaming path, a method nobody knows
 * relayed too, the hooks' rewrite, refusal, put-off and response replacement, upstream's
 * status with its details, the final status each call reports. (Against containerd, with
 * the real hooks: tests/integration/shim/.) */
#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "cri-shim/relay.h"
#include "libmoat/cri/bytes.h"
#include "libmoat/cri/cri.h"
#include "libmoat/macro.h"

/* Methods the relay takes on its unary path (hooks.unary says so), that the hooks want, and
 * one neither knows (the streaming path, as for a method of a newer CRI). Upstream answers
 * every method whose name holds "NotFound" with NOT_FOUND, and echoes any other request. */
#define M_PLAIN            "/moat.test.Plain/Echo"
#define M_PLAIN_NOT_FOUND  "/moat.test.Plain/NotFound"
#define M_FUTURE           "/runtime.v1.RuntimeService/FutureMethod"
#define M_FUTURE_NOT_FOUND "/runtime.v1.RuntimeService/FutureNotFound"
#define HOOKED             "/moat.test.Hooked/"
#define M_REWRITE          HOOKED "Rewrite"
#define M_REFUSE           HOOKED "Refuse"
#define M_LATER            HOOKED "Later"
#define M_GATE             HOOKED "Gate"
#define M_NEVER            HOOKED "Never"
#define M_REPLACE          HOOKED "Replace"
#define M_HOOKED_NOT_FOUND HOOKED "NotFound"

#define NOT_FOUND_DETAILS "pod sandbox sb-9 not found"
#define REFUSAL           "refused by the test's hook"
#define REPLACEMENT       "replaced by the test's hook"
#define LATER_TIMES       5     /* M_LATER is put off this many times, then let through */
#define CALL_MS           5000  /* every call but the one meant to run out of time */
#define NEVER_MS          1000  /* M_NEVER's deadline: long enough to be asked more than once */
#define GATE_MS           20000 /* M_GATE's: its hook says later while the test goes on */
#define WAIT_NS           5000000000LL /* the most any wait for the relay's thread takes */

/* cmocka's asserts belong to the test's thread: the relay's and upstream's threads stop the
 * program instead. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #cond);                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- upstream: a gRPC core server ------------------------------------------------------- */

typedef struct {
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thread;
    atomic_int calls; /* calls taken */
    atomic_bool stopping;
    int shutdown_tag;
    int active; /* up_calls alive (the server's thread only) */
} upstream;

typedef struct {
    upstream *u;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *msg;
    grpc_slice status_details;
    int cancelled, stage; /* 0 waiting for a call, 1 reading its request, 2 answered */
} up_call;

static void up_take(upstream *u)
{
    up_call *c = calloc(1, sizeof(*c));
    CHECK(c);
    c->u = u;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    c->status_details = grpc_empty_slice();
    u->active++;
    CHECK(grpc_server_request_call(u->server, &c->call, &c->details, &c->md, u->cq, u->cq, c) ==
          GRPC_CALL_OK);
}

static void up_free(up_call *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    if (c->msg)
        grpc_byte_buffer_destroy(c->msg);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    grpc_slice_unref(c->status_details);
    c->u->active--;
    free(c);
}

static void up_step(up_call *c, bool ok)
{
    upstream *u = c->u;
    if (!ok || c->stage == 2) {
        up_free(c);
        return;
    }
    if (c->stage == 0) {
        if (!atomic_load(&u->stopping))
            up_take(u);
        atomic_fetch_add(&u->calls, 1);
        grpc_op ops[2] = {{0}};
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_RECV_MESSAGE;
        ops[1].data.recv_message.recv_message = &c->msg;
        c->stage = 1;
        if (grpc_call_start_batch(c->call, ops, 2, c, NULL) != GRPC_CALL_OK)
            up_free(c);
        return;
    }
    char *method = grpc_slice_to_c_string(c->details.method);
    bool not_found = strstr(method, "NotFound") != NULL;
    gpr_free(method);
    grpc_op ops[3] = {{0}};
    size_t n = 0;
    grpc_status_code code = GRPC_STATUS_OK;
    if (not_found) {
        code = GRPC_STATUS_NOT_FOUND;
        c->status_details = grpc_slice_from_static_string(NOT_FOUND_DETAILS);
    } else if (c->msg) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->msg;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n++].data.send_status_from_server.status_details = &c->status_details;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    c->stage = 2;
    if (grpc_call_start_batch(c->call, ops, n, c, NULL) != GRPC_CALL_OK)
        up_free(c);
}

static void *up_loop(void *arg)
{
    upstream *u = arg;
    bool server_down = false, cq_down = false;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(u->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &u->shutdown_tag)
            server_down = true;
        else
            up_step(ev.tag, ev.success != 0);
        if (server_down && !cq_down && u->active == 0) {
            grpc_completion_queue_shutdown(u->cq);
            cq_down = true;
        }
    }
    return NULL;
}

static void upstream_start(upstream *u, const char *path)
{
    char uri[200];
    snprintf(uri, sizeof(uri), "unix:%s", path);
    u->cq = grpc_completion_queue_create_for_next(NULL);
    u->server = grpc_server_create(NULL, NULL);
    grpc_server_register_completion_queue(u->server, u->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    assert_int_not_equal(grpc_server_add_http2_port(u->server, uri, creds), 0);
    grpc_server_credentials_release(creds);
    grpc_server_start(u->server);
    for (int i = 0; i < 4; i++)
        up_take(u);
    assert_int_equal(pthread_create(&u->thread, NULL, up_loop, u), 0);
}

static void upstream_stop(upstream *u)
{
    atomic_store(&u->stopping, true);
    grpc_server_shutdown_and_notify(u->server, u->cq, &u->shutdown_tag);
    grpc_server_cancel_all_calls(u->server);
    pthread_join(u->thread, NULL);
    grpc_server_destroy(u->server);
    grpc_completion_queue_destroy(u->cq);
}

/* ---- the hooks ---------------------------------------------------------------------------- */

typedef struct {
    char *method;
    int status;
} done_call;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int asks_later, asks_gate, asks_never;
    bool gate_open, gate_same_request;
    char *response_seen; /* the response M_REPLACE's hook was given */
    done_call done[32];
    size_t n_done;
} hook_state;

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool h_wants(void *user, const char *method)
{
    (void)user;
    return starts_with(method, HOOKED);
}

static bool h_unary(void *user, const char *method)
{
    (void)user;
    return starts_with(method, "/moat.test.Plain/");
}

static int h_on_request(void *user, const char *method, const uint8_t *in, size_t len,
                        uint8_t **ret_out, size_t *ret_len, int *ret_status, char **ret_message)
{
    hook_state *h = user;
    int r = 0;
    pthread_mutex_lock(&h->lock);
    if (strcmp(method, M_REWRITE) == 0) {
        static const char prefix[] = "rewritten:";
        uint8_t *out = malloc(sizeof(prefix) - 1 + len);
        CHECK(out);
        memcpy(out, prefix, sizeof(prefix) - 1);
        memcpy(out + sizeof(prefix) - 1, in, len);
        *ret_out = out;
        *ret_len = sizeof(prefix) - 1 + len;
        r = 1;
    } else if (strcmp(method, M_REFUSE) == 0) {
        *ret_status = SHIM_FAILED_PRECONDITION;
        *ret_message = strdup(REFUSAL);
        r = -1;
    } else if (strcmp(method, M_LATER) == 0) {
        r = ++h->asks_later <= LATER_TIMES ? SHIM_HOOK_LATER : 0;
    } else if (strcmp(method, M_GATE) == 0) {
        h->asks_gate++;
        h->gate_same_request &= len == 5 && memcmp(in, "gated", 5) == 0;
        r = h->gate_open ? 0 : SHIM_HOOK_LATER;
    } else if (strcmp(method, M_NEVER) == 0) {
        h->asks_never++;
        r = SHIM_HOOK_LATER;
    }
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    return r;
}

static int h_on_response(void *user, const char *method, const uint8_t *in, size_t len,
                         uint8_t **ret_out, size_t *ret_len)
{
    hook_state *h = user;
    if (strcmp(method, M_REPLACE) != 0)
        return 0;
    pthread_mutex_lock(&h->lock);
    free(h->response_seen);
    h->response_seen = strndup((const char *)in, len);
    pthread_mutex_unlock(&h->lock);
    *ret_out = (uint8_t *)strdup(REPLACEMENT);
    *ret_len = strlen(REPLACEMENT);
    return 1;
}

static void h_on_done(void *user, const char *method, int status, int64_t duration_ns)
{
    hook_state *h = user;
    CHECK(duration_ns >= 0);
    pthread_mutex_lock(&h->lock);
    if (h->n_done < ELEMENTSOF(h->done)) {
        h->done[h->n_done].method = strdup(method);
        h->done[h->n_done++].status = status;
    }
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* Waits (WAIT_NS at most) on the hooks' condition until *counter reaches at least want;
 * false when it did not. The caller holds h->lock. */
static bool wait_locked(hook_state *h, const int *counter, int want)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_NS / 1000000000LL;
    while (*counter < want)
        if (pthread_cond_timedwait(&h->cond, &h->lock, &until) == ETIMEDOUT)
            return *counter >= want;
    return true;
}

static bool wait_asks(hook_state *h, const int *counter, int want)
{
    pthread_mutex_lock(&h->lock);
    bool ok = wait_locked(h, counter, want);
    pthread_mutex_unlock(&h->lock);
    return ok;
}

/* The final status on_done reported for method (the relay reports a call once it is
 * freed, which may be just after the caller has its answer). */
static int done_status(hook_state *h, const char *method)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_NS / 1000000000LL;
    pthread_mutex_lock(&h->lock);
    int status = -1;
    for (;;) {
        for (size_t i = 0; i < h->n_done && status < 0; i++)
            if (strcmp(h->done[i].method, method) == 0)
                status = h->done[i].status;
        if (status >= 0 || pthread_cond_timedwait(&h->cond, &h->lock, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&h->lock);
    if (status < 0)
        fail_msg("on_done never reported %s", method);
    return status;
}

/* ---- the fixture -------------------------------------------------------------------------- */

/* A relay that hangs (a call never freed keeps shim_relay_stop waiting) fails the test
 * rather than the whole run's time limit. */
#define WATCHDOG_S 60

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_shim_relay: a test ran over 60 s (the relay hung)\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(1);
}

typedef struct {
    char dir[64];
    char relay_path[128], upstream_path[128];
    upstream up;
    hook_state hooks;
    shim_relay *relay;
    cri_client *client;
} fixture;

static int setup(void **state)
{
    signal(SIGALRM, on_alarm);
    alarm(WATCHDOG_S);
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/moat-relay-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->relay_path, sizeof(f->relay_path), "%s/relay.sock", f->dir);
    snprintf(f->upstream_path, sizeof(f->upstream_path), "%s/upstream.sock", f->dir);
    pthread_mutex_init(&f->hooks.lock, NULL);
    pthread_cond_init(&f->hooks.cond, NULL);
    f->hooks.gate_same_request = true;
    upstream_start(&f->up, f->upstream_path);
    shim_hooks hooks = {h_wants, h_unary, h_on_request, h_on_response, h_on_done, &f->hooks};
    moat_error err = MOAT_ERROR_INIT;
    if (shim_relay_start(&f->relay, f->relay_path, 0600, f->upstream_path, &hooks, &err) < 0)
        fail_msg("shim_relay_start: %s", err.message);
    assert_int_equal(cri_client_new(&f->client, f->relay_path, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cri_client_free(f->client);
    shim_relay_stop(f->relay, 1000000000LL);
    upstream_stop(&f->up);
    for (size_t i = 0; i < f->hooks.n_done; i++)
        free(f->hooks.done[i].method);
    free(f->hooks.response_seen);
    pthread_cond_destroy(&f->hooks.cond);
    pthread_mutex_destroy(&f->hooks.lock);
    unlink(f->upstream_path);
    unlink(f->relay_path);
    rmdir(f->dir);
    free(f);
    alarm(0);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    grpc_init();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    grpc_shutdown();
    return 0;
}

/* One call through the relay: 0 with the response (*ret_resp malloc'd, NUL-terminated for
 * the asserts' sake), or -1 with err. */
static int call(fixture *f, const char *method, const void *req, size_t req_len, long timeout_ms,
                uint8_t **ret_resp, size_t *ret_len, moat_error *err)
{
    uint8_t *resp = NULL;
    size_t len = 0;
    if (cri_client_call(f->client, &resp, &len, method, req, req_len, timeout_ms, err) < 0)
        return -1;
    uint8_t *copy = malloc(len + 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, resp, len);
    copy[len] = '\0';
    free(resp);
    *ret_resp = copy;
    *ret_len = len;
    return 0;
}

/* A call expected to succeed with want as its answer. */
static void expect_answer(fixture *f, const char *method, const char *req, const char *want)
{
    moat_error err = MOAT_ERROR_INIT;
    uint8_t *resp = NULL;
    size_t len = 0;
    if (call(f, method, req, strlen(req), CALL_MS, &resp, &len, &err) < 0)
        fail_msg("%s: %s", method, err.message);
    assert_int_equal(len, strlen(want));
    assert_string_equal((char *)resp, want);
    free(resp);
}

/* A call expected to fail with code and a message holding each of words (NULL-ended). */
static void expect_failure(fixture *f, const char *method, const char *req, long timeout_ms,
                           moat_error_code code, ...)
{
    moat_error err = MOAT_ERROR_INIT;
    uint8_t *resp = NULL;
    size_t len = 0;
    assert_int_equal(call(f, method, req, strlen(req), timeout_ms, &resp, &len, &err), -1);
    assert_int_equal(err.code, code);
    va_list ap;
    va_start(ap, code);
    for (const char *w; (w = va_arg(ap, const char *));)
        if (!strstr(err.message, w))
            fail_msg("%s: \"%s\" lacks \"%s\"", method, err.message, w);
    va_end(ap);
    moat_error_clear(&err);
}

/* ---- the tests ---------------------------------------------------------------------------- */

/* Calls no hook wants go through byte for byte, on the unary path and on the streaming path
 * a method the shim does not know takes (never UNIMPLEMENTED), small and large. */
static void test_unhooked_bytes_unchanged(void **state)
{
    fixture *f = *state;
    static const uint8_t small[] = {0x0a, 0x00, 0xff, 0x12, 0x03, 'a', 0x00, 'b'};
    size_t big_len = 1024 * 1024 + 7;
    uint8_t *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 7 + (i >> 11));
    const char *methods[] = {M_PLAIN, M_FUTURE};
    const struct {
        const uint8_t *data;
        size_t len;
    } payloads[] = {{small, sizeof(small)}, {big, big_len}, {(const uint8_t *)"", 0}};
    for (size_t m = 0; m < ELEMENTSOF(methods); m++)
        for (size_t p = 0; p < ELEMENTSOF(payloads); p++) {
            moat_error err = MOAT_ERROR_INIT;
            uint8_t *resp = NULL;
            size_t len = 0;
            if (call(f, methods[m], payloads[p].data, payloads[p].len, CALL_MS, &resp, &len, &err) <
                0)
                fail_msg("%s, payload %zu: %s", methods[m], p, err.message);
            assert_int_equal(len, payloads[p].len);
            assert_memory_equal(resp, payloads[p].data, len);
            free(resp);
        }
    free(big);
    assert_int_equal(atomic_load(&f->up.calls), 6);
    assert_int_equal(done_status(&f->hooks, M_PLAIN), SHIM_OK);
    assert_int_equal(done_status(&f->hooks, M_FUTURE), SHIM_OK);
}

/* A hook's rewrite is what upstream gets (the echo sends it back). */
static void test_request_rewrite_reaches_upstream(void **state)
{
    fixture *f = *state;
    expect_answer(f, M_REWRITE, "abc", "rewritten:abc");
    assert_int_equal(atomic_load(&f->up.calls), 1);
    assert_int_equal(done_status(&f->hooks, M_REWRITE), SHIM_OK);
}

/* A hook's refusal is the caller's answer, with its status and message; upstream is never
 * asked. */
static void test_refusal_without_upstream(void **state)
{
    fixture *f = *state;
    expect_failure(f, M_REFUSE, "abc", CALL_MS, MOAT_E_IO, "status 9", REFUSAL, NULL);
    assert_int_equal(done_status(&f->hooks, M_REFUSE), SHIM_FAILED_PRECONDITION);
    assert_int_equal(atomic_load(&f->up.calls), 0);
}

/* A put-off request is put to its hook again until the hook lets it through. */
static void test_later_asked_again_until_answered(void **state)
{
    fixture *f = *state;
    expect_answer(f, M_LATER, "soon", "soon");
    pthread_mutex_lock(&f->hooks.lock);
    assert_int_equal(f->hooks.asks_later, LATER_TIMES + 1);
    pthread_mutex_unlock(&f->hooks.lock);
    assert_int_equal(atomic_load(&f->up.calls), 1);
    assert_int_equal(done_status(&f->hooks, M_LATER), SHIM_OK);
}

typedef struct {
    fixture *f;
    int rc;
    char *answer;
    moat_error err;
} gated_call;

static void *call_gate(void *arg)
{
    gated_call *g = arg;
    cri_client *client = NULL;
    /* a client of its own: one client is one thread's */
    if (cri_client_new(&client, g->f->relay_path, &g->err) < 0)
        return NULL;
    uint8_t *resp = NULL;
    size_t len = 0;
    g->rc =
        cri_client_call(client, &resp, &len, M_GATE, (const uint8_t *)"gated", 5, GATE_MS, &g->err);
    if (g->rc == 0)
        g->answer = strndup((const char *)resp, len);
    free(resp);
    cri_client_free(client);
    return NULL;
}

/* While one call is put off, the relay's other calls go on; the put-off one is asked again
 * with the same request and goes upstream once its hook lets it. */
static void test_put_off_call_does_not_hold_others(void **state)
{
    fixture *f = *state;
    gated_call g = {f, -1, NULL, MOAT_ERROR_INIT};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, call_gate, &g), 0);
    assert_true(wait_asks(&f->hooks, &f->hooks.asks_gate, 1));

    expect_answer(f, M_PLAIN, "meanwhile", "meanwhile");
    expect_answer(f, M_FUTURE, "meanwhile too", "meanwhile too");
    assert_int_equal(atomic_load(&f->up.calls), 2);
    assert_true(wait_asks(&f->hooks, &f->hooks.asks_gate, 3));

    pthread_mutex_lock(&f->hooks.lock);
    f->hooks.gate_open = true;
    pthread_mutex_unlock(&f->hooks.lock);
    pthread_join(t, NULL);
    if (g.rc < 0)
        fail_msg("the put-off call: %s", g.err.message);
    assert_string_equal(g.answer, "gated");
    free(g.answer);
    assert_true(f->hooks.gate_same_request);
    assert_int_equal(atomic_load(&f->up.calls), 3);
    assert_int_equal(done_status(&f->hooks, M_GATE), SHIM_OK);
}

/* A hook that never answers: the call ends at its deadline with DEADLINE_EXCEEDED, upstream
 * never asked. */
static void test_later_until_the_deadline(void **state)
{
    fixture *f = *state;
    expect_failure(f, M_NEVER, "never", NEVER_MS, MOAT_E_NETWORK, "status 4", NULL);
    assert_int_equal(done_status(&f->hooks, M_NEVER), SHIM_DEADLINE_EXCEEDED);
    pthread_mutex_lock(&f->hooks.lock);
    assert_true(f->hooks.asks_never >= 2);
    pthread_mutex_unlock(&f->hooks.lock);
    assert_int_equal(atomic_load(&f->up.calls), 0);
}

/* A hook's replacement of the response is what the caller gets; the hook saw upstream's. */
static void test_response_replacement_reaches_client(void **state)
{
    fixture *f = *state;
    expect_answer(f, M_REPLACE, "original", REPLACEMENT);
    pthread_mutex_lock(&f->hooks.lock);
    assert_string_equal(f->hooks.response_seen, "original");
    pthread_mutex_unlock(&f->hooks.lock);
    assert_int_equal(done_status(&f->hooks, M_REPLACE), SHIM_OK);
}

/* Upstream's status comes back with its code and details, on each path, hooked or not. */
static void test_upstream_status_relayed(void **state)
{
    fixture *f = *state;
    const char *methods[] = {M_PLAIN_NOT_FOUND, M_FUTURE_NOT_FOUND, M_HOOKED_NOT_FOUND};
    for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
        expect_failure(f, methods[i], "sb-9", CALL_MS, MOAT_E_NOTFOUND, "status 5",
                       NOT_FOUND_DETAILS, NULL);
        assert_int_equal(done_status(&f->hooks, methods[i]), 5 /* NOT_FOUND */);
    }
    assert_int_equal(atomic_load(&f->up.calls), 3);
}

/* Upstream not there: UNAVAILABLE at once, on each path. */
static void test_upstream_gone_unavailable(void **state)
{
    fixture *f = *state;
    char path[160], missing[160];
    snprintf(path, sizeof(path), "%s/alone.sock", f->dir);
    snprintf(missing, sizeof(missing), "%s/missing.sock", f->dir);
    shim_hooks hooks = {h_wants, h_unary, h_on_request, h_on_response, h_on_done, &f->hooks};
    shim_relay *alone = NULL;
    cri_client *client = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(shim_relay_start(&alone, path, 0600, missing, &hooks, &err), 0);
    assert_int_equal(cri_client_new(&client, path, &err), 0);
    const char *methods[] = {M_PLAIN, M_FUTURE, M_REWRITE};
    for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
        uint8_t *resp = NULL;
        size_t len = 0;
        assert_int_equal(cri_client_call(client, &resp, &len, methods[i], (const uint8_t *)"x", 1,
                                         CALL_MS, &err),
                         -1);
        assert_int_equal(err.code, MOAT_E_NETWORK);
        if (!strstr(err.message, "status 14"))
            fail_msg("%s: %s", methods[i], err.message);
        moat_error_clear(&err);
        assert_int_equal(done_status(&f->hooks, methods[i]), SHIM_UNAVAILABLE);
    }
    cri_client_free(client);
    shim_relay_stop(alone, 1000000000LL);
    assert_int_equal(access(path, F_OK), -1); /* the relay removes its socket */
}

/* A socket a live process answers on is not taken over; a stale one is. */
static void test_listen_socket_live_or_stale(void **state)
{
    fixture *f = *state;
    shim_hooks hooks = {h_wants, h_unary, h_on_request, h_on_response, h_on_done, &f->hooks};
    shim_relay *second = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(shim_relay_start(&second, f->relay_path, 0600, f->upstream_path, &hooks, &err),
                     -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_non_null(strstr(err.message, "another process is listening"));
    moat_error_clear(&err);
    expect_answer(f, M_PLAIN, "still here", "still here");

    /* a socket file nobody listens on any more */
    char stale[160];
    snprintf(stale, sizeof(stale), "%s/stale.sock", f->dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, stale);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(shim_relay_start(&second, stale, 0600, f->upstream_path, &hooks, &err), 0);
    cri_client *client = NULL;
    assert_int_equal(cri_client_new(&client, stale, &err), 0);
    uint8_t *resp = NULL;
    size_t len = 0;
    assert_int_equal(cri_client_call(client, &resp, &len, M_PLAIN, (const uint8_t *)"via stale", 9,
                                     CALL_MS, &err),
                     0);
    assert_int_equal(len, 9);
    assert_memory_equal(resp, "via stale", 9);
    free(resp);
    cri_client_free(client);
    shim_relay_stop(second, 1000000000LL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unhooked_bytes_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_rewrite_reaches_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_without_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_asked_again_until_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_off_call_does_not_hold_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_until_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_replacement_reaches_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_status_relayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_gone_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_socket_live_or_stale, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
