#include "backoff.h"

#include <math.h> /* macros only: libmoat does not link libm */
#include <sys/random.h>
#include <time.h>

int64_t moat_backoff_exponential(int64_t base_ns, int64_t cap_ns, unsigned attempt)
{
    if (base_ns < 0)
        base_ns = 0;
    if (cap_ns < 0)
        cap_ns = 0;
    if (base_ns >= cap_ns)
        return cap_ns;
    if (base_ns == 0)
        return 0;
    /* base_ns >= 1, so any shift of 63 or more is past INT64_MAX and past the cap; below
     * that, base_ns <= cap_ns >> attempt is exactly "base_ns << attempt <= cap_ns" and
     * keeps the shift from overflowing. */
    if (attempt >= 63 || base_ns > (cap_ns >> attempt))
        return cap_ns;
    return base_ns << attempt;
}

int64_t moat_backoff_jittered(int64_t base_ns, int64_t cap_ns, unsigned attempt, double u)
{
    int64_t d = moat_backoff_exponential(base_ns, cap_ns, attempt);
    int64_t half = d / 2, rest = d - half;
    if (!(u > 0.0)) /* also catches NaN */
        u = 0.0;
    if (u >= 1.0)
        u = 0x1.fffffffffffffp-1; /* the largest double below 1 */
    /* The double product can round up to rest for large d; the clamp keeps d the top. */
    double extra = u * (double)rest;
    int64_t e = extra >= (double)rest ? rest : (int64_t)extra;
    return half + e;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t moat_random_u64(void)
{
    uint64_t x;
    if (getrandom(&x, sizeof(x), GRND_NONBLOCK) == (ssize_t)sizeof(x))
        return x;
    /* The address of a local differs between threads, so two threads reading the same
     * nanosecond still get different values. */
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return splitmix64(((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&x);
}

double moat_random_unit(void)
{
    return (double)(moat_random_u64() >> 11) * 0x1.0p-53;
}

int moat_ratelimiter_init(moat_ratelimiter *r, double qps, int burst, const moat_clock *clock,
                          moat_error *err)
{
    if (!isfinite(qps) || qps <= 0.0)
        return moat_error_set(err, MOAT_E_INVALID,
                              "rate limiter: qps %g must be a finite number above 0", qps);
    if (burst < 1)
        return moat_error_set(err, MOAT_E_INVALID, "rate limiter: burst %d must be at least 1",
                              burst);
    if (!clock)
        clock = moat_clock_system();
    /* With default attributes, pthread_mutex_init cannot fail on Linux. */
    (void)pthread_mutex_init(&r->lock, NULL);
    r->clock = clock;
    r->qps = qps;
    r->burst = burst;
    r->tokens = burst;
    r->last_ns = moat_clock_now(clock);
    return 0;
}

void moat_ratelimiter_destroy(moat_ratelimiter *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
}

int64_t moat_ratelimiter_reserve(moat_ratelimiter *r)
{
    pthread_mutex_lock(&r->lock);
    int64_t now = moat_clock_now(r->clock);
    /* A clock that went backwards refills nothing (as x/time/rate does). */
    if (now > r->last_ns) {
        double refill = (double)(now - r->last_ns) * r->qps / 1e9;
        r->tokens += refill;
        if (r->tokens > r->burst)
            r->tokens = r->burst;
        r->last_ns = now;
    }
    r->tokens -= 1.0;
    double wait = r->tokens < 0.0 ? -r->tokens * 1e9 / r->qps : 0.0;
    pthread_mutex_unlock(&r->lock);
    /* 0x1p63 is INT64_MAX + 1: only a queue of reservations years long gets there. */
    if (wait >= 0x1p63)
        return INT64_MAX;
    /* Round up, so that after the wait the token has really been refilled. */
    int64_t ns = (int64_t)wait;
    return (double)ns < wait ? ns + 1 : ns;
}
