/* Leader election with a coordination.k8s.io/v1 Lease, as client-go does it.
 *
 * A candidate tries to take the Lease every retry period; it takes it when the Lease has no
 * holder or its holder has not renewed it within the lease duration (as observed locally,
 * so clock skew between machines does not matter). The leader renews every retry period;
 * if it cannot renew within the renew deadline it stops leading at once: on_stopped runs,
 * and kube_leader_is_leading() turns false before any other work is done. A leader that was
 * paused (SIGSTOP) past its deadline sees that as soon as it runs again, before it renews.
 * All writes use the Lease's resourceVersion, so two candidates never both win. */
#ifndef MOAT_LEASE_H
#define MOAT_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "kube.h"

typedef struct {
    const char *namespace;
    const char *name;
    const char *identity;      /* unique per process, e.g. "<pod name>_<uuid>" */
    int64_t lease_duration_ns; /* default 15 s */
    int64_t renew_deadline_ns; /* default 10 s */
    int64_t retry_period_ns;   /* default 2 s */
    /* Called on the election's thread. on_started: this process leads now. on_stopped: it
     * does not any more (why: the renewal failed, or stop); the callee must stop all work.
     * The library logs at debug only: saying so is the caller's. */
    void (*on_started)(void *user);
    void (*on_stopped)(void *user, const char *why);
    void (*on_new_leader)(void *user, const char *identity);
    void *user;
} kube_leader_options;

typedef struct kube_leader kube_leader;

/* Starts the election on a thread of its own. The client is borrowed. */
int kube_leader_start(kube_leader **out, kube_client *client, const kube_leader_options *opts,
                      moat_error *err);

/* True only while this process holds the Lease and its last renewal is within the renew
 * deadline. Thread-safe; cheap enough to call before every write. */
bool kube_leader_is_leading(kube_leader *l);

/* Stops the election (giving the Lease up if leading, so a successor need not wait for it
 * to expire), joins the thread
 * and frees. Accepts NULL. */
void kube_leader_stop(kube_leader *l);

#endif
