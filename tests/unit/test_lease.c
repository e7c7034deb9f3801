/* Leader election against a fake API server behind the client's kube_transport: one Lease
 * kept in memory, writes checked against its resourceVersion (409 Conflict otherwise), and
 * faults the test turns on (every answer a 500, the next PUT a 409, an answer held back,
 * another holder renewing on every read).
 *
 * lease.c reads the monotonic clock itself (moat_mono_ns), not a moat_clock, so the fake
 * clock cannot move its time. The tests drive it instead with short periods and real
 * waits where time must pass (a pause is a callback or an answer that takes longer than
 * the renew deadline), and they assert only bounds that the monotonic clock guarantees
 * (a loss comes at least a deadline after the last renewal answered, a takeover at least a
 * lease duration after the holder was last seen renewing). Where a test needs the holder to
 * keep up for longer than a retry period, its deadline is tens of seconds. Every wait on the
 * election thread is a condition variable with a 10 s bound that only a failing test reaches. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "libmoat/clock.h"
#include "libmoat/kobj.h"
#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"
#include "libmoat/lease.h"

#define MS 1000000LL
#define S  1000000000LL

#define LEASES     "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
#define LEASE      LEASES "/lead"
#define MAX_LOG    1024
#define WAIT_BOUND (10 * S)

typedef struct {
    char method[8];
    json_t *body;      /* the request's body, parsed; NULL for none */
    long status;       /* the answer */
    int64_t answer_ns; /* when the answer went back */
} request;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast on every request and callback */

    /* The server's state. */
    json_t *lease; /* NULL: no Lease yet */
    long rv;

    /* Faults. */
    bool gate_open;         /* no request is answered before the test opens it */
    bool fail_after_write;  /* after the first successful write, every answer is a 500 */
    bool failing;           /* every answer is a 500 */
    int conflict_puts;      /* the next n PUTs answer 409 Conflict */
    bool steal_on_conflict; /* ... and "other" takes the Lease meanwhile */
    bool other_renews;      /* every GET finds "other" just renewed the Lease */
    int64_t hold_next_get;  /* the next GET answers after this long */
    int64_t last_change_ns; /* when a GET that showed "other" renewing answered */

    request log[MAX_LOG];
    size_t n; /* requests (the log keeps the first MAX_LOG) */
    size_t n_gets, n_writes;
    int64_t last_ok_write_ns; /* when the last successful POST or PUT answered */

    /* What the election called. */
    kube_leader *leader;
    int started, stopped;
    char why[4][96];
    bool leading_in_stopped;
    size_t requests_at_stop;
    long last_status, status_at_stop; /* the latest answer's, and the latest before the stop */
    int64_t stopped_ns;               /* when on_stopped was first called */
    char new_leaders[4][32];
    int n_new_leaders;
    int64_t pause_in_started; /* the first on_started takes this long (a SIGSTOP) */
    bool leading_after_pause, leading_after_hold;
    size_t requests_after_pause;

    kube_config *kcfg;
    kube_client *client;
} fake;

static const char kubeconfig[] = "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                 "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                                 "users: [{name: u, user: {token: t}}]\n"
                                 "contexts: [{name: c, context: {cluster: k, user: u}}]\n";

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {ns / S, ns % S};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

#define STATUS(reason, code)                                                                       \
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"" reason      \
    "\",\"reason\":\"" reason "\",\"code\":" #code "}"

static void answer(kube_http_response *resp, long status, char *body)
{
    resp->status = status;
    resp->body = body;
    resp->body_len = strlen(body);
    resp->retry_after_ns = -1;
}

/* Stores obj as the Lease with the next resourceVersion; answers it. Takes obj. */
static char *store(fake *f, json_t *obj)
{
    char rv[32];
    snprintf(rv, sizeof(rv), "%ld", ++f->rv);
    json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion", json_string(rv));
    json_decref(f->lease);
    f->lease = obj;
    return json_dumps(obj, JSON_COMPACT);
}

/* "other" renews (or takes) the Lease, as another candidate's process would. */
static void other_writes(fake *f)
{
    char renew[48];
    snprintf(renew, sizeof(renew), "other-renewal-%ld", f->rv + 1);
    json_t *obj = json_deep_copy(f->lease);
    json_t *spec = json_object_get(obj, "spec");
    json_object_set_new(spec, "holderIdentity", json_string("other"));
    json_object_set_new(spec, "renewTime", json_string(renew));
    free(store(f, obj));
}

static int fake_send(void *impl, const kube_http_request *req, kube_http_response *resp,
                     moat_error *err)
{
    fake *f = impl;
    pthread_mutex_lock(&f->lock);
    while (!f->gate_open)
        pthread_cond_wait(&f->cond, &f->lock);
    bool get = strcmp(req->method, "GET") == 0;
    bool put = strcmp(req->method, "PUT") == 0, post = strcmp(req->method, "POST") == 0;
    int64_t hold = get ? f->hold_next_get : 0;
    if (hold) {
        /* An answer that takes longer than the renew deadline: the holder is not leading
         * any more, whatever the answer. */
        f->hold_next_get = 0;
        pthread_mutex_unlock(&f->lock);
        sleep_ns(hold);
        pthread_mutex_lock(&f->lock);
        f->leading_after_hold = kube_leader_is_leading(f->leader);
    }
    json_t *body = req->body ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;

    if (f->failing) {
        answer(resp, 500, strdup(STATUS("InternalError", 500)));
    } else if (get && strcmp(req->path, LEASE) == 0) {
        if (!f->lease) {
            answer(resp, 404, strdup(STATUS("NotFound", 404)));
        } else {
            if (f->other_renews) {
                other_writes(f);
                f->last_change_ns = -1; /* set below, when the answer goes back */
            }
            answer(resp, 200, json_dumps(f->lease, JSON_COMPACT));
        }
    } else if (post && strcmp(req->path, LEASES) == 0) {
        if (f->lease)
            answer(resp, 409, strdup(STATUS("AlreadyExists", 409)));
        else
            answer(resp, 201, store(f, json_deep_copy(body)));
    } else if (put && strcmp(req->path, LEASE) == 0) {
        const char *rv = kobj_resource_version(body);
        char cur[32];
        snprintf(cur, sizeof(cur), "%ld", f->rv);
        if (f->conflict_puts > 0) {
            f->conflict_puts--;
            if (f->steal_on_conflict) {
                other_writes(f);
                f->other_renews = true;
            }
            answer(resp, 409, strdup(STATUS("Conflict", 409)));
        } else if (!f->lease || !rv || strcmp(rv, cur) != 0) {
            answer(resp, 409, strdup(STATUS("Conflict", 409)));
        } else {
            answer(resp, 200, store(f, json_deep_copy(body)));
        }
    } else {
        answer(resp, 405, strdup(STATUS("MethodNotAllowed", 405)));
    }

    int64_t now = moat_mono_ns();
    if (f->last_change_ns == -1)
        f->last_change_ns = now;
    f->n_gets += get;
    if ((put || post) && resp->status < 300) {
        f->n_writes++;
        f->last_ok_write_ns = now;
        if (f->fail_after_write)
            f->failing = true;
    }
    if (f->n < MAX_LOG) {
        request *r = &f->log[f->n];
        snprintf(r->method, sizeof(r->method), "%s", req->method);
        r->body = body;
        r->status = resp->status;
        r->answer_ns = now;
    } else {
        json_decref(body);
    }
    f->n++; /* counts past MAX_LOG: only the first MAX_LOG requests are kept */
    f->last_status = resp->status;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    (void)err;
    return 0;
}

/* ---- the candidate's callbacks --------------------------------------------------------- */

static void on_started(void *user)
{
    fake *f = user;
    pthread_mutex_lock(&f->lock);
    int64_t pause = f->started == 0 ? f->pause_in_started : 0;
    pthread_mutex_unlock(&f->lock);
    if (pause) {
        sleep_ns(pause);
        pthread_mutex_lock(&f->lock);
        f->leading_after_pause = kube_leader_is_leading(f->leader);
        f->requests_after_pause = f->n;
        pthread_mutex_unlock(&f->lock);
    }
    pthread_mutex_lock(&f->lock);
    f->started++;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void on_stopped(void *user, const char *why)
{
    fake *f = user;
    pthread_mutex_lock(&f->lock);
    if (f->stopped < 4)
        snprintf(f->why[f->stopped], sizeof(f->why[0]), "%s", why);
    if (f->stopped == 0) {
        f->leading_in_stopped = kube_leader_is_leading(f->leader);
        f->requests_at_stop = f->n;
        f->status_at_stop = f->last_status;
        f->stopped_ns = moat_mono_ns();
    }
    f->stopped++;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void on_new_leader(void *user, const char *identity)
{
    fake *f = user;
    pthread_mutex_lock(&f->lock);
    if (f->n_new_leaders < 4)
        snprintf(f->new_leaders[f->n_new_leaders], sizeof(f->new_leaders[0]), "%s", identity);
    f->n_new_leaders++;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

/* ---- fixture ------------------------------------------------------------------------- */

static int setup(void **state)
{
    fake *f = calloc(1, sizeof(*f));
    moat_error err = MOAT_ERROR_INIT;
    assert_non_null(f);
    /* Error-checking, so that teardown can let go of it after a failed assertion. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&f->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (kube_config_parse(&f->kcfg, kubeconfig, strlen(kubeconfig), "test", NULL, NULL, &err) < 0)
        fail_msg("%s", err.message);
    kube_transport t = {fake_send, f};
    kube_client_options o = {.transport = &t, .max_retries = -1};
    if (kube_client_new(&f->client, f->kcfg, &o, &err) < 0)
        fail_msg("%s", err.message);
    *state = f;
    return 0;
}

/* Stops the election and joins its thread: the log is complete after this. */
static void stop(fake *f)
{
    kube_leader_stop(f->leader);
    pthread_mutex_lock(&f->lock);
    f->leader = NULL;
    pthread_mutex_unlock(&f->lock);
}

static int teardown(void **state)
{
    fake *f = *state;
    /* After a failed assertion: the test may hold the lock (EPERM when not), and the
     * election may still run. */
    (void)pthread_mutex_unlock(&f->lock);
    if (f->leader)
        stop(f);
    for (size_t i = 0; i < f->n && i < MAX_LOG; i++)
        json_decref(f->log[i].body);
    json_decref(f->lease);
    kube_client_free(f->client);
    kube_config_free(f->kcfg);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return 0;
}

/* Starts the election as "me" on Lease ns/lead, then lets the fake answer. */
static kube_leader *start(fake *f, int64_t duration, int64_t deadline, int64_t retry)
{
    moat_error err = MOAT_ERROR_INIT;
    kube_leader_options o = {.namespace = "ns",
                             .name = "lead",
                             .identity = "me",
                             .lease_duration_ns = duration,
                             .renew_deadline_ns = deadline,
                             .retry_period_ns = retry,
                             .on_started = on_started,
                             .on_stopped = on_stopped,
                             .on_new_leader = on_new_leader,
                             .user = f};
    kube_leader *l = NULL;
    if (kube_leader_start(&l, f->client, &o, &err) < 0)
        fail_msg("kube_leader_start: %s", err.message);
    pthread_mutex_lock(&f->lock);
    f->leader = l;
    f->gate_open = true;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    return l;
}

/* Waits, holding f->lock while pred is evaluated, until pred holds; fails the test after
 * WAIT_BOUND. */
#define WAIT_UNTIL(f, pred)                                                                        \
    do {                                                                                           \
        struct timespec dl_;                                                                       \
        clock_gettime(CLOCK_MONOTONIC, &dl_);                                                      \
        dl_.tv_sec += WAIT_BOUND / S;                                                              \
        pthread_mutex_lock(&(f)->lock);                                                            \
        int r_ = 0;                                                                                \
        while (!(pred) && r_ == 0)                                                                 \
            r_ = pthread_cond_timedwait(&(f)->cond, &(f)->lock, &dl_);                             \
        bool ok_ = (pred);                                                                         \
        pthread_mutex_unlock(&(f)->lock);                                                          \
        if (!ok_)                                                                                  \
            fail_msg("timed out waiting for %s", #pred);                                           \
    } while (0)

/* A Lease as another candidate left it. */
static void put_lease(fake *f, const char *holder, const char *renew, int transitions)
{
    json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:i, s:s, s:i}}", "apiVersion",
                            "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", "lead",
                            "namespace", "ns", "spec", "holderIdentity", holder, "renewTime", renew,
                            "leaseDurationSeconds", 15, "acquireTime", "then", "leaseTransitions",
                            transitions);
    f->rv = 6;
    free(store(f, obj));
}

static int count_writes_after(fake *f, size_t from)
{
    int n = 0;
    for (size_t i = from; i < f->n && i < MAX_LOG; i++)
        n += strcmp(f->log[i].method, "GET") != 0;
    return n;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_options_are_checked(void **state)
{
    fake *f = *state;
    moat_error err = MOAT_ERROR_INIT;
    kube_leader *l = (kube_leader *)&err; /* must stay untouched */
    const kube_leader_options bad[] = {
        {.namespace = "ns", .name = "lead"},
        {.namespace = "ns", .name = "lead", .identity = ""},
        {.name = "lead", .identity = "me"},
        {.namespace = "ns", .name = "lead", .identity = "me", .retry_period_ns = 10 * S},
        {.namespace = "ns",
         .name = "lead",
         .identity = "me",
         .lease_duration_ns = 5 * S,
         .renew_deadline_ns = 5 * S,
         .retry_period_ns = 1 * S},
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        assert_int_equal(kube_leader_start(&l, f->client, &bad[i], &err), -1);
        assert_int_equal(err.code, MOAT_E_INVALID);
        assert_ptr_equal(l, (kube_leader *)&err);
        moat_error_clear(&err);
    }
    assert_int_equal(kube_leader_start(&l, f->client, NULL, &err), -1);
    moat_error_clear(&err);
    kube_leader_stop(NULL);
    assert_int_equal(f->n, 0);
}

static void test_acquires_a_free_lease_and_gives_it_up(void **state)
{
    fake *f = *state;
    kube_leader *l = start(f, 60 * S, 40 * S, 20 * S);
    WAIT_UNTIL(f, f->started == 1);
    assert_true(kube_leader_is_leading(l));

    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->n, 2);
    assert_string_equal(f->log[0].method, "GET");
    assert_int_equal(f->log[0].status, 404);
    assert_string_equal(f->log[1].method, "POST");
    assert_int_equal(f->log[1].status, 201);
    json_t *b = f->log[1].body;
    assert_string_equal(kobj_str(b, "kind"), "Lease");
    assert_string_equal(kobj_str(b, "metadata.name"), "lead");
    assert_string_equal(kobj_str(b, "spec.holderIdentity"), "me");
    int64_t v = 0;
    assert_true(kobj_int(b, "spec.leaseDurationSeconds", &v));
    assert_int_equal(v, 60);
    assert_true(kobj_int(b, "spec.leaseTransitions", &v));
    assert_int_equal(v, 1);
    assert_string_equal(kobj_str(b, "spec.acquireTime"), kobj_str(b, "spec.renewTime"));
    assert_int_equal(f->n_new_leaders, 1);
    assert_string_equal(f->new_leaders[0], "me");
    assert_int_equal(f->stopped, 0);
    pthread_mutex_unlock(&f->lock);

    /* Stopping gives the Lease up, so that a successor need not wait for it to expire. */
    stop(f);
    assert_int_equal(f->n, 4);
    assert_string_equal(f->log[2].method, "GET");
    assert_string_equal(f->log[3].method, "PUT");
    assert_int_equal(f->log[3].status, 200);
    b = f->log[3].body;
    assert_string_equal(kobj_str(b, "spec.holderIdentity"), "");
    assert_true(kobj_int(b, "spec.leaseDurationSeconds", &v));
    assert_int_equal(v, 1);
    assert_string_equal(kobj_str(b, "metadata.resourceVersion"), "1"); /* the create's */
    assert_int_equal(f->stopped, 1);
    assert_string_equal(f->why[0], "stopping");
    assert_false(f->leading_in_stopped);
}

/* A Lease whose holder gave it up is taken at once, with its resourceVersion, counting one
 * more transition. */
static void test_takes_a_released_lease(void **state)
{
    fake *f = *state;
    put_lease(f, "", "earlier", 3);
    start(f, 60 * S, 40 * S, 20 * S);
    WAIT_UNTIL(f, f->started == 1);
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->n, 2);
    assert_string_equal(f->log[1].method, "PUT");
    json_t *b = f->log[1].body;
    assert_string_equal(kobj_str(b, "metadata.resourceVersion"), "7");
    assert_string_equal(kobj_str(b, "spec.holderIdentity"), "me");
    assert_string_not_equal(kobj_str(b, "spec.acquireTime"), "then");
    int64_t v = 0;
    assert_true(kobj_int(b, "spec.leaseTransitions", &v));
    assert_int_equal(v, 4);
    pthread_mutex_unlock(&f->lock);
    stop(f);
}

static void test_renews_before_the_deadline(void **state)
{
    fake *f = *state;
    start(f, 60 * S, 30 * S, 2 * MS);
    WAIT_UNTIL(f, f->n_writes >= 4); /* the create and three renewals */
    stop(f);

    assert_int_equal(f->started, 1);
    assert_int_equal(f->stopped, 1);
    assert_string_equal(f->why[0], "stopping");
    const char *acquired = kobj_str(f->log[1].body, "spec.acquireTime");
    int puts = 0;
    for (size_t i = 2; i < f->n && i < MAX_LOG; i++) {
        request *r = &f->log[i];
        if (strcmp(r->method, "PUT") != 0)
            continue;
        assert_int_equal(r->status, 200); /* each with the resourceVersion it read */
        if (strcmp(kobj_str(r->body, "spec.holderIdentity"), "me") != 0)
            break; /* the release */
        puts++;
        assert_string_equal(kobj_str(r->body, "spec.acquireTime"), acquired);
        int64_t v = 0;
        assert_true(kobj_int(r->body, "spec.leaseTransitions", &v));
        assert_int_equal(v, 1);
    }
    assert_true(puts >= 3);
}

/* The renewals fail: the holder stops, at least a renew deadline after its last renewal,
 * not leading any more when told, and writes nothing after. */
static void test_renewal_failure_stops_the_holder(void **state)
{
    fake *f = *state;
    const int64_t deadline = 100 * MS;
    f->fail_after_write = true;
    kube_leader *l = start(f, 200 * MS, deadline, 10 * MS);
    WAIT_UNTIL(f, f->stopped == 1);
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->started, 1);
    assert_non_null(strstr(f->why[0], "renew deadline"));
    assert_false(f->leading_in_stopped);
    assert_true(f->stopped_ns - f->last_ok_write_ns >= deadline);
    size_t at_stop = f->requests_at_stop;
    pthread_mutex_unlock(&f->lock);
    assert_false(kube_leader_is_leading(l));

    /* It keeps trying as a candidate: reads only, and no second start. */
    WAIT_UNTIL(f, f->n >= at_stop + 3);
    stop(f);
    assert_int_equal(count_writes_after(f, at_stop), 0);
    assert_int_equal(f->started, 1);
    assert_int_equal(f->stopped, 1); /* no release: it was not leading */
}

/* The holder is paused (SIGSTOP, a stuck thread) for `pause` right after it took the
 * Lease: it is not leading while paused, and stops as soon as it runs again, before it
 * sends anything. */
static void paused_holder(fake *f, int64_t duration, int64_t deadline, int64_t pause)
{
    f->pause_in_started = pause;
    start(f, duration, deadline, 10 * MS);
    WAIT_UNTIL(f, f->stopped >= 1);
    stop(f);
    assert_false(f->leading_after_pause);
    assert_string_equal(f->why[0], "the last renewal is older than the renew deadline");
    assert_false(f->leading_in_stopped);
    assert_int_equal(f->requests_at_stop, f->requests_after_pause);
    assert_int_equal(f->requests_after_pause, 2); /* the GET and the create */
}

static void test_pause_past_the_lease_stops_the_holder(void **state)
{
    paused_holder(*state, 80 * MS, 50 * MS, 90 * MS);
}

/* Past the renew deadline is enough: the Lease has not expired yet for the others, but
 * the holder cannot be sure to renew it in time. */
static void test_pause_past_the_renew_deadline_stops_the_holder(void **state)
{
    paused_holder(*state, 60 * S, 50 * MS, 60 * MS);
}

/* A renewal whose answer comes after the renew deadline does not count as one. */
static void test_late_renewal_stops_the_holder(void **state)
{
    fake *f = *state;
    const int64_t deadline = 200 * MS;
    start(f, 300 * MS, deadline, 10 * MS);
    WAIT_UNTIL(f, f->started == 1);
    pthread_mutex_lock(&f->lock);
    f->hold_next_get = deadline + 10 * MS;
    pthread_mutex_unlock(&f->lock);
    WAIT_UNTIL(f, f->stopped == 1);
    stop(f);
    assert_false(f->leading_after_hold);
    assert_string_equal(f->why[0], "the renewal came after the renew deadline");
    assert_false(f->leading_in_stopped);
}

/* A Lease that another candidate keeps renewing is never taken; once it stops renewing, it
 * is taken no sooner than a lease duration after its last renewal was seen. */
static void test_held_lease_is_not_taken_before_it_expires(void **state)
{
    fake *f = *state;
    const int64_t duration = 150 * MS;
    put_lease(f, "other", "r0", 2);
    f->other_renews = true;
    kube_leader *l = start(f, duration, 100 * MS, 5 * MS);
    int64_t t0 = moat_mono_ns();
    WAIT_UNTIL(f, f->n_gets >= 5 && f->last_change_ns - t0 >= 2 * duration);
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->n_writes, 0);
    assert_int_equal(f->started, 0);
    assert_int_equal(f->n_new_leaders, 1); /* renewals are not new leaders */
    assert_string_equal(f->new_leaders[0], "other");
    f->other_renews = false;
    pthread_mutex_unlock(&f->lock);
    assert_false(kube_leader_is_leading(l));

    WAIT_UNTIL(f, f->started == 1);
    pthread_mutex_lock(&f->lock);
    size_t put = 0;
    while (put < f->n && put < MAX_LOG - 1 && strcmp(f->log[put].method, "PUT") != 0)
        put++;
    assert_true(put < f->n);
    json_t *b = f->log[put].body;
    assert_string_equal(kobj_str(b, "spec.holderIdentity"), "me");
    int64_t v = 0;
    assert_true(kobj_int(b, "spec.leaseTransitions", &v));
    assert_int_equal(v, 3);
    /* The write went out at least a duration after the last renewal was seen. */
    assert_true(f->log[put].answer_ns - f->last_change_ns >= duration);
    assert_int_equal(f->n_new_leaders, 2);
    assert_string_equal(f->new_leaders[1], "me");
    pthread_mutex_unlock(&f->lock);
    stop(f);
}

/* Two candidates see a free Lease; the other's write lands first and ours gets 409: we do
 * not lead, and do not take it from the new holder. */
static void test_conflict_when_acquiring(void **state)
{
    fake *f = *state;
    put_lease(f, "", "earlier", 1);
    f->conflict_puts = 1;
    f->steal_on_conflict = true;
    kube_leader *l = start(f, 60 * S, 30 * S, 2 * MS);
    WAIT_UNTIL(f, f->n_gets >= 6);
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->log[1].status, 409);
    assert_int_equal(count_writes_after(f, 0), 1);
    assert_int_equal(f->started, 0);
    assert_int_equal(f->n_new_leaders, 1);
    assert_string_equal(f->new_leaders[0], "other");
    pthread_mutex_unlock(&f->lock);
    assert_false(kube_leader_is_leading(l));
    stop(f);
    assert_int_equal(f->stopped, 0);
}

/* A renewal answered 409 means someone else wrote the Lease: stop at once. */
static void test_conflict_when_renewing_stops_the_holder(void **state)
{
    fake *f = *state;
    start(f, 60 * S, 30 * S, 2 * MS);
    WAIT_UNTIL(f, f->started == 1);
    pthread_mutex_lock(&f->lock);
    f->conflict_puts = 1;
    pthread_mutex_unlock(&f->lock);
    WAIT_UNTIL(f, f->stopped == 1);
    pthread_mutex_lock(&f->lock);
    assert_string_equal(f->why[0], "another candidate holds the lease");
    assert_false(f->leading_in_stopped);
    /* the last request before the stop was answered 409 (read from the answer itself: with a
     * 2 ms retry period a slow run, valgrind's, sends more than the log keeps) */
    assert_int_equal(f->status_at_stop, 409);
    pthread_mutex_unlock(&f->lock);
    stop(f);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_options_are_checked),
        T(test_acquires_a_free_lease_and_gives_it_up),
        T(test_takes_a_released_lease),
        T(test_renews_before_the_deadline),
        T(test_renewal_failure_stops_the_holder),
        T(test_pause_past_the_lease_stops_the_holder),
        T(test_pause_past_the_renew_deadline_stops_the_holder),
        T(test_late_renewal_stops_the_holder),
        T(test_held_lease_is_not_taken_before_it_expires),
        T(test_conflict_when_acquiring),
        T(test_conflict_when_renewing_stops_the_holder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
