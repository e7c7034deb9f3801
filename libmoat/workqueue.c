#include "workqueue.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "backoff.h"

#define DEFAULT_BASE_DELAY_NS (5 * 1000000LL)       /* 5 ms, as client-go */
#define DEFAULT_MAX_DELAY_NS  (1000 * 1000000000LL) /* 1000 s, as client-go */
#define DEFAULT_QPS           10.0
#define DEFAULT_BURST         100

/* How often a blocked getter re-reads a clock it cannot sleep on (a fake clock), and
 * retries a key it could not copy. */
#define POLL_NS (10 * 1000000LL)

#define NOT_IN_HEAP SIZE_MAX

/* One tracked key. It is in at most one of the ready ring and the delay heap:
 * - dirty && !processing: in the ring;
 * - dirty && processing: queued again by done;
 * - in the heap: never dirty (making a key ready takes it out of the heap). */
typedef struct item {
    char *key;
    uint64_t hash;
    size_t heap_index; /* NOT_IN_HEAP, or its slot in the heap */
    int64_t deadline_ns;
    uint64_t seq; /* keeps equal deadlines in the order they were set */
    unsigned failures;
    bool dirty;
    bool processing;
} item;

struct workqueue {
    pthread_mutex_t lock;
    pthread_cond_t ready_cond; /* getters: a key may be ready, or the queue shut down */
    pthread_cond_t idle_cond;  /* shutdown_drain: a key was done, or the queue shut down */
    const moat_clock *clock;
    bool system_clock; /* deadlines are CLOCK_MONOTONIC, so getters can sleep until them */
    int64_t base_delay_ns;
    int64_t max_delay_ns;
    moat_ratelimiter limiter;
    uint64_t hash_key[2];

    /* Every tracked key, by name: open addressing, linear probing, at most half full. */
    item **slots;
    size_t slots_cap; /* 0 or a power of two */
    size_t n_items;

    /* Ready keys, first in first out. ring_cap and heap_cap are kept >= n_items, so
     * pushing never allocates: only creating an item can fail. */
    item **ring;
    size_t ring_cap, ring_head, ring_len;

    item **heap; /* min-heap on (deadline_ns, seq) */
    size_t heap_cap, heap_len;
    uint64_t next_seq;

    size_t n_processing;
    size_t n_dirty_processing;
    bool shutting_down; /* workqueue_shutdown */
    bool draining;      /* workqueue_shutdown_drain */
};

/* SipHash-2-4 with a per-queue random key: keys are object names that whoever may create
 * objects chooses, so a fixed hash would let them pile every key into one probe chain. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t siphash24(const char *data, size_t len, const uint64_t k[2])
{
    uint64_t v0 = k[0] ^ 0x736f6d6570736575ULL, v1 = k[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k[0] ^ 0x6c7967656e657261ULL, v3 = k[1] ^ 0x7465646279746573ULL;
    const unsigned char *p = (const unsigned char *)data;
    size_t i, full = len - len % 8;
    for (i = 0; i < full; i += 8) {
        uint64_t m = 0;
        for (int j = 0; j < 8; j++)
            m |= (uint64_t)p[i + j] << (8 * j);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (int j = 0; i < len; i++, j++)
        b |= (uint64_t)p[i] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    return a + b;
}

static void item_free(item *it)
{
    if (!it)
        return;
    free(it->key);
    free(it);
}

/* ---- the key table ---- */

/* Returns the slot holding key, or the empty slot where it would go. */
static size_t table_slot(const workqueue *q, const char *key, uint64_t hash)
{
    size_t mask = q->slots_cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask)
        if (!q->slots[i] || (q->slots[i]->hash == hash && strcmp(q->slots[i]->key, key) == 0))
            return i;
}

static item *table_find(const workqueue *q, const char *key)
{
    if (q->slots_cap == 0)
        return NULL;
    uint64_t hash = siphash24(key, strlen(key), q->hash_key);
    return q->slots[table_slot(q, key, hash)];
}

static int table_grow(workqueue *q, size_t cap)
{
    item **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < q->slots_cap; i++) {
        item *it = q->slots[i];
        if (!it)
            continue;
        size_t j = it->hash & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = it;
    }
    free(q->slots);
    q->slots = slots;
    q->slots_cap = cap;
    return 0;
}

/* Backward-shift deletion: no tombstones, so probe chains never outgrow the live keys. */
static void table_remove(workqueue *q, item *it)
{
    size_t mask = q->slots_cap - 1;
    size_t i = table_slot(q, it->key, it->hash);
    q->slots[i] = NULL;
    for (size_t j = (i + 1) & mask; q->slots[j]; j = (j + 1) & mask) {
        size_t home = q->slots[j]->hash & mask;
        /* The entry at j may move into the hole at i unless its home lies cyclically in
         * (i, j]: then the hole is before its home and it must stay. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        q->slots[i] = q->slots[j];
        q->slots[j] = NULL;
        i = j;
    }
    q->n_items--;
}

/* ---- the ready ring and the delay heap ---- */

static int ring_grow(workqueue *q, size_t cap)
{
    item **ring = malloc(cap * sizeof(*ring));
    if (!ring)
        return -1;
    for (size_t i = 0; i < q->ring_len; i++)
        ring[i] = q->ring[(q->ring_head + i) % q->ring_cap];
    free(q->ring);
    q->ring = ring;
    q->ring_cap = cap;
    q->ring_head = 0;
    return 0;
}

static void ring_push(workqueue *q, item *it)
{
    q->ring[(q->ring_head + q->ring_len) % q->ring_cap] = it;
    q->ring_len++;
}

static item *ring_pop(workqueue *q)
{
    item *it = q->ring[q->ring_head];
    q->ring_head = (q->ring_head + 1) % q->ring_cap;
    q->ring_len--;
    return it;
}

static bool heap_less(const item *a, const item *b)
{
    return a->deadline_ns < b->deadline_ns || (a->deadline_ns == b->deadline_ns && a->seq < b->seq);
}

static void heap_set(workqueue *q, size_t i, item *it)
{
    q->heap[i] = it;
    it->heap_index = i;
}

static void heap_up(workqueue *q, size_t i)
{
    item *it = q->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(it, q->heap[parent]))
            break;
        heap_set(q, i, q->heap[parent]);
        i = parent;
    }
    heap_set(q, i, it);
}

static void heap_down(workqueue *q, size_t i)
{
    item *it = q->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= q->heap_len)
            break;
        if (child + 1 < q->heap_len && heap_less(q->heap[child + 1], q->heap[child]))
            child++;
        if (!heap_less(q->heap[child], it))
            break;
        heap_set(q, i, q->heap[child]);
        i = child;
    }
    heap_set(q, i, it);
}

static void heap_push(workqueue *q, item *it)
{
    q->heap[q->heap_len] = it;
    it->heap_index = q->heap_len++;
    heap_up(q, it->heap_index);
}

static void heap_remove(workqueue *q, item *it)
{
    size_t i = it->heap_index;
    item *last = q->heap[--q->heap_len];
    it->heap_index = NOT_IN_HEAP;
    if (i == q->heap_len)
        return;
    heap_set(q, i, last);
    heap_up(q, i);
    heap_down(q, last->heap_index);
}

/* ---- items ---- */

static size_t grown(size_t cap, size_t need, size_t max)
{
    size_t n = cap ? cap : 16;
    while (n < need)
        n *= 2;
    return n < max ? n : max;
}

/* Makes room for one more item, so that later ring and heap pushes cannot fail. */
static int reserve_item(workqueue *q, moat_error *err)
{
    size_t need = q->n_items + 1;
    if (need > WORKQUEUE_MAX_KEYS)
        return moat_error_set(err, MOAT_E_NOMEM, "work queue already tracks %d keys, its limit",
                              WORKQUEUE_MAX_KEYS);
    if ((need * 2 > q->slots_cap &&
         table_grow(q, grown(q->slots_cap, need * 2, 2 * (size_t)WORKQUEUE_MAX_KEYS)) < 0) ||
        (need > q->ring_cap && ring_grow(q, grown(q->ring_cap, need, WORKQUEUE_MAX_KEYS)) < 0))
        return moat_error_set(err, MOAT_E_NOMEM, "work queue: out of memory for %zu keys", need);
    if (need > q->heap_cap) {
        size_t cap = grown(q->heap_cap, need, WORKQUEUE_MAX_KEYS);
        item **heap = realloc(q->heap, cap * sizeof(*heap));
        if (!heap)
            return moat_error_set(err, MOAT_E_NOMEM, "work queue: out of memory for %zu keys",
                                  need);
        q->heap = heap;
        q->heap_cap = cap;
    }
    return 0;
}

static int check_key(const char *key, moat_error *err)
{
    if (!key || !*key)
        return moat_error_set(err, MOAT_E_INVALID, "work queue: the key is empty");
    if (strnlen(key, WORKQUEUE_MAX_KEY_LEN + 1) > WORKQUEUE_MAX_KEY_LEN)
        return moat_error_set(err, MOAT_E_RANGE,
                              "work queue: key \"%.64s...\" is longer than %d bytes", key,
                              WORKQUEUE_MAX_KEY_LEN);
    return 0;
}

/* With the lock held: returns 0 and the item for key, created if new, or -1. */
static int item_get(workqueue *q, const char *key, item **ret, moat_error *err)
{
    if (q->shutting_down || q->draining)
        return moat_error_set(err, MOAT_E_CANCELED, "work queue: shutting down, \"%s\" not added",
                              key);
    item *it = table_find(q, key);
    if (it) {
        *ret = it;
        return 0;
    }
    if (reserve_item(q, err) < 0)
        return moat_error_prefix(err, "adding \"%s\"", key);
    _cleanup_free_ item *n = calloc(1, sizeof(*n));
    if (!n || !(n->key = strdup(key)))
        return moat_error_set(err, MOAT_E_NOMEM, "work queue: out of memory adding \"%s\"", key);
    n->hash = siphash24(key, strlen(key), q->hash_key);
    n->heap_index = NOT_IN_HEAP;
    q->slots[table_slot(q, key, n->hash)] = n;
    q->n_items++;
    *ret = TAKE_PTR(n);
    return 0;
}

/* Forgets an item nothing refers to any more. */
static void item_release_if_idle(workqueue *q, item *it)
{
    if (it->dirty || it->processing || it->heap_index != NOT_IN_HEAP || it->failures > 0)
        return;
    table_remove(q, it);
    item_free(it);
}

static void make_ready(workqueue *q, item *it)
{
    if (it->heap_index != NOT_IN_HEAP)
        heap_remove(q, it);
    if (it->dirty)
        return;
    it->dirty = true;
    if (it->processing) {
        q->n_dirty_processing++;
        return;
    }
    ring_push(q, it);
    pthread_cond_signal(&q->ready_cond);
}

static void add_after_locked(workqueue *q, item *it, int64_t delay_ns)
{
    if (delay_ns <= 0) {
        make_ready(q, it);
        return;
    }
    if (it->dirty) /* it runs sooner than the delay anyway */
        return;
    int64_t deadline = add_sat(moat_clock_now(q->clock), delay_ns);
    if (it->heap_index != NOT_IN_HEAP) {
        if (deadline >= it->deadline_ns)
            return;
        it->deadline_ns = deadline;
        heap_up(q, it->heap_index);
    } else {
        it->deadline_ns = deadline;
        it->seq = q->next_seq++;
        heap_push(q, it);
    }
    /* The nearest deadline may be earlier now: a sleeping getter must recompute its wait. */
    pthread_cond_signal(&q->ready_cond);
}

/* Moves every delayed key whose deadline has passed to the ready ring. */
static void promote_due(workqueue *q)
{
    if (q->heap_len == 0)
        return;
    int64_t now = moat_clock_now(q->clock);
    while (q->heap_len > 0 && q->heap[0]->deadline_ns <= now)
        make_ready(q, q->heap[0]);
}

/* ---- public API ---- */

int workqueue_new(workqueue **out, const workqueue_options *opts, moat_error *err)
{
    workqueue_options o = opts ? *opts : (workqueue_options){0};
    if (o.base_delay_ns < 0 || o.max_delay_ns < 0)
        return moat_error_set(err, MOAT_E_INVALID, "work queue: negative backoff delay");
    if (o.base_delay_ns == 0)
        o.base_delay_ns = DEFAULT_BASE_DELAY_NS;
    if (o.max_delay_ns == 0)
        o.max_delay_ns = DEFAULT_MAX_DELAY_NS;
    if (o.base_delay_ns > o.max_delay_ns)
        return moat_error_set(err, MOAT_E_INVALID,
                              "work queue: base delay %" PRId64 " ns above maximum %" PRId64 " ns",
                              o.base_delay_ns, o.max_delay_ns);
    if (o.qps == 0.0)
        o.qps = DEFAULT_QPS;
    if (o.burst == 0)
        o.burst = DEFAULT_BURST;
    if (!o.clock)
        o.clock = moat_clock_system();

    _cleanup_free_ workqueue *q = calloc(1, sizeof(*q));
    if (!q)
        return moat_error_set(err, MOAT_E_NOMEM, "work queue: out of memory");
    if (moat_ratelimiter_init(&q->limiter, o.qps, o.burst, o.clock, err) < 0)
        return moat_error_prefix(err, "work queue");

    pthread_condattr_t attr;
    int r = pthread_condattr_init(&attr);
    if (r == 0) {
        r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (r == 0)
            r = pthread_cond_init(&q->ready_cond, &attr);
        pthread_condattr_destroy(&attr);
    }
    if (r != 0) {
        moat_ratelimiter_destroy(&q->limiter);
        return moat_error_set_errno(err, r, "work queue: pthread_cond_init");
    }
    /* With default attributes these cannot fail on Linux. */
    (void)pthread_cond_init(&q->idle_cond, NULL);
    (void)pthread_mutex_init(&q->lock, NULL);

    q->clock = o.clock;
    q->system_clock = o.clock->now_ns == moat_clock_system()->now_ns;
    q->base_delay_ns = o.base_delay_ns;
    q->max_delay_ns = o.max_delay_ns;
    q->hash_key[0] = moat_random_u64();
    q->hash_key[1] = moat_random_u64();
    *out = TAKE_PTR(q);
    return 0;
}

void workqueue_free(workqueue *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->slots_cap; i++)
        item_free(q->slots[i]);
    free(q->slots);
    free(q->ring);
    free(q->heap);
    moat_ratelimiter_destroy(&q->limiter);
    pthread_cond_destroy(&q->ready_cond);
    pthread_cond_destroy(&q->idle_cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

int workqueue_add(workqueue *q, const char *key, moat_error *err)
{
    return workqueue_add_after(q, key, 0, err);
}

int workqueue_add_after(workqueue *q, const char *key, int64_t delay_ns, moat_error *err)
{
    if (check_key(key, err) < 0)
        return -1;
    pthread_mutex_lock(&q->lock);
    item *it;
    int r = item_get(q, key, &it, err);
    if (r == 0)
        add_after_locked(q, it, delay_ns);
    pthread_mutex_unlock(&q->lock);
    return r;
}

int workqueue_add_rate_limited(workqueue *q, const char *key, moat_error *err)
{
    if (check_key(key, err) < 0)
        return -1;
    pthread_mutex_lock(&q->lock);
    item *it;
    int r = item_get(q, key, &it, err);
    if (r == 0) {
        int64_t delay = moat_backoff_exponential(q->base_delay_ns, q->max_delay_ns, it->failures);
        if (it->failures < INT_MAX)
            it->failures++;
        /* Taken on every failure, as client-go's MaxOfRateLimiter does: the bucket bounds
         * the retry rate across all keys even while each key's own backoff is short. */
        int64_t global = moat_ratelimiter_reserve(&q->limiter);
        add_after_locked(q, it, delay > global ? delay : global);
    }
    pthread_mutex_unlock(&q->lock);
    return r;
}

int workqueue_add_backoff(workqueue *q, const char *key, int64_t cap_ns, moat_error *err)
{
    if (check_key(key, err) < 0)
        return -1;
    if (cap_ns < 0)
        return moat_error_set(err, MOAT_E_INVALID, "workqueue: negative backoff cap");
    pthread_mutex_lock(&q->lock);
    item *it;
    int r = item_get(q, key, &it, err);
    if (r == 0) {
        int64_t cap = cap_ns > 0 && cap_ns < q->max_delay_ns ? cap_ns : q->max_delay_ns;
        int64_t base = q->base_delay_ns < cap ? q->base_delay_ns : cap;
        int64_t delay = moat_backoff_exponential(base, cap, it->failures);
        if (it->failures < INT_MAX)
            it->failures++;
        add_after_locked(q, it, delay);
    }
    pthread_mutex_unlock(&q->lock);
    return r;
}

void workqueue_forget(workqueue *q, const char *key)
{
    if (!key)
        return;
    pthread_mutex_lock(&q->lock);
    item *it = table_find(q, key);
    if (it) {
        it->failures = 0;
        item_release_if_idle(q, it);
    }
    pthread_mutex_unlock(&q->lock);
}

int workqueue_num_requeues(workqueue *q, const char *key)
{
    if (!key)
        return 0;
    pthread_mutex_lock(&q->lock);
    item *it = table_find(q, key);
    int n = it ? (int)it->failures : 0;
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* With the lock held: 0 and a key, 1 when none is ready, 2 when the ready key could not
 * be copied, -1 when shut down (or drained). */
static int take_locked(workqueue *q, char **ret_key)
{
    if (q->shutting_down)
        return -1;
    /* A drain promoted what was due when it began; later deadlines are dropped, or the
     * drain's end would depend on how fast the workers are. */
    if (!q->draining)
        promote_due(q);
    if (q->ring_len == 0)
        return q->draining && q->n_dirty_processing == 0 ? -1 : 1;
    char *copy = strdup(q->ring[q->ring_head]->key);
    if (!copy)
        return 2;
    item *it = ring_pop(q);
    it->dirty = false;
    it->processing = true;
    q->n_processing++;
    /* Hand on the wake-up: another getter may take the next ready key, or must sleep
     * until the nearest deadline in our place. */
    if (q->ring_len > 0 || q->heap_len > 0)
        pthread_cond_signal(&q->ready_cond);
    *ret_key = copy;
    return 0;
}

static struct timespec timespec_from_ns(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
}

int workqueue_get(workqueue *q, char **ret_key)
{
    pthread_mutex_lock(&q->lock);
    int r;
    while ((r = take_locked(q, ret_key)) > 0) {
        if (r == 1 && q->heap_len == 0) {
            pthread_cond_wait(&q->ready_cond, &q->lock);
            continue;
        }
        /* Sleep until the nearest deadline when it is on CLOCK_MONOTONIC; poll a clock
         * the condition variable cannot sleep on, and retry a failed copy, every POLL_NS.
         * A later deadline or an add wakes us through the condition variable. */
        int64_t until;
        if (r == 1 && q->system_clock) {
            until = q->heap[0]->deadline_ns;
        } else {
            struct timespec now;
            (void)clock_gettime(CLOCK_MONOTONIC, &now);
            until = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec + POLL_NS;
        }
        struct timespec ts = timespec_from_ns(until);
        pthread_cond_timedwait(&q->ready_cond, &q->lock, &ts);
    }
    pthread_mutex_unlock(&q->lock);
    return r;
}

int workqueue_try_get(workqueue *q, char **ret_key)
{
    pthread_mutex_lock(&q->lock);
    int r = take_locked(q, ret_key);
    pthread_mutex_unlock(&q->lock);
    return r > 0 ? 1 : r;
}

void workqueue_done(workqueue *q, const char *key)
{
    if (!key)
        return;
    pthread_mutex_lock(&q->lock);
    item *it = table_find(q, key);
    if (it && it->processing) {
        it->processing = false;
        q->n_processing--;
        if (it->dirty) {
            q->n_dirty_processing--;
            ring_push(q, it);
            pthread_cond_signal(&q->ready_cond);
        } else {
            item_release_if_idle(q, it);
        }
        /* While draining, a getter waiting for this key to come back must learn that it
         * will not, and return -1; and the drain may be complete. */
        if (q->draining) {
            pthread_cond_broadcast(&q->ready_cond);
            pthread_cond_broadcast(&q->idle_cond);
        }
    }
    pthread_mutex_unlock(&q->lock);
}

size_t workqueue_len(workqueue *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->ring_len + q->heap_len;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void workqueue_shutdown(workqueue *q)
{
    pthread_mutex_lock(&q->lock);
    q->shutting_down = true;
    pthread_cond_broadcast(&q->ready_cond);
    pthread_cond_broadcast(&q->idle_cond);
    pthread_mutex_unlock(&q->lock);
}

void workqueue_shutdown_drain(workqueue *q)
{
    pthread_mutex_lock(&q->lock);
    if (!q->draining && !q->shutting_down) {
        promote_due(q);
        /* What is not due yet is dropped (keeping only the failure counts). */
        while (q->heap_len > 0) {
            item *it = q->heap[--q->heap_len];
            it->heap_index = NOT_IN_HEAP;
            item_release_if_idle(q, it);
        }
    }
    q->draining = true;
    pthread_cond_broadcast(&q->ready_cond);
    /* Waiting for in-flight keys alone would return in the moment between a done that
     * queues its dirty key again and the get that takes it. */
    while (!q->shutting_down && (q->n_processing > 0 || q->ring_len > 0))
        pthread_cond_wait(&q->idle_cond, &q->lock);
    pthread_mutex_unlock(&q->lock);
}

bool workqueue_is_shutting_down(workqueue *q)
{
    pthread_mutex_lock(&q->lock);
    bool r = q->shutting_down || q->draining;
    pthread_mutex_unlock(&q->lock);
    return r;
}
