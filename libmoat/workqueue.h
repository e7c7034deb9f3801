/* A controller work queue for string keys ("namespace/name"), like client-go's
 * rate-limited delaying work queue.
 *
 * - A key waits at most once: adding a key that is already waiting does nothing.
 * - A key is never handed to two workers at once. A key added while a worker holds it is
 *   marked dirty and queued again when that worker calls workqueue_done().
 * - Keys can be added after a delay, or after a delay computed from per-key exponential
 *   backoff (failures counted per key until workqueue_forget()) and a global token bucket.
 *
 * All functions are thread-safe. A worker loop:
 *
 *     char *key;
 *     while (workqueue_get(q, &key) == 0) {
 *         if (reconcile(key) < 0)
 *             workqueue_add_rate_limited(q, key, NULL);
 *         else
 *             workqueue_forget(q, key);
 *         workqueue_done(q, key);
 *         free(key);
 *     }
 */
#ifndef MOAT_WORKQUEUE_H
#define MOAT_WORKQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "error.h"

/* Keys the queue tracks at once: waiting, delayed, being processed, or only remembered
 * for their failure count. Adding a new key past this fails with MOAT_E_NOMEM. */
#define WORKQUEUE_MAX_KEYS (1 << 20)
/* Longest key accepted, in bytes: "namespace/name" is at most 63 + 1 + 253. */
#define WORKQUEUE_MAX_KEY_LEN 1024

typedef struct workqueue workqueue;

/* Zero (or a NULL options pointer) selects each default. */
typedef struct workqueue_options {
    int64_t base_delay_ns;   /* first per-key backoff delay; 0: 5 ms */
    int64_t max_delay_ns;    /* per-key backoff cap; 0: 1000 s */
    double qps;              /* global token bucket refill rate; 0: 10 */
    int burst;               /* global token bucket size; 0: 100 */
    const moat_clock *clock; /* NULL: moat_clock_system() */
} workqueue_options;

/* Creates an empty queue. The caller owns *out and frees it with workqueue_free(); a
 * clock given in opts must outlive the queue. Returns 0, or -1 with MOAT_E_INVALID for a
 * negative delay, a base delay above the maximum, or a bad qps or burst. */
int workqueue_new(workqueue **out, const workqueue_options *opts, moat_error *err);

/* Frees the queue and every key in it; accepts NULL. No thread may still use q: shut it
 * down and join the workers first. */
void workqueue_free(workqueue *q);

/* Makes key ready now (key is copied; the caller keeps its string). A key already
 * waiting is not added twice; a key waiting for a delay becomes ready now (the reconcile
 * that runs then schedules whatever it still needs). Returns 0, or -1 with
 * MOAT_E_CANCELED once the queue is shutting down, MOAT_E_INVALID for a NULL or empty
 * key, MOAT_E_RANGE for a key longer than WORKQUEUE_MAX_KEY_LEN, or MOAT_E_NOMEM past
 * WORKQUEUE_MAX_KEYS or when memory runs out. */
int workqueue_add(workqueue *q, const char *key, moat_error *err);

/* Makes key ready once delay_ns has passed on the queue's clock (at once when
 * delay_ns <= 0). If the key is already delayed, the earlier deadline wins; if it is
 * already ready (or dirty), nothing changes. Returns and fails as workqueue_add(). */
int workqueue_add_after(workqueue *q, const char *key, int64_t delay_ns, moat_error *err);

/* Counts one more failure for key and adds it after the larger of its exponential
 * backoff (base delay * 2^(failures before this one), capped at the maximum) and the
 * global token bucket's delay. Returns and fails as workqueue_add(); on failure the
 * failure count is unchanged. */
int workqueue_add_rate_limited(workqueue *q, const char *key, moat_error *err);

/* Counts one more failure for key and adds it after its own exponential backoff alone
 * (as workqueue_add_rate_limited(), capped at cap_ns where that is below the queue's
 * maximum; 0: the maximum), taking nothing from the global bucket: for a key that waits on
 * something that wakes it with workqueue_add() when it comes, so that the backoff is only
 * a fallback, and a crowd of such keys does not push every other retry (nor its own
 * wake-up) behind the bucket. Returns and fails as workqueue_add(), and MOAT_E_INVALID for
 * a negative cap_ns. */
int workqueue_add_backoff(workqueue *q, const char *key, int64_t cap_ns, moat_error *err);

/* Resets key's failure count, so that its next rate-limited add waits the base delay.
 * Call it when a reconcile succeeds; otherwise the key stays remembered (and counts
 * against WORKQUEUE_MAX_KEYS) while it has failures. Unknown keys are ignored. */
void workqueue_forget(workqueue *q, const char *key);

/* Returns key's failure count (rate-limited adds since the last forget); 0 if unknown. */
int workqueue_num_requeues(workqueue *q, const char *key);

/* Waits until a key is ready and hands it out: returns 0 and sets *ret_key to a copy the
 * caller owns; the caller must call workqueue_done(q, *ret_key) and then free it.
 * Returns -1 (*ret_key untouched) at once after workqueue_shutdown(), and after
 * workqueue_shutdown_drain() once no key is ready or due to come back from a worker.
 * Under memory pressure, a key that cannot be copied stays queued and get keeps waiting. */
int workqueue_get(workqueue *q, char **ret_key);

/* Like workqueue_get() but never blocks: returns 0 with a key, 1 when none is ready (or
 * it could not be copied; the key stays queued), or -1 when get would. Deadlines are
 * checked against the queue's clock, so tests drive it with a fake clock. */
int workqueue_try_get(workqueue *q, char **ret_key);

/* Ends the processing of a key handed out by get: if the key was added meanwhile it is
 * queued again. The caller still owns (and frees) key. Calling it for a key that is not
 * being processed does nothing. */
void workqueue_done(workqueue *q, const char *key);

/* Returns how many keys wait: ready now plus waiting for a delay (the queue-depth
 * metric). Keys being processed are not counted. */
size_t workqueue_len(workqueue *q);

/* Shuts down at once: new adds fail, every blocked getter returns -1, and so does every
 * later get; a workqueue_shutdown_drain() in progress returns. Keys being processed may
 * still be passed to workqueue_done(). */
void workqueue_shutdown(workqueue *q);

/* Shuts down gracefully: new adds fail, getters keep receiving keys that are ready (and
 * keys queued again by done), then return -1; delayed keys not yet due at this call are
 * dropped. Blocks until no key is ready or being processed, as client-go's
 * ShutDownWithDrain: workers must keep calling get and done meanwhile (so a worker must
 * not call it while holding a key), or it waits until workqueue_shutdown() is called
 * from another thread, which ends the wait at once. Join the workers before
 * workqueue_free(). */
void workqueue_shutdown_drain(workqueue *q);

/* Returns true once workqueue_shutdown() or workqueue_shutdown_drain() has been called. */
bool workqueue_is_shutting_down(workqueue *q);

#endif
