#include "status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libmoat/kobj.h"
#include "libmoat/macro.h"
#include "libmoat/names.h"
#include "libmoat/units.h"

#define MAX_MESSAGE 4096 /* of a container's termination message kept in status */
/* How far ahead of our clock a time the node writes (a Pod's start, a session's last
 * activity) may be and still be trusted. */
#define CLOCK_AHEAD_MAX_S 60

/* Cuts buf back so it does not end inside a UTF-8 sequence: snprintf into a fixed buffer
 * may split a character, and jansson refuses invalid UTF-8 (the field would be lost). */
static void utf8_trim(char *buf)
{
    size_t len = strlen(buf), i = len;
    while (i > 0 && ((unsigned char)buf[i - 1] & 0xC0) == 0x80)
        i--; /* continuation bytes */
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)buf[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (len - (i - 1) < need)
        buf[i - 1] = '\0';
}

#define FORMAT(buf, ...)                                                                           \
    do {                                                                                           \
        snprintf(buf, sizeof(buf), __VA_ARGS__);                                                   \
        utf8_trim(buf);                                                                            \
    } while (0)

static bool is_final(const char *phase)
{
    return phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0 ||
                     strcmp(phase, "Expired") == 0);
}

/* Appends a condition, keeping the old lastTransitionTime while its status is the same. */
static void condition(json_t *conds, const json_t *old_status, const char *type, const char *status,
                      const char *reason, const char *message, int64_t generation, int64_t now)
{
    char ts[32];
    const char *since = NULL;
    json_t *old = kobj_get(old_status, "conditions"), *c;
    size_t i;
    json_array_foreach (old, i, c) {
        const char *t = kobj_str(c, "type"), *s = kobj_str(c, "status");
        if (t && s && strcmp(t, type) == 0 && strcmp(s, status) == 0)
            since = kobj_str(c, "lastTransitionTime");
    }
    if (!since || moat_rfc3339_parse(since) < 0) {
        moat_rfc3339_format(ts, sizeof(ts), now);
        since = ts;
    }
    json_array_append_new(conds, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "type", type, "status",
                                           status, "reason", reason, "message",
                                           message ? message : "", "lastTransitionTime", since,
                                           "observedGeneration", (json_int_t)generation));
}

static const json_t *find_container_status(const json_t *pod)
{
    json_t *all = kobj_get(pod, "status.containerStatuses"), *c;
    size_t i;
    json_array_foreach (all, i, c) {
        const char *n = kobj_str(c, "name");
        if (n && strcmp(n, "sandbox") == 0)
            return c;
    }
    return json_array_get(all, 0);
}

static void set_str(json_t *obj, const char *key, const char *value)
{
    if (value)
        json_object_set_new(obj, key, json_string(value));
}

static void set_time(json_t *obj, const char *key, int64_t t)
{
    char ts[32];
    moat_rfc3339_format(ts, sizeof(ts), t);
    json_object_set_new(obj, key, json_string(ts));
}

/* What the node agent's report on the Pod says, against what the Sandbox asked for. */
typedef enum {
    REPORT_NONE,     /* no report (yet), or one that does not parse */
    REPORT_OK,       /* gvisor or kata, and what the Sandbox asked for */
    REPORT_MISMATCH, /* an isolation the Sandbox did not ask for (VM asked, gVisor ran) */
    REPORT_WEAKER,   /* a runtime that is no isolation Moat provides (runc) */
} report_verdict;

/* A report's text fields as status may hold them: at most the CRD's maxLength, whole UTF-8
 * characters. A longer reason would fail every status write, the TTL's included. */
#define REPORT_HANDLER_MAX 253
#define REPORT_REASON_MAX  1024

static bool is_handler_name(const char *s)
{
    if (strlen(s) > REPORT_HANDLER_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' ||
              *s == '_'))
            return false;
    return true;
}

/* Does the reported runtime satisfy spec.isolation (NULL: Auto)? */
static bool runtime_satisfies(const char *runtime, const char *wanted)
{
    if (wanted && strcmp(wanted, "VM") == 0)
        return strcmp(runtime, MOAT_RUNTIME_KATA) == 0;
    if (wanted && strcmp(wanted, "GVisor") == 0)
        return strcmp(runtime, MOAT_RUNTIME_GVISOR) == 0;
    return true;
}

/* status.isolation from the node agent's report on the Pod (NULL pod: none yet), and a
 * message for the Isolated condition. Only a report of the isolation the Sandbox asked for
 * is REPORT_OK: nothing else may make Isolated True. */
static report_verdict isolation_from_report(json_t *status, const json_t *pod, const char *wanted,
                                            char *msg, size_t len)
{
    const char *report = kobj_annotation(pod, MOAT_ANNOTATION_ISOLATION_REPORT);
    json_t *r = report ? json_loads(report, 0, NULL) : NULL;
    const char *runtime = kobj_str(r, "runtime"), *handler = kobj_str(r, "handler");
    const char *reason = kobj_str(r, "reason");
    char why[REPORT_REASON_MAX + 1];
    report_verdict v = REPORT_NONE;

    if (len > 0)
        msg[0] = '\0';

    if (!handler || !is_handler_name(handler))
        handler = "";
    FORMAT(why, "%s", reason ? reason : "");
    if (runtime &&
        (strcmp(runtime, MOAT_RUNTIME_GVISOR) == 0 || strcmp(runtime, MOAT_RUNTIME_KATA) == 0)) {
        v = runtime_satisfies(runtime, wanted) ? REPORT_OK : REPORT_MISMATCH;
        json_object_set_new(status, "isolation",
                            json_pack("{s:s, s:s, s:s, s:b}", "runtime", runtime, "handler",
                                      handler, "reason", why, "verified",
                                      v == REPORT_OK && kobj_bool(r, "verified", false)));
        if (v == REPORT_OK)
            snprintf(msg, len, "%s (%s): %s", runtime, *handler ? handler : "?",
                     *why ? why : "reported by the node");
        else
            snprintf(msg, len, "isolation %s was asked for; the node reports %s (%s): %s", wanted,
                     runtime, *handler ? handler : "?", why);
    } else {
        if (runtime && *runtime) {
            v = REPORT_WEAKER;
            /* quoted only when it reads as a name: cut text could split a character */
            snprintf(msg, len,
                     "the node reports runtime \"%s\" (handler \"%s\"): not an isolation Moat "
                     "provides",
                     is_handler_name(runtime) && strlen(runtime) <= 64 ? runtime : "(unreadable)",
                     handler);
        }
        json_object_set_new(status, "isolation",
                            json_pack("{s:s, s:s, s:s, s:b}", "runtime", "", "handler",
                                      v == REPORT_WEAKER ? handler : "", "reason",
                                      v == REPORT_WEAKER ? msg : "", "verified", 0));
    }
    utf8_trim(msg);
    json_decref(r);
    return v;
}

/* The Isolated condition for a verdict. */
static void isolated_condition(json_t *conds, const json_t *old, report_verdict v, const char *imsg,
                               int64_t generation, int64_t now)
{
    switch (v) {
    case REPORT_OK:
        condition(conds, old, "Isolated", "True", "NodeReported", imsg, generation, now);
        break;
    case REPORT_MISMATCH:
        condition(conds, old, "Isolated", "False", "IsolationMismatch", imsg, generation, now);
        break;
    case REPORT_WEAKER:
        condition(conds, old, "Isolated", "False", "NotIsolated", imsg, generation, now);
        break;
    case REPORT_NONE:
        condition(conds, old, "Isolated", "Unknown", "AwaitingNodeReport",
                  "the node has not reported the runtime yet", generation, now);
        break;
    }
}

static void set_limits(json_t *status, const sandbox_view *view)
{
    char timeout[32], idle[32];
    moat_duration_format(timeout, sizeof timeout, view->timeout_s * 1000000000LL);
    moat_duration_format(idle, sizeof idle, view->idle_s * 1000000000LL);
    json_object_set_new(
        status, "limits",
        json_pack("{s:s, s:s*}", "timeout", timeout, "idleTimeout", view->session ? idle : NULL));
}

/* The Finished reason of a final status, or NULL. */
static const char *finished_reason(const json_t *status)
{
    const json_t *c = kobj_condition(status, "conditions", "Finished");
    return kobj_str(c, "reason");
}

/* What to set a running Session Pod's activeDeadlineSeconds to, to stop it now. */
static int64_t stop_deadline(const json_t *pod, int64_t now)
{
    int64_t started = moat_rfc3339_parse(kobj_str(pod, "status.startTime"));
    int64_t d = started >= 0 ? now - started : 1;
    return d < 1 ? 1 : d;
}

static bool pod_is_running(const json_t *pod)
{
    const char *phase = kobj_str(pod, "status.phase");
    return pod && (!phase || strcmp(phase, "Running") == 0 || strcmp(phase, "Pending") == 0);
}

static void finish(json_t *status, const char *phase, const char *message, int64_t when)
{
    json_object_set_new(status, "phase", json_string(phase));
    if (message)
        json_object_set_new(status, "message", json_string(message));
    set_time(status, "completionTime", when);
}

void sandbox_plan_make(sandbox_plan *out, const sandbox_view *view, const cluster_facts *facts)
{
    const json_t *sbx = view->sandbox, *pod = view->pod;
    const json_t *old = kobj_get(sbx, "status");
    const char *old_phase = kobj_str(old, "phase");
    int64_t generation = 0, now = facts->now_s;
    char msg[512];
    kobj_int(sbx, "metadata.generation", &generation);

    *out = (sandbox_plan){0};
    json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();
    json_t *conds = json_array();
    json_object_set_new(st, "observedGeneration", json_integer(generation));

    /* A final phase never changes; only the TTL runs. */
    if (is_final(old_phase)) {
        int64_t done = moat_rfc3339_parse(kobj_str(old, "completionTime"));
        if (done < 0) {
            done = now;
            set_time(st, "completionTime", now);
        }
        int64_t left = done + view->ttl_s - now;
        const char *why = finished_reason(old);
        if (left <= 0) {
            out->action = SANDBOX_ACTION_DELETE_SANDBOX;
        } else if (view->session && why && strcmp(why, "IdleTimeout") == 0 && pod_is_running(pod)) {
            /* Ended idle, but its Pod still runs: stop it (again), and look once more. */
            out->action = SANDBOX_ACTION_STOP_POD;
            out->stop_deadline_s = stop_deadline(pod, now);
            out->requeue_after_s = 2;
        } else {
            out->requeue_after_s = left;
        }
        /* A late isolation report still makes status.isolation true. */
        if (pod && !kobj_bool(old, "isolation.verified", false)) {
            char imsg[REPORT_REASON_MAX + 256];
            report_verdict v = isolation_from_report(st, pod, view->isolation, imsg, sizeof(imsg));
            if (v != REPORT_NONE) {
                json_t *oc = kobj_get(old, "conditions"), *c;
                size_t i;
                json_array_foreach (oc, i, c) {
                    const char *t = kobj_str(c, "type");
                    if (t && strcmp(t, "Isolated") != 0)
                        json_array_append(conds, c);
                }
                isolated_condition(conds, old, v, imsg, generation, now);
                json_object_set_new(st, "conditions", conds);
                conds = NULL;
            }
        }
        json_decref(conds);
        out->status = st;
        return;
    }

    const char *phase = "Pending";
    const char *final_reason = NULL;
    if (!view->spec_error)
        set_limits(st, view); /* while it runs: a final status stays as it was written */

    if (view->spec_error) {
        FORMAT(msg, "invalid spec: %s", view->spec_error);
        finish(st, "Failed", msg, now);
        condition(conds, old, "Scheduled", "False", "InvalidSpec", msg, generation, now);
        condition(conds, old, "Ready", "False", "InvalidSpec", msg, generation, now);
        condition(conds, old, "Isolated", "Unknown", "InvalidSpec", "no pod was created",
                  generation, now);
        condition(conds, old, "Finished", "True", "InvalidSpec", msg, generation, now);
        json_object_set_new(st, "conditions", conds);
        out->status = st;
        out->requeue_after_s = view->ttl_s > 0 ? view->ttl_s : 1;
        return;
    }

    if (view->untrusted_pod) {
        /* A Pod the operator did not make: whatever it or its annotations say is not
         * trusted, and the Sandbox ends here rather than wait on it. */
        FORMAT(msg, "%s", view->untrusted_pod);
        finish(st, "Failed", msg, now);
        json_object_set_new(st, "isolation",
                            json_pack("{s:s, s:s, s:s, s:b}", "runtime", "", "handler", "",
                                      "reason", "", "verified", 0));
        condition(conds, old, "Scheduled", "False", "UntrustedPod", msg, generation, now);
        condition(conds, old, "Ready", "False", "UntrustedPod", msg, generation, now);
        condition(conds, old, "Isolated", "False", "UntrustedPod", msg, generation, now);
        condition(conds, old, "Finished", "True", "UntrustedPod", msg, generation, now);
        json_object_set_new(st, "conditions", conds);
        out->status = st;
        out->requeue_after_s = view->ttl_s > 0 ? view->ttl_s : 1;
        return;
    }

    if (!pod) {
        if (kobj_str(old, "startTime")) {
            const char *m = "the sandbox's pod was deleted while it ran";
            finish(st, "Failed", m, now);
            condition(conds, old, "Scheduled", "True", "Scheduled", "", generation, now);
            condition(conds, old, "Ready", "False", "PodDeleted", m, generation, now);
            condition(conds, old, "Isolated",
                      kobj_bool(old, "isolation.verified", false) ? "True" : "Unknown",
                      "PodDeleted", "", generation, now);
            condition(conds, old, "Finished", "True", "PodDeleted", m, generation, now);
            json_object_set_new(st, "conditions", conds);
            out->status = st;
            out->requeue_after_s = view->ttl_s > 0 ? view->ttl_s : 1;
            return;
        }
        /* Creating the Pod: the status it will have until the scheduler places it, so that
         * seeing the new Pod in the cache costs no second write. */
        const char *reason = "Pending", *m = "waiting for the scheduler";
        if (view->wants_vm && !facts->hypervisor_available) {
            reason = "NoHypervisor";
            m = "no Moat-managed node has a usable hypervisor; isolation VM never falls back "
                "to a weaker runtime";
        } else if (view->wants_vm && view->gpus > 0 && !facts->gpu_vm_available) {
            reason = "NoGPUPassthroughNode";
            m = "no Moat-managed node with a usable hypervisor passes GPUs through to VMs";
        } else {
            out->action = SANDBOX_ACTION_CREATE_POD;
            set_str(st, "podName", kobj_name(sbx)); /* the Pod is named after its Sandbox */
        }
        json_object_set_new(st, "phase", json_string("Pending"));
        if (out->action == SANDBOX_ACTION_CREATE_POD)
            json_object_del(st, "message");
        else
            json_object_set_new(st, "message", json_string(m));
        condition(conds, old, "Scheduled", "False", reason, m, generation, now);
        condition(conds, old, "Ready", "False", reason, "", generation, now);
        condition(conds, old, "Isolated", "Unknown", "AwaitingNodeReport",
                  "the node has not reported the runtime yet", generation, now);
        condition(conds, old, "Finished", "False", reason, "", generation, now);
        isolation_from_report(st, NULL, view->isolation, msg, sizeof(msg));
        json_object_set_new(st, "conditions", conds);
        out->status = st;
        return;
    }

    /* The Pod exists: its state is the truth. */
    set_str(st, "podName", kobj_name(pod));
    set_str(st, "nodeName", kobj_str(pod, "spec.nodeName"));
    const char *pod_phase = kobj_str(pod, "status.phase");
    const json_t *cs = find_container_status(pod);
    const json_t *sched = kobj_condition(pod, "status.conditions", "PodScheduled");
    const char *sched_status = kobj_str(sched, "status");
    if (sched_status && strcmp(sched_status, "True") == 0) {
        FORMAT(msg, "on node %s", kobj_str(pod, "spec.nodeName") ?: "?");
        condition(conds, old, "Scheduled", "True", "Scheduled", msg, generation, now);
    } else if (sched) {
        condition(conds, old, "Scheduled", "False", kobj_str(sched, "reason") ?: "Pending",
                  kobj_str(sched, "message"), generation, now);
    } else {
        condition(conds, old, "Scheduled", "False", "Pending", "waiting for the scheduler",
                  generation, now);
    }

    /* A start far ahead of our clock is not trusted (kubelet's clock, or a status write the
     * cluster's policy should have refused: moat-pod-guard): the clocks would never run. */
    int64_t pod_start = moat_rfc3339_parse(kobj_str(pod, "status.startTime"));
    if (!kobj_str(old, "startTime") && pod_start >= 0)
        set_time(st, "startTime", pod_start <= now + CLOCK_AHEAD_MAX_S ? pod_start : now);
    int64_t started = moat_rfc3339_parse(kobj_str(st, "startTime"));

    int64_t exit_code = 0;
    bool terminated = kobj_int(cs, "state.terminated.exitCode", &exit_code);
    const char *term_msg = kobj_str(cs, "state.terminated.message");
    const char *term_reason = kobj_str(cs, "state.terminated.reason");
    int64_t finished_at = moat_rfc3339_parse(kobj_str(cs, "state.terminated.finishedAt"));
    if (finished_at < 0)
        finished_at = now;
    char term[MAX_MESSAGE + 1];
    FORMAT(term, "%s", term_msg ? term_msg : term_reason ? term_reason : "");

    /* A Session: its last activity, which never moves back. */
    int64_t last_activity = -1;
    if (view->session && started >= 0) {
        last_activity = started;
        int64_t reported = moat_rfc3339_parse(kobj_annotation(pod, MOAT_ANNOTATION_LAST_ACTIVITY));
        int64_t known = moat_rfc3339_parse(kobj_str(old, "lastActivityTime"));
        if (reported > last_activity && reported <= now + CLOCK_AHEAD_MAX_S)
            last_activity = reported;
        if (known > last_activity)
            last_activity = known;
        set_time(st, "lastActivityTime", last_activity);
    }

    if (pod_phase && strcmp(pod_phase, "Succeeded") == 0) {
        phase = "Succeeded";
        final_reason = view->session ? "Exited" : "Succeeded";
        json_object_set_new(st, "exitCode", json_integer(terminated ? exit_code : 0));
        finish(st, phase, term, finished_at);
    } else if (pod_phase && strcmp(pod_phase, "Failed") == 0) {
        const char *preason = kobj_str(pod, "status.reason");
        if (preason && strcmp(preason, "DeadlineExceeded") == 0) {
            phase = "Expired";
            final_reason = view->session ? "Timeout" : "Expired";
            FORMAT(msg, "exceeded its timeout of %lds", (long)view->timeout_s);
            finish(st, phase, msg, now);
        } else {
            phase = "Failed";
            final_reason = view->session ? "Exited" : "Failed";
            if (terminated)
                json_object_set_new(st, "exitCode", json_integer(exit_code));
            const char *pm = kobj_str(pod, "status.message");
            finish(st, phase,
                   *term     ? term
                   : pm      ? pm
                   : preason ? preason
                             : "the pod failed",
                   terminated ? finished_at : now);
        }
    } else if (pod_phase && strcmp(pod_phase, "Running") == 0) {
        phase = "Running";
        json_object_del(st, "message");
    } else {
        phase = "Pending";
        const char *waiting = kobj_str(cs, "state.waiting.reason");
        const char *wmsg = kobj_str(cs, "state.waiting.message");
        json_object_del(st, "message"); /* an earlier message no longer holds */
        if (waiting) {
            FORMAT(msg, "%s%s%s", waiting, wmsg ? ": " : "", wmsg ? wmsg : "");
            json_object_set_new(st, "message", json_string(msg));
        }
    }

    /* The timeout, by status times: kubelet enforces activeDeadlineSeconds, but a Sandbox
     * whose node is gone must still end. */
    if (!final_reason && started >= 0 && view->timeout_s > 0) {
        int64_t left = started + view->timeout_s - now;
        if (left <= 0) {
            phase = "Expired";
            final_reason = view->session ? "Timeout" : "Expired";
            FORMAT(msg, "exceeded its timeout of %lds", (long)view->timeout_s);
            finish(st, phase, msg, now);
        } else {
            out->requeue_after_s = left + 1;
        }
    }

    /* A Session idle for its idleTimeout ends here; kubelet then stops its Pod. */
    if (!final_reason && view->session && view->idle_s > 0 && last_activity >= 0 &&
        strcmp(phase, "Running") == 0) {
        int64_t left = last_activity + view->idle_s - now;
        if (left <= 0) {
            char since[32], limit[32];
            moat_rfc3339_format(since, sizeof since, last_activity);
            moat_duration_format(limit, sizeof limit, view->idle_s * 1000000000LL);
            phase = "Expired";
            final_reason = "IdleTimeout";
            FORMAT(msg,
                   "idle for its idleTimeout of %s: no exec, attach or port-forward and under 1%% "
                   "of a CPU since %s",
                   limit, since);
            finish(st, phase, msg, now);
            out->action = SANDBOX_ACTION_STOP_POD;
            out->stop_deadline_s = stop_deadline(pod, now);
        } else if (out->requeue_after_s == 0 || left + 1 < out->requeue_after_s) {
            out->requeue_after_s = left + 1;
        }
    }
    json_object_set_new(st, "phase", json_string(phase));

    const json_t *ready = kobj_condition(pod, "status.conditions", "Ready");
    const char *ready_status = kobj_str(ready, "status");
    if (!final_reason && strcmp(phase, "Running") == 0 && ready_status &&
        strcmp(ready_status, "True") == 0)
        condition(conds, old, "Ready", "True", "Running", "", generation, now);
    else
        condition(conds, old, "Ready", "False", final_reason ? final_reason : phase,
                  kobj_str(st, "message"), generation, now);

    char imsg[REPORT_REASON_MAX + 256];
    isolated_condition(conds, old,
                       isolation_from_report(st, pod, view->isolation, imsg, sizeof(imsg)), imsg,
                       generation, now);

    if (final_reason) {
        condition(conds, old, "Finished", "True", final_reason, kobj_str(st, "message"), generation,
                  now);
        /* the idle stop looks again soon: its Pod must stop */
        out->requeue_after_s = out->action == SANDBOX_ACTION_STOP_POD ? 2
                               : view->ttl_s > 0                      ? view->ttl_s
                                                                      : 1;
    } else {
        condition(conds, old, "Finished", "False", phase, "", generation, now);
    }
    json_object_set_new(st, "conditions", conds);
    out->status = st;
}

void sandbox_plan_clear(sandbox_plan *p)
{
    if (!p)
        return;
    json_decref(p->status);
    p->status = NULL;
}

bool sandbox_status_changed(const json_t *old_status, const json_t *new_status)
{
    if (!old_status)
        return new_status != NULL;
    return !json_equal((json_t *)old_status, (json_t *)new_status);
}
