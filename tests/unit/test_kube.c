/* The client's request logic with the network replaced by a scripted transport: error
 * classification from Status bodies, retries of 429/5xx with Retry-After and their cap,
 * pagination, paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "libmoat/kobj.h"
#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"

typedef struct {
    long status;
    const char *body;
    int64_t retry_after_ns;
    int network_error;
} answer;

typedef struct {
    const answer *script;
    size_t n, next;
    char paths[8][256];
} fake;

static int fake_send(void *impl, const kube_http_request *req, kube_http_response *resp,
                     moat_error *err)
{
    fake *f = impl;
    if (f->next < 8)
        strncpy(f->paths[f->next], req->path, sizeof(f->paths[0]) - 1);
    const answer *a = &f->script[f->next < f->n ? f->next : f->n - 1];
    f->next++;
    if (a->network_error)
        return moat_error_set(err, MOAT_E_NETWORK, "connection refused");
    resp->status = a->status;
    resp->body = strdup(a->body);
    resp->body_len = strlen(a->body);
    resp->retry_after_ns = a->retry_after_ns;
    return 0;
}

static const char kubeconfig[] = "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                 "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                                 "users: [{name: u, user: {token: t}}]\n"
                                 "contexts: [{name: c, context: {cluster: k, user: u}}]\n";

static kube_client *client_for(fake *f, kube_config **ret_cfg, int max_retries)
{
    moat_error err = MOAT_ERROR_INIT;
    kube_config *cfg = NULL;
    kube_client *c = NULL;
    if (kube_config_parse(&cfg, kubeconfig, strlen(kubeconfig), "test", NULL, NULL, &err) < 0)
        fail_msg("%s", err.message);
    kube_transport t = {fake_send, f};
    kube_client_options o = {.transport = &t,
                             .max_retries = max_retries,
                             .retry_base_ns = 1000000,
                             .retry_cap_ns = 2000000000LL};
    assert_int_equal(kube_client_new(&c, cfg, &o, &err), 0);
    *ret_cfg = cfg;
    return c;
}

#define STATUS(reason, code, msg)                                                                  \
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"" msg         \
    "\",\"reason\":\"" reason "\",\"code\":" #code "}"

static void test_reason_comes_from_the_body(void **state)
{
    /* 409 is both AlreadyExists and Conflict: only the body's reason tells. */
    const answer script[] = {
        {409, STATUS("AlreadyExists", 409, "configmaps \\\"a\\\" already exists"), -1, 0},
        {409, STATUS("Conflict", 409, "the object has been modified"), -1, 0},
        {404, STATUS("NotFound", 404, "nope"), -1, 0},
        {410, STATUS("Expired", 410, "too old"), -1, 0},
        {403, STATUS("Forbidden", 403, "no"), -1, 0},
        {422, STATUS("Invalid", 422, "bad field"), -1, 0}};
    const kube_reason want[] = {KUBE_REASON_ALREADY_EXISTS, KUBE_REASON_CONFLICT,
                                KUBE_REASON_NOT_FOUND,      KUBE_REASON_GONE,
                                KUBE_REASON_FORBIDDEN,      KUBE_REASON_INVALID};
    fake f = {script, 6, 0, {{0}}};
    kube_config *cfg;
    kube_client *c = client_for(&f, &cfg, 3);
    for (size_t i = 0; i < 6; i++) {
        moat_error err = MOAT_ERROR_INIT;
        json_t *out = NULL;
        assert_int_equal(kube_get(c, &out, &KUBE_CONFIGMAPS, "ns", "a", &err), -1);
        assert_int_equal(err.code, MOAT_E_KUBE);
        assert_int_equal(err.kube_reason, want[i]);
        assert_int_equal(err.http_status, script[i].status);
        assert_string_equal(err.body, script[i].body); /* the body is never dropped */
        moat_error_clear(&err);
    }
    assert_int_equal(f.next, 6); /* none of those is retried */
    kube_client_free(c);
    kube_config_free(cfg);
}

static void test_429_honours_retry_after(void **state)
{
    const answer script[] = {
        {429, STATUS("TooManyRequests", 429, "slow down"), 200000000LL, 0},
        {200, "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}", -1, 0}};
    fake f = {script, 2, 0, {{0}}};
    kube_config *cfg;
    kube_client *c = client_for(&f, &cfg, 3);
    moat_error err = MOAT_ERROR_INIT;
    json_t *out = NULL;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(kube_get(c, &out, &KUBE_CONFIGMAPS, "ns", "a", &err), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double waited = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(waited >= 0.19); /* Retry-After: 0.2 s in this script */
    assert_string_equal(kobj_name(out), "a");
    uint64_t requests, retries;
    kube_client_stats(c, &requests, &retries);
    assert_int_equal(requests, 2);
    assert_int_equal(retries, 1);
    json_decref(out);
    kube_client_free(c);
    kube_config_free(cfg);
}

static void test_5xx_retries_stop_at_the_cap(void **state)
{
    const answer script[] = {{503, "<html>upstream down</html>", -1, 0}};
    fake f = {script, 1, 0, {{0}}};
    kube_config *cfg;
    kube_client *c = client_for(&f, &cfg, 4);
    moat_error err = MOAT_ERROR_INIT;
    json_t *out = NULL;
    assert_int_equal(kube_get(c, &out, &KUBE_PODS, "ns", "p", &err), -1);
    assert_int_equal(f.next, 5); /* the first try and 4 retries */
    assert_int_equal(err.kube_reason, KUBE_REASON_SERVICE_UNAVAILABLE); /* not a Status: HTTP */
    assert_non_null(strstr(err.message, "after 4 retries"));
    assert_non_null(strstr(err.body, "upstream down"));
    moat_error_clear(&err);
    kube_client_free(c);
    kube_config_free(cfg);
}

/* A create is not retried on a 5xx (it may have taken effect), only on 429. */
static void test_post_retried_on_429_only(void **state)
{
    const answer script[] = {{500, STATUS("InternalError", 500, "etcd timeout"), -1, 0},
                             {429, STATUS("TooManyRequests", 429, "slow down"), 0, 0},
                             {201, "{\"kind\":\"ConfigMap\"}", -1, 0}};
    fake f = {script, 3, 0, {{0}}};
    kube_config *cfg;
    kube_client *c = client_for(&f, &cfg, 4);
    moat_error err = MOAT_ERROR_INIT;
    json_t *obj = json_pack("{s:s}", "kind", "ConfigMap"), *out = NULL;
    assert_int_equal(kube_create(c, &out, &KUBE_CONFIGMAPS, "ns", obj, &err), -1);
    assert_int_equal(f.next, 1); /* the 500: no second create */
    assert_int_equal(err.kube_reason, KUBE_REASON_INTERNAL_ERROR);
    moat_error_clear(&err);
    assert_int_equal(kube_create(c, &out, &KUBE_CONFIGMAPS, "ns", obj, &err), 0);
    assert_int_equal(f.next, 3); /* the 429, then the create again */
    json_decref(out);
    json_decref(obj);
    kube_client_free(c);
    kube_config_free(cfg);
}

static void test_network_errors_are_not_api_errors(void **state)
{
    const answer script[] = {{0, "", -1, 1}};
    fake f = {script, 1, 0, {{0}}};
    kube_config *cfg;
    kube_client *c = client_for(&f, &cfg, 3);
    moat_error err = MOAT_ERROR_INIT;
    json_t *out = NULL;
    assert_int_equal(kube_get(c, &out, &KUBE_PODS, "ns", "p", &err), -1);
    assert_int_equal(err.code, MOAT_E_NETWORK);
    assert_false(kube_error_is(&err, KUBE_REASON_NOT_FOUND));
    assert_int_equal(f.next, 1);
    moat_error_clear(&err);
    kube_client_free(c);
    kube_config_free(cfg);
}

static void test_list_follows_continue(void **state)
{
    const answer script[] = {
        {200,
         "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\",\"continue\":\"t1\"},"
         "\"items\":[{\"metadata\":{\"name\":\"a\"}},{\"metadata\":{\"name\":\"b\"}}]}",
         -1, 0},
        {200,
         "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\",\"continue\":\"t2\"},"
         "\"items\":[{\"metadata\":{\"name\":\"c\"}}]}",
         -1, 0},
        {200, "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":null}", -1,
         0}};
    fake f = {script, 3, 0, {{0}}};
    kube_config *cfg;
    kube_client *c = client_for(&f, &cfg, 3);
    moat_error err = MOAT_ERROR_INIT;
    json_t *list = NULL;
    kube_list_options o = {.label_selector = "app=x,tier in (a,b)", .limit = 2};
    assert_int_equal(kube_list(c, &list, &KUBE_PODS, "ns", &o, &err), 0);
    assert_int_equal(json_array_size(json_object_get(list, "items")), 3);
    assert_string_equal(kobj_str(list, "metadata.resourceVersion"), "10");
    assert_null(kobj_get(list, "metadata.continue"));
    assert_string_equal(f.paths[0], "/api/v1/namespaces/ns/pods?limit=2&labelSelector="
                                    "app%3Dx%2Ctier%20in%20%28a%2Cb%29");
    assert_non_null(strstr(f.paths[1], "&continue=t1"));
    assert_non_null(strstr(f.paths[2], "&continue=t2"));
    json_decref(list);
    kube_client_free(c);
    kube_config_free(cfg);
}

static void test_paths(void **state)
{
    char *p = kube_resource_path(&KUBE_SANDBOXES, "team", "s1");
    assert_string_equal(p, "/apis/moat.dev/v1alpha1/namespaces/team/sandboxes/s1");
    free(p);
    p = kube_resource_path(&KUBE_NODES, "ignored", NULL);
    assert_string_equal(p, "/api/v1/nodes");
    free(p);
    p = kube_resource_path(&KUBE_LEASES, "kube-system", NULL);
    assert_string_equal(p, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases");
    free(p);
    assert_int_equal(kube_reason_parse("Expired"), KUBE_REASON_GONE);
    assert_int_equal(kube_reason_parse("Gone"), KUBE_REASON_GONE);
    assert_int_equal(kube_reason_parse("Whatever"), KUBE_REASON_UNKNOWN);
    assert_int_equal(kube_reason_parse(NULL), KUBE_REASON_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason_comes_from_the_body),
        cmocka_unit_test(test_429_honours_retry_after),
        cmocka_unit_test(test_5xx_retries_stop_at_the_cap),
        cmocka_unit_test(test_post_retried_on_429_only),
        cmocka_unit_test(test_network_errors_are_not_api_errors),
        cmocka_unit_test(test_list_follows_continue),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
