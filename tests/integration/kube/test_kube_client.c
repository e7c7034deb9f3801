/* The Kubernetes client against the real API server of $KUBECONFIG: every verb, errors
 * classified by the Status body's reason, pagination over 1,200 objects, and an informer
 * across 10,000 changes whose cache ends equal to a fresh list. */
#include <curl/curl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "libmoat/informer.h"
#include "libmoat/kobj.h"
#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"
#include "libmoat/recorder.h"

static kube_config *cfg;
static kube_client *client;
static char ns[64];

#define CHECK(call)                                                                                \
    do {                                                                                           \
        moat_error err_ = MOAT_ERROR_INIT;                                                         \
        moat_error *e = &err_;                                                                     \
        if ((call) < 0)                                                                            \
            fail_msg("%s: %s", #call, err_.message);                                               \
        moat_error_clear(&err_);                                                                   \
    } while (0)

static json_t *configmap(const char *name, const char *value)
{
    return json_pack("{s:s, s:s, s:{s:s, s:{s:s}}, s:{s:s}}", "apiVersion", "v1", "kind",
                     "ConfigMap", "metadata", "name", name, "labels", "test", "moat", "data",
                     "value", value);
}

static int setup(void **state)
{
    moat_error err = MOAT_ERROR_INIT;
    if (kube_config_load_default(&cfg, NULL, &err) < 0 ||
        kube_client_new(&client, cfg, NULL, &err) < 0) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    snprintf(ns, sizeof(ns), "moat-kube-%d-%ld", getpid(), (long)time(NULL) % 100000);
    json_t *obj = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                            "metadata", "name", ns);
    int r = kube_create(client, NULL, &KUBE_NAMESPACES, NULL, obj, &err);
    json_decref(obj);
    if (r < 0) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    moat_error err = MOAT_ERROR_INIT;
    kube_delete(client, NULL, &KUBE_NAMESPACES, NULL, ns, NULL, &err);
    moat_error_clear(&err);
    kube_client_free(client);
    kube_config_free(cfg);
    return 0;
}

static void test_verbs(void **state)
{
    json_t *created = NULL, *got = NULL, *updated = NULL, *patched = NULL, *list = NULL;
    json_t *cm = configmap("verbs", "one");

    CHECK(kube_create(client, &created, &KUBE_CONFIGMAPS, ns, cm, e));
    assert_string_equal(kobj_str(created, "data.value"), "one");
    CHECK(kube_get(client, &got, &KUBE_CONFIGMAPS, ns, "verbs", e));
    assert_string_equal(kobj_uid(got), kobj_uid(created));

    /* update with the resourceVersion just read */
    json_object_set_new(json_object_get(got, "data"), "value", json_string("two"));
    CHECK(kube_update(client, &updated, &KUBE_CONFIGMAPS, got, e));
    assert_string_equal(kobj_str(updated, "data.value"), "two");
    assert_string_not_equal(kobj_resource_version(updated), kobj_resource_version(got));

    /* merge patch, JSON patch, server-side apply */
    json_t *merge = json_pack("{s:{s:s}}", "data", "merged", "yes");
    CHECK(kube_patch(client, &patched, &KUBE_CONFIGMAPS, ns, "verbs", KUBE_PATCH_MERGE, merge, NULL,
                     e));
    assert_string_equal(kobj_str(patched, "data.merged"), "yes");
    json_decref(patched);
    json_t *jp =
        json_pack("[{s:s, s:s, s:s}]", "op", "replace", "path", "/data/value", "value", "three");
    CHECK(
        kube_patch(client, &patched, &KUBE_CONFIGMAPS, ns, "verbs", KUBE_PATCH_JSON, jp, NULL, e));
    assert_string_equal(kobj_str(patched, "data.value"), "three");
    json_decref(patched);
    json_t *apply =
        json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap",
                  "metadata", "name", "verbs", "namespace", ns, "data", "applied", "ssa");
    kube_patch_options popts = {.field_manager = "moat-test", .force = true};
    CHECK(kube_patch(client, &patched, &KUBE_CONFIGMAPS, ns, "verbs", KUBE_PATCH_APPLY, apply,
                     &popts, e));
    assert_string_equal(kobj_str(patched, "data.applied"), "ssa");

    /* list with a label selector */
    kube_list_options lo = {.label_selector = "test=moat"};
    CHECK(kube_list(client, &list, &KUBE_CONFIGMAPS, ns, &lo, e));
    assert_int_equal(json_array_size(json_object_get(list, "items")), 1);
    assert_non_null(kobj_str(list, "metadata.resourceVersion"));

    /* delete with a uid precondition that does not match: Conflict; then for real */
    moat_error err = MOAT_ERROR_INIT;
    kube_delete_options bad = {.precondition_uid = "00000000-0000-0000-0000-000000000000"};
    assert_int_equal(kube_delete(client, NULL, &KUBE_CONFIGMAPS, ns, "verbs", &bad, &err), -1);
    assert_true(kube_error_is(&err, KUBE_REASON_CONFLICT));
    moat_error_clear(&err);
    kube_delete_options good = {.precondition_uid = kobj_uid(created), .propagation = "Background"};
    CHECK(kube_delete(client, NULL, &KUBE_CONFIGMAPS, ns, "verbs", &good, e));
    assert_int_equal(kube_get(client, &got, &KUBE_CONFIGMAPS, ns, "verbs", &err), -1);
    assert_true(kube_error_is(&err, KUBE_REASON_NOT_FOUND));
    moat_error_clear(&err);

    json_decref(cm);
    json_decref(created);
    json_decref(got);
    json_decref(updated);
    json_decref(patched);
    json_decref(list);
    json_decref(merge);
    json_decref(jp);
    json_decref(apply);
}

static void test_status_subresource(void **state)
{
    /* A pod bound to a node that does not exist stays Pending: only the test writes status. */
    json_t *pod =
        json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:[{s:s, s:s}]}}", "apiVersion", "v1", "kind", "Pod",
                  "metadata", "name", "status-pod", "spec", "nodeName", "no-such-node",
                  "containers", "name", "main", "image", "moat.local/none");
    json_t *created = NULL, *after = NULL, *sub = NULL;
    CHECK(kube_create(client, &created, &KUBE_PODS, ns, pod, e));
    json_object_set_new(created, "status",
                        json_pack("{s:s, s:s}", "phase", "Running", "message", "set by a test"));
    /* a change to spec through /status is ignored */
    json_object_set_new(json_object_get(created, "spec"), "activeDeadlineSeconds", json_integer(5));
    CHECK(kube_update_status(client, &after, &KUBE_PODS, created, e));
    assert_string_equal(kobj_str(after, "status.phase"), "Running");
    assert_null(kobj_get(after, "spec.activeDeadlineSeconds"));
    CHECK(kube_get_subresource(client, &sub, &KUBE_PODS, ns, "status-pod", "status", e));
    assert_string_equal(kobj_str(sub, "status.message"), "set by a test");
    json_decref(pod);
    json_decref(created);
    json_decref(after);
    json_decref(sub);
}

static void test_errors_are_classified(void **state)
{
    moat_error err = MOAT_ERROR_INIT;
    json_t *cm = configmap("twice", "x"), *got = NULL, *stale = NULL;

    /* create twice: AlreadyExists (409 like Conflict: only the body tells them apart) */
    CHECK(kube_create(client, NULL, &KUBE_CONFIGMAPS, ns, cm, e));
    assert_int_equal(kube_create(client, NULL, &KUBE_CONFIGMAPS, ns, cm, &err), -1);
    assert_int_equal(err.code, MOAT_E_KUBE);
    assert_true(kube_error_is(&err, KUBE_REASON_ALREADY_EXISTS));
    assert_int_equal(err.http_status, 409);
    assert_non_null(strstr(err.message, "already exists"));
    assert_non_null(strstr(err.message, "create configmaps"));
    assert_non_null(err.body);
    assert_non_null(strstr(err.body, "\"reason\":\"AlreadyExists\""));
    moat_error_clear(&err);

    /* update with a stale resourceVersion: Conflict */
    CHECK(kube_get(client, &stale, &KUBE_CONFIGMAPS, ns, "twice", e));
    CHECK(kube_get(client, &got, &KUBE_CONFIGMAPS, ns, "twice", e));
    json_object_set_new(json_object_get(got, "data"), "value", json_string("first"));
    CHECK(kube_update(client, NULL, &KUBE_CONFIGMAPS, got, e));
    json_object_set_new(json_object_get(stale, "data"), "value", json_string("second"));
    assert_int_equal(kube_update(client, NULL, &KUBE_CONFIGMAPS, stale, &err), -1);
    assert_true(kube_error_is(&err, KUBE_REASON_CONFLICT));
    assert_non_null(strstr(err.message, "the object has been modified"));
    moat_error_clear(&err);

    /* get a missing object: NotFound */
    assert_int_equal(kube_get(client, &got, &KUBE_CONFIGMAPS, ns, "missing", &err), -1);
    assert_true(kube_error_is(&err, KUBE_REASON_NOT_FOUND));
    moat_error_clear(&err);

    /* invalid name: Invalid (422), the message names the field */
    json_t *bad = configmap("Not_A_Valid_Name", "x");
    assert_int_equal(kube_create(client, NULL, &KUBE_CONFIGMAPS, ns, bad, &err), -1);
    assert_true(kube_error_is(&err, KUBE_REASON_INVALID));
    assert_non_null(strstr(err.message, "metadata.name"));
    moat_error_clear(&err);

    /* a forbidden request through an impersonated user */
    kube_client *nobody = NULL;
    kube_client_options o = {.impersonate_user = "moat-test-nobody"};
    CHECK(kube_client_new(&nobody, cfg, &o, e));
    json_t *list = NULL;
    assert_int_equal(kube_list(nobody, &list, &KUBE_SECRETS, ns, NULL, &err), -1);
    assert_true(kube_error_is(&err, KUBE_REASON_FORBIDDEN));
    assert_int_equal(err.http_status, 403);
    assert_non_null(strstr(err.message, "moat-test-nobody"));
    moat_error_clear(&err);
    kube_client_free(nobody);

    json_decref(cm);
    json_decref(bad);
    json_decref(got);
    json_decref(stale);
}

struct creator {
    int from, to;
    const char *label;
};

static void *create_range(void *arg)
{
    struct creator *c = arg;
    for (int i = c->from; i < c->to; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s-%04d", c->label, i);
        json_t *cm = configmap(name, "v");
        json_object_set_new(json_object_get(json_object_get(cm, "metadata"), "labels"), "batch",
                            json_string(c->label));
        moat_error err = MOAT_ERROR_INIT;
        if (kube_create(client, NULL, &KUBE_CONFIGMAPS, ns, cm, &err) < 0) {
            fprintf(stderr, "create %s: %s\n", name, err.message);
            moat_error_clear(&err);
        }
        json_decref(cm);
    }
    return NULL;
}

static void create_many(const char *label, int n)
{
    enum { THREADS = 4 };
    pthread_t t[THREADS];
    struct creator c[THREADS];
    for (int i = 0; i < THREADS; i++) {
        c[i] = (struct creator){n * i / THREADS, n * (i + 1) / THREADS, label};
        pthread_create(&t[i], NULL, create_range, &c[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
}

static void test_pagination(void **state)
{
    create_many("page", 1200);
    json_t *list = NULL;
    kube_list_options lo = {.label_selector = "batch=page", .limit = 100};
    CHECK(kube_list(client, &list, &KUBE_CONFIGMAPS, ns, &lo, e));
    json_t *items = json_object_get(list, "items");
    assert_int_equal(json_array_size(items), 1200);
    assert_null(kobj_get(list, "metadata.continue"));
    /* every object exactly once */
    json_t *seen = json_object(), *obj;
    size_t i;
    json_array_foreach (items, i, obj)
        json_object_set_new(seen, kobj_name(obj), json_true());
    assert_int_equal(json_object_size(seen), 1200);
    uint64_t requests, retries;
    kube_client_stats(client, &requests, &retries);
    assert_true(requests >= 12);
    json_decref(seen);
    json_decref(list);
}

/* ---- informer across 10,000 changes ------------------------------------------------- */

struct counts {
    pthread_mutex_t lock;
    long adds, updates, deletes;
    json_t *delivered; /* "key@rv" -> count: a change delivered twice is a bug */
    long duplicates;
};

static void note(struct counts *c, json_t *obj)
{
    char k[512];
    snprintf(k, sizeof(k), "%s@%s", kobj_name(obj), kobj_resource_version(obj));
    pthread_mutex_lock(&c->lock);
    if (json_object_get(c->delivered, k))
        c->duplicates++;
    json_object_set_new(c->delivered, k, json_true());
    pthread_mutex_unlock(&c->lock);
}

static void on_add(void *user, json_t *obj)
{
    struct counts *c = user;
    c->adds++;
    note(c, obj);
}

static void on_update(void *user, json_t *old, json_t *obj)
{
    struct counts *c = user;
    c->updates++;
    note(c, obj);
}

static void on_delete(void *user, json_t *obj)
{
    struct counts *c = user;
    c->deletes++;
}

struct churner {
    int id, changes;
};

/* Each thread owns 25 objects and changes them over and over. */
static void *churn(void *arg)
{
    struct churner *ch = arg;
    int done = 0, round = 0;
    while (done < ch->changes) {
        for (int o = 0; o < 25 && done < ch->changes; o++, done++) {
            char name[64];
            snprintf(name, sizeof(name), "churn-%d-%02d", ch->id, o);
            moat_error err = MOAT_ERROR_INIT;
            /* Even objects live on (created once, then patched); odd ones are created,
             * patched twice and deleted, over and over. */
            int step = o % 2 == 0 ? (round == 0 ? 0 : 1) : round % 4, r;
            if (step == 0) {
                json_t *cm = configmap(name, "0");
                json_object_set_new(json_object_get(json_object_get(cm, "metadata"), "labels"),
                                    "batch", json_string("churn"));
                r = kube_create(client, NULL, &KUBE_CONFIGMAPS, ns, cm, &err);
                json_decref(cm);
            } else if (step < 3) {
                char v[16];
                snprintf(v, sizeof(v), "%d", round);
                json_t *p = json_pack("{s:{s:s}}", "data", "value", v);
                r = kube_patch(client, NULL, &KUBE_CONFIGMAPS, ns, name, KUBE_PATCH_MERGE, p, NULL,
                               &err);
                json_decref(p);
            } else {
                r = kube_delete(client, NULL, &KUBE_CONFIGMAPS, ns, name, NULL, &err);
            }
            if (r < 0)
                fprintf(stderr, "churn %s: %s\n", name, err.message);
            moat_error_clear(&err);
        }
        round++;
    }
    return NULL;
}

static void test_informer_converges_over_10000_changes(void **state)
{
    enum { THREADS = 4, CHANGES = 10000 };
    struct counts counts = {.delivered = json_object()};
    pthread_mutex_init(&counts.lock, NULL);
    kube_loop *loop = NULL;
    kube_informer *inf = NULL;
    const char *indexes[] = {"batch", NULL};
    kube_informer_options io = {.resource = &KUBE_CONFIGMAPS,
                                .namespace = ns,
                                .label_selector = "batch=churn",
                                .label_indexes = indexes};
    kube_informer_handlers h = {on_add, on_update, on_delete, &counts};
    CHECK(kube_loop_new(&loop, client, e));
    CHECK(kube_informer_new(&inf, loop, &io, &h, e));
    CHECK(kube_loop_start(loop, e));
    assert_int_equal(kube_informer_wait_synced(inf, 30 * 1000000000LL), 0);

    pthread_t t[THREADS];
    struct churner ch[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ch[i] = (struct churner){i, CHANGES / THREADS};
        pthread_create(&t[i], NULL, churn, &ch[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);

    /* The truth, fresh from the server; wait until the cache says the same. */
    json_t *list = NULL;
    kube_list_options lo = {.label_selector = "batch=churn"};
    CHECK(kube_list(client, &list, &KUBE_CONFIGMAPS, ns, &lo, e));
    json_t *items = json_object_get(list, "items"), *obj;
    size_t i;
    bool equal = false;
    for (int tries = 0; tries < 300 && !equal; tries++) {
        equal = kube_informer_size(inf) == json_array_size(items);
        json_array_foreach (items, i, obj) {
            char key[256];
            snprintf(key, sizeof(key), "%s/%s", ns, kobj_name(obj));
            json_t *cached = kube_informer_get(inf, key);
            if (!cached || strcmp(kobj_resource_version(cached), kobj_resource_version(obj)))
                equal = false;
            json_decref(cached);
        }
        if (!equal)
            usleep(100000);
    }
    assert_true(equal);
    kube_informer_stats st;
    kube_informer_get_stats(inf, &st);
    fprintf(stderr, "informer: %lu events, %lu adds, %lu updates, %lu deletes, %lu watches\n",
            (unsigned long)st.events, counts.adds, counts.updates, counts.deletes,
            (unsigned long)st.watches);
    assert_int_equal(counts.duplicates, 0);
    assert_true(st.events >= CHANGES * 9 / 10); /* a live watch sees (nearly) every change */
    assert_int_equal(counts.adds - counts.deletes, (long)json_array_size(items));
    /* the label index agrees with the cache */
    json_t *indexed = kube_informer_by_label(inf, "batch", "churn");
    assert_int_equal(json_array_size(indexed), json_array_size(items));
    json_decref(indexed);

    kube_loop_free(loop);
    json_decref(list);
    json_decref(counts.delivered);
}

static void test_recorder_aggregates_and_rate_limits(void **state)
{
    json_t *cm = configmap("recorded", "x"), *obj = NULL, *list = NULL;
    CHECK(kube_create(client, &obj, &KUBE_CONFIGMAPS, ns, cm, e));

    /* the same event three times: one Event, count 3 */
    kube_recorder *r = NULL;
    CHECK(kube_recorder_new(&r, client, "moat-test", "test-host", e));
    for (int i = 0; i < 3; i++)
        kube_recorder_event(r, obj, "Normal", "Repeated", "the same message");
    /* 30 different ones: the object's burst of 25 passes, the rest is dropped */
    for (int i = 0; i < 30; i++)
        kube_recorder_event(r, obj, "Warning", "Distinct", "message number %d", i);
    kube_recorder_free(r, 30 * 1000000000LL);

    kube_list_options lo = {.field_selector = "involvedObject.name=recorded"};
    CHECK(kube_list(client, &list, &KUBE_EVENTS, ns, &lo, e));
    json_t *items = json_object_get(list, "items"), *ev;
    size_t i, repeated = 0, distinct = 0;
    int64_t count = 0;
    json_array_foreach (items, i, ev) {
        const char *reason = kobj_str(ev, "reason");
        if (strcmp(reason, "Repeated") == 0) {
            repeated++;
            kobj_int(ev, "count", &count);
            assert_string_equal(kobj_str(ev, "source.component"), "moat-test");
            assert_string_equal(kobj_str(ev, "involvedObject.uid"), kobj_uid(obj));
        } else if (strcmp(reason, "Distinct") == 0) {
            distinct++;
        }
    }
    assert_int_equal(repeated, 1);
    assert_int_equal(count, 3);
    /* The spam filter counts every call, repeats included: 25 tokens, 3 for "Repeated". */
    assert_int_equal(distinct, 22);
    json_decref(cm);
    json_decref(obj);
    json_decref(list);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbs),
        cmocka_unit_test(test_status_subresource),
        cmocka_unit_test(test_errors_are_classified),
        cmocka_unit_test(test_pagination),
        cmocka_unit_test(test_recorder_aggregates_and_rate_limits),
        cmocka_unit_test(test_informer_converges_over_10000_changes),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return r;
}
