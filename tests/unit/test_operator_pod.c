#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "libmoat/kobj.h"
#include "libmoat/names.h"
#include "operator/pod.h"

#define S_NS (1000000000LL)

static char *dns_keys[] = {"k8s-app", NULL};
static char *dns_values[] = {"kube-dns", NULL};
/* The placement the default tests run under: "pool" selectable, every taint tolerable. */
static char *node_keys[] = {"pool", NULL};
static char *toleration_keys[] = {"*", NULL};
static char *no_keys[] = {NULL};

/* The defaults config.h documents, filled by hand so these tests do not depend on the
 * configuration parser. */
static operator_config test_config(void)
{
    return (operator_config){
        .runtime_class_auto = "moat-auto",
        .runtime_class_vm = "moat-vm",
        .runtime_class_gvisor = "moat-gvisor",
        .managed_node_label = "moat.dev/managed",
        .hypervisor_node_label = "moat.dev/hypervisor",
        .gpu_mode_node_label = "moat.dev/gpu-mode",
        .default_cpu_milli = 1000,
        .default_memory_milli = 512LL * 1024 * 1024 * 1000,
        .default_storage_milli = 1024LL * 1024 * 1024 * 1000,
        .default_cpu = "1",
        .default_memory = "512Mi",
        .default_storage = "1Gi",
        .max_cpu_milli = 8000,
        .max_memory_milli = 32LL * 1024 * 1024 * 1024 * 1000,
        .max_storage_milli = 100LL * 1024 * 1024 * 1024 * 1000,
        .max_gpus = 8,
        .default_timeout_ns = 5 * 60 * S_NS,
        .max_timeout_ns = 24 * 3600 * S_NS,
        .default_ttl_ns = 10 * 60 * S_NS,
        .image_pull_policy = "IfNotPresent",
        .gpu_container_resource = "nvidia.com/gpu",
        .gpu_vm_resource = "nvidia.com/pgpu",
        .gpu_product_label = "nvidia.com/gpu.product",
        .gpu_taint_key = "nvidia.com/gpu",
        .dns_namespace = "kube-system",
        .dns_pod_label_keys = dns_keys,
        .dns_pod_label_values = dns_values,
        .workers = 4,
        .placement_node_selector_keys = node_keys,
        .placement_toleration_keys = toleration_keys,
    };
}

/* A Sandbox "job-1" in "team-a" with the given spec (JSON text). */
static json_t *sandbox_with(const char *spec)
{
    char *text = NULL;
    assert_true(asprintf(&text,
                         "{\"apiVersion\": \"moat.dev/v1alpha1\", \"kind\": \"Sandbox\","
                         " \"metadata\": {\"name\": \"job-1\", \"namespace\": \"team-a\","
                         " \"uid\": \"6f1c-uid\"}, \"spec\": %s}",
                         spec) > 0);
    json_error_t jerr;
    json_t *sandbox = json_loads(text, 0, &jerr);
    if (!sandbox)
        fail_msg("bad test JSON: %s: %s", jerr.text, text);
    free(text);
    return sandbox;
}

static json_t *build_ok(const char *spec)
{
    operator_config cfg = test_config();
    moat_error err = MOAT_ERROR_INIT;
    json_t *sandbox = sandbox_with(spec);
    json_t *pod = NULL;
    if (sandbox_pod_build(&pod, sandbox, &cfg, &err) < 0)
        fail_msg("spec %s: %s", spec, err.message);
    assert_non_null(pod);
    json_decref(sandbox);
    return pod;
}

static void assert_refused_sandbox(json_t *sandbox, const char *want)
{
    operator_config cfg = test_config();
    moat_error err = MOAT_ERROR_INIT;
    json_t *sentinel = json_object(), *pod = sentinel;
    assert_int_equal(sandbox_pod_build(&pod, sandbox, &cfg, &err), -1);
    assert_ptr_equal(pod, sentinel); /* out is written only on success */
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_non_null(err.message);
    if (strcmp(err.message, want) != 0)
        fail_msg("want \"%s\", got \"%s\"", want, err.message);
    moat_error_clear(&err);
    json_decref(sentinel);
    json_decref(sandbox);
}

static void assert_refused(const char *spec, const char *want)
{
    assert_refused_sandbox(sandbox_with(spec), want);
}

static void assert_json_str(const json_t *obj, const char *path, const char *want)
{
    const char *got = kobj_str(obj, path);
    if (!got)
        fail_msg("%s: missing or not a string", path);
    assert_string_equal(got, want);
}

static void assert_json_int(const json_t *obj, const char *path, int64_t want)
{
    int64_t got;
    if (!kobj_int(obj, path, &got))
        fail_msg("%s: missing or not an integer", path);
    assert_int_equal(got, want);
}

static void assert_json_false(const json_t *obj, const char *path)
{
    json_t *v = kobj_get(obj, path);
    if (!json_is_false(v))
        fail_msg("%s: not false", path);
}

/* obj equals the JSON text want. */
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

static json_t *container(const json_t *pod)
{
    json_t *containers = kobj_get(pod, "spec.containers");
    assert_true(json_is_array(containers));
    assert_int_equal(json_array_size(containers), 1);
    return json_array_get(containers, 0);
}

static json_t *match_expressions(const json_t *pod)
{
    json_t *terms =
        kobj_get(pod, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
                      "nodeSelectorTerms");
    assert_true(json_is_array(terms));
    assert_int_equal(json_array_size(terms), 1);
    return json_object_get(json_array_get(terms, 0), "matchExpressions");
}

static void test_hardening(void **state)
{
    json_t *pod = build_ok("{\"image\": \"python:3.12\"}");

    assert_json_str(pod, "apiVersion", "v1");
    assert_json_str(pod, "kind", "Pod");
    assert_json_str(pod, "metadata.name", "job-1");
    assert_json_str(pod, "metadata.namespace", "team-a");
    assert_json_str(pod, "spec.restartPolicy", "Never");
    assert_json_false(pod, "spec.automountServiceAccountToken");
    assert_json_false(pod, "spec.enableServiceLinks");
    assert_json_false(pod, "spec.hostNetwork");
    assert_json_false(pod, "spec.hostPID");
    assert_json_false(pod, "spec.hostIPC");
    assert_json_false(pod, "spec.shareProcessNamespace");
    assert_json_int(pod, "spec.terminationGracePeriodSeconds", 5);
    assert_json_eq(kobj_get(pod, "spec.securityContext"),
                   "{\"seccompProfile\": {\"type\": \"RuntimeDefault\"}}");

    json_t *c = container(pod);
    assert_json_str(c, "name", "sandbox");
    assert_json_str(c, "image", "python:3.12");
    assert_json_str(c, "imagePullPolicy", "IfNotPresent");
    assert_json_str(c, "terminationMessagePolicy", "FallbackToLogsOnError");
    assert_json_eq(json_object_get(c, "securityContext"),
                   "{\"allowPrivilegeEscalation\": false, \"privileged\": false,"
                   " \"capabilities\": {\"drop\": [\"ALL\"]},"
                   " \"readOnlyRootFilesystem\": false}");
    /* Nothing the Sandbox did not ask for. */
    assert_null(json_object_get(c, "command"));
    assert_null(json_object_get(c, "args"));
    assert_null(json_object_get(c, "workingDir"));
    assert_null(json_object_get(c, "env"));
    assert_null(kobj_get(pod, "spec.imagePullSecrets"));
    assert_null(kobj_get(pod, "spec.nodeSelector"));
    assert_null(kobj_get(pod, "spec.tolerations"));
    json_decref(pod);
}

static void test_defaults(void **state)
{
    json_t *pod = build_ok("{\"image\": \"busybox\"}");
    json_t *c = container(pod);

    assert_json_eq(kobj_get(c, "resources"),
                   "{\"requests\": {\"cpu\": \"1\", \"memory\": \"512Mi\","
                   " \"ephemeral-storage\": \"1Gi\"},"
                   " \"limits\": {\"cpu\": \"1\", \"memory\": \"512Mi\","
                   " \"ephemeral-storage\": \"1Gi\"}}");
    assert_json_int(pod, "spec.activeDeadlineSeconds", 300);
    assert_json_str(pod, "spec.runtimeClassName", "moat-auto");
    assert_json_eq(kobj_get(pod, "metadata.labels"),
                   "{\"" MOAT_LABEL_SANDBOX "\": \"job-1\", \"" MOAT_LABEL_EGRESS "\": \"none\"}");
    assert_json_eq(kobj_get(pod, "metadata.annotations"),
                   "{\"" MOAT_ANNOTATION_ISOLATION "\": \"Auto\", \"" MOAT_ANNOTATION_NETWORK
                   "\": \"none\", \"" MOAT_ANNOTATION_GPU_COUNT "\": \"0\"}");
    json_decref(pod);

    /* resources: {} and an explicit default-valued spec give the same Pod. */
    json_t *a = build_ok("{\"image\": \"busybox\", \"resources\": {}, \"network\": {}}");
    json_t *b = build_ok("{\"image\": \"busybox\", \"isolation\": \"Auto\", \"timeout\": \"5m\","
                         " \"network\": {\"egress\": \"None\"}, \"resources\": {\"cpu\": \"1\","
                         " \"memory\": \"512Mi\", \"ephemeralStorage\": \"1Gi\","
                         " \"gpu\": {\"count\": 0}}}");
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

static void test_resources_as_given(void **state)
{
    json_t *pod = build_ok("{\"image\": \"busybox\", \"resources\": {\"cpu\": 2,"
                           " \"memory\": \"1.5Gi\", \"ephemeralStorage\": \"100Gi\"}}");
    json_t *c = container(pod);
    assert_json_eq(kobj_get(c, "resources"), "{\"requests\": {\"cpu\": 2, \"memory\": \"1.5Gi\","
                                             " \"ephemeral-storage\": \"100Gi\"},"
                                             " \"limits\": {\"cpu\": 2, \"memory\": \"1.5Gi\","
                                             " \"ephemeral-storage\": \"100Gi\"}}");
    /* requests and limits are separate objects, not one shared */
    assert_ptr_not_equal(kobj_get(c, "resources.requests"), kobj_get(c, "resources.limits"));
    json_decref(pod);

    pod = build_ok("{\"image\": \"busybox\", \"resources\": {\"cpu\": \"500m\"}}");
    assert_json_str(container(pod), "resources.limits.cpu", "500m");
    assert_json_str(container(pod), "resources.limits.memory", "512Mi");
    json_decref(pod);
}

static void assert_isolation(const char *isolation, const char *runtime_class, bool hypervisor)
{
    char spec[128];
    snprintf(spec, sizeof spec, "{\"image\": \"busybox\", \"isolation\": \"%s\"}", isolation);
    json_t *pod = build_ok(spec);

    assert_json_str(pod, "spec.runtimeClassName", runtime_class);
    assert_string_equal(kobj_annotation(pod, MOAT_ANNOTATION_ISOLATION), isolation);
    if (hypervisor)
        assert_json_eq(match_expressions(pod),
                       "[{\"key\": \"moat.dev/managed\", \"operator\": \"In\","
                       " \"values\": [\"true\"]},"
                       " {\"key\": \"moat.dev/hypervisor\", \"operator\": \"In\","
                       " \"values\": [\"kvm\", \"mshv\"]}]");
    else
        assert_json_eq(match_expressions(pod), "[{\"key\": \"moat.dev/managed\","
                                               " \"operator\": \"In\", \"values\": [\"true\"]}]");
    json_decref(pod);
}

static void test_isolation(void **state)
{
    assert_isolation("Auto", "moat-auto", false);
    assert_isolation("VM", "moat-vm", true);
    assert_isolation("GVisor", "moat-gvisor", false);
}

static void test_runtime_classes_from_config(void **state)
{
    operator_config cfg = test_config();
    cfg.runtime_class_vm = "custom-vm";
    cfg.managed_node_label = "example.com/sandboxes";
    moat_error err = MOAT_ERROR_INIT;
    json_t *sandbox = sandbox_with("{\"image\": \"busybox\", \"isolation\": \"VM\"}");
    json_t *pod = NULL;
    assert_int_equal(sandbox_pod_build(&pod, sandbox, &cfg, &err), 0);
    assert_json_str(pod, "spec.runtimeClassName", "custom-vm");
    assert_json_str(json_array_get(match_expressions(pod), 0), "key", "example.com/sandboxes");
    json_decref(pod);
    json_decref(sandbox);
}

/* Reads a key with a dot in it. */
static const char *get_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void test_gpu_container_mode(void **state)
{
    json_t *pod = build_ok("{\"image\": \"cuda\", \"isolation\": \"GVisor\", \"resources\":"
                           " {\"gpu\": {\"count\": 2, \"product\": \"NVIDIA-H100-80GB-HBM3\"}}}");
    json_t *c = container(pod);

    assert_string_equal(get_str(kobj_get(c, "resources.requests"), "nvidia.com/gpu"), "2");
    assert_string_equal(get_str(kobj_get(c, "resources.limits"), "nvidia.com/gpu"), "2");
    assert_null(json_object_get(kobj_get(c, "resources.limits"), "nvidia.com/pgpu"));
    assert_json_eq(match_expressions(pod),
                   "[{\"key\": \"moat.dev/managed\", \"operator\": \"In\", \"values\": [\"true\"]},"
                   " {\"key\": \"moat.dev/gpu-mode\", \"operator\": \"In\","
                   " \"values\": [\"container\"]},"
                   " {\"key\": \"nvidia.com/gpu.product\", \"operator\": \"In\","
                   " \"values\": [\"NVIDIA-H100-80GB-HBM3\"]}]");
    assert_json_eq(kobj_get(pod, "spec.tolerations"),
                   "[{\"key\": \"nvidia.com/gpu\", \"operator\": \"Exists\","
                   " \"effect\": \"NoSchedule\"}]");
    assert_string_equal(kobj_annotation(pod, MOAT_ANNOTATION_GPU_COUNT), "2");
    assert_string_equal(kobj_annotation(pod, MOAT_ANNOTATION_GPU_PRODUCT), "NVIDIA-H100-80GB-HBM3");
    json_decref(pod);

    /* Auto is container mode too, and a count without a product has no product term. */
    pod = build_ok("{\"image\": \"cuda\", \"resources\": {\"gpu\": {\"count\": 1}}}");
    assert_string_equal(get_str(kobj_get(container(pod), "resources.limits"), "nvidia.com/gpu"),
                        "1");
    assert_int_equal(json_array_size(match_expressions(pod)), 2);
    assert_json_eq(json_array_get(match_expressions(pod), 1),
                   "{\"key\": \"moat.dev/gpu-mode\", \"operator\": \"In\","
                   " \"values\": [\"container\"]}");
    assert_null(kobj_annotation(pod, MOAT_ANNOTATION_GPU_PRODUCT));
    json_decref(pod);
}

static void test_gpu_vm_mode(void **state)
{
    json_t *pod = build_ok("{\"image\": \"cuda\", \"isolation\": \"VM\", \"resources\":"
                           " {\"gpu\": {\"count\": 8}}}");
    json_t *c = container(pod);

    assert_string_equal(get_str(kobj_get(c, "resources.requests"), "nvidia.com/pgpu"), "8");
    assert_string_equal(get_str(kobj_get(c, "resources.limits"), "nvidia.com/pgpu"), "8");
    assert_null(json_object_get(kobj_get(c, "resources.limits"), "nvidia.com/gpu"));
    assert_json_str(pod, "spec.runtimeClassName", "moat-vm");
    assert_json_eq(match_expressions(pod),
                   "[{\"key\": \"moat.dev/managed\", \"operator\": \"In\", \"values\": [\"true\"]},"
                   " {\"key\": \"moat.dev/hypervisor\", \"operator\": \"In\","
                   " \"values\": [\"kvm\", \"mshv\"]},"
                   " {\"key\": \"moat.dev/gpu-mode\", \"operator\": \"In\","
                   " \"values\": [\"vm-passthrough\"]}]");
    assert_json_eq(kobj_get(pod, "spec.tolerations"),
                   "[{\"key\": \"nvidia.com/gpu\", \"operator\": \"Exists\","
                   " \"effect\": \"NoSchedule\"}]");
    assert_string_equal(kobj_annotation(pod, MOAT_ANNOTATION_GPU_COUNT), "8");
    json_decref(pod);
}

static void test_egress(void **state)
{
    json_t *pod = build_ok("{\"image\": \"busybox\", \"network\": {\"egress\": \"Internet\"}}");
    assert_string_equal(kobj_label(pod, MOAT_LABEL_EGRESS), MOAT_EGRESS_INTERNET);
    assert_string_equal(kobj_annotation(pod, MOAT_ANNOTATION_NETWORK), MOAT_EGRESS_INTERNET);
    json_decref(pod);

    pod = build_ok("{\"image\": \"busybox\", \"network\": {\"egress\": \"None\"}}");
    assert_string_equal(kobj_label(pod, MOAT_LABEL_EGRESS), MOAT_EGRESS_NONE);
    assert_string_equal(kobj_annotation(pod, MOAT_ANNOTATION_NETWORK), MOAT_EGRESS_NONE);
    json_decref(pod);
}

static void test_container_fields(void **state)
{
    json_t *pod = build_ok(
        "{\"image\": \"python:3.12\", \"command\": [\"python\", \"-c\"],"
        " \"args\": [\"print(1)\"], \"workingDir\": \"/work\","
        " \"env\": [{\"name\": \"MODE\", \"value\": \"fast\"}, {\"name\": \"EMPTY\"},"
        " {\"name\": \"TOKEN\", \"valueFrom\": {\"secretKeyRef\": {\"name\": \"creds\","
        " \"key\": \"token\", \"optional\": true}}},"
        " {\"name\": \"KEY\", \"valueFrom\": {\"secretKeyRef\": {\"name\": \"creds\","
        " \"key\": \"api.key\"}}}],"
        " \"imagePullSecrets\": [{\"name\": \"regcred\"}],"
        " \"nodeSelector\": {\"pool\": \"sandboxes\"},"
        " \"tolerations\": [{\"key\": \"dedicated\", \"operator\": \"Equal\", \"value\": \"sbx\","
        " \"effect\": \"NoExecute\", \"tolerationSeconds\": 30}, {\"operator\": \"Exists\"}]}");
    json_t *c = container(pod);

    assert_json_eq(json_object_get(c, "command"), "[\"python\", \"-c\"]");
    assert_json_eq(json_object_get(c, "args"), "[\"print(1)\"]");
    assert_json_str(c, "workingDir", "/work");
    assert_json_eq(json_object_get(c, "env"),
                   "[{\"name\": \"MODE\", \"value\": \"fast\"}, {\"name\": \"EMPTY\"},"
                   " {\"name\": \"TOKEN\", \"valueFrom\": {\"secretKeyRef\":"
                   " {\"name\": \"creds\", \"key\": \"token\", \"optional\": true}}},"
                   " {\"name\": \"KEY\", \"valueFrom\": {\"secretKeyRef\":"
                   " {\"name\": \"creds\", \"key\": \"api.key\"}}}]");
    assert_json_eq(kobj_get(pod, "spec.imagePullSecrets"), "[{\"name\": \"regcred\"}]");
    assert_json_eq(kobj_get(pod, "spec.nodeSelector"), "{\"pool\": \"sandboxes\"}");
    assert_json_eq(kobj_get(pod, "spec.tolerations"),
                   "[{\"key\": \"dedicated\", \"operator\": \"Equal\", \"value\": \"sbx\","
                   " \"effect\": \"NoExecute\", \"tolerationSeconds\": 30},"
                   " {\"operator\": \"Exists\"}]");
    json_decref(pod);
}

/* Placement under a config whose allow-lists are given; NULL want: built. */
static void check_placement(char **nodes, char **tolerations, const char *spec, const char *want)
{
    operator_config cfg = test_config();
    cfg.placement_node_selector_keys = nodes;
    cfg.placement_toleration_keys = tolerations;
    moat_error err = MOAT_ERROR_INIT;
    json_t *sandbox = sandbox_with(spec), *pod = NULL;
    int r = sandbox_pod_build(&pod, sandbox, &cfg, &err);
    json_decref(sandbox);
    if (!want) {
        if (r < 0)
            fail_msg("spec %s refused: %s", spec, err.message);
        json_decref(pod);
        return;
    }
    if (r == 0)
        fail_msg("spec %s was built; wanted \"%s\"", spec, want);
    if (strcmp(err.message, want) != 0)
        fail_msg("want \"%s\", got \"%s\"", want, err.message);
    moat_error_clear(&err);
}

static void test_placement_allow_list(void **state)
{
    static char *pool[] = {"pool", NULL}, *any[] = {"*", NULL}, *dedicated[] = {"dedicated", NULL};
    /* Empty lists (the default): only Moat's own keys. */
    check_placement(
        no_keys, no_keys,
        "{\"image\": \"x\", \"nodeSelector\": {\"moat.dev/pool\": \"a\"},"
        " \"tolerations\": [{\"key\": \"moat.dev/dedicated\", \"operator\": \"Exists\"}]}",
        NULL);
    /* The attack: a victim's node by hostname, whatever its taints. */
    check_placement(
        no_keys, no_keys,
        "{\"image\": \"x\", \"nodeSelector\": {\"kubernetes.io/hostname\": \"victim\"}}",
        "spec.nodeSelector[\"kubernetes.io/hostname\"]: key not allowed by the "
        "cluster's placement policy (placement.nodeSelectorKeys)");
    check_placement(pool, no_keys,
                    "{\"image\": \"x\", \"tolerations\": [{\"operator\": \"Exists\"}]}",
                    "spec.tolerations[0].key: an empty key tolerates every taint; not allowed by "
                    "the cluster's placement policy (placement.tolerationKeys has no \"*\")");
    check_placement(pool, dedicated,
                    "{\"image\": \"x\", \"tolerations\": [{\"key\": \"dedicated\","
                    " \"operator\": \"Exists\"}, {\"key\": \"node.kubernetes.io/unschedulable\","
                    " \"operator\": \"Exists\"}]}",
                    "spec.tolerations[1].key: \"node.kubernetes.io/unschedulable\" not allowed by "
                    "the cluster's placement policy (placement.tolerationKeys)");
    /* Listed keys, and "*" for any. */
    check_placement(pool, dedicated,
                    "{\"image\": \"x\", \"nodeSelector\": {\"pool\": \"a\"},"
                    " \"tolerations\": [{\"key\": \"dedicated\", \"operator\": \"Exists\"}]}",
                    NULL);
    check_placement(pool, dedicated,
                    "{\"image\": \"x\", \"nodeSelector\": {\"pool\": \"a\", \"zone\": \"b\"}}",
                    "spec.nodeSelector[\"zone\"]: key not allowed by the cluster's placement "
                    "policy (placement.nodeSelectorKeys)");
    check_placement(any, any,
                    "{\"image\": \"x\", \"nodeSelector\": {\"kubernetes.io/hostname\": \"n\"},"
                    " \"tolerations\": [{\"operator\": \"Exists\"}]}",
                    NULL);
    /* A key that merely starts like Moat's is not Moat's. */
    check_placement(no_keys, no_keys,
                    "{\"image\": \"x\", \"nodeSelector\": {\"moat.dev.evil/x\": \"a\"}}",
                    "spec.nodeSelector[\"moat.dev.evil/x\"]: key not allowed by the cluster's "
                    "placement policy (placement.nodeSelectorKeys)");
}

static void test_unknown_fields_dropped(void **state)
{
    /* The API server prunes fields the schema lacks; one that slipped past is not copied,
     * least of all a fieldRef that would hand the sandbox facts about its node. */
    json_t *pod = build_ok("{\"image\": \"busybox\", \"privileged\": true,"
                           " \"env\": [{\"name\": \"X\", \"valueFrom\": {\"secretKeyRef\":"
                           " {\"name\": \"s\", \"key\": \"k\"}, \"fieldRef\":"
                           " {\"fieldPath\": \"spec.nodeName\"}}}],"
                           " \"imagePullSecrets\": [{\"name\": \"r\", \"extra\": 1}]}");
    assert_json_eq(kobj_get(container(pod), "env"),
                   "[{\"name\": \"X\", \"valueFrom\": {\"secretKeyRef\":"
                   " {\"name\": \"s\", \"key\": \"k\"}}}]");
    assert_json_eq(kobj_get(pod, "spec.imagePullSecrets"), "[{\"name\": \"r\"}]");
    assert_json_false(container(pod), "securityContext.privileged");
    json_decref(pod);
}

static void test_owner_reference(void **state)
{
    json_t *pod = build_ok("{\"image\": \"busybox\"}");
    assert_json_eq(kobj_get(pod, "metadata.ownerReferences"),
                   "[{\"apiVersion\": \"moat.dev/v1alpha1\", \"kind\": \"Sandbox\","
                   " \"name\": \"job-1\", \"uid\": \"6f1c-uid\", \"controller\": true,"
                   " \"blockOwnerDeletion\": true}]");
    json_decref(pod);
}

static void test_deadline(void **state)
{
    json_t *pod = build_ok("{\"image\": \"busybox\", \"timeout\": \"1500ms\"}");
    assert_json_int(pod, "spec.activeDeadlineSeconds", 2); /* rounded up */
    json_decref(pod);
    pod = build_ok("{\"image\": \"busybox\", \"timeout\": \"1h30m\"}");
    assert_json_int(pod, "spec.activeDeadlineSeconds", 5400);
    json_decref(pod);
    pod = build_ok("{\"image\": \"busybox\", \"timeout\": \"24h\"}");
    assert_json_int(pod, "spec.activeDeadlineSeconds", 86400);
    json_decref(pod);
    pod = build_ok("{\"image\": \"busybox\", \"timeout\": \"1ns\"}");
    assert_json_int(pod, "spec.activeDeadlineSeconds", 1);
    json_decref(pod);
}

static void test_timeout_and_ttl_ns(void **state)
{
    operator_config cfg = test_config();
    moat_error err = MOAT_ERROR_INIT;
    int64_t ns = -1;
    json_t *sandbox = sandbox_with("{\"image\": \"busybox\"}");
    assert_int_equal(sandbox_timeout_ns(&ns, sandbox, &cfg, &err), 0);
    assert_int_equal(ns, 300 * S_NS);
    assert_int_equal(sandbox_ttl_ns(&ns, sandbox, &cfg, &err), 0);
    assert_int_equal(ns, 600 * S_NS);
    json_decref(sandbox);

    sandbox = sandbox_with("{\"image\": \"busybox\", \"timeout\": \"90s\","
                           " \"ttlAfterFinished\": \"0s\"}");
    assert_int_equal(sandbox_timeout_ns(&ns, sandbox, &cfg, &err), 0);
    assert_int_equal(ns, 90 * S_NS);
    assert_int_equal(sandbox_ttl_ns(&ns, sandbox, &cfg, &err), 0);
    assert_int_equal(ns, 0);
    json_decref(sandbox);

    sandbox = sandbox_with("{\"image\": \"busybox\", \"timeout\": \"25h\","
                           " \"ttlAfterFinished\": \"721h\"}");
    ns = 42;
    assert_int_equal(sandbox_timeout_ns(&ns, sandbox, &cfg, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_string_equal(err.message, "spec.timeout: \"25h\" is above the cluster's maximum 24h");
    assert_int_equal(sandbox_ttl_ns(&ns, sandbox, &cfg, &err), -1);
    assert_string_equal(err.message, "spec.ttlAfterFinished: \"721h\" is above the maximum 720h");
    assert_int_equal(ns, 42);
    moat_error_clear(&err);
    json_decref(sandbox);

    /* A cluster maximum below the CRD's is the one enforced. */
    cfg.max_timeout_ns = 90 * 60 * S_NS;
    sandbox = sandbox_with("{\"image\": \"busybox\", \"timeout\": \"2h\"}");
    assert_int_equal(sandbox_timeout_ns(&ns, sandbox, &cfg, &err), -1);
    assert_string_equal(err.message, "spec.timeout: \"2h\" is above the cluster's maximum 90m");
    moat_error_clear(&err);
    json_decref(sandbox);
}

static void test_refused(void **state)
{
    assert_refused("{}", "spec.image: missing");
    assert_refused("{\"image\": null}", "spec.image: missing");
    assert_refused("{\"image\": 42}", "spec.image: not a string");
    assert_refused("{\"image\": \"\"}", "spec.image: empty");
    assert_refused("{\"image\": \"a b\"}", "spec.image: \"a b\" contains whitespace");
    assert_refused("{\"image\": \"x\", \"isolation\": \"Firecracker\"}",
                   "spec.isolation: \"Firecracker\" is not Auto, VM or GVisor");
    assert_refused("{\"image\": \"x\", \"isolation\": \"vm\"}",
                   "spec.isolation: \"vm\" is not Auto, VM or GVisor");
    assert_refused("{\"image\": \"x\", \"isolation\": true}", "spec.isolation: not a string");
    assert_refused("{\"image\": \"x\", \"timeout\": \"forever\"}",
                   "spec.timeout: \"forever\" is not a duration");
    assert_refused("{\"image\": \"x\", \"timeout\": 300}", "spec.timeout: not a string");
    assert_refused("{\"image\": \"x\", \"timeout\": \"48h\"}",
                   "spec.timeout: \"48h\" is above the cluster's maximum 24h");
    assert_refused("{\"image\": \"x\", \"timeout\": \"3000000h\"}",
                   "spec.timeout: \"3000000h\" is above the cluster's maximum 24h");
    assert_refused("{\"image\": \"x\", \"timeout\": \"0s\"}",
                   "spec.timeout: \"0s\" is not positive");
    assert_refused("{\"image\": \"x\", \"timeout\": \"-5m\"}",
                   "spec.timeout: \"-5m\" is not positive");
    assert_refused("{\"image\": \"x\", \"ttlAfterFinished\": \"-1s\"}",
                   "spec.ttlAfterFinished: \"-1s\" is negative");
    assert_refused("{\"image\": \"x\", \"ttlAfterFinished\": \"later\"}",
                   "spec.ttlAfterFinished: \"later\" is not a duration");
    assert_refused("{\"image\": \"x\", \"resources\": {\"cpu\": 64}}",
                   "spec.resources.cpu: 64 is above the cluster's maximum 8");
    assert_refused("{\"image\": \"x\", \"resources\": {\"cpu\": \"8001m\"}}",
                   "spec.resources.cpu: 8001m is above the cluster's maximum 8");
    assert_refused("{\"image\": \"x\", \"resources\": {\"cpu\": \"lots\"}}",
                   "spec.resources.cpu: \"lots\" is not a quantity");
    assert_refused("{\"image\": \"x\", \"resources\": {\"cpu\": 0}}",
                   "spec.resources.cpu: 0 is not positive");
    assert_refused("{\"image\": \"x\", \"resources\": {\"cpu\": \"-1\"}}",
                   "spec.resources.cpu: -1 is not positive");
    assert_refused("{\"image\": \"x\", \"resources\": {\"cpu\": 0.5}}",
                   "spec.resources.cpu: not a quantity (a string or an integer)");
    assert_refused("{\"image\": \"x\", \"resources\": {\"memory\": \"64Gi\"}}",
                   "spec.resources.memory: 64Gi is above the cluster's maximum 32Gi");
    assert_refused("{\"image\": \"x\", \"resources\": {\"memory\": \"10Ei\"}}",
                   "spec.resources.memory: 10Ei is above the cluster's maximum 32Gi");
    assert_refused("{\"image\": \"x\", \"resources\": {\"memory\": 9223372036854775807}}",
                   "spec.resources.memory: 9223372036854775807 is above the cluster's maximum "
                   "32Gi");
    assert_refused("{\"image\": \"x\", \"resources\": {\"ephemeralStorage\": \"1Ti\"}}",
                   "spec.resources.ephemeralStorage: 1Ti is above the cluster's maximum 100Gi");
    assert_refused("{\"image\": \"x\", \"resources\": {\"gpu\": {\"count\": 12}}}",
                   "spec.resources.gpu.count: 12 is above the cluster's maximum 8");
    assert_refused("{\"image\": \"x\", \"resources\": {\"gpu\": {\"count\": -1}}}",
                   "spec.resources.gpu.count: -1 is negative");
    assert_refused("{\"image\": \"x\", \"resources\": {\"gpu\": {\"count\": \"2\"}}}",
                   "spec.resources.gpu.count: not an integer");
    assert_refused("{\"image\": \"x\", \"resources\": {\"gpu\": {\"product\": \"A100\"}}}",
                   "spec.resources.gpu.product: needs count of at least 1");
    assert_refused("{\"image\": \"x\", \"resources\": {\"gpu\": {\"count\": 1,"
                   " \"product\": \"A100 x\"}}}",
                   "spec.resources.gpu.product: \"A100 x\" is not a GPU model name");
    assert_refused("{\"image\": \"x\", \"resources\": {\"gpu\": 2}}",
                   "spec.resources.gpu: not an object");
    assert_refused("{\"image\": \"x\", \"resources\": []}", "spec.resources: not an object");
    assert_refused("{\"image\": \"x\", \"network\": {\"egress\": \"Open\"}}",
                   "spec.network.egress: \"Open\" is not None or Internet");
    assert_refused("{\"image\": \"x\", \"workingDir\": \"tmp\"}",
                   "spec.workingDir: \"tmp\" is not an absolute path");
    assert_refused("{\"image\": \"x\", \"command\": \"sh\"}", "spec.command: not an array");
    assert_refused("{\"image\": \"x\", \"args\": [\"a\", 2]}", "spec.args[1]: not a string");
    assert_refused("{\"image\": \"x\", \"env\": [{\"value\": \"v\"}]}",
                   "spec.env[0].name: missing");
    assert_refused("{\"image\": \"x\", \"env\": [{\"name\": \"A\"}, {\"name\": \"1B\"}]}",
                   "spec.env[1].name: \"1B\" is not a valid variable name");
    assert_refused("{\"image\": \"x\", \"env\": [{\"name\": \"A\", \"value\": \"v\","
                   " \"valueFrom\": {\"secretKeyRef\": {\"name\": \"s\", \"key\": \"k\"}}}]}",
                   "spec.env[0]: value and valueFrom are mutually exclusive");
    assert_refused("{\"image\": \"x\", \"env\": [{\"name\": \"A\", \"valueFrom\":"
                   " {\"fieldRef\": {\"fieldPath\": \"spec.nodeName\"}}}]}",
                   "spec.env[0].valueFrom.secretKeyRef: missing");
    assert_refused("{\"image\": \"x\", \"env\": [{\"name\": \"A\", \"valueFrom\":"
                   " {\"secretKeyRef\": {\"name\": \"s\"}}}]}",
                   "spec.env[0].valueFrom.secretKeyRef.key: missing");
    assert_refused("{\"image\": \"x\", \"env\": [{\"name\": \"A\", \"valueFrom\":"
                   " {\"secretKeyRef\": {\"name\": \"s\", \"key\": \"k\", \"optional\": 1}}}]}",
                   "spec.env[0].valueFrom.secretKeyRef.optional: not a boolean");
    assert_refused("{\"image\": \"x\", \"imagePullSecrets\": [\"regcred\"]}",
                   "spec.imagePullSecrets[0]: not an object");
    assert_refused("{\"image\": \"x\", \"nodeSelector\": {\"pool\": 1}}",
                   "spec.nodeSelector[\"pool\"]: not a string");
    assert_refused("{\"image\": \"x\", \"tolerations\": [{\"key\": \"\"}]}",
                   "spec.tolerations[0].key: may be empty only when operator is Exists");
    assert_refused("{\"image\": \"x\", \"tolerations\": [{\"operator\": \"Equal\"}]}",
                   "spec.tolerations[0].key: may be empty only when operator is Exists");
    assert_refused("{\"image\": \"x\", \"tolerations\": [{\"key\": \"k\", \"operator\": \"Exists\","
                   " \"value\": \"v\"}]}",
                   "spec.tolerations[0].value: must be empty when operator is Exists");
    assert_refused("{\"image\": \"x\", \"tolerations\": [{\"key\": \"k\", \"effect\": \"Never\"}]}",
                   "spec.tolerations[0].effect: \"Never\" is not NoSchedule, PreferNoSchedule or "
                   "NoExecute");
    assert_refused("null", "spec: missing");
    assert_refused("[]", "spec: not an object");
}

static void test_refused_metadata(void **state)
{
    assert_refused_sandbox(json_loads("{\"spec\": {\"image\": \"x\"}}", 0, NULL),
                           "metadata: missing");
    assert_refused_sandbox(json_loads("{\"metadata\": {\"namespace\": \"n\", \"uid\": \"u\"},"
                                      " \"spec\": {\"image\": \"x\"}}",
                                      0, NULL),
                           "metadata.name: missing");
    assert_refused_sandbox(json_loads("{\"metadata\": {\"name\": \"a\", \"namespace\": \"n\"},"
                                      " \"spec\": {\"image\": \"x\"}}",
                                      0, NULL),
                           "metadata.uid: missing");
    assert_refused_sandbox(json_loads("[1]", 0, NULL), "sandbox: not an object");

    char name[80];
    memset(name, 'a', 64);
    name[64] = '\0';
    json_t *sandbox = sandbox_with("{\"image\": \"x\"}");
    json_object_set_new(json_object_get(sandbox, "metadata"), "name", json_string(name));
    char want[200];
    snprintf(want, sizeof want,
             "metadata.name: \"%s\" is longer than 63 characters, the most a label value holds",
             name);
    assert_refused_sandbox(sandbox, want);
}

static void test_long_values_cut_short(void **state)
{
    /* 100 two-byte characters: the message shows 64 bytes (32 whole characters), never half
     * a character, so it stays valid UTF-8 for status.message. */
    char spec[512], shown[128];
    strcpy(spec, "{\"image\": \"x\", \"isolation\": \"");
    for (int i = 0; i < 100; i++)
        strcat(spec, "\xc3\xa9");
    strcat(spec, "\"}");
    shown[0] = '\0';
    for (int i = 0; i < 32; i++)
        strcat(shown, "\xc3\xa9");
    char want[256];
    snprintf(want, sizeof want, "spec.isolation: \"%s...\" is not Auto, VM or GVisor", shown);
    assert_refused(spec, want);

    /* An odd cut point backs off to the start of the character. */
    strcpy(spec, "{\"image\": \"x\", \"isolation\": \"z");
    for (int i = 0; i < 100; i++)
        strcat(spec, "\xc3\xa9");
    strcat(spec, "\"}");
    snprintf(want, sizeof want, "spec.isolation: \"z%.62s...\" is not Auto, VM or GVisor", shown);
    assert_refused(spec, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hardening),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_resources_as_given),
        cmocka_unit_test(test_isolation),
        cmocka_unit_test(test_runtime_classes_from_config),
        cmocka_unit_test(test_gpu_container_mode),
        cmocka_unit_test(test_gpu_vm_mode),
        cmocka_unit_test(test_egress),
        cmocka_unit_test(test_container_fields),
        cmocka_unit_test(test_placement_allow_list),
        cmocka_unit_test(test_unknown_fields_dropped),
        cmocka_unit_test(test_owner_reference),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_timeout_and_ttl_ns),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_refused_metadata),
        cmocka_unit_test(test_long_values_cut_short),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
