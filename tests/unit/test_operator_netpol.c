#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "libmoat/kobj.h"
#include "libmoat/names.h"
#include "operator/netpol.h"

static char *dns_keys[] = {"k8s-app", NULL};
static char *dns_values[] = {"kube-dns", NULL};

/* Only what the policies read; the rest of the configuration is irrelevant here. */
static operator_config test_config(void)
{
    return (operator_config){
        .dns_namespace = "kube-system",
        .dns_pod_label_keys = dns_keys,
        .dns_pod_label_values = dns_values,
    };
}

static void assert_json_eq(const json_t *obj, const char *want)
{
    json_error_t jerr;
    json_t *w = json_loads(want, 0, &jerr);
    if (!w)
        fail_msg("bad test JSON: %s: %s", jerr.text, want);
    if (!json_equal((json_t *)obj, w)) {
        char *got = obj ? json_dumps(obj, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        fail_msg("want %s\n got %s", want, got ? got : "(absent)");
    }
    json_decref(w);
}

static json_t *build(const char *ns, const operator_config *cfg)
{
    moat_error err = MOAT_ERROR_INIT;
    json_t *policies = NULL;
    if (sandbox_netpols_build(&policies, ns, cfg, &err) < 0)
        fail_msg("%s", err.message);
    assert_true(json_is_array(policies));
    assert_int_equal(json_array_size(policies), 2);
    return policies;
}

static void assert_common(const json_t *policy, const char *name, const char *egress_class)
{
    assert_string_equal(kobj_str(policy, "apiVersion"), "networking.k8s.io/v1");
    assert_string_equal(kobj_str(policy, "kind"), "NetworkPolicy");
    assert_string_equal(kobj_name(policy), name);
    assert_string_equal(kobj_namespace(policy), "team-a");
    assert_json_eq(kobj_get(policy, "metadata.labels"),
                   "{\"app.kubernetes.io/managed-by\": \"moat-operator\"}");
    /* Selected by the egress class alone, so one class's allowances never reach another. */
    json_t *selector = kobj_get(policy, "spec.podSelector");
    assert_int_equal(json_object_size(selector), 1);
    assert_int_equal(json_object_size(json_object_get(selector, "matchLabels")), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(selector, "matchLabels"),
                                                          MOAT_LABEL_EGRESS)),
                        egress_class);
    assert_json_eq(kobj_get(policy, "spec.policyTypes"), "[\"Ingress\", \"Egress\"]");
    assert_null(kobj_get(policy, "spec.ingress")); /* no ingress rule: all ingress denied */
}

static void test_egress_none(void **state)
{
    operator_config cfg = test_config();
    json_t *policies = build("team-a", &cfg);
    json_t *none = json_array_get(policies, 0);

    assert_common(none, "moat-egress-none", MOAT_EGRESS_NONE);
    assert_null(kobj_get(none, "spec.egress")); /* no egress rule: all egress denied */
    assert_int_equal(json_object_size(kobj_get(none, "spec")), 2);
    json_decref(policies);
}

static void test_egress_internet(void **state)
{
    operator_config cfg = test_config();
    json_t *policies = build("team-a", &cfg);
    json_t *internet = json_array_get(policies, 1);

    assert_common(internet, "moat-egress-internet", MOAT_EGRESS_INTERNET);
    json_t *egress = kobj_get(internet, "spec.egress");
    assert_int_equal(json_array_size(egress), 2);
    /* DNS: the DNS pods of the DNS namespace (one peer, so the selectors are ANDed), port 53
     * only. */
    assert_json_eq(json_array_get(egress, 0),
                   "{\"to\": [{\"namespaceSelector\": {\"matchLabels\":"
                   " {\"kubernetes.io/metadata.name\": \"kube-system\"}},"
                   " \"podSelector\": {\"matchLabels\": {\"k8s-app\": \"kube-dns\"}}}],"
                   " \"ports\": [{\"protocol\": \"UDP\", \"port\": 53},"
                   " {\"protocol\": \"TCP\", \"port\": 53}]}");
    /* Public addresses, every port: the full except lists, in order. */
    assert_json_eq(json_array_get(egress, 1),
                   "{\"to\": ["
                   "{\"ipBlock\": {\"cidr\": \"0.0.0.0/0\", \"except\": ["
                   "\"10.0.0.0/8\", \"172.16.0.0/12\", \"192.168.0.0/16\", \"100.64.0.0/10\","
                   " \"169.254.0.0/16\", \"127.0.0.0/8\", \"0.0.0.0/8\", \"224.0.0.0/4\","
                   " \"240.0.0.0/4\", \"168.63.129.16/32\", \"192.0.0.0/24\", \"198.18.0.0/15\"]}},"
                   "{\"ipBlock\": {\"cidr\": \"::/0\", \"except\": ["
                   "\"fc00::/7\", \"fe80::/10\", \"::1/128\", \"fd00:ec2::254/128\","
                   " \"ff00::/8\", \"64:ff9b::/96\", \"64:ff9b:1::/48\", \"::/128\"]}}]}");
    json_decref(policies);
}

/* The cluster's own pod and service ranges, each in the except list of its family: an
 * IPv6 GUA pod range or a public service range is not "the Internet". */
static void test_cluster_cidrs_excepted(void **state)
{
    static char *cidrs[] = {"2600:1f18::/56", "203.0.113.0/24", "fd00:10:96::/108", NULL};
    operator_config cfg = test_config();
    cfg.cluster_cidrs = cidrs;
    json_t *policies = build("team-a", &cfg);
    json_t *to =
        kobj_get(json_array_get(kobj_get(json_array_get(policies, 1), "spec.egress"), 1), "to");
    json_t *v4 = kobj_get(json_array_get(to, 0), "ipBlock.except");
    json_t *v6 = kobj_get(json_array_get(to, 1), "ipBlock.except");
    assert_string_equal(json_string_value(json_array_get(v4, json_array_size(v4) - 1)),
                        "203.0.113.0/24");
    assert_string_equal(json_string_value(json_array_get(v6, json_array_size(v6) - 2)),
                        "2600:1f18::/56");
    assert_string_equal(json_string_value(json_array_get(v6, json_array_size(v6) - 1)),
                        "fd00:10:96::/108");
    json_decref(policies);
}

static void test_dns_from_config(void **state)
{
    static char *keys[] = {"app", "tier", NULL};
    static char *values[] = {"coredns", "dns", NULL};
    operator_config cfg = test_config();
    cfg.dns_namespace = "dns";
    cfg.dns_pod_label_keys = keys;
    cfg.dns_pod_label_values = values;
    json_t *policies = build("team-a", &cfg);
    json_t *peer = json_array_get(
        kobj_get(json_array_get(kobj_get(json_array_get(policies, 1), "spec.egress"), 0), "to"), 0);

    assert_json_eq(peer, "{\"namespaceSelector\": {\"matchLabels\":"
                         " {\"kubernetes.io/metadata.name\": \"dns\"}},"
                         " \"podSelector\": {\"matchLabels\": {\"app\": \"coredns\","
                         " \"tier\": \"dns\"}}}");
    json_decref(policies);
}

static void test_refused(void **state)
{
    operator_config cfg = test_config();
    moat_error err = MOAT_ERROR_INIT;
    json_t *sentinel = json_array(), *out = sentinel;

    assert_int_equal(sandbox_netpols_build(&out, "", &cfg, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_ptr_equal(out, sentinel);
    assert_int_equal(sandbox_netpols_build(&out, NULL, &cfg, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    cfg.dns_namespace = "";
    assert_int_equal(sandbox_netpols_build(&out, "team-a", &cfg, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_string_equal(err.message, "NetworkPolicies: network.dnsNamespace is empty");
    assert_ptr_equal(out, sentinel);
    moat_error_clear(&err);
    json_decref(sentinel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_egress_none),     cmocka_unit_test(test_egress_internet),
        cmocka_unit_test(test_dns_from_config), cmocka_unit_test(test_cluster_cidrs_excepted),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
