/* The node agent's logic: facts to labels, sandbox status to report, and the work loop. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "libmoat/activity.h"
#include "libmoat/clock.h"
#include "libmoat/kobj.h"
#include "libmoat/log.h"
#include "libmoat/names.h"
#include "libmoat/strbuf.h"
#include "libmoat/workqueue.h"
#include "session.h"

/* Largest facts file read. */
#define AGENT_FACTS_MAX (64 * 1024)
/* How long one CRI call may take. */
#define AGENT_CRI_TIMEOUT_MS 10000
/* The work queue's two keys: the Node's labels, and a look at the node's pods. */
#define NODE_KEY "!node"
#define PODS_KEY "!pods"

bool agent_facts_equal(const agent_facts *a, const agent_facts *b)
{
    return a->hypervisor == b->hypervisor && a->runtimes == b->runtimes &&
           a->gpu_mode == b->gpu_mode;
}

const char *agent_hypervisor_name(agent_hypervisor h)
{
    switch (h) {
    case AGENT_HYPERVISOR_KVM:
        return MOAT_HYPERVISOR_KVM;
    case AGENT_HYPERVISOR_MSHV:
        return MOAT_HYPERVISOR_MSHV;
    default:
        return MOAT_HYPERVISOR_NONE;
    }
}

const char *agent_gpu_mode_name(agent_gpu_mode m)
{
    switch (m) {
    case AGENT_GPU_CONTAINER:
        return MOAT_GPU_MODE_CONTAINER;
    case AGENT_GPU_VM:
        return MOAT_GPU_MODE_VM;
    default:
        return MOAT_GPU_MODE_NONE;
    }
}

int agent_hypervisor_parse(agent_hypervisor *out, const char *name)
{
    if (!name)
        return -1;
    if (strcmp(name, MOAT_HYPERVISOR_KVM) == 0)
        *out = AGENT_HYPERVISOR_KVM;
    else if (strcmp(name, MOAT_HYPERVISOR_MSHV) == 0)
        *out = AGENT_HYPERVISOR_MSHV;
    else if (strcmp(name, MOAT_HYPERVISOR_NONE) == 0)
        *out = AGENT_HYPERVISOR_NONE;
    else
        return -1;
    return 0;
}

static int gpu_mode_parse(agent_gpu_mode *out, const char *name)
{
    if (strcmp(name, MOAT_GPU_MODE_CONTAINER) == 0)
        *out = AGENT_GPU_CONTAINER;
    else if (strcmp(name, MOAT_GPU_MODE_VM) == 0)
        *out = AGENT_GPU_VM;
    else if (strcmp(name, MOAT_GPU_MODE_NONE) == 0)
        *out = AGENT_GPU_NONE;
    else
        return -1;
    return 0;
}

json_t *agent_facts_labels(const agent_facts *f)
{
    json_t *l = json_object();
    if (!l)
        return NULL;
    int rc = 0;
    rc |= json_object_set_new(l, MOAT_NODE_LABEL_MANAGED, json_string("true"));
    rc |= json_object_set_new(l, MOAT_NODE_LABEL_HYPERVISOR,
                              json_string(agent_hypervisor_name(f->hypervisor)));
    rc |= json_object_set_new(l, MOAT_NODE_LABEL_GPU_MODE,
                              json_string(agent_gpu_mode_name(f->gpu_mode)));
    if (f->runtimes & AGENT_RUNTIME_GVISOR)
        rc |= json_object_set_new(l, MOAT_NODE_LABEL_RUNTIME_GVISOR, json_string("true"));
    if ((f->runtimes & AGENT_RUNTIME_KATA) && f->hypervisor != AGENT_HYPERVISOR_NONE)
        rc |= json_object_set_new(l, MOAT_NODE_LABEL_RUNTIME_KATA, json_string("true"));
    if (rc) {
        json_decref(l);
        return NULL;
    }
    return l;
}

bool agent_label_is_owned(const char *key)
{
    static const char prefix[] = MOAT_NODE_LABEL_RUNTIME_PREFIX;
    return key && (strcmp(key, MOAT_NODE_LABEL_MANAGED) == 0 ||
                   strcmp(key, MOAT_NODE_LABEL_HYPERVISOR) == 0 ||
                   strcmp(key, MOAT_NODE_LABEL_GPU_MODE) == 0 ||
                   (strncmp(key, prefix, sizeof(prefix) - 1) == 0 && key[sizeof(prefix) - 1]));
}

int agent_node_patch(json_t **ret, const json_t *node, const json_t *labels, moat_error *err)
{
    const json_t *have = kobj_get(node, "metadata.labels");
    json_t *set = json_object();
    if (!set)
        return moat_error_set(err, MOAT_E_NOMEM, "node patch: out of memory");
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach ((json_t *)labels, k, v) {
        if (!agent_label_is_owned(k)) /* never send a key that is not ours */
            continue;
        const json_t *cur = json_is_object(have) ? json_object_get(have, k) : NULL;
        if (!cur || !json_equal(cur, v))
            rc |= json_object_set(set, k, v);
    }
    if (json_is_object(have)) {
        json_object_foreach ((json_t *)have, k, v) {
            if (agent_label_is_owned(k) && !json_object_get(labels, k))
                rc |= json_object_set_new(set, k, json_null());
        }
    }
    if (rc) {
        json_decref(set);
        return moat_error_set(err, MOAT_E_NOMEM, "node patch: out of memory");
    }
    if (json_object_size(set) == 0) {
        json_decref(set);
        *ret = NULL;
        return 0;
    }
    json_t *p = json_pack("{s:{s:o}}", "metadata", "labels", set);
    if (!p)
        return moat_error_set(err, MOAT_E_NOMEM, "node patch: out of memory");
    *ret = p;
    return 0;
}

void agent_facts_from_report(agent_facts *out, const iso_report *r)
{
    agent_facts f = {0};
    (void)agent_hypervisor_parse(&f.hypervisor, iso_report_hypervisor_label(r));
    (void)gpu_mode_parse(&f.gpu_mode, iso_report_gpu_mode(r));
    if (r->runtimes.gvisor.available)
        f.runtimes |= AGENT_RUNTIME_GVISOR;
    if (r->runtimes.kata.available)
        f.runtimes |= AGENT_RUNTIME_KATA;
    *out = f;
}

char *agent_facts_json(const agent_facts *f)
{
    json_t *runtimes = json_array();
    if (runtimes && (f->runtimes & AGENT_RUNTIME_GVISOR))
        json_array_append_new(runtimes, json_string(MOAT_RUNTIME_GVISOR));
    if (runtimes && (f->runtimes & AGENT_RUNTIME_KATA))
        json_array_append_new(runtimes, json_string(MOAT_RUNTIME_KATA));
    json_t *j =
        runtimes ? json_pack("{s:s, s:o, s:s}", "hypervisor", agent_hypervisor_name(f->hypervisor),
                             "runtimes", runtimes, "gpuMode", agent_gpu_mode_name(f->gpu_mode))
                 : NULL;
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

int agent_facts_parse(agent_facts *out, const char *text, size_t len, const char *origin,
                      moat_error *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, 0, &jerr);
    if (!j)
        return moat_error_set(err, MOAT_E_INVALID, "%s:%d: %s", origin, jerr.line, jerr.text);
    agent_facts f = {0};
    int rc = 0;
    const char *k;
    json_t *v;
    if (!json_is_object(j)) {
        rc = moat_error_set(err, MOAT_E_INVALID, "%s: want an object", origin);
        goto out;
    }
    json_object_foreach (j, k, v) {
        if (strcmp(k, "hypervisor") == 0) {
            if (agent_hypervisor_parse(&f.hypervisor, json_string_value(v)) < 0) {
                rc = moat_error_set(err, MOAT_E_INVALID,
                                    "%s: hypervisor: want \"kvm\", \"mshv\" or \"none\"", origin);
                goto out;
            }
        } else if (strcmp(k, "gpuMode") == 0) {
            const char *s = json_string_value(v);
            if (!s || gpu_mode_parse(&f.gpu_mode, s) < 0) {
                rc = moat_error_set(err, MOAT_E_INVALID,
                                    "%s: gpuMode: want \"none\", \"container\" or "
                                    "\"vm-passthrough\"",
                                    origin);
                goto out;
            }
        } else if (strcmp(k, "runtimes") == 0) {
            size_t i;
            json_t *e;
            if (!json_is_array(v)) {
                rc = moat_error_set(err, MOAT_E_INVALID, "%s: runtimes: want a list", origin);
                goto out;
            }
            json_array_foreach (v, i, e) {
                const char *s = json_string_value(e);
                if (s && strcmp(s, MOAT_RUNTIME_GVISOR) == 0)
                    f.runtimes |= AGENT_RUNTIME_GVISOR;
                else if (s && strcmp(s, MOAT_RUNTIME_KATA) == 0)
                    f.runtimes |= AGENT_RUNTIME_KATA;
                else {
                    rc =
                        moat_error_set(err, MOAT_E_INVALID,
                                       "%s: runtimes[%zu]: want \"gvisor\" or \"kata\"", origin, i);
                    goto out;
                }
            }
        } else {
            rc = moat_error_set(err, MOAT_E_INVALID, "%s: unknown key %s", origin, k);
            goto out;
        }
    }
    *out = f;
out:
    json_decref(j);
    return rc;
}

/* The real probe. */

static int host_probe(void *impl, agent_facts *out, char **ret_reason, moat_error *err)
{
    iso_report r = {0};
    if (iso_report_collect(&r, impl, NULL, err) < 0)
        return moat_error_prefix(err, "host probe");
    agent_facts_from_report(out, &r);
    if (ret_reason)
        *ret_reason = r.hypervisor.reason ? strdup(r.hypervisor.reason) : NULL;
    iso_report_clear(&r);
    return 0;
}

agent_facts_ops agent_facts_host(const iso_report_config *cfg)
{
    return (agent_facts_ops){host_probe, (void *)cfg};
}

static int file_probe(void *impl, agent_facts *out, char **ret_reason, moat_error *err)
{
    const char *path = impl;
    FILE *f = fopen(path, "re");
    if (!f)
        return moat_error_set_errno(err, errno, "facts file %s", path);
    _cleanup_free_ char *buf = malloc(AGENT_FACTS_MAX + 1);
    size_t n = buf ? fread(buf, 1, AGENT_FACTS_MAX + 1, f) : 0;
    bool bad = ferror(f);
    fclose(f);
    if (!buf)
        return moat_error_set(err, MOAT_E_NOMEM, "facts file %s: out of memory", path);
    if (bad)
        return moat_error_set(err, MOAT_E_IO, "facts file %s: read failed", path);
    if (n > AGENT_FACTS_MAX)
        return moat_error_set(err, MOAT_E_NOMEM, "facts file %s: larger than %d bytes", path,
                              AGENT_FACTS_MAX);
    if (agent_facts_parse(out, buf, n, path, err) < 0)
        return -1;
    if (ret_reason && asprintf(ret_reason, "from the facts file %s", path) < 0)
        *ret_reason = NULL;
    return 0;
}

agent_facts_ops agent_facts_file(const char *path)
{
    return (agent_facts_ops){file_probe, (void *)path};
}

/* Pods and reports. */

bool agent_sandbox_wants_moat(const cri_sandbox *s)
{
    const char *h = s->runtime_handler;
    return s->moat_keys ||
           (h && (strcmp(h, MOAT_RUNTIMECLASS_AUTO) == 0 || strcmp(h, MOAT_RUNTIMECLASS_VM) == 0 ||
                  strcmp(h, MOAT_RUNTIMECLASS_GVISOR) == 0));
}

const char *agent_runtime_of_handler(const char *handler, const char *default_runtime)
{
    if (!handler || !*handler)
        return default_runtime ? default_runtime : "runc";
    if (strncmp(handler, "runsc", 5) == 0)
        return MOAT_RUNTIME_GVISOR;
    if (strncmp(handler, "kata", 4) == 0)
        return MOAT_RUNTIME_KATA;
    return handler;
}

char *agent_report_json(const cri_sandbox_status *st, const char *default_runtime, bool config_mode)
{
    /* The runtime and the handler are what the runtime recorded for the sandbox, never what
     * its annotations say: a pod's author writes its annotations, and on a handler moat-cri
     * passes through (or with no moat-cri in front of the runtime) nothing overwrites
     * decision annotations the author wrote. The decision gives only its reason, and only
     * when it names exactly the handler and runtime that ran. */
    const char *read = st->runtime_handler ? st->runtime_handler : "";
    const char *runtime = agent_runtime_of_handler(read, default_runtime);
    _cleanup_free_ char *reason = NULL;
    bool decided = st->decision_runtime && *st->decision_runtime && st->decision_handler &&
                   *st->decision_handler;
    int n = 0;
    if (config_mode)
        /* No moat-cri on the node: whatever decision annotations the sandbox has, its
         * pod's author wrote. Say what this mode does not give. */
        n = asprintf(&reason,
                     "config mode: containerd ran handler \"%s\"; no moat-cri on this node, so "
                     "no runsc-nonet for egress None, no egress wall, no refusal of privileged "
                     "pods (README: Threat model)",
                     read);
    else if (decided && strcmp(read, st->decision_handler) == 0 &&
             strcmp(runtime, st->decision_runtime) == 0)
        reason = strdup(st->decision_reason ? st->decision_reason : "");
    else if (decided)
        n = asprintf(&reason,
                     "the sandbox's decision annotations name %s (%s), not what the runtime "
                     "recorded: reported from the runtime's handler \"%s\"",
                     st->decision_runtime, st->decision_handler, read);
    else if (*read)
        n = asprintf(&reason,
                     "no decision from moat-cri on the sandbox: handler \"%s\", as the runtime "
                     "reports it",
                     read);
    else
        n = asprintf(&reason, "no decision from moat-cri on the sandbox: the runtime's default "
                              "handler, as the runtime reports it");
    if (n < 0 || !reason)
        return NULL;
    json_t *r = json_pack("{s:s, s:s, s:s, s:b}", "runtime", runtime, "handler", read, "reason",
                          reason, "verified", 1);
    if (!r)
        return NULL;
    char *s = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    return s;
}

json_t *agent_pod_patch(const char *uid, const char *report)
{
    return json_pack("{s:{s:s, s:{s:s}}}", "metadata", "uid", uid, "annotations",
                     MOAT_ANNOTATION_ISOLATION_REPORT, report);
}

json_t *agent_activity_patch(const char *uid, int64_t when_s)
{
    char when[32];
    struct tm tm;
    time_t t = (time_t)when_s;
    if (!gmtime_r(&t, &tm) || strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return NULL;
    return json_pack("{s:{s:s, s:{s:s}}}", "metadata", "uid", uid, "annotations",
                     MOAT_ANNOTATION_LAST_ACTIVITY, when);
}

/* An activity file's time, or -1 (missing, or an ID that is no activity file's name). */
static int64_t activity_mtime(int dir_fd, const char *id)
{
    struct stat st;
    if (!moat_activity_id_valid(id) || fstatat(dir_fd, id, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISREG(st.st_mode))
        return -1;
    return (int64_t)st.st_mtim.tv_sec;
}

int64_t agent_activity_latest(const char *dir, const char *sandbox_id,
                              const cri_container_list *containers)
{
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0)
        return -1;
    int64_t latest = activity_mtime(fd, sandbox_id);
    for (size_t i = 0; containers && i < containers->n; i++) {
        if (strcmp(containers->items[i].pod_sandbox_id, sandbox_id) != 0)
            continue;
        int64_t t = activity_mtime(fd, containers->items[i].id);
        if (t > latest)
            latest = t;
    }
    close(fd);
    return latest;
}

static int cri_list(void *impl, cri_sandbox_list *out, moat_error *err)
{
    return cri_list_sandboxes(impl, out, AGENT_CRI_TIMEOUT_MS, err);
}

static int cri_status(void *impl, cri_sandbox_status *out, const char *sandbox_id, moat_error *err)
{
    return cri_sandbox_status_get(impl, out, sandbox_id, AGENT_CRI_TIMEOUT_MS, err);
}

static int cri_containers(void *impl, cri_container_list *out, moat_error *err)
{
    return cri_list_containers(impl, out, AGENT_CRI_TIMEOUT_MS, err);
}

static int cri_cpu(void *impl, cri_sandbox_cpu_list *out, moat_error *err)
{
    return cri_list_sandbox_cpu(impl, out, AGENT_CRI_TIMEOUT_MS, err);
}

agent_cri_ops agent_cri_client(cri_client *c)
{
    return (agent_cri_ops){cri_list, cri_status, cri_containers, cri_cpu, c};
}

/* The work loop. */

struct agent {
    kube_client *client;
    char *node_name, *default_runtime;
    bool config_mode;
    bool report_all;
    int64_t interval_ns;
    const agent_facts_ops *facts;
    const agent_cri_ops *cri;
    int64_t pods_interval_ns;
    int64_t sessions_at; /* when Sessions were last looked at (moat_mono_ns; 0: never) */
    workqueue *q;
    /* sandbox id -> the report last written on its Pod (the worker's alone); emptied every
     * probe interval, so a report someone removed is written again */
    json_t *reported;
    char *activity_dir; /* NULL: none */
    /* the Sessions on the node (the worker's alone): sandbox id and what it has seen */
    struct tracked_session {
        char *id;
        agent_session s;
        bool seen;
    } * sessions;
    size_t n_sessions, cap_sessions;
    pthread_mutex_t lock; /* guards what follows: the worker writes, /metrics reads */
    bool listed;          /* the runtime's sandboxes were listed once */
    bool have_facts;
    agent_facts last; /* the facts last labelled */
    uint64_t labelled, label_errors, probe_errors, reports, report_errors;
    uint64_t activity_writes, activity_errors;
    size_t sessions_tracked;
};

static void count(agent *a, uint64_t *counter)
{
    pthread_mutex_lock(&a->lock);
    (*counter)++;
    pthread_mutex_unlock(&a->lock);
}

int agent_new(agent **out, kube_client *client, const agent_options *opts,
              const agent_facts_ops *facts, const agent_cri_ops *cri, moat_error *err)
{
    if (!out || !client || !opts || !opts->node_name || !*opts->node_name || !facts || !cri)
        return moat_error_set(err, MOAT_E_INVALID, "agent: missing node name or backend");
    agent *a = calloc(1, sizeof(*a));
    if (!a)
        return moat_error_set(err, MOAT_E_NOMEM, "agent: out of memory");
    pthread_mutex_init(&a->lock, NULL);
    a->client = client;
    a->facts = facts;
    a->cri = cri;
    a->report_all = opts->report_all;
    a->interval_ns = opts->probe_interval_ns > 0 ? opts->probe_interval_ns : 60000000000LL;
    a->pods_interval_ns =
        opts->pods_interval_ns > 0 ? opts->pods_interval_ns : AGENT_PODS_INTERVAL_NS;
    a->reported = json_object();
    a->node_name = strdup(opts->node_name);
    a->default_runtime = strdup(opts->default_runtime ? opts->default_runtime : "runc");
    a->config_mode = opts->config_mode;
    if (opts->activity_dir && !(a->activity_dir = strdup(opts->activity_dir))) {
        agent_free(a);
        return moat_error_set(err, MOAT_E_NOMEM, "agent: out of memory");
    }
    workqueue_options wo = {.max_delay_ns = 30000000000LL};
    if (!a->node_name || !a->default_runtime || !a->reported) {
        agent_free(a);
        return moat_error_set(err, MOAT_E_NOMEM, "agent: out of memory");
    }
    if (workqueue_new(&a->q, &wo, err) < 0) {
        agent_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

void agent_free(agent *a)
{
    if (!a)
        return;
    workqueue_free(a->q);
    json_decref(a->reported);
    for (size_t i = 0; i < a->n_sessions; i++)
        free(a->sessions[i].id);
    free(a->sessions);
    free(a->activity_dir);
    free(a->node_name);
    free(a->default_runtime);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

bool agent_ready(agent *a)
{
    pthread_mutex_lock(&a->lock);
    bool ready = a->have_facts && a->listed;
    pthread_mutex_unlock(&a->lock);
    return ready;
}

char *agent_metrics(agent *a)
{
    moat_strbuf b = {0};
    pthread_mutex_lock(&a->lock);
    moat_strbuf_appendf(
        &b,
        "# HELP moat_agent_node_labels_total Node labellings (probe, then patch if needed).\n"
        "# TYPE moat_agent_node_labels_total counter\n"
        "moat_agent_node_labels_total{result=\"ok\"} %llu\n"
        "moat_agent_node_labels_total{result=\"error\"} %llu\n"
        "# HELP moat_agent_probe_errors_total Host probes that failed.\n"
        "# TYPE moat_agent_probe_errors_total counter\nmoat_agent_probe_errors_total %llu\n"
        "# HELP moat_agent_pod_reports_total Isolation reports written on Pods.\n"
        "# TYPE moat_agent_pod_reports_total counter\n"
        "moat_agent_pod_reports_total{result=\"ok\"} %llu\n"
        "moat_agent_pod_reports_total{result=\"error\"} %llu\n",
        (unsigned long long)a->labelled, (unsigned long long)a->label_errors,
        (unsigned long long)a->probe_errors, (unsigned long long)a->reports,
        (unsigned long long)a->report_errors);
    moat_strbuf_appendf(
        &b,
        "# HELP moat_agent_sessions Sessions on this node whose activity the agent follows.\n"
        "# TYPE moat_agent_sessions gauge\nmoat_agent_sessions %zu\n"
        "# HELP moat_agent_activity_writes_total Last-activity annotations written on Pods.\n"
        "# TYPE moat_agent_activity_writes_total counter\n"
        "moat_agent_activity_writes_total{result=\"ok\"} %llu\n"
        "moat_agent_activity_writes_total{result=\"error\"} %llu\n",
        a->sessions_tracked, (unsigned long long)a->activity_writes,
        (unsigned long long)a->activity_errors);
    if (a->have_facts) {
        moat_strbuf_appendf(
            &b,
            "# HELP moat_agent_node_info The facts last labelled on the node.\n"
            "# TYPE moat_agent_node_info gauge\n"
            "moat_agent_node_info{hypervisor=\"%s\",gpu_mode=\"%s\",gvisor=\"%s\","
            "kata=\"%s\"} 1\n",
            agent_hypervisor_name(a->last.hypervisor), agent_gpu_mode_name(a->last.gpu_mode),
            a->last.runtimes & AGENT_RUNTIME_GVISOR ? "true" : "false",
            /* as labelled: Kata only with a hypervisor */
            (a->last.runtimes & AGENT_RUNTIME_KATA) && a->last.hypervisor != AGENT_HYPERVISOR_NONE
                ? "true"
                : "false");
    }
    pthread_mutex_unlock(&a->lock);
    if (b.truncated) {
        free(moat_strbuf_take(&b));
        return NULL;
    }
    return moat_strbuf_take(&b);
}

void agent_reprobe(agent *a)
{
    workqueue_add(a->q, NODE_KEY, NULL);
}

void agent_stop(agent *a)
{
    workqueue_shutdown(a->q);
}

static int label_node(agent *a)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    agent_facts f = {0};
    _cleanup_free_ char *why = NULL;
    if (a->facts->probe(a->facts->impl, &f, &why, &err) < 0) {
        log_warn(a->node_name, "probe: %s", err.message);
        count(a, &a->probe_errors);
        count(a, &a->label_errors);
        return -1;
    }
    json_t *labels = agent_facts_labels(&f), *node = NULL, *patch = NULL;
    int rc = -1;
    if (!labels) {
        log_error(a->node_name, "labels: out of memory");
        return -1;
    }
    if (kube_get(a->client, &node, &KUBE_NODES, NULL, a->node_name, &err) < 0) {
        log_warn(a->node_name, "%s", err.message);
        goto out;
    }
    if (agent_node_patch(&patch, node, labels, &err) < 0) {
        log_error(a->node_name, "%s", err.message);
        goto out;
    }
    if (patch) {
        if (kube_patch(a->client, NULL, &KUBE_NODES, NULL, a->node_name, KUBE_PATCH_MERGE, patch,
                       NULL, &err) < 0) {
            log_warn(a->node_name, "label the node: %s", err.message);
            goto out;
        }
        _cleanup_free_ char *text =
            json_dumps(json_object_get(json_object_get(patch, "metadata"), "labels"),
                       JSON_COMPACT | JSON_SORT_KEYS);
        log_info(a->node_name, "labels %s (hypervisor %s: %s)", text ? text : "?",
                 agent_hypervisor_name(f.hypervisor), why ? why : "");
    } else if (!a->have_facts || !agent_facts_equal(&f, &a->last)) {
        log_info(a->node_name, "labels up to date (hypervisor %s: %s)",
                 agent_hypervisor_name(f.hypervisor), why ? why : "");
    }
    pthread_mutex_lock(&a->lock);
    a->last = f;
    a->have_facts = true;
    a->labelled++;
    pthread_mutex_unlock(&a->lock);
    rc = 0;
out:
    if (rc < 0)
        count(a, &a->label_errors);
    json_decref(labels);
    json_decref(node);
    json_decref(patch);
    return rc;
}

/* One sandbox's report on its Pod, by name, with the Pod's uid as a precondition (a Pod of
 * that name created since is not touched). 0 done or nothing to do, -1 failed. */
static int report_sandbox(agent *a, const cri_sandbox *sb)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    _cleanup_free_ char *key = NULL, *report = NULL;
    if (asprintf(&key, "%s/%s", sb->namespace_, sb->name) < 0)
        return -1;
    cri_sandbox_status st = {0};
    int rc = 0;
    json_t *patch = NULL;
    if (a->cri->status(a->cri->impl, &st, sb->id, &err) < 0) {
        rc = err.code == MOAT_E_NOTFOUND ? 0 : -1; /* gone since the listing */
        if (rc < 0)
            log_warn(key, "%s", err.message);
        goto out;
    }
    report = agent_report_json(&st, a->default_runtime, a->config_mode);
    const char *last = json_string_value(json_object_get(a->reported, sb->id));
    if (!report || (last && strcmp(last, report) == 0)) {
        rc = report ? 0 : -1;
        goto out;
    }
    if (!(patch = agent_pod_patch(sb->pod_uid, report))) {
        rc = -1;
        goto out;
    }
    if (kube_patch(a->client, NULL, &KUBE_PODS, sb->namespace_, sb->name, KUBE_PATCH_MERGE, patch,
                   NULL, &err) < 0) {
        /* gone, or another Pod of that name now (the uid differs: immutable) */
        if (kube_error_is(&err, KUBE_REASON_NOT_FOUND) ||
            kube_error_is(&err, KUBE_REASON_INVALID) || kube_error_is(&err, KUBE_REASON_CONFLICT)) {
            json_object_set_new(a->reported, sb->id, json_string(report));
            goto out;
        }
        log_warn(key, "report: %s", err.message);
        rc = -1;
        goto out;
    }
    json_object_set_new(a->reported, sb->id, json_string(report));
    if (!last)
        log_info(key, "isolation report %s (sandbox %.12s)", report, sb->id);
    count(a, &a->reports);
out:
    if (rc < 0)
        count(a, &a->report_errors);
    cri_sandbox_status_clear(&st);
    json_decref(patch);
    return rc;
}

static struct tracked_session *session_find(agent *a, const char *id)
{
    for (size_t i = 0; i < a->n_sessions; i++)
        if (strcmp(a->sessions[i].id, id) == 0)
            return &a->sessions[i];
    if (a->n_sessions == a->cap_sessions) {
        size_t cap = a->cap_sessions ? a->cap_sessions * 2 : 8;
        struct tracked_session *n = realloc(a->sessions, cap * sizeof(*n));
        if (!n)
            return NULL;
        a->sessions = n;
        a->cap_sessions = cap;
    }
    struct tracked_session *t = &a->sessions[a->n_sessions];
    if (!(t->id = strdup(id)))
        return NULL;
    agent_session_init(&t->s);
    t->seen = false;
    a->n_sessions++;
    return t;
}

static bool is_session(const cri_sandbox *sb)
{
    return sb->session_idle_s > 0 && sb->state == 0 && *sb->pod_uid && *sb->name;
}

/* One Session's pass: its observations in, its last activity out when it moved (at most
 * once per idleTimeout/4). 0, or -1 when the write failed (tried again next pass). */
static int session_pass(agent *a, const cri_sandbox *sb, struct tracked_session *t,
                        const cri_container_list *containers, const cri_sandbox_cpu_list *cpu,
                        int64_t now)
{
    agent_session_pass in = {.now_s = now,
                             .idle_s = sb->session_idle_s,
                             .stream_start_s =
                                 agent_activity_latest(a->activity_dir, sb->id, containers)};
    for (size_t i = 0; i < cpu->n; i++)
        if (cpu->items[i].has_cpu && strcmp(cpu->items[i].id, sb->id) == 0) {
            in.has_cpu = true;
            in.cpu_ns = cpu->items[i].timestamp_ns;
            in.cpu_usage_ns = cpu->items[i].usage_ns;
        }
    if (!agent_session_observe(&t->s, &in))
        return 0;
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    _cleanup_free_ char *key = NULL;
    if (asprintf(&key, "%s/%s", sb->namespace_, sb->name) < 0)
        return -1;
    json_t *patch = agent_activity_patch(sb->pod_uid, t->s.last_activity_s);
    int rc = patch ? kube_patch(a->client, NULL, &KUBE_PODS, sb->namespace_, sb->name,
                                KUBE_PATCH_MERGE, patch, NULL, &err)
                   : moat_error_set(&err, MOAT_E_NOMEM, "out of memory");
    json_decref(patch);
    /* gone, or another Pod of that name now (NotFound, Invalid, Conflict): nothing to tell */
    bool gone = kube_error_is(&err, KUBE_REASON_NOT_FOUND) ||
                kube_error_is(&err, KUBE_REASON_INVALID) ||
                kube_error_is(&err, KUBE_REASON_CONFLICT);
    if (rc < 0 && !gone) {
        log_warn(key, "last activity: %s", err.message);
        count(a, &a->activity_errors);
        return -1;
    }
    agent_session_published(&t->s, now);
    count(a, &a->activity_writes);
    return 0;
}

/* Every Session on the node (a Moat sandbox with MOAT_ANNOTATION_IDLE_TIMEOUT, ready): its
 * activity judged and published (session.h); the ones no longer listed are forgotten. */
static int sessions_pass(agent *a, const cri_sandbox_list *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += is_session(&l->items[i]) && cri_sandbox_is_newest(l, &l->items[i]);
    int rc = 0;
    bool looked = true;
    if (n > 0 && a->cri->containers && a->cri->cpu) {
        _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
        cri_container_list containers = {0};
        cri_sandbox_cpu_list cpu = {0};
        if (a->cri->containers(a->cri->impl, &containers, &err) < 0 ||
            a->cri->cpu(a->cri->impl, &cpu, &err) < 0) {
            log_warn(a->node_name, "sessions: %s", err.message);
            count(a, &a->activity_errors);
            rc = -1;
            looked = false;
        } else {
            int64_t now = (int64_t)time(NULL);
            for (size_t i = 0; i < l->n; i++) {
                const cri_sandbox *sb = &l->items[i];
                if (!is_session(sb) || !cri_sandbox_is_newest(l, sb))
                    continue;
                struct tracked_session *t = session_find(a, sb->id);
                if (!t) {
                    rc = -1;
                    continue;
                }
                t->seen = true;
                if (session_pass(a, sb, t, &containers, &cpu, now) < 0)
                    rc = -1;
            }
        }
        cri_container_list_clear(&containers);
        cri_sandbox_cpu_list_clear(&cpu);
        if (!looked)
            return rc; /* nothing was looked at: keep what is tracked */
    }
    size_t k = 0;
    for (size_t i = 0; i < a->n_sessions; i++) {
        if (a->sessions[i].seen) {
            a->sessions[i].seen = false;
            a->sessions[k++] = a->sessions[i];
        } else {
            free(a->sessions[i].id);
        }
    }
    a->n_sessions = k;
    pthread_mutex_lock(&a->lock);
    a->sessions_tracked = k;
    pthread_mutex_unlock(&a->lock);
    return rc;
}

/* The node's pods, from the runtime (no list or watch of Pods in the API: RBAC could not
 * keep that to this node): the newest sandbox of each pod that is Moat's (or every pod),
 * reported when it is new to the agent or its report changed. 0, or -1 when the runtime
 * could not be listed or a report failed (tried again sooner). */
static int report_pods(agent *a)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    cri_sandbox_list l = {0};
    if (a->cri->list(a->cri->impl, &l, &err) < 0) {
        log_warn(a->node_name, "pods: %s", err.message);
        count(a, &a->report_errors);
        return -1;
    }
    int rc = 0;
    json_t *seen = json_object();
    for (size_t i = 0; seen && i < l.n; i++) {
        const cri_sandbox *sb = &l.items[i];
        if (!*sb->pod_uid || !*sb->name || !cri_sandbox_is_newest(&l, sb) ||
            (!a->report_all && !agent_sandbox_wants_moat(sb)))
            continue;
        json_object_set_new(seen, sb->id, json_true());
        /* a sandbox's record never changes: one report each, until the interval's rewrite */
        if (!json_object_get(a->reported, sb->id) && report_sandbox(a, sb) < 0)
            rc = -1;
    }
    /* what is no longer listed is forgotten */
    const char *id;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(a->reported, tmp, id, v) if (seen && !json_object_get(seen, id))
        json_object_del(a->reported, id);
    json_decref(seen);
    /* Sessions at their own pace, whatever the listing's: their CPU is judged per interval */
    int64_t now = moat_mono_ns();
    if (!a->sessions_at || now - a->sessions_at >= AGENT_SESSIONS_INTERVAL_NS) {
        a->sessions_at = now;
        if (sessions_pass(a, &l) < 0) {
            a->sessions_at = 0; /* the retry's listing looks at them again */
            rc = -1;
        }
    }
    cri_sandbox_list_clear(&l);
    pthread_mutex_lock(&a->lock);
    a->listed = true;
    pthread_mutex_unlock(&a->lock);
    return rc;
}

int agent_run(agent *a, moat_error *err)
{
    (void)err;
    workqueue_add(a->q, NODE_KEY, NULL);
    workqueue_add(a->q, PODS_KEY, NULL);

    char *key;
    while (workqueue_get(a->q, &key) == 0) {
        int rc = strcmp(key, NODE_KEY) == 0 ? label_node(a) : report_pods(a);
        if (rc == 0) {
            workqueue_forget(a->q, key);
            if (strcmp(key, NODE_KEY) == 0) {
                /* Every interval: probe again, and write every pod's report once more (a
                 * report someone removed). */
                json_object_clear(a->reported);
                workqueue_add_after(a->q, key, a->interval_ns, NULL);
            } else {
                workqueue_add_after(a->q, key, a->pods_interval_ns, NULL);
            }
        } else {
            workqueue_add_rate_limited(a->q, key, NULL);
        }
        workqueue_done(a->q, key);
        free(key);
    }
    return 0;
}
