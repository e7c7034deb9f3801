#include "lease.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "kobj.h"
#include "log.h"
#include "macro.h"

#define DEFAULT_DURATION (15 * 1000000000LL)
#define DEFAULT_DEADLINE (10 * 1000000000LL)
#define DEFAULT_RETRY    (2 * 1000000000LL)

struct kube_leader {
    kube_client *client;
    char *namespace, *name, *identity;
    int64_t duration_ns, deadline_ns, retry_ns;
    kube_leader_options opts;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;

    atomic_bool leading;
    _Atomic int64_t last_renew_ns; /* monotonic time of the last successful write */

    /* What we last saw of the Lease, to judge expiry by our own clock. */
    char *observed_holder;
    char *observed_renew; /* spec.renewTime as written by the holder */
    int64_t observed_at_ns;
};

static void micro_time(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%06ldZ", ts.tv_nsec / 1000);
}

bool kube_leader_is_leading(kube_leader *l)
{
    return atomic_load(&l->leading) &&
           moat_mono_ns() - atomic_load(&l->last_renew_ns) < l->deadline_ns;
}

static void lose(kube_leader *l, const char *why)
{
    if (!atomic_exchange(&l->leading, false))
        return;
    log_debug(l->name, "stopped leading: %s", why);
    if (l->opts.on_stopped)
        l->opts.on_stopped(l->opts.user, why);
}

static json_t *lease_spec(kube_leader *l, json_t *old_spec, bool acquire)
{
    char now[64];
    micro_time(now, sizeof(now));
    json_t *spec = json_object();
    json_object_set_new(spec, "holderIdentity", json_string(l->identity));
    json_object_set_new(spec, "leaseDurationSeconds", json_integer(l->duration_ns / 1000000000LL));
    json_object_set_new(spec, "renewTime", json_string(now));
    const char *acquired = kobj_str(old_spec, "acquireTime");
    int64_t transitions = 0;
    kobj_int(old_spec, "leaseTransitions", &transitions);
    json_object_set_new(spec, "acquireTime", json_string(acquire || !acquired ? now : acquired));
    json_object_set_new(spec, "leaseTransitions", json_integer(transitions + (acquire ? 1 : 0)));
    return spec;
}

static void observe(kube_leader *l, json_t *lease)
{
    const char *holder = kobj_str(lease, "spec.holderIdentity");
    const char *renew = kobj_str(lease, "spec.renewTime");
    bool changed = !l->observed_holder != !holder ||
                   (holder && strcmp(holder, l->observed_holder) != 0) ||
                   !l->observed_renew != !renew || (renew && strcmp(renew, l->observed_renew) != 0);
    if (!changed)
        return;
    bool new_holder =
        !l->observed_holder != !holder || (holder && strcmp(holder, l->observed_holder) != 0);
    free(l->observed_holder);
    free(l->observed_renew);
    l->observed_holder = holder ? strdup(holder) : NULL;
    l->observed_renew = renew ? strdup(renew) : NULL;
    l->observed_at_ns = moat_mono_ns();
    if (new_holder && holder && *holder && l->opts.on_new_leader)
        l->opts.on_new_leader(l->opts.user, holder);
}

/* One attempt to take or renew the Lease. Returns 1 when we hold it after the call, 0 when
 * someone else does, -1 on an error (err set). */
static int try_acquire_or_renew(kube_leader *l, moat_error *err)
{
    json_t *lease = NULL, *out = NULL;
    if (kube_get(l->client, &lease, &KUBE_LEASES, l->namespace, l->name, err) < 0) {
        if (!kube_error_is(err, KUBE_REASON_NOT_FOUND))
            return -1;
        moat_error_clear(err);
        json_t *obj =
            json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", "coordination.k8s.io/v1", "kind",
                      "Lease", "metadata", "name", l->name, "namespace", l->namespace);
        json_object_set_new(obj, "spec", lease_spec(l, NULL, true));
        int r = kube_create(l->client, &out, &KUBE_LEASES, l->namespace, obj, err);
        json_decref(obj);
        if (r < 0)
            return kube_error_is(err, KUBE_REASON_ALREADY_EXISTS) ? (moat_error_clear(err), 0) : -1;
        observe(l, out);
        json_decref(out);
        return 1;
    }
    observe(l, lease);
    const char *holder = kobj_str(lease, "spec.holderIdentity");
    bool ours = holder && strcmp(holder, l->identity) == 0;
    bool free_lease = !holder || !*holder;
    if (!ours && !free_lease && moat_mono_ns() - l->observed_at_ns < l->duration_ns) {
        json_decref(lease);
        return 0; /* held, and renewed recently as far as we have seen */
    }
    json_t *spec = lease_spec(l, json_object_get(lease, "spec"), !ours);
    json_object_set_new(lease, "spec", spec);
    int r = kube_update(l->client, &out, &KUBE_LEASES, lease, err);
    json_decref(lease);
    if (r < 0)
        return kube_error_is(err, KUBE_REASON_CONFLICT) ? (moat_error_clear(err), 0) : -1;
    observe(l, out);
    json_decref(out);
    return 1;
}

static void release(kube_leader *l)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    json_t *lease = NULL;
    if (kube_get(l->client, &lease, &KUBE_LEASES, l->namespace, l->name, &err) < 0)
        return;
    const char *holder = kobj_str(lease, "spec.holderIdentity");
    if (holder && strcmp(holder, l->identity) == 0) {
        json_t *spec = json_object_get(lease, "spec");
        json_object_set_new(spec, "holderIdentity", json_string(""));
        json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
        if (kube_update(l->client, NULL, &KUBE_LEASES, lease, &err) < 0)
            log_debug(l->name, "releasing the lease: %s", err.message);
    }
    json_decref(lease);
}

/* Sleeps until the deadline or stop; returns true when stopping. */
static bool wait_until(kube_leader *l, int64_t deadline_ns)
{
    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        int64_t left = deadline_ns - moat_mono_ns();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t t = ts.tv_nsec + left % 1000000000LL;
        ts.tv_sec += left / 1000000000LL + t / 1000000000LL;
        ts.tv_nsec = t % 1000000000LL;
        pthread_cond_timedwait(&l->cond, &l->lock, &ts);
    }
    bool stop = l->stop;
    pthread_mutex_unlock(&l->lock);
    return stop;
}

static void *run(void *arg)
{
    kube_leader *l = arg;
    for (;;) {
        int64_t started = moat_mono_ns();
        /* After a pause (SIGSTOP, a long GC, a stuck thread) the lease may be gone already:
         * stop before doing anything else. */
        if (atomic_load(&l->leading) && started - atomic_load(&l->last_renew_ns) >= l->deadline_ns)
            lose(l, "the last renewal is older than the renew deadline");

        _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
        int r = try_acquire_or_renew(l, &err);
        if (r == 1) {
            int64_t now = moat_mono_ns();
            if (atomic_load(&l->leading) &&
                now - atomic_load(&l->last_renew_ns) >= l->deadline_ns) {
                lose(l, "the renewal came after the renew deadline");
            } else {
                atomic_store(&l->last_renew_ns, now);
                if (!atomic_exchange(&l->leading, true)) {
                    log_debug(l->name, "%s is now the leader", l->identity);
                    if (l->opts.on_started)
                        l->opts.on_started(l->opts.user);
                }
            }
        } else {
            if (r < 0)
                log_debug(l->name, "lease: %s", err.message);
            if (atomic_load(&l->leading)) {
                if (r == 0)
                    lose(l, "another candidate holds the lease");
                else if (moat_mono_ns() - atomic_load(&l->last_renew_ns) >= l->deadline_ns)
                    lose(l, "could not renew within the renew deadline");
            }
        }
        if (wait_until(l, started + l->retry_ns))
            break;
    }
    if (atomic_load(&l->leading)) {
        release(l);
        lose(l, "stopping");
    }
    return NULL;
}

int kube_leader_start(kube_leader **out, kube_client *client, const kube_leader_options *opts,
                      moat_error *err)
{
    if (!opts || !opts->namespace || !opts->name || !opts->identity || !*opts->identity)
        return moat_error_set(err, MOAT_E_INVALID,
                              "leader election: namespace, name and "
                              "identity are required");
    kube_leader *l = calloc(1, sizeof(*l));
    if (!l)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    l->client = client;
    l->opts = *opts;
    l->namespace = strdup(opts->namespace);
    l->name = strdup(opts->name);
    l->identity = strdup(opts->identity);
    l->duration_ns = opts->lease_duration_ns > 0 ? opts->lease_duration_ns : DEFAULT_DURATION;
    l->deadline_ns = opts->renew_deadline_ns > 0 ? opts->renew_deadline_ns : DEFAULT_DEADLINE;
    l->retry_ns = opts->retry_period_ns > 0 ? opts->retry_period_ns : DEFAULT_RETRY;
    if (l->deadline_ns >= l->duration_ns || l->retry_ns >= l->deadline_ns) {
        kube_leader_stop(l);
        return moat_error_set(err, MOAT_E_INVALID,
                              "leader election: need retry period < renew deadline < lease "
                              "duration");
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cond, &ca);
    pthread_condattr_destroy(&ca);
    int r = pthread_create(&l->thread, NULL, run, l);
    if (r != 0) {
        free(l->namespace);
        free(l->name);
        free(l->identity);
        free(l);
        return moat_error_set_errno(err, r, "starting leader election");
    }
    *out = l;
    return 0;
}

void kube_leader_stop(kube_leader *l)
{
    if (!l)
        return;
    if (l->thread) {
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->thread, NULL);
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->cond);
    }
    free(l->namespace);
    free(l->name);
    free(l->identity);
    free(l->observed_holder);
    free(l->observed_renew);
    free(l);
}
