#include "clock.h"

#include <time.h>

static int64_t system_now_ns(void *impl)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Read-only: this is not mutable global state. */
static const moat_clock system_clock = {system_now_ns, NULL};

const moat_clock *moat_clock_system(void)
{
    return &system_clock;
}

int64_t moat_mono_ns(void)
{
    return system_now_ns(NULL);
}

static int64_t fake_now_ns(void *impl)
{
    moat_fake_clock *c = impl;
    return atomic_load(&c->now_ns);
}

void moat_fake_clock_init(moat_fake_clock *c, int64_t start_ns)
{
    c->clock.now_ns = fake_now_ns;
    c->clock.impl = c;
    atomic_init(&c->now_ns, start_ns);
}

void moat_fake_clock_advance(moat_fake_clock *c, int64_t ns)
{
    atomic_fetch_add(&c->now_ns, ns);
}

const moat_clock *moat_fake_clock_get(const moat_fake_clock *c)
{
    return &c->clock;
}
