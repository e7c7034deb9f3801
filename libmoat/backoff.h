/* Retry delays: exponential backoff with jitter, and a token-bucket rate limiter
 * (golang.org/x/time/rate's Reserve().Delay()), plus the random source jitter draws from.
 *
 * All durations are nanoseconds. */
#ifndef MOAT_BACKOFF_H
#define MOAT_BACKOFF_H

#include <pthread.h>
#include <stdint.h>

#include "clock.h"
#include "error.h"

/* Returns base_ns * 2^attempt, or cap_ns when that is larger (or would overflow int64).
 * Never fails: negative base_ns or cap_ns count as 0, and base_ns above cap_ns gives
 * cap_ns. */
int64_t moat_backoff_exponential(int64_t base_ns, int64_t cap_ns, unsigned attempt);

/* "Equal jitter": with d = moat_backoff_exponential(base_ns, cap_ns, attempt), returns
 * d/2 + u * (d/2), a value in [d/2, d]. u is a uniform draw in [0, 1) supplied by the
 * caller (normally moat_random_unit()) so that tests can fix it; values outside [0, 1)
 * or NaN are clamped into it. Never fails. */
int64_t moat_backoff_jittered(int64_t base_ns, int64_t cap_ns, unsigned attempt, double u);

/* Returns a uniform double in [0, 1) with 53 random bits. Thread-safe and keeps no state:
 * it reads getrandom(2), and falls back to mixing the clock with a per-thread address when
 * that fails (entropy pool not ready, or getrandom blocked by seccomp). Not for secrets. */
double moat_random_unit(void);

/* Returns 64 random bits, from the same source and with the same caveats as
 * moat_random_unit() (good enough to seed a hash table, not for secrets). */
uint64_t moat_random_u64(void);

/* A token bucket holding at most burst tokens and refilled at qps tokens a second; it
 * starts full. Thread-safe. The fields are private: use the functions below. */
typedef struct moat_ratelimiter {
    pthread_mutex_t lock;
    const moat_clock *clock;
    double qps;
    double burst;
    double tokens; /* negative while callers hold reservations of future tokens */
    int64_t last_ns;
} moat_ratelimiter;

/* Sets r up with a full bucket. qps must be finite and > 0, burst >= 1; clock NULL means
 * moat_clock_system(). The caller keeps clock alive as long as r and releases r with
 * moat_ratelimiter_destroy(). Returns 0, or -1 with MOAT_E_INVALID for a bad qps or
 * burst (r is then untouched). */
int moat_ratelimiter_init(moat_ratelimiter *r, double qps, int burst, const moat_clock *clock,
                          moat_error *err);

/* Releases what moat_ratelimiter_init() set up; accepts NULL. r must not be in use. */
void moat_ratelimiter_destroy(moat_ratelimiter *r);

/* Takes one token and returns how many nanoseconds the caller must wait before acting on
 * it: 0 when a token was available. A token taken is never given back, so callers that
 * get a delay must still act after it (or the rate is undercounted). Never fails. */
int64_t moat_ratelimiter_reserve(moat_ratelimiter *r);

#endif
