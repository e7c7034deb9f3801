/* The informer's cache, handlers and indexes, fed watch-stream bytes through
 * kube_informer_apply_stream on a loop that is never started, on a client whose transport
 * refuses every request (none is expected).
 *
 * What this cannot reach: the list, the relist after 410 and its diff against the cache
 * (finish_list), the resume from the last resourceVersion, where a bookmark's
 * resourceVersion goes, and the stall detector. The informer sends its lists and watches
 * on its loop's own curl multi handle (kube_client_setup_easy), not through the client's
 * kube_transport, and the stall limit is curl's CURLOPT_LOW_SPEED_TIME on the real clock;
 * those stay with the integration tests (kube.client, kube.faults). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "libmoat/informer.h"
#include "libmoat/kobj.h"
#include "libmoat/kubeconfig.h"

static const char kubeconfig[] = "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                 "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                                 "users: [{name: u, user: {token: t}}]\n"
                                 "contexts: [{name: c, context: {cluster: k, user: u}}]\n";

#define MAX_CALLS 32

typedef struct {
    int requests; /* the transport's calls: none is expected */
    kube_config *kcfg;
    kube_client *client;
    kube_loop *loop;
    kube_informer *inf;
    bool compact;
    /* Every handler call, in order: "add ns/a@1", "update ns/a@1>2", "delete ns/a@3". */
    char calls[MAX_CALLS][96];
    size_t n_calls;
} fixture;

static int refuse_send(void *impl, const kube_http_request *req, kube_http_response *resp,
                       moat_error *err)
{
    fixture *f = impl;
    __atomic_fetch_add(&f->requests, 1, __ATOMIC_SEQ_CST);
    return moat_error_set(err, MOAT_E_NETWORK, "no network in unit tests (%s %s)", req->method,
                          req->path);
}

static void record(fixture *f, const char *fmt, ...) _printf_(2, 3);
static void record(fixture *f, const char *fmt, ...)
{
    if (f->n_calls == MAX_CALLS)
        fail_msg("more than %d handler calls", MAX_CALLS);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->calls[f->n_calls++], sizeof(f->calls[0]), fmt, ap);
    va_end(ap);
}

static const char *key_rv(const json_t *obj, char *buf, size_t len)
{
    const char *ns = kobj_namespace(obj), *name = kobj_name(obj), *rv = kobj_resource_version(obj);
    snprintf(buf, len, "%s/%s@%s", ns ? ns : "", name ? name : "?", rv ? rv : "?");
    return buf;
}

static void on_add(void *user, json_t *obj)
{
    char a[64];
    record(user, "add %s", key_rv(obj, a, sizeof(a)));
}

static void on_update(void *user, json_t *old_obj, json_t *new_obj)
{
    char a[64];
    record(user, "update %s>%s", key_rv(old_obj, a, sizeof(a)), kobj_resource_version(new_obj));
}

static void on_delete(void *user, json_t *obj)
{
    char a[64];
    record(user, "delete %s", key_rv(obj, a, sizeof(a)));
}

/* Drops spec.secret from every object before it is cached. */
static void drop_secret(void *user, json_t *obj)
{
    (*(int *)user)++;
    json_object_del(json_object_get(obj, "spec"), "secret");
}

static int transformed;

static const char *const label_indexes[] = {"app", NULL};

/* The informer under test: Pods in all namespaces, indexed by label "app" and by owner,
 * with the cache compact or not (the test's prestate). */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    moat_error err = MOAT_ERROR_INIT;
    assert_non_null(f);
    f->compact = *state && *(bool *)*state;
    if (kube_config_parse(&f->kcfg, kubeconfig, strlen(kubeconfig), "test", NULL, NULL, &err) < 0)
        fail_msg("%s", err.message);
    kube_transport t = {refuse_send, f};
    kube_client_options co = {.transport = &t, .max_retries = -1};
    if (kube_client_new(&f->client, f->kcfg, &co, &err) < 0 ||
        kube_loop_new(&f->loop, f->client, &err) < 0)
        fail_msg("%s", err.message);
    transformed = 0;
    kube_informer_options o = {.resource = &KUBE_PODS,
                               .label_indexes = label_indexes,
                               .index_owners = true,
                               .transform = drop_secret,
                               .transform_user = &transformed,
                               .compact_cache = f->compact};
    kube_informer_handlers h = {on_add, on_update, on_delete, f};
    if (kube_informer_new(&f->inf, f->loop, &o, &h, &err) < 0)
        fail_msg("kube_informer_new: %s", err.message);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kube_loop_free(f->loop);
    assert_int_equal(f->requests, 0);
    kube_client_free(f->client);
    kube_config_free(f->kcfg);
    free(f);
    return 0;
}

/* Watch-event lines. Objects are Pods in namespace "ns". */
#define POD(name, rv, meta)                                                                        \
    "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"" name "\",\"namespace\":\"ns\","                  \
    "\"resourceVersion\":\"" rv "\"" meta "}}"
#define LABELS(app)   ",\"labels\":{\"app\":\"" app "\"}"
#define OWNERS(refs)  ",\"ownerReferences\":[" refs "]"
#define OWNER(uid)    "{\"kind\":\"Sandbox\",\"name\":\"o\",\"uid\":\"" uid "\"}"
#define EV(type, obj) "{\"type\":\"" type "\",\"object\":" obj "}\n"

static void feed_ok(fixture *f, const char *stream)
{
    moat_error err = MOAT_ERROR_INIT;
    if (kube_informer_apply_stream(f->inf, stream, strlen(stream), &err) < 0)
        fail_msg("apply_stream: %s", err.message ? err.message : "(no message)");
}

static void expect_calls(fixture *f, const char *const *want, size_t n)
{
    for (size_t i = 0; i < n && i < f->n_calls; i++)
        assert_string_equal(f->calls[i], want[i]);
    if (f->n_calls != n)
        fail_msg("%zu handler calls, expected %zu (first extra: %s)", f->n_calls, n,
                 f->n_calls > n ? f->calls[n] : "-");
}

/* The names of the objects in arr, sorted and joined by commas ("" for none). */
static void names_of(json_t *arr, char *buf, size_t len)
{
    const char *names[16];
    size_t n = 0, i;
    json_t *obj;
    json_array_foreach (arr, i, obj) {
        if (n < 16)
            names[n++] = kobj_name(obj);
    }
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && strcmp(names[b - 1], names[b]) > 0; b--) {
            const char *t = names[b];
            names[b] = names[b - 1];
            names[b - 1] = t;
        }
    buf[0] = '\0';
    for (size_t k = 0; k < n; k++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", k ? "," : "", names[k]);
    json_decref(arr);
}

#define assert_by_label(f, value, want)                                                            \
    do {                                                                                           \
        char got_[128];                                                                            \
        names_of(kube_informer_by_label((f)->inf, "app", value), got_, sizeof(got_));              \
        assert_string_equal(got_, want);                                                           \
    } while (0)

#define assert_by_owner(f, uid, want)                                                              \
    do {                                                                                           \
        char got_[128];                                                                            \
        names_of(kube_informer_by_owner((f)->inf, uid), got_, sizeof(got_));                       \
        assert_string_equal(got_, want);                                                           \
    } while (0)

static const char *cached_rv(fixture *f, const char *key, char *buf, size_t len)
{
    json_t *obj = kube_informer_get(f->inf, key);
    if (!obj)
        return NULL;
    snprintf(buf, len, "%s", kobj_resource_version(obj));
    json_decref(obj);
    return buf;
}

static const char stream[] = EV("ADDED", POD("a", "1", "")) EV("ADDED", POD("b", "2", ""))
    EV("MODIFIED", POD("a", "3", "")) EV("DELETED", POD("b", "4", ""));
static const char *const stream_calls[] = {"add ns/a@1", "add ns/b@2", "update ns/a@1>3",
                                           "delete ns/b@4"};

static void test_each_event_reaches_the_handlers_once(void **state)
{
    fixture *f = *state;
    char rv[32];
    feed_ok(f, stream);
    expect_calls(f, stream_calls, 4);
    assert_int_equal(kube_informer_size(f->inf), 1);
    assert_string_equal(cached_rv(f, "ns/a", rv, sizeof(rv)), "3");
    assert_null(kube_informer_get(f->inf, "ns/b"));

    /* The same version again (a watch that resumed one event early) is no change; a delete
     * of what the cache does not hold reaches no handler either. */
    feed_ok(f, EV("MODIFIED", POD("a", "3", "")) EV("ADDED", POD("a", "3", ""))
                   EV("DELETED", POD("b", "4", "")) EV("DELETED", POD("c", "5", "")));
    expect_calls(f, stream_calls, 4);
    assert_string_equal(cached_rv(f, "ns/a", rv, sizeof(rv)), "3");

    kube_informer_stats st;
    kube_informer_get_stats(f->inf, &st);
    assert_int_equal(st.events, 8);
    assert_int_equal(st.handler_calls, 4);
    assert_int_equal(st.lists, 0); /* nothing here lists or watches */
    assert_int_equal(st.watches, 0);
    assert_false(kube_informer_has_synced(f->inf));
}

/* Bytes arrive in any split: every chunk size gives the same calls and the same cache. */
static void test_any_split_gives_the_same_calls(void **state)
{
    fixture *f = *state;
    size_t len = strlen(stream);
    for (size_t chunk = 1; chunk <= len; chunk += chunk < 16 ? 1 : 37) {
        /* Start each round from an empty cache: delete what the last round left. */
        feed_ok(f, EV("DELETED", POD("a", "9", "")));
        f->n_calls = 0;
        for (size_t off = 0; off < len; off += chunk) {
            moat_error err = MOAT_ERROR_INIT;
            size_t n = len - off < chunk ? len - off : chunk;
            if (kube_informer_apply_stream(f->inf, stream + off, n, &err) < 0)
                fail_msg("chunk %zu at %zu: %s", chunk, off, err.message);
        }
        expect_calls(f, stream_calls, 4);
        assert_int_equal(kube_informer_size(f->inf), 1);
    }
}

static void test_bookmark_calls_no_handler(void **state)
{
    fixture *f = *state;
    char rv[32];
    feed_ok(f, EV("ADDED", POD("a", "1", "")));
    feed_ok(f, EV("BOOKMARK", "{\"kind\":\"Pod\",\"metadata\":{\"resourceVersion\":\"50\"}}")
                   EV("BOOKMARK", "{\"kind\":\"Pod\",\"metadata\":{\"resourceVersion\":\"60\","
                                  "\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}}}"));
    const char *const want[] = {"add ns/a@1"};
    expect_calls(f, want, 1);
    kube_informer_stats st;
    kube_informer_get_stats(f->inf, &st);
    assert_int_equal(st.events, 1); /* bookmarks are not events */
    assert_int_equal(st.handler_calls, 1);
    assert_int_equal(kube_informer_size(f->inf), 1);
    assert_string_equal(cached_rv(f, "ns/a", rv, sizeof(rv)), "1");
}

/* An ERROR event ends the stream there: nothing after it in the same bytes is applied, and
 * the caller is told why. */
static void test_error_event_ends_the_stream(void **state)
{
    fixture *f = *state;
    moat_error err = MOAT_ERROR_INIT;
    static const char expired[] = EV("ADDED", POD("a", "1", ""))
        EV("ERROR", "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                    "\"message\":\"too old resource version: 1 (50)\",\"reason\":\"Expired\","
                    "\"code\":410}") EV("ADDED", POD("b", "2", ""));
    assert_int_equal(kube_informer_apply_stream(f->inf, expired, strlen(expired), &err), -1);
    assert_non_null(err.message);
    assert_int_equal(err.code, MOAT_E_KUBE);
    assert_true(kube_error_is(&err, KUBE_REASON_GONE));
    assert_non_null(strstr(err.message, "pods"));
    moat_error_clear(&err);
    const char *const want[] = {"add ns/a@1"};
    expect_calls(f, want, 1);
    assert_null(kube_informer_get(f->inf, "ns/b"));

    static const char internal[] =
        EV("ERROR", "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"etcd is sad\","
                    "\"reason\":\"InternalError\",\"code\":500}") EV("DELETED", POD("a", "3", ""));
    assert_int_equal(kube_informer_apply_stream(f->inf, internal, strlen(internal), &err), -1);
    assert_int_equal(err.code, MOAT_E_KUBE);
    assert_non_null(strstr(err.message, "etcd is sad"));
    moat_error_clear(&err);
    expect_calls(f, want, 1);
    assert_int_equal(kube_informer_size(f->inf), 1);
}

static void test_bad_lines_are_errors(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {
        "not json\n",
        EV("ADDED", "{\"kind\":\"Pod\",\"metadata\":{\"namespace\":\"ns\"}}"),
        EV("EXPLODED", POD("a", "1", "")),
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        moat_error err = MOAT_ERROR_INIT;
        assert_int_equal(kube_informer_apply_stream(f->inf, bad[i], strlen(bad[i]), &err), -1);
        assert_int_equal(err.code, MOAT_E_INVALID);
        assert_non_null(err.message);
        moat_error_clear(&err);
    }
    assert_int_equal(f->n_calls, 0);
    assert_int_equal(kube_informer_size(f->inf), 0);
}

static void test_label_index_follows_updates_and_deletes(void **state)
{
    fixture *f = *state;
    feed_ok(f, EV("ADDED", POD("a", "1", LABELS("x"))) EV("ADDED", POD("b", "2", LABELS("x")))
                   EV("ADDED", POD("c", "3", "")));
    assert_by_label(f, "x", "a,b");

    feed_ok(f, EV("MODIFIED", POD("a", "4", LABELS("y"))));
    assert_by_label(f, "x", "b");
    assert_by_label(f, "y", "a");

    feed_ok(f, EV("MODIFIED", POD("b", "5", ""))         /* label removed */
            EV("MODIFIED", POD("c", "6", LABELS("y")))); /* label added */
    assert_by_label(f, "x", "");
    assert_by_label(f, "y", "a,c");

    feed_ok(f, EV("DELETED", POD("a", "7", LABELS("y"))));
    assert_by_label(f, "y", "c");
    /* A DELETED event whose object lost the label still takes the cached one out. */
    feed_ok(f, EV("DELETED", POD("c", "8", "")));
    assert_by_label(f, "y", "");
    assert_int_equal(kube_informer_size(f->inf), 1);
    /* A new object of a deleted one's name is not found under the old one's label. */
    feed_ok(f, EV("ADDED", POD("a", "9", LABELS("z"))));
    assert_by_label(f, "y", "");
    assert_by_label(f, "z", "a");
}

static void test_owner_index_follows_updates_and_deletes(void **state)
{
    fixture *f = *state;
    feed_ok(f, EV("ADDED", POD("a", "1", OWNERS(OWNER("u1"))))
                   EV("ADDED", POD("b", "2", OWNERS(OWNER("u1") "," OWNER("u2")))));
    assert_by_owner(f, "u1", "a,b");
    assert_by_owner(f, "u2", "b");

    feed_ok(f, EV("MODIFIED", POD("a", "3", OWNERS(OWNER("u2")))));
    assert_by_owner(f, "u1", "b");
    assert_by_owner(f, "u2", "a,b");

    feed_ok(f, EV("MODIFIED", POD("b", "4", "")));
    assert_by_owner(f, "u1", "");
    assert_by_owner(f, "u2", "a");

    feed_ok(f, EV("DELETED", POD("a", "5", OWNERS(OWNER("u2")))));
    assert_by_owner(f, "u2", "");
    assert_by_owner(f, "nobody", "");
    feed_ok(f, EV("ADDED", POD("a", "6", OWNERS(OWNER("u3")))));
    assert_by_owner(f, "u2", "");
    assert_by_owner(f, "u3", "a");
}

/* What the handlers and the cache see: managedFields dropped, the transform applied. */
static void test_objects_are_trimmed_before_caching(void **state)
{
    fixture *f = *state;
    feed_ok(f, EV("ADDED", "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\","
                           "\"resourceVersion\":\"1\",\"managedFields\":[{\"manager\":\"m\"}]},"
                           "\"spec\":{\"secret\":\"s\",\"image\":\"i\"}}"));
    json_t *obj = kube_informer_get(f->inf, "ns/a");
    assert_non_null(obj);
    assert_null(kobj_get(obj, "metadata.managedFields"));
    assert_null(kobj_get(obj, "spec.secret"));
    assert_string_equal(kobj_str(obj, "spec.image"), "i");
    json_decref(obj);
    assert_int_equal(transformed, 1);
    json_t *all = kube_informer_list(f->inf);
    assert_int_equal(json_array_size(all), 1);
    json_decref(all);
}

/* List pages. */
#define LIST(rv, cont, items)                                                                      \
    "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"" rv "\"" cont                      \
    "},\"items\":[" items "]}"
#define CONTINUE(token) ",\"continue\":\"" token "\""

static void list_ok(fixture *f, const char *page)
{
    moat_error err = MOAT_ERROR_INIT;
    if (kube_informer_apply_list_page(f->inf, page, strlen(page), &err) < 0)
        fail_msg("apply_list_page: %s", err.message ? err.message : "(no message)");
}

/* A relist (after a 410, or the informer's start) hands out exactly what changed while no
 * watch ran: a, unchanged, is no call; b moved on; c went away; d is new. Pages accumulate
 * until the last one, and nothing is handed out before it. */
static void test_relist_hands_out_exactly_the_difference(void **state)
{
    fixture *f = *state;
    feed_ok(f, EV("ADDED", POD("a", "1", "")) EV("ADDED", POD("b", "2", ""))
                   EV("ADDED", POD("c", "3", "")));
    f->n_calls = 0;
    list_ok(f, LIST("20", CONTINUE("next"), POD("a", "1", "") "," POD("b", "7", "")));
    assert_int_equal(f->n_calls, 0); /* the list is not whole yet */
    list_ok(f, LIST("21", "", POD("d", "9", "")));
    static const char *const want[] = {"update ns/b@2>7", "add ns/d@9", "delete ns/c@3"};
    expect_calls(f, want, ELEMENTSOF(want));
    char buf[32];
    assert_null(cached_rv(f, "ns/c", buf, sizeof(buf)));
    assert_string_equal(cached_rv(f, "ns/b", buf, sizeof(buf)), "7");
    assert_int_equal(kube_informer_size(f->inf), 3);
    /* The watch goes on from the first page's resourceVersion: a later event at or below
     * what the list showed changes nothing. */
    f->n_calls = 0;
    feed_ok(f, EV("MODIFIED", POD("d", "9", "")));
    assert_int_equal(f->n_calls, 0);
}

/* A relist's deletes and updates keep the indexes true. */
static void test_relist_keeps_the_indexes(void **state)
{
    fixture *f = *state;
    feed_ok(f, EV("ADDED", POD("a", "1", LABELS("x"))) EV("ADDED", POD("b", "2", LABELS("x"))));
    list_ok(f, LIST("5", "", POD("a", "4", LABELS("y"))));
    assert_by_label(f, "x", "");
    assert_by_label(f, "y", "a");
}

static void test_list_page_not_json(void **state)
{
    fixture *f = *state;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(kube_informer_apply_list_page(f->inf, "{nope", 5, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);
}

static bool compact = true;

/* Each test runs twice: on a cache of objects, and on a compact cache (JSON text). */
#define PLAIN(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
#define COMPACT(t)                                                                                 \
    (struct CMUnitTest)                                                                            \
    {                                                                                              \
        .name = #t " (compact cache)", .test_func = t, .setup_func = setup,                        \
        .teardown_func = teardown, .initial_state = &compact                                       \
    }
#define BOTH(t) PLAIN(t), COMPACT(t)

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        BOTH(test_each_event_reaches_the_handlers_once),
        BOTH(test_any_split_gives_the_same_calls),
        BOTH(test_bookmark_calls_no_handler),
        BOTH(test_error_event_ends_the_stream),
        BOTH(test_bad_lines_are_errors),
        BOTH(test_label_index_follows_updates_and_deletes),
        BOTH(test_owner_index_follows_updates_and_deletes),
        BOTH(test_objects_are_trimmed_before_caching),
        BOTH(test_relist_hands_out_exactly_the_difference),
        BOTH(test_relist_keeps_the_indexes),
        PLAIN(test_list_page_not_json),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return r;
}
