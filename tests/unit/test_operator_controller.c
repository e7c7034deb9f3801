/* The controller through its seams: a controller made as main.c makes it, on a client whose
 * transport is replaced (and must never be used: nothing here writes), its caches filled by
 * replaying watch events (kube_informer_apply_stream) with the loop never started.
 *
 * What a Sandbox's Pod is: found by its controller reference and the operator's mark, not
 * by its name; a Pod of the Sandbox's name that is not the operator's is reported as
 * before. And the /metrics counters never wrap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "libmoat/kobj.h"
#include "libmoat/kubeconfig.h"
#include "libmoat/names.h"
#include "operator/controller-internal.h"
#include "operator/pod.h"

#define KEY   "0123456789abcdef0123456789abcdef"
#define UID   "uid-of-sb"
#define SB    "team-a/sb"
#define NS    "team-a"
#define OTHER "uid-of-an-earlier-sb"

static const char kubeconfig[] = "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                 "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                                 "users: [{name: u, user: {token: t}}]\n"
                                 "contexts: [{name: c, context: {cluster: k, user: u}}]\n";

typedef struct {
    int requests; /* the transport's calls: none is expected */
    char key_path[64];
    kube_config *kcfg;
    kube_client *client;
    operator_config *cfg;
    sandbox_mark_key *key;
    operator_controller *c;
} fixture;

static int refuse_send(void *impl, const kube_http_request *req, kube_http_response *resp,
                       moat_error *err)
{
    fixture *f = impl;
    __atomic_fetch_add(&f->requests, 1, __ATOMIC_SEQ_CST);
    return moat_error_set(err, MOAT_E_NETWORK, "no network in unit tests (%s %s)", req->method,
                          req->path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    moat_error err = MOAT_ERROR_INIT;
    assert_non_null(f);
    strcpy(f->key_path, "/tmp/moat-controller-key-XXXXXX");
    int fd = mkstemp(f->key_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, KEY, strlen(KEY)), (ssize_t)strlen(KEY));
    close(fd);
    if (kube_config_parse(&f->kcfg, kubeconfig, strlen(kubeconfig), "test", NULL, NULL, &err) < 0)
        fail_msg("%s", err.message);
    kube_transport t = {refuse_send, f};
    kube_client_options o = {.transport = &t, .max_retries = -1};
    if (kube_client_new(&f->client, f->kcfg, &o, &err) < 0 ||
        operator_config_new_default(&f->cfg, &err) < 0 ||
        sandbox_mark_key_new(&f->key, KEY, strlen(KEY), &err) < 0)
        fail_msg("%s", err.message);
    free(f->cfg->mark_key_file);
    f->cfg->mark_key_file = strdup(f->key_path);
    controller_options co = {.client = f->client, .config = f->cfg, .identity = "test"};
    if (controller_new(&f->c, &co, &err) < 0)
        fail_msg("controller_new: %s", err.message);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    controller_free(f->c);
    assert_int_equal(f->requests, 0);
    sandbox_mark_key_free(f->key);
    operator_config_free(f->cfg);
    kube_client_free(f->client);
    kube_config_free(f->kcfg);
    unlink(f->key_path);
    free(f);
    return 0;
}

/* The Pod the operator builds for Sandbox "sb" (uid UID), named name, its owner references
 * replaced by refs (JSON; NULL keeps the controller reference to UID), marked for
 * mark_owner (NULL: not marked). */
static json_t *pod_of(fixture *f, const char *name, const char *refs, const char *mark_owner)
{
    moat_error err = MOAT_ERROR_INIT;
    json_t *sbx = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s}}", "apiVersion",
                            "moat.dev/v1alpha1", "kind", "Sandbox", "metadata", "name", "sb",
                            "namespace", NS, "uid", UID, "spec", "image", "python:3");
    json_t *pod = NULL;
    if (sandbox_pod_build(&pod, sbx, f->cfg, &err) < 0)
        fail_msg("%s", err.message);
    json_decref(sbx);
    json_t *meta = json_object_get(pod, "metadata");
    json_object_set_new(meta, "name", json_string(name));
    json_object_set_new(meta, "resourceVersion", json_string("1"));
    if (refs) {
        json_t *r = json_loads(refs, JSON_DECODE_ANY, NULL);
        if (!r)
            fail_msg("bad test JSON: %s", refs);
        json_object_set_new(meta, "ownerReferences", r);
    }
    if (mark_owner && sandbox_mark_set(pod, f->key, mark_owner, &err) < 0)
        fail_msg("%s", err.message);
    return pod;
}

/* Puts pod into the controller's Pod cache as a watch event would (the informer's transform
 * and indexes included). Takes pod. */
static void cache(fixture *f, json_t *pod)
{
    moat_error err = MOAT_ERROR_INIT;
    json_t *ev = json_pack("{s:s, s:o}", "type", "ADDED", "object", pod);
    char *line = json_dumps(ev, JSON_COMPACT);
    size_t len = strlen(line);
    line = realloc(line, len + 2);
    strcpy(line + len, "\n");
    if (kube_informer_apply_stream(f->c->pods, line, len + 1, &err) < 0)
        fail_msg("%s", err.message);
    free(line);
    json_decref(ev);
}

/* What controller_sandbox_pod says of Sandbox SB: the claim, the Pod's name or NULL, and
 * why into why. */
static sandbox_pod_claim look(fixture *f, char **ret_name, char *why, size_t len)
{
    json_t *pod = (json_t *)f; /* a sentinel: it must be written */
    strcpy(why, "untouched");
    sandbox_pod_claim claim = controller_sandbox_pod(f->c, &pod, SB, UID, why, len);
    assert_ptr_not_equal(pod, (json_t *)f);
    *ret_name = pod ? strdup(kobj_name(pod)) : NULL;
    json_decref(pod);
    return claim;
}

#define SANDBOX_REF(uid)                                                                           \
    "[{\"apiVersion\": \"moat.dev/v1alpha1\", \"kind\": \"Sandbox\", \"name\": \"sb\","            \
    " \"uid\": \"" uid "\", \"controller\": true, \"blockOwnerDeletion\": true}]"

static void assert_look(fixture *f, sandbox_pod_claim want, const char *want_name,
                        const char *want_why)
{
    char why[512], *name = NULL;
    sandbox_pod_claim got = look(f, &name, why, sizeof(why));
    if (got != want)
        fail_msg("claim %d, want %d (why: %s)", got, want, why);
    if ((want_name == NULL) != (name == NULL) || (name && strcmp(name, want_name) != 0))
        fail_msg("pod %s, want %s", name ? name : "none", want_name ? want_name : "none");
    if (want_why && !strstr(why, want_why))
        fail_msg("why is \"%s\", want \"%s\" in it", why, want_why);
    if (!want_why)
        assert_string_equal(why, "untouched");
    free(name);
}

/* No Pod yet: nothing in the way of creating one. */
static void test_no_pod(void **state)
{
    assert_look(*state, SANDBOX_POD_OURS, NULL, NULL);
}

/* The operator's Pod named after the Sandbox, as every Pod is today. */
static void test_own_pod_same_name(void **state)
{
    fixture *f = *state;
    cache(f, pod_of(f, "sb", NULL, UID));
    assert_look(f, SANDBOX_POD_OURS, "sb", NULL);
}

/* The operator's Pod under another name (a warm pool's, a resume's) is found by its owner:
 * a lookup by name finds nothing and would create a second Pod. */
static void test_own_pod_other_name(void **state)
{
    fixture *f = *state;
    cache(f, pod_of(f, "sb-warm-7", NULL, UID));
    assert_look(f, SANDBOX_POD_OURS, "sb-warm-7", NULL);
}

/* A tenant's Pod of the Sandbox's name with no owner reference (with Moat's label, so the
 * cache holds it): never adopted, reported as today. */
static void test_foreign_same_name(void **state)
{
    fixture *f = *state;
    cache(f, pod_of(f, "sb", "[]", NULL));
    assert_look(f, SANDBOX_POD_FOREIGN, NULL,
                "pod team-a/sb exists and was not made by moat-operator for this Sandbox (no "
                "controller reference to it)");
}

/* A forged controller reference to the Sandbox's uid without the mark, under the
 * Sandbox's name: reported as today (tests/integration/tenant: the mark holds). */
static void test_forged_owner_same_name(void **state)
{
    fixture *f = *state;
    cache(f, pod_of(f, "sb", NULL, NULL));
    assert_look(f, SANDBOX_POD_FOREIGN, NULL,
                "pod team-a/sb names this Sandbox as its controller but does not carry "
                "moat-operator's mark");
}

/* ... and under another name: not adopted, and, as before the lookup by owner (which never
 * read a Pod of another name), not reported either: the Sandbox gets its own Pod. A mark
 * made for another Sandbox is worth nothing. */
static void test_forged_owner_other_name(void **state)
{
    fixture *f = *state;
    cache(f, pod_of(f, "forged", NULL, NULL));
    cache(f, pod_of(f, "copied", NULL, OTHER));
    assert_look(f, SANDBOX_POD_OURS, NULL, NULL);
}

/* Ours under another name beside a stranger's Pod of the Sandbox's name: ours, and no
 * Pod of that name is to be created, so nothing collides. */
static void test_own_pod_beside_foreign_same_name(void **state)
{
    fixture *f = *state;
    cache(f, pod_of(f, "sb", "[]", NULL));
    cache(f, pod_of(f, "sb-warm-7", NULL, UID));
    assert_look(f, SANDBOX_POD_OURS, "sb-warm-7", NULL);
}

/* An earlier Sandbox's Pod of the same name: wait for the garbage collector, as today. */
static void test_earlier_sandbox_pod(void **state)
{
    fixture *f = *state;
    cache(f, pod_of(f, "sb", SANDBOX_REF(OTHER), OTHER));
    assert_look(f, SANDBOX_POD_WAIT, NULL, NULL);
}

/* Several of ours: the same one whichever the cache lists first. */
static void test_several_own_pods(void **state)
{
    fixture *f = *state;
    cache(f, pod_of(f, "sb-b", NULL, UID));
    cache(f, pod_of(f, "sb-a", NULL, UID));
    cache(f, pod_of(f, "sb-c", NULL, UID));
    assert_look(f, SANDBOX_POD_OURS, "sb-a", NULL);
}

/* ---- /metrics ---- */

/* The value of the sample line that starts with prefix ("name{labels} "), or fails. */
static unsigned long long sample(const char *text, const char *prefix)
{
    for (const char *at = strstr(text, prefix); at; at = strstr(at + 1, prefix))
        if (at == text || at[-1] == '\n')
            return strtoull(at + strlen(prefix), NULL, 10);
    fail_msg("no sample %s in:\n%s", prefix, text);
    return 0;
}

/* The counters a scrape reads one after another while workers count: a result computed as
 * the total less the others would wrap to 2^64 - 1 when a reconcile's error is counted
 * between the reads. Every result is a counter of its own. */
static void test_reconcile_results_never_wrap(void **state)
{
    fixture *f = *state;
    atomic_store(&f->c->reconcile_errors, 3);
    atomic_store(&f->c->requeues, 2);
    char *text = controller_metrics_render(f->c);
    assert_non_null(text);
    assert_int_equal(sample(text, "moat_operator_reconciles_total{result=\"success\"} "), 0);
    assert_int_equal(sample(text, "moat_operator_reconciles_total{result=\"error\"} "), 3);
    assert_int_equal(sample(text, "moat_operator_reconciles_total{result=\"requeue\"} "), 2);
    assert_int_equal(sample(text, "moat_operator_reconcile_errors_total "), 3);
    free(text);
    atomic_store(&f->c->reconcile_successes, 7);
    text = controller_metrics_render(f->c);
    assert_int_equal(sample(text, "moat_operator_reconciles_total{result=\"success\"} "), 7);
    /* and no sample anywhere is negative or near 2^64 */
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *v = strrchr(line, ' ');
        if (*line == '#')
            continue;
        assert_non_null(v);
        if (v[1] == '-' || strtod(v + 1, NULL) > 1e15)
            fail_msg("sample out of range: %s", line);
    }
    free(text);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_no_pod),
        T(test_own_pod_same_name),
        T(test_own_pod_other_name),
        T(test_foreign_same_name),
        T(test_forged_owner_same_name),
        T(test_forged_owner_other_name),
        T(test_own_pod_beside_foreign_same_name),
        T(test_earlier_sandbox_pod),
        T(test_several_own_pods),
        T(test_reconcile_results_never_wrap),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return r;
}
