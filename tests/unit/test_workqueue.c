#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "libmoat/clock.h"
#include "libmoat/workqueue.h"

#define MS 1000000LL
#define S  1000000000LL

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static workqueue *new_queue(const moat_clock *clock)
{
    moat_error err = MOAT_ERROR_INIT;
    workqueue_options opts = {.clock = clock};
    workqueue *q = NULL;
    if (workqueue_new(&q, &opts, &err) < 0)
        fail_msg("workqueue_new: %s", err.message);
    return q;
}

static void add_ok(workqueue *q, const char *key)
{
    moat_error err = MOAT_ERROR_INIT;
    if (workqueue_add(q, key, &err) < 0)
        fail_msg("add %s: %s", key, err.message);
}

/* try_get must hand out exactly `want`; the key is then done and freed. */
static void expect_key(workqueue *q, const char *want)
{
    char *key = NULL;
    int r = workqueue_try_get(q, &key);
    if (r != 0)
        fail_msg("expected \"%s\", try_get returned %d", want, r);
    assert_string_equal(key, want);
    workqueue_done(q, key);
    free(key);
}

static void expect_nothing(workqueue *q)
{
    char *key = NULL;
    int r = workqueue_try_get(q, &key);
    if (r != 1)
        fail_msg("expected nothing ready, try_get returned %d (%s)", r, r == 0 ? key : "");
    assert_null(key);
}

static void test_new_invalid(void **state)
{
    moat_error err = MOAT_ERROR_INIT;
    workqueue *q = (workqueue *)&err; /* must stay untouched */
    workqueue_options bad[] = {
        {.base_delay_ns = -1},
        {.max_delay_ns = -1},
        {.base_delay_ns = 2 * S, .max_delay_ns = 1 * S},
        {.qps = -1.0},
        {.burst = -5},
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        assert_int_equal(workqueue_new(&q, &bad[i], &err), -1);
        assert_int_equal(err.code, MOAT_E_INVALID);
        assert_non_null(err.message);
        assert_ptr_equal(q, (workqueue *)&err);
    }
    moat_error_clear(&err);

    assert_int_equal(workqueue_new(&q, NULL, &err), 0);
    workqueue_free(q);
    workqueue_free(NULL);
}

static void test_add_invalid_key(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    workqueue *q = new_queue(moat_fake_clock_get(&clock));
    moat_error err = MOAT_ERROR_INIT;

    assert_int_equal(workqueue_add(q, "", &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_int_equal(workqueue_add_after(q, NULL, 5, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);

    char *long_key = malloc(WORKQUEUE_MAX_KEY_LEN + 2);
    memset(long_key, 'x', WORKQUEUE_MAX_KEY_LEN + 1);
    long_key[WORKQUEUE_MAX_KEY_LEN + 1] = '\0';
    assert_int_equal(workqueue_add_rate_limited(q, long_key, &err), -1);
    assert_int_equal(err.code, MOAT_E_RANGE);
    long_key[WORKQUEUE_MAX_KEY_LEN] = '\0'; /* exactly the limit is fine */
    assert_int_equal(workqueue_add(q, long_key, &err), 0);
    expect_key(q, long_key);
    free(long_key);
    moat_error_clear(&err);
    assert_int_equal(workqueue_len(q), 0);
    workqueue_free(q);
}

static void test_dedup(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    workqueue *q = new_queue(moat_fake_clock_get(&clock));

    add_ok(q, "ns/a");
    add_ok(q, "ns/b");
    add_ok(q, "ns/a");
    add_ok(q, "ns/b");
    add_ok(q, "ns/c");
    assert_int_equal(workqueue_len(q), 3);
    /* first in, first out */
    expect_key(q, "ns/a");
    expect_key(q, "ns/b");
    expect_key(q, "ns/c");
    expect_nothing(q);
    assert_int_equal(workqueue_len(q), 0);
    workqueue_free(q);
}

static void test_dirty_readd_after_done(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    workqueue *q = new_queue(moat_fake_clock_get(&clock));

    add_ok(q, "ns/a");
    char *key = NULL;
    assert_int_equal(workqueue_try_get(q, &key), 0);
    assert_string_equal(key, "ns/a");

    /* added twice while processing: not handed to another worker, queued once on done */
    add_ok(q, "ns/a");
    add_ok(q, "ns/a");
    add_ok(q, "ns/b");
    expect_key(q, "ns/b");
    expect_nothing(q);
    workqueue_done(q, key);
    free(key);
    assert_int_equal(workqueue_len(q), 1);
    expect_key(q, "ns/a");
    expect_nothing(q);

    /* done for a key not being processed is ignored */
    workqueue_done(q, "ns/a");
    workqueue_done(q, "ns/never");
    expect_nothing(q);
    workqueue_free(q);
}

static void test_add_after_ordering(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 5 * S);
    workqueue *q = new_queue(moat_fake_clock_get(&clock));
    moat_error err = MOAT_ERROR_INIT;

    assert_int_equal(workqueue_add_after(q, "ns/c", 30 * MS, &err), 0);
    assert_int_equal(workqueue_add_after(q, "ns/a", 10 * MS, &err), 0);
    assert_int_equal(workqueue_add_after(q, "ns/b", 20 * MS, &err), 0);
    assert_int_equal(workqueue_add_after(q, "ns/d", 20 * MS, &err), 0); /* ties: FIFO */
    assert_int_equal(workqueue_len(q), 4);
    expect_nothing(q);

    moat_fake_clock_advance(&clock, 10 * MS - 1);
    expect_nothing(q);
    moat_fake_clock_advance(&clock, 1);
    expect_key(q, "ns/a");
    expect_nothing(q);
    moat_fake_clock_advance(&clock, 100 * MS); /* all due at once: in deadline order */
    expect_key(q, "ns/b");
    expect_key(q, "ns/d");
    expect_key(q, "ns/c");
    expect_nothing(q);

    /* the earliest deadline wins, whichever order the adds come in */
    assert_int_equal(workqueue_add_after(q, "ns/x", 50 * MS, &err), 0);
    assert_int_equal(workqueue_add_after(q, "ns/x", 20 * MS, &err), 0);
    assert_int_equal(workqueue_add_after(q, "ns/y", 10 * MS, &err), 0);
    assert_int_equal(workqueue_add_after(q, "ns/y", 40 * MS, &err), 0);
    assert_int_equal(workqueue_len(q), 2);
    moat_fake_clock_advance(&clock, 10 * MS);
    expect_key(q, "ns/y");
    expect_nothing(q);
    moat_fake_clock_advance(&clock, 10 * MS);
    expect_key(q, "ns/x");
    moat_fake_clock_advance(&clock, 100 * MS);
    expect_nothing(q);

    /* an immediate add supersedes a delay; a delay does not postpone a ready key */
    assert_int_equal(workqueue_add_after(q, "ns/z", 1 * S, &err), 0);
    add_ok(q, "ns/z");
    assert_int_equal(workqueue_len(q), 1);
    assert_int_equal(workqueue_add_after(q, "ns/z", 1 * S, &err), 0);
    assert_int_equal(workqueue_len(q), 1);
    expect_key(q, "ns/z");
    moat_fake_clock_advance(&clock, 2 * S);
    expect_nothing(q);
    assert_int_equal(workqueue_len(q), 0);

    /* a zero or negative delay is an add */
    assert_int_equal(workqueue_add_after(q, "ns/now", 0, &err), 0);
    assert_int_equal(workqueue_add_after(q, "ns/past", -5 * S, &err), 0);
    expect_key(q, "ns/now");
    expect_key(q, "ns/past");

    /* a key whose delay ends while it is processed comes back after done */
    add_ok(q, "ns/p");
    char *key = NULL;
    assert_int_equal(workqueue_try_get(q, &key), 0);
    assert_int_equal(workqueue_add_after(q, "ns/p", 5 * MS, &err), 0);
    moat_fake_clock_advance(&clock, 5 * MS);
    expect_nothing(q);
    workqueue_done(q, key);
    free(key);
    expect_key(q, "ns/p");

    /* a huge delay saturates instead of overflowing */
    assert_int_equal(workqueue_add_after(q, "ns/far", INT64_MAX, &err), 0);
    moat_fake_clock_advance(&clock, 1000 * S);
    expect_nothing(q);
    assert_int_equal(workqueue_len(q), 1);
    workqueue_free(q); /* frees the key still delayed (ASan checks) */
}

/* The key becomes ready 'delay' after the add; not one nanosecond earlier. */
static void expect_after(workqueue *q, moat_fake_clock *clock, const char *want, int64_t delay)
{
    expect_nothing(q);
    moat_fake_clock_advance(clock, delay - 1);
    expect_nothing(q);
    moat_fake_clock_advance(clock, 1);
    expect_key(q, want);
}

static void test_rate_limited_backoff(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    workqueue *q = new_queue(moat_fake_clock_get(&clock));
    moat_error err = MOAT_ERROR_INIT;
    const int64_t want[] = {5 * MS, 10 * MS, 20 * MS, 40 * MS, 80 * MS};

    assert_int_equal(workqueue_num_requeues(q, "ns/a"), 0);
    for (size_t i = 0; i < ELEMENTSOF(want); i++) {
        assert_int_equal(workqueue_add_rate_limited(q, "ns/a", &err), 0);
        assert_int_equal(workqueue_num_requeues(q, "ns/a"), (int)i + 1);
        expect_after(q, &clock, "ns/a", want[i]);
    }
    /* per key: another key starts at the base delay */
    assert_int_equal(workqueue_add_rate_limited(q, "ns/b", &err), 0);
    expect_after(q, &clock, "ns/b", 5 * MS);

    workqueue_forget(q, "ns/a");
    assert_int_equal(workqueue_num_requeues(q, "ns/a"), 0);
    assert_int_equal(workqueue_num_requeues(q, "ns/b"), 1);
    assert_int_equal(workqueue_add_rate_limited(q, "ns/a", &err), 0);
    expect_after(q, &clock, "ns/a", 5 * MS);
    assert_int_equal(workqueue_add_rate_limited(q, "ns/a", &err), 0);
    expect_after(q, &clock, "ns/a", 10 * MS);
    workqueue_forget(q, "ns/a");
    workqueue_forget(q, "ns/b");
    workqueue_forget(q, "ns/unknown");
    workqueue_free(q);
}

static void test_rate_limited_cap(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    moat_error err = MOAT_ERROR_INIT;
    workqueue_options opts = {
        .base_delay_ns = 1 * MS,
        .max_delay_ns = 6 * MS,
        .qps = 1e6,
        .burst = 1000,
        .clock = moat_fake_clock_get(&clock),
    };
    workqueue *q = NULL;
    assert_int_equal(workqueue_new(&q, &opts, &err), 0);
    const int64_t want[] = {1 * MS, 2 * MS, 4 * MS, 6 * MS, 6 * MS, 6 * MS};
    for (size_t i = 0; i < ELEMENTSOF(want); i++) {
        assert_int_equal(workqueue_add_rate_limited(q, "ns/a", &err), 0);
        expect_after(q, &clock, "ns/a", want[i]);
    }
    /* many failures later the delay is still the cap: no overflow of the shift */
    for (int i = 0; i < 300; i++) {
        assert_int_equal(workqueue_add_rate_limited(q, "ns/a", &err), 0);
        moat_fake_clock_advance(&clock, 6 * MS);
        expect_key(q, "ns/a");
    }
    assert_int_equal(workqueue_num_requeues(q, "ns/a"), 306);
    workqueue_free(q);
}

/* A key that waits to be woken: its own backoff, capped, and no token from the bucket. */
static void test_backoff_without_bucket(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    workqueue *q = new_queue(moat_fake_clock_get(&clock)); /* 10 qps, burst 100 */
    moat_error err = MOAT_ERROR_INIT;
    char key[32];

    assert_int_equal(workqueue_add_backoff(q, "ns/a", -1, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);
    /* 300 waiting keys, three times each, cost the bucket nothing ... */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 300; i++) {
            snprintf(key, sizeof(key), "ns/w%d", i);
            assert_int_equal(workqueue_add_backoff(q, key, 0, &err), 0);
        }
        moat_fake_clock_advance(&clock, (5 * MS) << round);
        for (int i = 0; i < 300; i++) {
            snprintf(key, sizeof(key), "ns/w%d", i);
            expect_key(q, key);
        }
    }
    /* ... so a failing key still has the whole burst: its own 5 ms, no more */
    assert_int_equal(workqueue_add_rate_limited(q, "ns/fail", &err), 0);
    expect_after(q, &clock, "ns/fail", 5 * MS);

    /* the cap given, then the queue's own */
    const int64_t want[] = {5 * MS, 10 * MS, 20 * MS, 30 * MS, 30 * MS};
    for (size_t i = 0; i < ELEMENTSOF(want); i++) {
        assert_int_equal(workqueue_add_backoff(q, "ns/c", 30 * MS, &err), 0);
        expect_after(q, &clock, "ns/c", want[i]);
    }
    assert_int_equal(workqueue_add_backoff(q, "ns/c", 0, &err), 0);
    expect_after(q, &clock, "ns/c", 5 * MS << 5);
    assert_int_equal(workqueue_num_requeues(q, "ns/c"), 6);

    /* woken: an add makes a waiting key ready at once */
    assert_int_equal(workqueue_add_backoff(q, "ns/c", 0, &err), 0);
    expect_nothing(q);
    add_ok(q, "ns/c");
    expect_key(q, "ns/c");
    workqueue_free(q);
}

static void test_global_rate_limit(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    workqueue *q = new_queue(moat_fake_clock_get(&clock)); /* 10 qps, burst 100 */
    moat_error err = MOAT_ERROR_INIT;
    char key[32];

    /* 100 different keys at once fit the burst: each waits only its own 5 ms */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "ns/k%d", i);
        assert_int_equal(workqueue_add_rate_limited(q, key, &err), 0);
    }
    /* the 101st and 102nd wait for the bucket: one token per 100 ms */
    assert_int_equal(workqueue_add_rate_limited(q, "ns/late1", &err), 0);
    assert_int_equal(workqueue_add_rate_limited(q, "ns/late2", &err), 0);
    assert_int_equal(workqueue_len(q), 102);

    moat_fake_clock_advance(&clock, 5 * MS);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "ns/k%d", i);
        expect_key(q, key);
        workqueue_forget(q, key);
    }
    expect_nothing(q);
    moat_fake_clock_advance(&clock, 95 * MS - 1);
    expect_nothing(q);
    moat_fake_clock_advance(&clock, 1);
    expect_key(q, "ns/late1");
    moat_fake_clock_advance(&clock, 100 * MS - 1);
    expect_nothing(q);
    moat_fake_clock_advance(&clock, 1);
    expect_key(q, "ns/late2");
    assert_int_equal(workqueue_len(q), 0);
    workqueue_free(q);
}

/* ---- threads ---- */

#define HAMMER_KEYS    4
#define HAMMER_THREADS 4

static const char *const hammer_keys[HAMMER_KEYS] = {"ns/a", "ns/b", "ns/c", "ns/d"};

typedef struct {
    workqueue *q;
    atomic_int in_flight[HAMMER_KEYS];
    atomic_int violations; /* cmocka's asserts are not for other threads: count, check later */
    atomic_long processed;
    int iterations;
} hammer;

typedef struct {
    hammer *h;
    unsigned seed;
} hammer_thread;

/* What a worker does with a key: never two at once, sometimes re-added (dirty). */
static void hammer_process(hammer *h, char *key, unsigned *seed)
{
    int i = 0;
    while (i < HAMMER_KEYS && strcmp(key, hammer_keys[i]) != 0)
        i++;
    if (i == HAMMER_KEYS) {
        atomic_fetch_add(&h->violations, 1);
    } else {
        if (atomic_fetch_add(&h->in_flight[i], 1) != 0)
            atomic_fetch_add(&h->violations, 1);
        if (rand_r(seed) % 2)
            sched_yield(); /* widen the window for a second worker */
        if (rand_r(seed) % 3 == 0)
            (void)workqueue_add(h->q, key, NULL); /* fails once draining: fine */
        /* before done: after it, another worker may take the key at once */
        atomic_fetch_sub(&h->in_flight[i], 1);
    }
    workqueue_done(h->q, key);
    free(key);
    atomic_fetch_add(&h->processed, 1);
}

static void *hammer_try_get_thread(void *arg)
{
    hammer_thread *t = arg;
    for (int n = 0; n < t->h->iterations; n++) {
        if (workqueue_add(t->h->q, hammer_keys[rand_r(&t->seed) % HAMMER_KEYS], NULL) < 0)
            atomic_fetch_add(&t->h->violations, 1);
        char *key;
        if (workqueue_try_get(t->h->q, &key) == 0)
            hammer_process(t->h, key, &t->seed);
    }
    return NULL;
}

static void test_never_two_workers(void **state)
{
    hammer h = {.q = new_queue(NULL), .iterations = 20000};
    hammer_thread t[HAMMER_THREADS];
    pthread_t threads[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; i++) {
        t[i] = (hammer_thread){&h, (unsigned)i + 1};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer_try_get_thread, &t[i]), 0);
    }
    for (int i = 0; i < HAMMER_THREADS; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(atomic_load(&h.violations), 0);
    assert_true(atomic_load(&h.processed) > 0);

    /* what is left is at most one of each key */
    assert_true(workqueue_len(h.q) <= HAMMER_KEYS);
    char *key;
    unsigned seed = 0;
    while (workqueue_try_get(h.q, &key) == 0)
        hammer_process(&h, key, &seed);
    assert_int_equal(workqueue_len(h.q), 0);
    assert_int_equal(atomic_load(&h.violations), 0);
    workqueue_free(h.q);
}

static void *hammer_get_thread(void *arg)
{
    hammer_thread *t = arg;
    char *key;
    while (workqueue_get(t->h->q, &key) == 0)
        hammer_process(t->h, key, &t->seed);
    return NULL;
}

/* Blocking getters against a producer, ended by a drain. */
static void test_never_two_workers_blocking(void **state)
{
    hammer h = {.q = new_queue(NULL)};
    hammer_thread t[HAMMER_THREADS];
    pthread_t threads[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; i++) {
        t[i] = (hammer_thread){&h, (unsigned)i + 100};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer_get_thread, &t[i]), 0);
    }
    moat_error err = MOAT_ERROR_INIT;
    for (int n = 0; n < 20000; n++) {
        assert_int_equal(workqueue_add(h.q, hammer_keys[n % HAMMER_KEYS], &err), 0);
        if (n % 64 == 0)
            sched_yield();
        if (n % 1000 == 0) /* some delayed keys too: they wake sleeping getters */
            assert_int_equal(workqueue_add_after(h.q, hammer_keys[n % 3], 1 * MS, &err), 0);
    }
    workqueue_shutdown_drain(h.q);
    for (int i = 0; i < HAMMER_THREADS; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(atomic_load(&h.violations), 0);
    assert_true(atomic_load(&h.processed) > 0);
    for (int i = 0; i < HAMMER_KEYS; i++)
        assert_int_equal(atomic_load(&h.in_flight[i]), 0);
    char *key = NULL;
    assert_int_equal(workqueue_try_get(h.q, &key), -1);
    workqueue_free(h.q);
}

typedef struct {
    workqueue *q;
    char *key;
    int result;
    atomic_bool finished;
} getter;

static void *getter_thread(void *arg)
{
    getter *g = arg;
    g->result = workqueue_get(g->q, &g->key);
    atomic_store(&g->finished, true);
    return NULL;
}

static void test_shutdown_wakes_blocked_getter(void **state)
{
    getter g[2] = {{.q = new_queue(NULL)}, {0}};
    g[1].q = g[0].q;
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, getter_thread, &g[i]), 0);
    sleep_ms(50);
    assert_false(atomic_load(&g[0].finished));
    assert_false(atomic_load(&g[1].finished));

    workqueue_shutdown(g[0].q);
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(g[i].result, -1);
        assert_null(g[i].key);
    }
    assert_true(workqueue_is_shutting_down(g[0].q));

    /* afterwards: adds fail, gets return -1 at once even with keys queued */
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(workqueue_add(g[0].q, "ns/a", &err), -1);
    assert_int_equal(err.code, MOAT_E_CANCELED);
    assert_int_equal(workqueue_add_rate_limited(g[0].q, "ns/a", &err), -1);
    assert_int_equal(workqueue_num_requeues(g[0].q, "ns/a"), 0);
    moat_error_clear(&err);
    char *key = NULL;
    assert_int_equal(workqueue_get(g[0].q, &key), -1);
    assert_int_equal(workqueue_try_get(g[0].q, &key), -1);
    workqueue_free(g[0].q);
}

static void test_shutdown_discards_ready_keys(void **state)
{
    workqueue *q = new_queue(NULL);
    add_ok(q, "ns/a");
    char *held = NULL;
    assert_int_equal(workqueue_try_get(q, &held), 0);
    add_ok(q, "ns/a"); /* dirty */
    add_ok(q, "ns/b");
    workqueue_shutdown(q);
    char *key = NULL;
    assert_int_equal(workqueue_get(q, &key), -1);
    assert_null(key);
    workqueue_done(q, held); /* still allowed */
    free(held);
    assert_int_equal(workqueue_try_get(q, &key), -1);
    workqueue_free(q); /* frees the queued keys (ASan checks) */
}

static void test_get_waits_for_deadline(void **state)
{
    workqueue *q = new_queue(NULL);
    moat_error err = MOAT_ERROR_INIT;
    const moat_clock *sys = moat_clock_system();
    int64_t start = moat_clock_now(sys);
    assert_int_equal(workqueue_add_after(q, "ns/later", 30 * MS, &err), 0);
    assert_int_equal(workqueue_add_after(q, "ns/soon", 10 * MS, &err), 0);
    char *key = NULL;
    assert_int_equal(workqueue_get(q, &key), 0);
    assert_string_equal(key, "ns/soon");
    assert_true(moat_clock_now(sys) - start >= 10 * MS);
    workqueue_done(q, key);
    free(key);
    assert_int_equal(workqueue_get(q, &key), 0);
    assert_string_equal(key, "ns/later");
    assert_true(moat_clock_now(sys) - start >= 30 * MS);
    workqueue_done(q, key);
    free(key);
    workqueue_free(q);
}

/* A getter asleep on a far deadline is woken by an add with a nearer one. */
static void test_get_woken_by_nearer_deadline(void **state)
{
    getter g = {.q = new_queue(NULL)};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(workqueue_add_after(g.q, "ns/far", 3600 * S, &err), 0);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, getter_thread, &g), 0);
    sleep_ms(20);
    assert_int_equal(workqueue_add_after(g.q, "ns/near", 10 * MS, &err), 0);
    pthread_join(thread, NULL);
    assert_int_equal(g.result, 0);
    assert_string_equal(g.key, "ns/near");
    workqueue_done(g.q, g.key);
    free(g.key);
    workqueue_free(g.q);
}

static void test_get_with_fake_clock(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    getter g = {.q = new_queue(moat_fake_clock_get(&clock))};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(workqueue_add_after(g.q, "ns/a", 1 * S, &err), 0);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, getter_thread, &g), 0);
    sleep_ms(30); /* real time passes; the fake clock does not */
    assert_false(atomic_load(&g.finished));
    moat_fake_clock_advance(&clock, 1 * S);
    pthread_join(thread, NULL); /* the getter polls the fake clock */
    assert_int_equal(g.result, 0);
    assert_string_equal(g.key, "ns/a");
    workqueue_done(g.q, g.key);
    free(g.key);
    workqueue_free(g.q);
}

typedef struct {
    workqueue *q;
    atomic_bool finished;
} drainer;

static void *drain_thread(void *arg)
{
    drainer *d = arg;
    workqueue_shutdown_drain(d->q);
    atomic_store(&d->finished, true);
    return NULL;
}

static void test_drain(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    drainer d = {.q = new_queue(moat_fake_clock_get(&clock))};
    moat_error err = MOAT_ERROR_INIT;

    add_ok(d.q, "ns/a");
    add_ok(d.q, "ns/b");
    add_ok(d.q, "ns/c");
    assert_int_equal(workqueue_add_after(d.q, "ns/delayed", 1 * S, &err), 0);
    assert_int_equal(workqueue_add_after(d.q, "ns/due", 1 * MS, &err), 0);
    moat_fake_clock_advance(&clock, 1 * MS); /* due when the drain starts: still handed out */
    char *a = NULL, *b = NULL;
    assert_int_equal(workqueue_try_get(d.q, &a), 0);
    assert_string_equal(a, "ns/a");
    add_ok(d.q, "ns/a"); /* dirty: comes back after done, drain or not */

    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, drain_thread, &d), 0);
    while (!workqueue_is_shutting_down(d.q))
        sleep_ms(1);
    assert_int_equal(workqueue_add(d.q, "ns/new", &err), -1);
    assert_int_equal(err.code, MOAT_E_CANCELED);
    moat_error_clear(&err);

    /* getters still receive what was ready */
    assert_int_equal(workqueue_try_get(d.q, &b), 0);
    assert_string_equal(b, "ns/b");
    expect_key(d.q, "ns/c");
    expect_key(d.q, "ns/due");
    /* nothing ready, but ns/a will come back: not the end yet */
    expect_nothing(d.q);
    sleep_ms(20);
    assert_false(atomic_load(&d.finished)); /* two keys in flight */

    workqueue_done(d.q, a);
    free(a);
    expect_key(d.q, "ns/a");
    /* nothing ready, nothing coming back: getters are told to stop */
    char *key = NULL;
    assert_int_equal(workqueue_try_get(d.q, &key), -1);
    assert_int_equal(workqueue_get(d.q, &key), -1);
    sleep_ms(20);
    assert_false(atomic_load(&d.finished)); /* ns/b still in flight */

    workqueue_done(d.q, b);
    free(b);
    pthread_join(thread, NULL);
    assert_true(atomic_load(&d.finished));
    /* the delayed key was dropped, even once due */
    assert_int_equal(workqueue_len(d.q), 0);
    moat_fake_clock_advance(&clock, 2 * S);
    assert_int_equal(workqueue_try_get(d.q, &key), -1);
    workqueue_free(d.q);
}

/* During a drain, a getter waits for a dirty key in flight to come back, and returns -1
 * when no key can come back. */
static void test_drain_wakes_blocked_getter(void **state)
{
    getter g = {.q = new_queue(NULL)};
    add_ok(g.q, "ns/a");
    char *a = NULL;
    assert_int_equal(workqueue_try_get(g.q, &a), 0);
    add_ok(g.q, "ns/a"); /* dirty */

    drainer d = {.q = g.q};
    pthread_t drain, get;
    assert_int_equal(pthread_create(&drain, NULL, drain_thread, &d), 0);
    while (!workqueue_is_shutting_down(g.q))
        sleep_ms(1);
    assert_int_equal(pthread_create(&get, NULL, getter_thread, &g), 0);
    sleep_ms(20);
    assert_false(atomic_load(&g.finished)); /* waits: ns/a is dirty */
    workqueue_done(g.q, a);
    free(a);
    pthread_join(get, NULL);
    assert_int_equal(g.result, 0);
    assert_string_equal(g.key, "ns/a");

    /* ns/a is in flight but not dirty: nothing can come back, so get returns -1 */
    char *held = TAKE_PTR(g.key);
    atomic_store(&g.finished, false);
    assert_int_equal(pthread_create(&get, NULL, getter_thread, &g), 0);
    pthread_join(get, NULL);
    assert_int_equal(g.result, -1);
    assert_null(g.key);
    sleep_ms(20);
    assert_false(atomic_load(&d.finished)); /* ns/a still in flight */
    workqueue_done(g.q, held);
    free(held);
    pthread_join(drain, NULL);
    assert_true(atomic_load(&d.finished));
    workqueue_free(g.q);
}

/* A drain with nobody to take the ready keys waits; shutdown ends it. */
static void test_shutdown_ends_drain(void **state)
{
    drainer d = {.q = new_queue(NULL)};
    add_ok(d.q, "ns/a");
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, drain_thread, &d), 0);
    sleep_ms(20);
    assert_false(atomic_load(&d.finished));
    workqueue_shutdown(d.q);
    pthread_join(thread, NULL);
    assert_true(atomic_load(&d.finished));
    char *key = NULL;
    assert_int_equal(workqueue_get(d.q, &key), -1);
    workqueue_free(d.q);
}

static void test_drain_empty_returns_at_once(void **state)
{
    workqueue *q = new_queue(NULL);
    workqueue_shutdown_drain(q);
    char *key = NULL;
    assert_int_equal(workqueue_get(q, &key), -1);
    workqueue_free(q);
}

static void test_key_cap(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    workqueue *q = new_queue(moat_fake_clock_get(&clock));
    moat_error err = MOAT_ERROR_INIT;
    char key[32];
    for (int i = 0; i < WORKQUEUE_MAX_KEYS; i++) {
        snprintf(key, sizeof(key), "ns/k%d", i);
        if (workqueue_add(q, key, &err) < 0)
            fail_msg("add %s: %s", key, err.message);
    }
    assert_int_equal(workqueue_len(q), WORKQUEUE_MAX_KEYS);
    assert_int_equal(workqueue_add(q, "ns/one-too-many", &err), -1);
    assert_int_equal(err.code, MOAT_E_NOMEM);
    assert_non_null(strstr(err.message, "ns/one-too-many"));
    moat_error_clear(&err);
    /* a key already tracked can still be added */
    assert_int_equal(workqueue_add(q, "ns/k7", &err), 0);

    /* handing keys out and finishing them makes room again */
    expect_key(q, "ns/k0");
    assert_int_equal(workqueue_add(q, "ns/one-too-many", &err), 0);
    for (int i = 1; i < 1000; i++) {
        snprintf(key, sizeof(key), "ns/k%d", i);
        expect_key(q, key);
    }
    assert_int_equal(workqueue_len(q), WORKQUEUE_MAX_KEYS - 999);
    workqueue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_invalid),
        cmocka_unit_test(test_add_invalid_key),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_dirty_readd_after_done),
        cmocka_unit_test(test_add_after_ordering),
        cmocka_unit_test(test_rate_limited_backoff),
        cmocka_unit_test(test_rate_limited_cap),
        cmocka_unit_test(test_backoff_without_bucket),
        cmocka_unit_test(test_global_rate_limit),
        cmocka_unit_test(test_never_two_workers),
        cmocka_unit_test(test_never_two_workers_blocking),
        cmocka_unit_test(test_shutdown_wakes_blocked_getter),
        cmocka_unit_test(test_shutdown_discards_ready_keys),
        cmocka_unit_test(test_get_waits_for_deadline),
        cmocka_unit_test(test_get_woken_by_nearer_deadline),
        cmocka_unit_test(test_get_with_fake_clock),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_drain_wakes_blocked_getter),
        cmocka_unit_test(test_shutdown_ends_drain),
        cmocka_unit_test(test_drain_empty_returns_at_once),
        cmocka_unit_test(test_key_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
