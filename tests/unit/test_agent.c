/* The node agent's pure parts: labels from facts, the Node patch, the isolation report,
 * and the CRI messages it decodes (encoded here with the same protobuf-c schema, and as
 * hand-written bytes with upstream's field numbers); and one pass of agent_run against a
 * made-up runtime (agent_cri_ops) and API server (kube_transport). */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "isolation/agent/agent.h"
#include "libmoat/cri/cri.h"
#include "libmoat/cri/cri.pb-c.h"
#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"
#include "libmoat/names.h"

static const char *label(const json_t *labels, const char *key)
{
    return json_string_value(json_object_get(labels, key));
}

/* Every combination of hypervisor x runtimes x GPU mode. */
static void test_labels_every_combination(void **state)
{
    (void)state;
    const agent_hypervisor hvs[] = {AGENT_HYPERVISOR_NONE, AGENT_HYPERVISOR_KVM,
                                    AGENT_HYPERVISOR_MSHV};
    const char *hv_names[] = {"none", "kvm", "mshv"};
    const agent_gpu_mode gpus[] = {AGENT_GPU_NONE, AGENT_GPU_CONTAINER, AGENT_GPU_VM};
    const char *gpu_names[] = {"none", "container", "vm-passthrough"};
    for (size_t h = 0; h < 3; h++)
        for (unsigned rt = 0; rt <= AGENT_RUNTIME_ALL; rt++)
            for (size_t g = 0; g < 3; g++) {
                agent_facts f = {hvs[h], rt, gpus[g]};
                json_t *l = agent_facts_labels(&f);
                assert_non_null(l);
                assert_string_equal(label(l, "moat.dev/managed"), "true");
                assert_string_equal(label(l, "moat.dev/hypervisor"), hv_names[h]);
                assert_string_equal(label(l, "moat.dev/gpu-mode"), gpu_names[g]);
                bool gvisor = rt & AGENT_RUNTIME_GVISOR;
                bool kata = (rt & AGENT_RUNTIME_KATA) && hvs[h] != AGENT_HYPERVISOR_NONE;
                if (gvisor)
                    assert_string_equal(label(l, "moat.dev/runtime.gvisor"), "true");
                else
                    assert_null(json_object_get(l, "moat.dev/runtime.gvisor"));
                if (kata)
                    assert_string_equal(label(l, "moat.dev/runtime.kata"), "true");
                else
                    assert_null(json_object_get(l, "moat.dev/runtime.kata"));
                assert_int_equal(json_object_size(l), 3 + gvisor + kata);
                const char *k;
                json_t *v;
                json_object_foreach (l, k, v)
                    assert_true(agent_label_is_owned(k));
                json_decref(l);
            }
}

static void test_owned_keys(void **state)
{
    (void)state;
    assert_true(agent_label_is_owned("moat.dev/managed"));
    assert_true(agent_label_is_owned("moat.dev/hypervisor"));
    assert_true(agent_label_is_owned("moat.dev/gpu-mode"));
    assert_true(agent_label_is_owned("moat.dev/runtime.gvisor"));
    assert_true(agent_label_is_owned("moat.dev/runtime.something-new"));
    assert_false(agent_label_is_owned("moat.dev/runtime."));
    assert_false(agent_label_is_owned("moat.dev/gpu-product"));
    assert_false(agent_label_is_owned("moat.dev/sandbox"));
    assert_false(agent_label_is_owned("kubernetes.io/hostname"));
    assert_false(agent_label_is_owned("moat.dev/managedx"));
    assert_false(agent_label_is_owned(NULL));
}

static json_t *node_with(const char *labels_json)
{
    json_t *l = json_loads(labels_json, 0, NULL);
    assert_non_null(l);
    return json_pack("{s:{s:s, s:o}}", "metadata", "name", "n1", "labels", l);
}

static void test_patch_only_moat_keys(void **state)
{
    (void)state;
    json_t *node = node_with("{\"kubernetes.io/hostname\": \"n1\", \"team\": \"x\","
                             " \"moat.dev/gpu-product\": \"H100\","
                             " \"moat.dev/hypervisor\": \"kvm\","
                             " \"moat.dev/runtime.kata\": \"true\","
                             " \"moat.dev/runtime.gvisor\": \"true\","
                             " \"moat.dev/managed\": \"true\"}");
    agent_facts f = {AGENT_HYPERVISOR_NONE, AGENT_RUNTIME_ALL, AGENT_GPU_NONE};
    json_t *labels = agent_facts_labels(&f);
    /* A label value that is not ours in the desired set is never sent. */
    json_object_set_new(labels, "team", json_string("y"));
    json_t *patch = NULL;
    assert_int_equal(agent_node_patch(&patch, node, labels, NULL), 0);
    assert_non_null(patch);
    json_t *want = json_loads("{\"metadata\": {\"labels\": {\"moat.dev/hypervisor\": \"none\","
                              " \"moat.dev/gpu-mode\": \"none\","
                              " \"moat.dev/runtime.kata\": null}}}",
                              0, NULL);
    if (!json_equal(patch, want)) {
        char *s = json_dumps(patch, 0);
        fail_msg("patch %s", s);
    }
    assert_int_equal(json_object_size(patch), 1);
    assert_int_equal(json_object_size(json_object_get(patch, "metadata")), 1);
    json_decref(want);
    json_decref(patch);
    json_decref(labels);
    json_decref(node);
}

static void test_patch_nothing_to_change(void **state)
{
    (void)state;
    agent_facts f = {AGENT_HYPERVISOR_KVM, AGENT_RUNTIME_GVISOR, AGENT_GPU_CONTAINER};
    json_t *labels = agent_facts_labels(&f);
    json_t *node = node_with("{\"a\": \"b\"}");
    json_t *l = json_object_get(json_object_get(node, "metadata"), "labels");
    json_object_update(l, labels);
    json_t *patch = (json_t *)1;
    assert_int_equal(agent_node_patch(&patch, node, labels, NULL), 0);
    assert_null(patch);
    json_decref(node);

    /* No labels at all, and no node: every label is set, nothing nulled. */
    node = json_pack("{s:{s:s}}", "metadata", "name", "n1");
    assert_int_equal(agent_node_patch(&patch, node, labels, NULL), 0);
    assert_true(json_equal(json_object_get(json_object_get(patch, "metadata"), "labels"), labels));
    json_decref(patch);
    assert_int_equal(agent_node_patch(&patch, NULL, labels, NULL), 0);
    assert_true(json_equal(json_object_get(json_object_get(patch, "metadata"), "labels"), labels));
    json_decref(patch);
    json_decref(node);
    json_decref(labels);
}

static void test_facts_from_report(void **state)
{
    (void)state;
    agent_facts f;
    iso_report r;
    memset(&r, 0, sizeof(r));
    r.hypervisor.usable = true;
    r.hypervisor.hypervisor = (char *)"mshv";
    r.gpu.mode = MOAT_GPU_MODE_VM;
    r.runtimes.gvisor.available = true;
    r.runtimes.kata.available = true;
    agent_facts_from_report(&f, &r);
    assert_int_equal(f.hypervisor, AGENT_HYPERVISOR_MSHV);
    assert_int_equal(f.runtimes, AGENT_RUNTIME_ALL);
    assert_int_equal(f.gpu_mode, AGENT_GPU_VM);

    /* Found but not usable (this machine's kvm_pvm): none, and no Kata. */
    memset(&r, 0, sizeof(r));
    r.hypervisor.usable = false;
    r.hypervisor.hypervisor = NULL;
    r.hypervisor.found = "kvm-pvm";
    r.runtimes.gvisor.available = true;
    agent_facts_from_report(&f, &r);
    assert_int_equal(f.hypervisor, AGENT_HYPERVISOR_NONE);
    assert_int_equal(f.runtimes, AGENT_RUNTIME_GVISOR);
    assert_int_equal(f.gpu_mode, AGENT_GPU_NONE);
    r.hypervisor.usable = true;
    r.hypervisor.hypervisor = (char *)"kvm";
    r.gpu.mode = MOAT_GPU_MODE_CONTAINER;
    agent_facts_from_report(&f, &r);
    assert_int_equal(f.hypervisor, AGENT_HYPERVISOR_KVM);
    assert_int_equal(f.gpu_mode, AGENT_GPU_CONTAINER);
}

static void test_facts_parse(void **state)
{
    (void)state;
    agent_facts f = {AGENT_HYPERVISOR_MSHV, 0, 0};
    const char *ok = "{\"hypervisor\": \"kvm\", \"runtimes\": [\"gvisor\", \"kata\"],"
                     " \"gpuMode\": \"container\"}";
    assert_int_equal(agent_facts_parse(&f, ok, strlen(ok), "f.json", NULL), 0);
    assert_int_equal(f.hypervisor, AGENT_HYPERVISOR_KVM);
    assert_int_equal(f.runtimes, AGENT_RUNTIME_ALL);
    assert_int_equal(f.gpu_mode, AGENT_GPU_CONTAINER);
    /* what --write-facts writes, --facts reads back the same */
    agent_facts back = {0};
    char *text = agent_facts_json(&f);
    assert_int_equal(agent_facts_parse(&back, text, strlen(text), "written", NULL), 0);
    assert_true(agent_facts_equal(&f, &back));
    free(text);
    assert_int_equal(agent_facts_parse(&f, "{}", 2, "f.json", NULL), 0);
    assert_int_equal(f.hypervisor, AGENT_HYPERVISOR_NONE);
    const char *bad[] = {"{\"hypervisor\": \"xen\"}",
                         "{\"runtimes\": [\"runc\"]}",
                         "{\"gpuMode\": 1}",
                         "{\"other\": 1}",
                         "[]",
                         "{"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        moat_error err = MOAT_ERROR_INIT;
        f.hypervisor = AGENT_HYPERVISOR_MSHV;
        assert_int_equal(agent_facts_parse(&f, bad[i], strlen(bad[i]), "f.json", &err), -1);
        assert_int_equal(err.code, MOAT_E_INVALID);
        assert_non_null(strstr(err.message, "f.json"));
        assert_int_equal(f.hypervisor, AGENT_HYPERVISOR_MSHV);
        moat_error_clear(&err);
    }
}

static void test_pod_wants_moat(void **state)
{
    (void)state;
    cri_sandbox yes[] = {{.runtime_handler = (char *)"moat-auto"},
                         {.runtime_handler = (char *)"moat-vm"},
                         {.runtime_handler = (char *)"moat-gvisor"},
                         {.runtime_handler = (char *)"runsc", .moat_keys = true}};
    cri_sandbox no[] = {{.runtime_handler = (char *)"gvisor"},
                        {.runtime_handler = (char *)"runsc"},
                        {.runtime_handler = (char *)""}};
    for (size_t i = 0; i < ELEMENTSOF(yes); i++)
        assert_true(agent_sandbox_wants_moat(&yes[i]));
    for (size_t i = 0; i < ELEMENTSOF(no); i++)
        assert_false(agent_sandbox_wants_moat(&no[i]));
}

static json_t *report_of(const char *handler, const char *d_runtime, const char *d_handler,
                         const char *d_reason)
{
    cri_sandbox_status st = {
        .id = (char *)"abc",
        .pod_uid = (char *)"u",
        .runtime_handler = (char *)handler,
        .decision_runtime = (char *)d_runtime,
        .decision_handler = (char *)d_handler,
        .decision_reason = (char *)d_reason,
    };
    char *s = agent_report_json(&st, "runc", false);
    assert_non_null(s);
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 4);
    free(s);
    return j;
}

static void test_report(void **state)
{
    (void)state;
    /* The decision confirmed by the runtime. */
    json_t *r = report_of("runsc", "gvisor", "runsc", "no usable hypervisor: no /dev/kvm");
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), "gvisor");
    assert_string_equal(json_string_value(json_object_get(r, "handler")), "runsc");
    assert_string_equal(json_string_value(json_object_get(r, "reason")),
                        "no usable hypervisor: no /dev/kvm");
    assert_true(json_is_true(json_object_get(r, "verified")));
    json_decref(r);

    /* Decision annotations on a pod the runtime ran on runc (a pod's author wrote them, on
     * a handler moat-cri passes through): the report is runc's, whatever they say. */
    r = report_of("runc", "kata", "kata-clh", "kvm usable");
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), "runc");
    assert_string_equal(json_string_value(json_object_get(r, "handler")), "runc");
    assert_true(json_is_true(json_object_get(r, "verified")));
    assert_non_null(strstr(json_string_value(json_object_get(r, "reason")), "\"runc\""));
    assert_null(strstr(json_string_value(json_object_get(r, "reason")), "kvm usable"));
    json_decref(r);
    /* ... also when they name the real handler with another runtime. */
    r = report_of("runsc", "kata", "runsc", "forged");
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), "gvisor");
    assert_null(strstr(json_string_value(json_object_get(r, "reason")), "forged"));
    json_decref(r);

    /* No decision at all: a pod passed through to the default runtime. */
    r = report_of("", NULL, NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), "runc");
    assert_string_equal(json_string_value(json_object_get(r, "handler")), "");
    assert_true(json_is_true(json_object_get(r, "verified")));
    assert_non_null(strstr(json_string_value(json_object_get(r, "reason")), "no decision"));
    json_decref(r);

    /* No decision, a gVisor handler (config mode): the runtime from the handler. */
    r = report_of("runsc-nonet", NULL, NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), "gvisor");
    assert_string_equal(json_string_value(json_object_get(r, "handler")), "runsc-nonet");
    json_decref(r);

    /* Half a decision (handler annotation missing) counts as none; a missing reason is "". */
    r = report_of("kata-clh", "kata", NULL, "x");
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), "kata");
    assert_non_null(strstr(json_string_value(json_object_get(r, "reason")), "no decision"));
    json_decref(r);
    r = report_of("runsc", "gvisor", "runsc", NULL);
    assert_string_equal(json_string_value(json_object_get(r, "reason")), "");
    assert_true(json_is_true(json_object_get(r, "verified")));
    json_decref(r);

    /* Config mode: decisions there are the pod author's; the reason says what is dropped. */
    cri_sandbox_status cm = {.id = (char *)"abc",
                             .pod_uid = (char *)"u",
                             .runtime_handler = (char *)"runsc",
                             .decision_runtime = (char *)"gvisor",
                             .decision_handler = (char *)"runsc",
                             .decision_reason = (char *)"forged"};
    char *text = agent_report_json(&cm, "runc", true);
    assert_non_null(text);
    r = json_loads(text, 0, NULL);
    free(text);
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), "gvisor");
    const char *why = json_string_value(json_object_get(r, "reason"));
    assert_non_null(strstr(why, "config mode"));
    assert_non_null(strstr(why, "no egress wall"));
    assert_null(strstr(why, "forged"));
    json_decref(r);

    /* A decision naming the runtime that ran but another of its handlers (an egress-None
     * pod decided runsc-nonet that ran on runsc, a GPU VM that ran without its GPUs): the
     * report is the handler that ran, and says the decision disagreed. */
    static const char *const same_runtime[][4] = {
        {"runsc", MOAT_RUNTIME_GVISOR, "runsc-nonet",
         "no network requested: gVisor with --network=none"},
        {"kata-clh", MOAT_RUNTIME_KATA, "kata-qemu-nvidia-gpu", "GPU passthrough"},
    };
    for (size_t i = 0; i < ELEMENTSOF(same_runtime); i++) {
        r = report_of(same_runtime[i][0], same_runtime[i][1], same_runtime[i][2],
                      same_runtime[i][3]);
        assert_string_equal(json_string_value(json_object_get(r, "handler")), same_runtime[i][0]);
        assert_string_equal(json_string_value(json_object_get(r, "runtime")), same_runtime[i][1]);
        const char *reason = json_string_value(json_object_get(r, "reason"));
        assert_non_null(strstr(reason, "not what the runtime recorded"));
        assert_non_null(strstr(reason, same_runtime[i][2]));
        assert_null(strstr(reason, same_runtime[i][3]));
        assert_true(json_is_true(json_object_get(r, "verified")));
        json_decref(r);
    }

    /* Decision annotations present but empty are no decision. */
    r = report_of("", "", "", "x");
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), "runc");
    assert_non_null(strstr(json_string_value(json_object_get(r, "reason")), "no decision"));
    json_decref(r);

    assert_string_equal(agent_runtime_of_handler("other", "runc"), "other");
    assert_string_equal(agent_runtime_of_handler(NULL, NULL), "runc");
    assert_string_equal(agent_runtime_of_handler("kata-qemu-nvidia-gpu", "runc"), "kata");
}

static void test_pod_patch(void **state)
{
    (void)state;
    const char *rep = "{\"runtime\":\"gvisor\",\"handler\":\"runsc\",\"reason\":\"r\","
                      "\"verified\":true}";
    json_t *patch = agent_pod_patch("uid-1", rep);
    /* the uid rides along: the API server refuses the patch on another Pod of that name */
    json_t *want = json_pack("{s:{s:s, s:{s:s}}}", "metadata", "uid", "uid-1", "annotations",
                             MOAT_ANNOTATION_ISOLATION_REPORT, rep);
    assert_true(json_equal(patch, want));
    json_decref(patch);
    json_decref(want);
}

/* ---- reports through agent_run ------------------------------------------------------------ */

/* The API server: the Node answers GET, every PATCH is recorded and answered 200. */
typedef struct {
    json_t *pod_patches; /* path -> patch body */
    int node_patches, others;
} fake_api;

static int api_send(void *impl, const kube_http_request *req, kube_http_response *resp,
                    moat_error *err)
{
    (void)err;
    fake_api *f = impl;
    const char *body = "{}";
    resp->status = 200;
    if (strcmp(req->method, "GET") == 0 && strcmp(req->path, "/api/v1/nodes/node-1") == 0)
        body = "{\"metadata\":{\"name\":\"node-1\",\"labels\":{}}}";
    else if (strcmp(req->method, "PATCH") == 0 && strcmp(req->path, "/api/v1/nodes/node-1") == 0)
        f->node_patches++;
    else if (strcmp(req->method, "PATCH") == 0 && strstr(req->path, "/pods/"))
        json_object_set_new(f->pod_patches, req->path,
                            json_loadb(req->body, req->body_len, 0, NULL));
    else {
        f->others++;
        resp->status = 404;
        body = "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"NotFound\",\"code\":404}";
    }
    resp->body = strdup(body);
    resp->body_len = strlen(body);
    resp->retry_after_ns = -1;
    return 0;
}

static int facts_none(void *impl, agent_facts *out, char **ret_reason, moat_error *err)
{
    (void)impl;
    (void)err;
    *out = (agent_facts){AGENT_HYPERVISOR_NONE, AGENT_RUNTIME_GVISOR, AGENT_GPU_NONE};
    if (ret_reason)
        *ret_reason = strdup("no /dev/kvm");
    return 0;
}

/* The runtime's sandboxes: id, pod (namespace/name, uid), attempt, handler, whether it has
 * Moat's keys, and what its status says (decision runtime, handler, reason; gone). */
static const struct {
    const char *id, *name, *uid;
    uint32_t attempt;
    const char *handler;
    bool moat;
    const char *d_runtime, *d_handler, *d_reason;
    bool gone;
} sandboxes[] = {
    {"sb-good", "good", "u1", 1, "runsc", true, MOAT_RUNTIME_GVISOR, "runsc",
     "no usable hypervisor: no /dev/kvm", false},
    {"sb-good-old", "good", "u1", 0, "kata-clh", true, MOAT_RUNTIME_KATA, "kata-clh", "old", false},
    {"sb-nonet", "nonet", "u2", 0, "runsc", true, MOAT_RUNTIME_GVISOR, "runsc-nonet",
     "no network requested: gVisor with --network=none", false},
    {"sb-undecided", "undecided", "u3", 0, "kata-clh", true, NULL, NULL, NULL, false},
    {"sb-runc", "other", "u4", 0, "", false, NULL, NULL, NULL, false},
    {"sb-gone", "gone", "u5", 0, "runsc", true, NULL, NULL, NULL, true},
};

typedef struct {
    agent *a;
    int lists;
} fake_cri;

static int cri_list(void *impl, cri_sandbox_list *out, moat_error *err)
{
    (void)err;
    fake_cri *f = impl;
    /* one pass is the test: the agent stops once this one is done */
    if (++f->lists == 1)
        agent_stop(f->a);
    out->items = calloc(ELEMENTSOF(sandboxes), sizeof(*out->items));
    assert_non_null(out->items);
    for (size_t i = 0; i < ELEMENTSOF(sandboxes); i++) {
        cri_sandbox *s = &out->items[out->n++];
        s->id = strdup(sandboxes[i].id);
        s->pod_uid = strdup(sandboxes[i].uid);
        s->namespace_ = strdup("team");
        s->name = strdup(sandboxes[i].name);
        s->attempt = sandboxes[i].attempt;
        s->created_at = (int64_t)i;
        s->runtime_handler = strdup(sandboxes[i].handler);
        s->moat_keys = sandboxes[i].moat;
    }
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int cri_status(void *impl, cri_sandbox_status *out, const char *sandbox_id, moat_error *err)
{
    (void)impl;
    for (size_t i = 0; i < ELEMENTSOF(sandboxes); i++) {
        if (strcmp(sandboxes[i].id, sandbox_id) != 0)
            continue;
        if (sandboxes[i].gone)
            return moat_error_set(err, MOAT_E_NOTFOUND, "pod sandbox %s not found", sandbox_id);
        out->id = strdup(sandbox_id);
        out->pod_uid = strdup(sandboxes[i].uid);
        out->runtime_handler = strdup(sandboxes[i].handler);
        out->decision_runtime = dup_or_null(sandboxes[i].d_runtime);
        out->decision_handler = dup_or_null(sandboxes[i].d_handler);
        out->decision_reason = dup_or_null(sandboxes[i].d_reason);
        return 0;
    }
    return moat_error_set(err, MOAT_E_NOTFOUND, "pod sandbox %s unknown", sandbox_id);
}

/* The report patched on a Pod: its uid checked, the report parsed. */
static json_t *patched_report(fake_api *f, const char *name, const char *uid)
{
    char path[100];
    snprintf(path, sizeof(path), "/api/v1/namespaces/team/pods/%s", name);
    json_t *patch = json_object_get(f->pod_patches, path);
    if (!patch)
        fail_msg("no report patched on %s", path);
    json_t *meta = json_object_get(patch, "metadata");
    assert_string_equal(json_string_value(json_object_get(meta, "uid")), uid);
    const char *text = json_string_value(
        json_object_get(json_object_get(meta, "annotations"), MOAT_ANNOTATION_ISOLATION_REPORT));
    assert_non_null(text);
    json_t *r = json_loads(text, 0, NULL);
    assert_non_null(r);
    return r;
}

/* One pass of the agent over the runtime's sandboxes: each Moat pod's newest sandbox is
 * reported on its Pod (by name, with its uid) from the runtime's record: a decision the
 * runtime confirms gives its reason, one it contradicts is reported as what ran, a pod
 * without one says so; another pod, an older sandbox and a sandbox gone since the listing
 * are not reported. */
static void test_run_reports_each_moat_pod(void **state)
{
    (void)state;
    fake_api api = {json_object(), 0, 0};
    kube_transport t = {api_send, &api};
    kube_client_options o = {.transport = &t, .max_retries = -1};
    static const char kc[] = "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                             "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                             "users: [{name: u, user: {token: t}}]\n"
                             "contexts: [{name: c, context: {cluster: k, user: u}}]\n";
    moat_error err = MOAT_ERROR_INIT;
    kube_config *cfg = NULL;
    kube_client *client = NULL;
    if (kube_config_parse(&cfg, kc, strlen(kc), "test", NULL, NULL, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(kube_client_new(&client, cfg, &o, &err), 0);
    fake_cri cri = {NULL, 0};
    agent_facts_ops facts = {facts_none, NULL};
    agent_cri_ops cri_ops = {.list = cri_list, .status = cri_status, .impl = &cri};
    agent_options opts = {.node_name = "node-1"};
    agent *a = NULL;
    assert_int_equal(agent_new(&a, client, &opts, &facts, &cri_ops, &err), 0);
    cri.a = a;
    assert_int_equal(agent_run(a, &err), 0);
    assert_int_equal(cri.lists, 1);
    assert_int_equal(api.node_patches, 1);
    assert_int_equal(api.others, 0);
    assert_int_equal(json_object_size(api.pod_patches), 3);

    json_t *r = patched_report(&api, "good", "u1");
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), MOAT_RUNTIME_GVISOR);
    assert_string_equal(json_string_value(json_object_get(r, "handler")), "runsc");
    assert_string_equal(json_string_value(json_object_get(r, "reason")),
                        "no usable hypervisor: no /dev/kvm");
    assert_true(json_is_true(json_object_get(r, "verified")));
    json_decref(r);

    r = patched_report(&api, "nonet", "u2");
    assert_string_equal(json_string_value(json_object_get(r, "handler")), "runsc");
    const char *reason = json_string_value(json_object_get(r, "reason"));
    assert_non_null(strstr(reason, "not what the runtime recorded"));
    assert_null(strstr(reason, "--network=none"));
    json_decref(r);

    r = patched_report(&api, "undecided", "u3");
    assert_string_equal(json_string_value(json_object_get(r, "runtime")), MOAT_RUNTIME_KATA);
    assert_string_equal(json_string_value(json_object_get(r, "handler")), "kata-clh");
    assert_non_null(strstr(json_string_value(json_object_get(r, "reason")), "no decision"));
    json_decref(r);

    /* a sandbox gone since the listing is no error */
    char *metrics = agent_metrics(a);
    assert_non_null(strstr(metrics, "moat_agent_pod_reports_total{result=\"ok\"} 3\n"));
    assert_non_null(strstr(metrics, "moat_agent_pod_reports_total{result=\"error\"} 0\n"));
    free(metrics);
    agent_free(a);
    kube_client_free(client);
    kube_config_free(cfg);
    json_decref(api.pod_patches);
}

/* ---- CRI messages ----------------------------------------------------------------------- */

static void test_list_request_encode(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t n = 0;
    assert_int_equal(cri_list_request_encode(&buf, &n, "uid-1", NULL), 0);
    /* filter (1) { label_selector (3) { key (1) "io.kubernetes.pod.uid", value (2) "uid-1" } } */
    static const char key[] = "io.kubernetes.pod.uid";
    uint8_t want[64];
    size_t k = sizeof(key) - 1, m = 0;
    size_t entry = 2 + k + 2 + 5;
    want[m++] = 0x0a;
    want[m++] = (uint8_t)(2 + entry);
    want[m++] = 0x1a;
    want[m++] = (uint8_t)entry;
    want[m++] = 0x0a;
    want[m++] = (uint8_t)k;
    memcpy(want + m, key, k);
    m += k;
    want[m++] = 0x12;
    want[m++] = 5;
    memcpy(want + m, "uid-1", 5);
    m += 5;
    assert_int_equal(n, m);
    assert_memory_equal(buf, want, m);
    free(buf);

    assert_int_equal(cri_list_request_encode(&buf, &n, NULL, NULL), 0);
    assert_int_equal(n, 0);
    free(buf);

    assert_int_equal(cri_status_request_encode(&buf, &n, "sb", NULL), 0);
    static const uint8_t want_status[] = {0x0a, 2, 's', 'b'};
    assert_int_equal(n, sizeof(want_status));
    assert_memory_equal(buf, want_status, n);
    free(buf);
}

static uint8_t *pack_list(size_t *ret_len)
{
    Moat__Cri__PodSandboxMetadata md[3] = {MOAT__CRI__POD_SANDBOX_METADATA__INIT,
                                           MOAT__CRI__POD_SANDBOX_METADATA__INIT,
                                           MOAT__CRI__POD_SANDBOX_METADATA__INIT};
    Moat__Cri__PodSandbox sb[3] = {MOAT__CRI__POD_SANDBOX__INIT, MOAT__CRI__POD_SANDBOX__INIT,
                                   MOAT__CRI__POD_SANDBOX__INIT};
    Moat__Cri__PodSandbox *items[3] = {&sb[0], &sb[1], &sb[2]};
    const char *ids[] = {"old", "newest", "same-attempt-older"};
    const uint32_t attempts[] = {0, 1, 1};
    const int64_t created[] = {100, 300, 200};
    Moat__Cri__PodSandbox__AnnotationsEntry ann = MOAT__CRI__POD_SANDBOX__ANNOTATIONS_ENTRY__INIT;
    Moat__Cri__PodSandbox__AnnotationsEntry *anns[] = {&ann};
    ann.key = (char *)"moat.dev/network";
    ann.value = (char *)"none";
    for (int i = 0; i < 3; i++) {
        md[i].uid = (char *)"pod-uid";
        md[i].namespace_ = (char *)"team";
        md[i].name = (char *)"pod";
        md[i].attempt = attempts[i];
        sb[i].id = (char *)ids[i];
        sb[i].metadata = &md[i];
        sb[i].created_at = created[i];
        sb[i].state = i == 1 ? 0 : 1;
        sb[i].runtime_handler = (char *)(i == 1 ? "runsc" : "");
        sb[i].n_annotations = i == 1;
        sb[i].annotations = anns;
    }
    Moat__Cri__ListPodSandboxResponse resp = MOAT__CRI__LIST_POD_SANDBOX_RESPONSE__INIT;
    resp.n_items = 3;
    resp.items = items;
    size_t n = moat__cri__list_pod_sandbox_response__get_packed_size(&resp);
    uint8_t *buf = malloc(n + 16);
    moat__cri__list_pod_sandbox_response__pack(&resp, buf);
    *ret_len = n;
    return buf;
}

static void test_list_response_decode(void **state)
{
    (void)state;
    size_t n;
    uint8_t *buf = pack_list(&n);
    cri_sandbox_list l = {0};
    assert_int_equal(cri_list_response_decode(&l, buf, n, NULL), 0);
    assert_int_equal(l.n, 3);
    const cri_sandbox *s = cri_sandbox_list_newest(&l);
    assert_non_null(s);
    assert_string_equal(s->id, "newest");
    assert_string_equal(s->pod_uid, "pod-uid");
    assert_string_equal(s->namespace_, "team");
    assert_string_equal(s->name, "pod");
    assert_true(s->moat_keys); /* a moat.dev/ annotation */
    assert_false(l.items[0].moat_keys);
    assert_string_equal(s->runtime_handler, "runsc");
    assert_int_equal(s->attempt, 1);
    assert_int_equal(s->state, 0);
    assert_int_equal(s->created_at, 300);
    assert_string_equal(l.items[0].runtime_handler, "");
    /* the newest of its pod: only "newest" */
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(cri_sandbox_is_newest(&l, &l.items[i]), &l.items[i] == s);
    cri_sandbox_list_clear(&l);

    /* Fields this schema does not know (a newer runtime's) are skipped. Field 15, a string. */
    uint8_t *more = malloc(n + 5);
    memcpy(more, buf, n);
    memcpy(more + n, "\x7a\x03xyz", 5);
    assert_int_equal(cri_list_response_decode(&l, more, n + 5, NULL), 0);
    assert_int_equal(l.n, 3);
    cri_sandbox_list_clear(&l);
    free(more);

    /* Truncated: an error, nothing written. */
    moat_error err = MOAT_ERROR_INIT;
    l.n = 77;
    assert_int_equal(cri_list_response_decode(&l, buf, n - 3, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_int_equal(l.n, 77);
    moat_error_clear(&err);
    free(buf);

    /* Empty: no items, no newest. */
    l = (cri_sandbox_list){0};
    assert_int_equal(cri_list_response_decode(&l, (const uint8_t *)"", 0, NULL), 0);
    assert_int_equal(l.n, 0);
    assert_null(cri_sandbox_list_newest(&l));
    cri_sandbox_list_clear(&l);
}

/* A PodSandboxStatusResponse written byte by byte with upstream's field numbers:
 * status (1) { id (1), metadata (2) { uid (2) }, state (3), annotations (8) entries,
 * runtime_handler (9) }, plus info (2) the schema leaves out. */
static size_t put_str(uint8_t *p, uint8_t tag, const char *s)
{
    size_t n = strlen(s);
    p[0] = tag;
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return 2 + n;
}

static size_t put_entry(uint8_t *p, uint8_t tag, const char *k, const char *v)
{
    uint8_t inner[256];
    size_t m = put_str(inner, 0x0a, k);
    m += put_str(inner + m, 0x12, v);
    p[0] = tag;
    p[1] = (uint8_t)m;
    memcpy(p + 2, inner, m);
    return 2 + m;
}

static size_t status_bytes(uint8_t *out, bool with_decision, const char *handler)
{
    uint8_t st[1024];
    size_t m = put_str(st, 0x0a, "sandbox-1");
    uint8_t md[64];
    size_t mm = put_str(md, 0x12, "pod-uid");
    st[m++] = 0x12;
    st[m++] = (uint8_t)mm;
    memcpy(st + m, md, mm);
    m += mm;
    st[m++] = 0x18; /* state = 1 */
    st[m++] = 1;
    m += put_entry(st + m, 0x3a, "io.kubernetes.pod.uid", "pod-uid"); /* labels (7) */
    m += put_entry(st + m, 0x42, "other", "x");
    if (with_decision) {
        m += put_entry(st + m, 0x42, MOAT_ANNOTATION_DECISION_RUNTIME, "gvisor");
        m += put_entry(st + m, 0x42, MOAT_ANNOTATION_DECISION_HANDLER, "runsc");
        m += put_entry(st + m, 0x42, MOAT_ANNOTATION_DECISION_REASON, "no /dev/kvm");
    }
    m += put_str(st + m, 0x4a, handler);
    size_t n = 0;
    out[n++] = 0x0a;
    /* the status length as a varint */
    if (m < 128) {
        out[n++] = (uint8_t)m;
    } else {
        out[n++] = (uint8_t)(0x80 | (m & 0x7f));
        out[n++] = (uint8_t)(m >> 7);
    }
    memcpy(out + n, st, m);
    n += m;
    n += put_entry(out + n, 0x12, "info", "{}"); /* info (2): not in the schema */
    return n;
}

static void test_status_response_decode(void **state)
{
    (void)state;
    uint8_t buf[2048];
    size_t n = status_bytes(buf, true, "runsc");
    cri_sandbox_status s = {0};
    assert_int_equal(cri_status_response_decode(&s, buf, n, NULL), 0);
    assert_string_equal(s.id, "sandbox-1");
    assert_string_equal(s.pod_uid, "pod-uid");
    assert_int_equal(s.state, 1);
    assert_string_equal(s.runtime_handler, "runsc");
    assert_string_equal(s.decision_runtime, "gvisor");
    assert_string_equal(s.decision_handler, "runsc");
    assert_string_equal(s.decision_reason, "no /dev/kvm");
    char *rep = agent_report_json(&s, "runc", false);
    json_t *j = json_loads(rep, 0, NULL);
    assert_true(json_is_true(json_object_get(j, "verified")));
    json_decref(j);
    free(rep);
    cri_sandbox_status_clear(&s);

    n = status_bytes(buf, false, "");
    assert_int_equal(cri_status_response_decode(&s, buf, n, NULL), 0);
    assert_string_equal(s.runtime_handler, "");
    assert_null(s.decision_runtime);
    assert_null(s.decision_handler);
    assert_null(s.decision_reason);
    cri_sandbox_status_clear(&s);

    /* No status in the response, and garbage. */
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(cri_status_response_decode(&s, (const uint8_t *)"", 0, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_null(s.id);
    moat_error_clear(&err);
    static const uint8_t junk[] = {0x0a, 0x50, 0x01};
    assert_int_equal(cri_status_response_decode(&s, junk, sizeof(junk), &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);
}

static void test_client_endpoint(void **state)
{
    (void)state;
    moat_error err = MOAT_ERROR_INIT;
    cri_client *c = NULL;
    assert_int_equal(cri_client_new(&c, "tcp://127.0.0.1:1", &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_null(c);
    moat_error_clear(&err);
    assert_int_equal(cri_client_new(&c, "relative.sock", &err), -1);
    moat_error_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_every_combination),
        cmocka_unit_test(test_owned_keys),
        cmocka_unit_test(test_patch_only_moat_keys),
        cmocka_unit_test(test_patch_nothing_to_change),
        cmocka_unit_test(test_facts_from_report),
        cmocka_unit_test(test_facts_parse),
        cmocka_unit_test(test_pod_wants_moat),
        cmocka_unit_test(test_report),
        cmocka_unit_test(test_run_reports_each_moat_pod),
        cmocka_unit_test(test_pod_patch),
        cmocka_unit_test(test_list_request_encode),
        cmocka_unit_test(test_list_response_decode),
        cmocka_unit_test(test_status_response_decode),
        cmocka_unit_test(test_client_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
