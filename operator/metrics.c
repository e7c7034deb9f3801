/* The operator's /metrics: reconciles and their latency, the work queue, writes, alarms, and
 * Sandboxes by phase and runtime as the informer's handlers counted them. */
#include <stdatomic.h>

#include "controller-internal.h"
#include "libmoat/macro.h"
#include "libmoat/strbuf.h"

char *controller_metrics_render(operator_controller *c)
{
    moat_strbuf b = {0};
    moat_strbuf_appendf(&b, "# HELP moat_operator_reconciles_total Reconciles done, by result.\n"
                            "# TYPE moat_operator_reconciles_total counter\n");
    uint64_t errors = atomic_load(&c->reconcile_errors), requeues = atomic_load(&c->requeues);
    moat_strbuf_appendf(&b, "moat_operator_reconciles_total{result=\"success\"} %llu\n",
                        (unsigned long long)atomic_load(&c->reconcile_successes));
    moat_strbuf_appendf(&b, "moat_operator_reconciles_total{result=\"error\"} %llu\n",
                        (unsigned long long)errors);
    moat_strbuf_appendf(&b, "moat_operator_reconciles_total{result=\"requeue\"} %llu\n",
                        (unsigned long long)requeues);
    moat_strbuf_appendf(&b,
                        "# HELP moat_operator_reconcile_errors_total Reconciles that failed.\n"
                        "# TYPE moat_operator_reconcile_errors_total counter\n"
                        "moat_operator_reconcile_errors_total %llu\n",
                        (unsigned long long)errors);
    moat_strbuf_appendf(&b,
                        "# HELP moat_operator_pods_created_total Sandbox pods created.\n"
                        "# TYPE moat_operator_pods_created_total counter\n"
                        "moat_operator_pods_created_total %llu\n",
                        (unsigned long long)atomic_load(&c->pods_created));
    moat_strbuf_appendf(&b, "# HELP moat_operator_isolation_alarms_total Sandboxes whose Isolated "
                            "condition turned False, by reason.\n"
                            "# TYPE moat_operator_isolation_alarms_total counter\n");
    static const char *const alarm_reasons[] = {"IsolationMismatch", "NotIsolated", "UntrustedPod"};
    for (size_t i = 0; i < ELEMENTSOF(alarm_reasons); i++)
        moat_strbuf_appendf(&b, "moat_operator_isolation_alarms_total{reason=\"%s\"} %llu\n",
                            alarm_reasons[i],
                            (unsigned long long)atomic_load(&c->isolation_alarms[i]));
    moat_strbuf_appendf(&b,
                        "# HELP moat_operator_networkpolicy_applies_total NetworkPolicies applied "
                        "(made, or put back as built).\n"
                        "# TYPE moat_operator_networkpolicy_applies_total counter\n"
                        "moat_operator_networkpolicy_applies_total %llu\n",
                        (unsigned long long)atomic_load(&c->netpol_applies));
    moat_strbuf_appendf(
        &b,
        "# HELP moat_operator_status_conflicts_total Status writes refused as stale.\n"
        "# TYPE moat_operator_status_conflicts_total counter\n"
        "moat_operator_status_conflicts_total %llu\n",
        (unsigned long long)atomic_load(&c->conflicts));
    moat_strbuf_appendf(&b,
                        "# HELP moat_operator_workqueue_depth Keys waiting to be reconciled.\n"
                        "# TYPE moat_operator_workqueue_depth gauge\n"
                        "moat_operator_workqueue_depth %zu\n",
                        workqueue_len(c->queue));
    moat_strbuf_appendf(&b,
                        "# HELP moat_operator_leader 1 while this replica holds the lease.\n"
                        "# TYPE moat_operator_leader gauge\nmoat_operator_leader %d\n",
                        atomic_load(&c->leading) ? 1 : 0);
    moat_strbuf_appendf(
        &b, "# HELP moat_operator_reconcile_duration_seconds Time one reconcile takes.\n"
            "# TYPE moat_operator_reconcile_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        cum += atomic_load(&c->latency_buckets[i]);
        moat_strbuf_appendf(&b, "moat_operator_reconcile_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            controller_latency_buckets[i], (unsigned long long)cum);
    }
    cum += atomic_load(&c->latency_buckets[N_BUCKETS]);
    moat_strbuf_appendf(&b, "moat_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                        (unsigned long long)cum);
    moat_strbuf_appendf(&b, "moat_operator_reconcile_duration_seconds_sum %.6f\n",
                        atomic_load(&c->latency_sum));
    moat_strbuf_appendf(&b, "moat_operator_reconcile_duration_seconds_count %llu\n",
                        (unsigned long long)cum);

    /* Sandboxes by phase and by runtime, as the informer's handlers counted them. */
    moat_strbuf_appendf(&b,
                        "# HELP moat_sandboxes Sandboxes by phase.\n# TYPE moat_sandboxes gauge\n");
    for (size_t k = 0; k < ELEMENTSOF(controller_phases); k++)
        moat_strbuf_appendf(&b, "moat_sandboxes{phase=\"%s\"} %ld\n", controller_phases[k],
                            atomic_load(&c->by_phase[k]));
    moat_strbuf_appendf(
        &b, "# HELP moat_sandboxes_by_runtime Sandboxes by the runtime their node reported "
            "(\"\" until it has).\n# TYPE moat_sandboxes_by_runtime gauge\n");
    for (size_t k = 0; k < ELEMENTSOF(controller_runtimes); k++)
        moat_strbuf_appendf(&b, "moat_sandboxes_by_runtime{runtime=\"%s\"} %ld\n",
                            controller_runtimes[k], atomic_load(&c->by_runtime[k]));
    moat_strbuf_appendf(&b,
                        "# HELP moat_sessions_running Sessions in phase Running.\n"
                        "# TYPE moat_sessions_running gauge\nmoat_sessions_running %ld\n",
                        atomic_load(&c->sessions_running));
    moat_strbuf_appendf(&b, "# HELP moat_sessions_ended_total Sessions ended, by the Finished "
                            "condition's reason.\n# TYPE moat_sessions_ended_total counter\n");
    for (size_t k = 0; k < ELEMENTSOF(controller_session_ends); k++)
        moat_strbuf_appendf(&b, "moat_sessions_ended_total{reason=\"%s\"} %llu\n",
                            controller_session_ends[k],
                            (unsigned long long)atomic_load(&c->sessions_ended[k]));
    moat_strbuf_appendf(&b,
                        "# HELP moat_operator_idle_stops_total Idle Sessions whose Pod the "
                        "operator told to stop.\n# TYPE moat_operator_idle_stops_total counter\n"
                        "moat_operator_idle_stops_total %llu\n",
                        (unsigned long long)atomic_load(&c->idle_stops));
    return moat_strbuf_take(&b);
}
