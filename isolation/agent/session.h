/* A Session's activity, as the node agent judges it (README: Sessions). Each pass the agent
 * gives a session sandbox two observations:
 *   - the latest Exec, Attach or PortForward start moat-cri recorded for it (cri-shim's
 *     activity.h: a file per container or pod sandbox ID, its modification time the start);
 *   - its pod's CPU time (CRI ListPodSandboxStats: the pod's cgroup, which under gVisor and
 *     Kata holds the whole sandbox).
 * Activity is a start, or an interval between two CPU samples in which the pod used at
 * least AGENT_SESSION_CPU_PERMILLE thousandths of a CPU. A session whose intervals are all
 * under that is idle; one busy interval keeps it alive (so a session the operator ends is
 * always under 1% on average over its idleTimeout, the literal rule, and one with bursts
 * may live longer than that rule would let it: never shorter).
 *
 * The last activity is published on the Pod (MOAT_ANNOTATION_LAST_ACTIVITY) when it moved,
 * at most once per idleTimeout/4 (and at least a second apart): the operator ends a session
 * idleTimeout after the published time, and a busy session's published time is never more
 * than idleTimeout/4 and a pass behind. Pure: no clock, no I/O. */
#ifndef MOAT_ISO_AGENT_SESSION_H
#define MOAT_ISO_AGENT_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#define AGENT_SESSION_CPU_PERMILLE 10 /* 1% of one CPU */

typedef struct {
    int64_t last_activity_s; /* the latest activity seen (wall seconds), -1 none yet */
    int64_t published_s;     /* the time last written on the Pod, -1 none */
    int64_t published_at_s;  /* when that was written (wall seconds) */
    bool have_sample;
    int64_t sample_ns; /* the last CPU sample: its time stamp ... */
    uint64_t usage_ns; /* ... and the pod's CPU time then */
} agent_session;

/* What one pass saw of a session. */
typedef struct {
    int64_t now_s;          /* wall clock */
    int64_t idle_s;         /* its idleTimeout (MOAT_ANNOTATION_IDLE_TIMEOUT) */
    int64_t stream_start_s; /* the latest Exec/Attach/PortForward start, -1 none */
    bool has_cpu;           /* a CPU sample this pass */
    int64_t cpu_ns;         /* its time stamp (wall, ns) */
    uint64_t cpu_usage_ns;  /* the pod's CPU time then */
} agent_session_pass;

/* A session the agent has not seen before. */
void agent_session_init(agent_session *s);

/* Takes one pass's observations in. Returns true when the caller should publish
 * s->last_activity_s now (then call agent_session_published). */
bool agent_session_observe(agent_session *s, const agent_session_pass *in);

/* The publication of s->last_activity_s at now_s succeeded. */
void agent_session_published(agent_session *s, int64_t now_s);

#endif
