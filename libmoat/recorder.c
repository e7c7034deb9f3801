#include "recorder.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "kobj.h"
#include "log.h"

#define SPAM_BURST         25
#define SPAM_REFILL_NS     (300 * 1000000000LL)
#define AGGREGATE_WINDOW_S 600
#define MAX_TRACKED        4096 /* aggregation and spam records kept; oldest forgotten */

typedef struct pending {
    struct pending *next;
    json_t *involved; /* the ObjectReference */
    char *type, *reason, *message;
} pending;

struct kube_recorder {
    kube_client *client;
    char *component, *host;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pending *head, *tail;
    size_t queued;
    bool stop;
    /* Loop-thread only: aggregation key -> {"name","ns","count","at"}, and per object
     * uid -> {"tokens","at"} for the spam filter. */
    json_t *seen, *spam;
    _Atomic(const moat_clock *) clock; /* the spam filter's */
};

static void now_rfc3339(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void pending_free(pending *p)
{
    if (!p)
        return;
    json_decref(p->involved);
    free(p->type);
    free(p->reason);
    free(p->message);
    free(p);
}

/* The spam filter: true when the object may emit one more event now. */
static bool allow(kube_recorder *r, const char *uid)
{
    int64_t now = moat_clock_now(atomic_load(&r->clock));
    json_t *b = json_object_get(r->spam, uid);
    double tokens = SPAM_BURST;
    if (b) {
        double elapsed = (double)(now - json_integer_value(json_object_get(b, "at")));
        tokens = json_real_value(json_object_get(b, "tokens")) + elapsed / SPAM_REFILL_NS;
        if (tokens > SPAM_BURST)
            tokens = SPAM_BURST;
    } else if (json_object_size(r->spam) >= MAX_TRACKED) {
        json_object_clear(r->spam);
    }
    if (tokens < 1.0)
        return false;
    json_object_set_new(r->spam, uid,
                        json_pack("{s:f, s:I}", "tokens", tokens - 1.0, "at", (json_int_t)now));
    return true;
}

static void post(kube_recorder *r, pending *p)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    const char *uid = kobj_str(p->involved, "uid");
    const char *ns = kobj_str(p->involved, "namespace");
    const char *name = kobj_str(p->involved, "name");
    char ts[40];
    now_rfc3339(ts, sizeof(ts));
    if (!ns || !*ns)
        ns = "default"; /* events about cluster-scoped objects live in default */

    if (!allow(r, uid ? uid : name)) {
        return;
    }
    _cleanup_free_ char *key = NULL;
    if (asprintf(&key, "%s\x1f%s\x1f%s\x1f%s", uid ? uid : name, p->type, p->reason, p->message) <
        0)
        return;
    json_t *seen = json_object_get(r->seen, key);
    time_t now = time(NULL);
    if (seen && now - json_integer_value(json_object_get(seen, "at")) < AGGREGATE_WINDOW_S) {
        int64_t count = json_integer_value(json_object_get(seen, "count")) + 1;
        json_t *patch = json_pack("{s:I, s:s}", "count", (json_int_t)count, "lastTimestamp", ts);
        int rc = kube_patch(r->client, NULL, &KUBE_EVENTS, ns,
                            json_string_value(json_object_get(seen, "name")), KUBE_PATCH_MERGE,
                            patch, NULL, &err);
        json_decref(patch);
        if (rc == 0) {
            json_object_set_new(seen, "count", json_integer(count));
            json_object_set_new(seen, "at", json_integer(now));
            return;
        }
        /* The Event expired or was deleted: create a new one. */
        json_object_del(r->seen, key);
        moat_error_clear(&err);
    }
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    _cleanup_free_ char *ev_name = NULL;
    if (asprintf(&ev_name, "%s.%lx%05lx", name ? name : "object", (long)t.tv_sec,
                 t.tv_nsec / 10000) < 0)
        return;
    json_t *ev = json_pack(
        "{s:s, s:s, s:{s:s, s:s}, s:O, s:s, s:s, s:s, s:i, s:s, s:s, "
        "s:{s:s, s:s}, s:s, s:s}",
        "apiVersion", "v1", "kind", "Event", "metadata", "name", ev_name, "namespace", ns,
        "involvedObject", p->involved, "type", p->type, "reason", p->reason, "message", p->message,
        "count", 1, "firstTimestamp", ts, "lastTimestamp", ts, "source", "component", r->component,
        "host", r->host, "reportingComponent", r->component, "reportingInstance", r->host);
    if (!ev)
        return;
    int rc = kube_create(r->client, NULL, &KUBE_EVENTS, ns, ev, &err);
    json_decref(ev);
    if (rc < 0) {
        log_debug(name, "event %s: %s", p->reason, err.message);
        return;
    }
    if (json_object_size(r->seen) >= MAX_TRACKED)
        json_object_clear(r->seen);
    json_object_set_new(
        r->seen, key,
        json_pack("{s:s, s:i, s:I}", "name", ev_name, "count", 1, "at", (json_int_t)now));
}

static void *run(void *arg)
{
    kube_recorder *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->head && !r->stop)
            pthread_cond_wait(&r->cond, &r->lock);
        if (!r->head && r->stop)
            break;
        pending *p = r->head;
        r->head = p->next;
        if (!r->head)
            r->tail = NULL;
        r->queued--;
        pthread_mutex_unlock(&r->lock);
        post(r, p);
        pending_free(p);
        pthread_mutex_lock(&r->lock);
        pthread_cond_broadcast(&r->cond); /* for a waiting free */
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int kube_recorder_new(kube_recorder **out, kube_client *client, const char *component,
                      const char *host, moat_error *err)
{
    kube_recorder *r = calloc(1, sizeof(*r));
    if (!r)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    r->client = client;
    atomic_init(&r->clock, moat_clock_system());
    r->component = strdup(component ? component : "moat");
    r->host = strdup(host ? host : "");
    r->seen = json_object();
    r->spam = json_object();
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    int rc = pthread_create(&r->thread, NULL, run, r);
    if (rc != 0) {
        free(r->component);
        free(r->host);
        json_decref(r->seen);
        json_decref(r->spam);
        free(r);
        return moat_error_set_errno(err, rc, "starting the event recorder");
    }
    *out = r;
    return 0;
}

void kube_recorder_event(kube_recorder *r, const json_t *obj, const char *type, const char *reason,
                         const char *fmt, ...)
{
    pending *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&p->message, fmt, ap) < 0)
        p->message = NULL;
    va_end(ap);
    p->type = strdup(type);
    p->reason = strdup(reason);
    p->involved = json_object();
    static const char *const fields[][2] = {
        {"apiVersion", "apiVersion"}, {"kind", "kind"},
        {"metadata.name", "name"},    {"metadata.namespace", "namespace"},
        {"metadata.uid", "uid"},      {"metadata.resourceVersion", "resourceVersion"},
    };
    for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
        const char *v = kobj_str(obj, fields[i][0]);
        if (v)
            json_object_set_new(p->involved, fields[i][1], json_string(v));
    }
    if (!p->message || !p->type || !p->reason || !p->involved) {
        pending_free(p);
        return;
    }
    pthread_mutex_lock(&r->lock);
    if (r->queued >= KUBE_RECORDER_QUEUE_MAX || r->stop) {
        pthread_mutex_unlock(&r->lock);
        pending_free(p);
        return;
    }
    if (r->tail)
        r->tail->next = p;
    else
        r->head = p;
    r->tail = p;
    r->queued++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

void kube_recorder_free(kube_recorder *r, int64_t timeout_ns)
{
    if (!r)
        return;
    int64_t deadline = moat_mono_ns() + timeout_ns;
    pthread_mutex_lock(&r->lock);
    while (r->head && moat_mono_ns() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    /* Whatever could not be posted in time is dropped. */
    while (r->head) {
        pending *p = r->head;
        r->head = p->next;
        pending_free(p);
    }
    r->tail = NULL;
    r->stop = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    json_decref(r->seen);
    json_decref(r->spam);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r->component);
    free(r->host);
    free(r);
}

void kube_recorder_set_clock(kube_recorder *r, const moat_clock *clock)
{
    if (r && clock)
        atomic_store(&r->clock, clock);
}
