/* A replaceable monotonic clock, so that code that waits (backoff, rate limits, delayed
 * work queue keys) can be tested without sleeping.
 *
 * Production code takes a `const moat_clock *` and uses moat_clock_system(); tests pass
 * a moat_fake_clock and move it by hand. */
#ifndef MOAT_CLOCK_H
#define MOAT_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct moat_clock {
    int64_t (*now_ns)(void *impl); /* monotonic nanoseconds; never goes backwards */
    void *impl;
} moat_clock;

/* Returns the CLOCK_MONOTONIC clock. The pointer is to static, read-only storage: the
 * caller does not free it, and it stays valid for the life of the process. */
const moat_clock *moat_clock_system(void);

/* CLOCK_MONOTONIC now, in nanoseconds: for code that measures or waits on the real clock
 * and has no clock to take. */
int64_t moat_mono_ns(void);

/* Returns the clock's current time in nanoseconds. */
static inline int64_t moat_clock_now(const moat_clock *clock)
{
    return clock->now_ns(clock->impl);
}

/* A clock for tests that moves only when told to. Safe to read and advance from any
 * thread. The fields are private: use the functions below. */
typedef struct moat_fake_clock {
    moat_clock clock;
    _Atomic int64_t now_ns;
} moat_fake_clock;

/* Sets the fake clock up at start_ns. The caller owns c and keeps it alive as long as
 * anything holds the clock returned by moat_fake_clock_get(); nothing needs freeing. */
void moat_fake_clock_init(moat_fake_clock *c, int64_t start_ns);

/* Moves the fake clock forward by ns (>= 0; a negative value moves it back, which only a
 * test of a misbehaving clock should do). */
void moat_fake_clock_advance(moat_fake_clock *c, int64_t ns);

/* Returns the moat_clock view of c, valid as long as c is. */
const moat_clock *moat_fake_clock_get(const moat_fake_clock *c);

#endif
