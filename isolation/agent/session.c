#include "session.h"

void agent_session_init(agent_session *s)
{
    *s = (agent_session){.last_activity_s = -1, .published_s = -1, .published_at_s = -1};
}

bool agent_session_observe(agent_session *s, const agent_session_pass *in)
{
    if (in->stream_start_s > s->last_activity_s)
        s->last_activity_s = in->stream_start_s;
    if (in->has_cpu) {
        if (s->have_sample && in->cpu_ns > s->sample_ns && in->cpu_usage_ns >= s->usage_ns) {
            /* used * 1000 >= elapsed * permille, in 128 bits: no overflow for any sample */
            unsigned __int128 used = in->cpu_usage_ns - s->usage_ns;
            unsigned __int128 elapsed = (uint64_t)(in->cpu_ns - s->sample_ns);
            int64_t at = in->cpu_ns / 1000000000LL;
            if (used * 1000 >= elapsed * AGENT_SESSION_CPU_PERMILLE && at > s->last_activity_s)
                s->last_activity_s = at;
        }
        /* a counter that went back (a new cgroup) starts over from here */
        s->have_sample = true;
        s->sample_ns = in->cpu_ns;
        s->usage_ns = in->cpu_usage_ns;
    }
    if (s->last_activity_s < 0 || s->last_activity_s <= s->published_s)
        return false;
    if (s->published_at_s < 0)
        return true;
    int64_t gap = in->idle_s / 4;
    if (gap < 1)
        gap = 1;
    return in->now_s - s->published_at_s >= gap;
}

void agent_session_published(agent_session *s, int64_t now_s)
{
    s->published_s = s->last_activity_s;
    s->published_at_s = now_s;
}
