#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "operator/config.h"

#define SECOND_NS (1000000000LL)
#define MINUTE_NS (60 * SECOND_NS)
#define HOUR_NS   (60 * MINUTE_NS)

static operator_config *parse_ok(const char *yaml)
{
    moat_error err = MOAT_ERROR_INIT;
    operator_config *c = NULL;
    if (operator_config_parse(&c, yaml, strlen(yaml), "operator.yaml", &err) < 0)
        fail_msg("parse failed: %s", err.message);
    assert_non_null(c);
    return c;
}

/* Parsing must fail with `code` and a message that starts with the origin and contains
 * `want`, leaving *out alone. */
static void assert_parse_error_len(const char *yaml, size_t len, moat_error_code code,
                                   const char *want)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    operator_config *c = (operator_config *)0x1;
    if (operator_config_parse(&c, yaml, len, "operator.yaml", &err) == 0)
        fail_msg("parse succeeded, wanted \"%s\"", want);
    assert_ptr_equal(c, (operator_config *)0x1);
    assert_non_null(err.message);
    if (strncmp(err.message, "operator.yaml: ", 15) != 0 || !strstr(err.message, want))
        fail_msg("error \"%s\" lacks \"%s\"", err.message, want);
    if (err.code != code)
        fail_msg("error \"%s\": code %d, want %d", err.message, err.code, code);
}

static void assert_parse_error(const char *yaml, moat_error_code code, const char *want)
{
    assert_parse_error_len(yaml, strlen(yaml), code, want);
}

static size_t strv_length(char **v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

static void assert_defaults(const operator_config *c)
{
    assert_string_equal(c->runtime_class_auto, "moat-auto");
    assert_string_equal(c->runtime_class_vm, "moat-vm");
    assert_string_equal(c->runtime_class_gvisor, "moat-gvisor");
    assert_string_equal(c->managed_node_label, "moat.dev/managed");
    assert_string_equal(c->hypervisor_node_label, "moat.dev/hypervisor");
    assert_string_equal(c->gpu_mode_node_label, "moat.dev/gpu-mode");

    assert_string_equal(c->default_cpu, "1");
    assert_int_equal(c->default_cpu_milli, 1000);
    assert_string_equal(c->default_memory, "512Mi");
    assert_int_equal(c->default_memory_milli, 512LL * 1024 * 1024 * 1000);
    assert_string_equal(c->default_storage, "1Gi");
    assert_int_equal(c->default_storage_milli, 1024LL * 1024 * 1024 * 1000);
    assert_int_equal(c->default_timeout_ns, 5 * MINUTE_NS);
    assert_int_equal(c->default_ttl_ns, 10 * MINUTE_NS);

    assert_int_equal(c->max_cpu_milli, 8000);
    assert_int_equal(c->max_memory_milli, 32LL * 1024 * 1024 * 1024 * 1000);
    assert_int_equal(c->max_storage_milli, 100LL * 1024 * 1024 * 1024 * 1000);
    assert_int_equal(c->max_gpus, 8);
    assert_int_equal(c->max_timeout_ns, 24 * HOUR_NS);

    assert_string_equal(c->image_pull_policy, "IfNotPresent");
    assert_string_equal(c->gpu_container_resource, "nvidia.com/gpu");
    assert_string_equal(c->gpu_vm_resource, "nvidia.com/pgpu");
    assert_string_equal(c->gpu_product_label, "nvidia.com/gpu.product");
    assert_string_equal(c->gpu_taint_key, "nvidia.com/gpu");

    assert_string_equal(c->dns_namespace, "kube-system");
    assert_int_equal(strv_length(c->dns_pod_label_keys), 1);
    assert_int_equal(strv_length(c->dns_pod_label_values), 1);
    assert_string_equal(c->dns_pod_label_keys[0], "k8s-app");
    assert_string_equal(c->dns_pod_label_values[0], "kube-dns");

    assert_int_equal(c->workers, 4);
}

static void test_new_default(void **state)
{
    moat_error err = MOAT_ERROR_INIT;
    operator_config *c = NULL;
    assert_int_equal(operator_config_new_default(&c, &err), 0);
    assert_null(err.message);
    assert_defaults(c);
    operator_config_free(c);
}

static void test_empty(void **state)
{
    static const char *const texts[] = {
        "",
        "\n",
        "# nothing to see\n",
        "---\n",
        "---\n...\n",
        "~\n",
        "{}\n",
        "defaults:\nmaximums: ~\nnetwork: {}\n",
        "defaults:\n  cpu:\n  memory: null\n",
    };
    for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
        operator_config *c = parse_ok(texts[i]);
        assert_defaults(c);
        operator_config_free(c);
    }

    /* No text at all. */
    moat_error err = MOAT_ERROR_INIT;
    operator_config *c = NULL;
    assert_int_equal(operator_config_parse(&c, NULL, 0, "operator.yaml", &err), 0);
    assert_defaults(c);
    operator_config_free(c);
}

static const char full_config[] = "runtimeClasses:\n"
                                  "  auto: rc-auto\n"
                                  "  vm: rc-vm\n"
                                  "  gvisor: rc-gvisor\n"
                                  "nodes:\n"
                                  "  managedLabel: example.com/managed\n"
                                  "  hypervisorLabel: example.com/hypervisor\n"
                                  "  gpuModeLabel: example.com/gpu-mode\n"
                                  "defaults:\n"
                                  "  cpu: 500m\n"
                                  "  memory: 1Gi\n"
                                  "  ephemeralStorage: \"2Gi\"\n"
                                  "  timeout: 1h30m\n"
                                  "  ttlAfterFinished: 90s\n"
                                  "maximums:\n"
                                  "  cpu: 16\n"
                                  "  memory: 64Gi\n"
                                  "  ephemeralStorage: 1Ti\n"
                                  "  gpus: 2\n"
                                  "  timeout: 48h\n"
                                  "imagePullPolicy: Always\n"
                                  "gpu:\n"
                                  "  containerResource: amd.com/gpu\n"
                                  "  vmResource: amd.com/pgpu\n"
                                  "  productLabel: amd.com/gpu.product\n"
                                  "  taintKey: amd.com/gpu\n"
                                  "network:\n"
                                  "  dnsNamespace: dns-system\n"
                                  "  dnsPodLabels: {app: coredns}\n"
                                  "workers: 64\n";

static void test_full(void **state)
{
    operator_config *c = parse_ok(full_config);
    assert_string_equal(c->runtime_class_auto, "rc-auto");
    assert_string_equal(c->runtime_class_vm, "rc-vm");
    assert_string_equal(c->runtime_class_gvisor, "rc-gvisor");
    assert_string_equal(c->managed_node_label, "example.com/managed");
    assert_string_equal(c->hypervisor_node_label, "example.com/hypervisor");
    assert_string_equal(c->gpu_mode_node_label, "example.com/gpu-mode");

    assert_string_equal(c->default_cpu, "500m");
    assert_int_equal(c->default_cpu_milli, 500);
    assert_string_equal(c->default_memory, "1Gi");
    assert_int_equal(c->default_memory_milli, 1024LL * 1024 * 1024 * 1000);
    assert_string_equal(c->default_storage, "2Gi");
    assert_int_equal(c->default_storage_milli, 2LL * 1024 * 1024 * 1024 * 1000);
    assert_int_equal(c->default_timeout_ns, 90 * MINUTE_NS);
    assert_int_equal(c->default_ttl_ns, 90 * SECOND_NS);

    assert_int_equal(c->max_cpu_milli, 16000);
    assert_int_equal(c->max_memory_milli, 64LL * 1024 * 1024 * 1024 * 1000);
    assert_int_equal(c->max_storage_milli, 1024LL * 1024 * 1024 * 1024 * 1000);
    assert_int_equal(c->max_gpus, 2);
    assert_int_equal(c->max_timeout_ns, 48 * HOUR_NS);

    assert_string_equal(c->image_pull_policy, "Always");
    assert_string_equal(c->gpu_container_resource, "amd.com/gpu");
    assert_string_equal(c->gpu_vm_resource, "amd.com/pgpu");
    assert_string_equal(c->gpu_product_label, "amd.com/gpu.product");
    assert_string_equal(c->gpu_taint_key, "amd.com/gpu");

    assert_string_equal(c->dns_namespace, "dns-system");
    assert_int_equal(strv_length(c->dns_pod_label_keys), 1);
    assert_string_equal(c->dns_pod_label_keys[0], "app");
    assert_string_equal(c->dns_pod_label_values[0], "coredns");

    assert_int_equal(c->workers, 64);
    operator_config_free(c);
}

/* Flow style, anchors and aliases are YAML like any other. */
static void test_flow_and_aliases(void **state)
{
    operator_config *c = parse_ok("defaults: &d {cpu: 2, memory: 1Gi}\n"
                                  "maximums: {cpu: &big \"32\", gpus: 0, timeout: 1h}\n"
                                  "workers: 1\n"
                                  "imagePullPolicy: 'Never'\n");
    assert_string_equal(c->default_cpu, "2");
    assert_int_equal(c->default_cpu_milli, 2000);
    assert_int_equal(c->max_cpu_milli, 32000);
    assert_int_equal(c->max_gpus, 0);
    assert_int_equal(c->max_timeout_ns, HOUR_NS);
    assert_int_equal(c->workers, 1);
    assert_string_equal(c->image_pull_policy, "Never");
    operator_config_free(c);

    /* A mapping that contains itself through an alias is a wrong type, not a hang. */
    assert_parse_error("defaults: &d {cpu: *d}\n", MOAT_E_INVALID,
                       "defaults.cpu: expected a string, found a mapping");
}

static void test_dns_pod_labels(void **state)
{
    operator_config *c = parse_ok("network:\n"
                                  "  dnsPodLabels:\n"
                                  "    app.kubernetes.io/name: coredns\n"
                                  "    tier: \"\"\n");
    assert_int_equal(strv_length(c->dns_pod_label_keys), 2);
    assert_int_equal(strv_length(c->dns_pod_label_values), 2);
    assert_string_equal(c->dns_pod_label_keys[0], "app.kubernetes.io/name");
    assert_string_equal(c->dns_pod_label_values[0], "coredns");
    assert_string_equal(c->dns_pod_label_keys[1], "tier");
    assert_string_equal(c->dns_pod_label_values[1], "");
    assert_string_equal(c->dns_namespace, "kube-system");
    operator_config_free(c);

    assert_parse_error("network:\n  dnsPodLabels: {}\n", MOAT_E_INVALID,
                       "network.dnsPodLabels: no labels");
    assert_parse_error("network:\n  dnsPodLabels: {a: x, b: y, a: z}\n", MOAT_E_INVALID,
                       "network.dnsPodLabels.a: duplicate key");
    assert_parse_error("network:\n  dnsPodLabels: {\"\": x}\n", MOAT_E_INVALID,
                       "network.dnsPodLabels: a label name is empty");
    assert_parse_error("network:\n  dnsPodLabels: {[a]: x}\n", MOAT_E_INVALID,
                       "network.dnsPodLabels: a label name is a sequence");
    assert_parse_error("network:\n  dnsPodLabels: {app: [x]}\n", MOAT_E_INVALID,
                       "network.dnsPodLabels.app: expected a string, found a sequence");
    assert_parse_error("network:\n  dnsPodLabels: [app]\n", MOAT_E_INVALID,
                       "network.dnsPodLabels: expected a mapping, found a sequence");
    assert_parse_error("network:\n  dnsPodLabels: kube-dns\n", MOAT_E_INVALID,
                       "network.dnsPodLabels: expected a mapping, found a string");
}

static void test_placement_and_security(void **state)
{
    operator_config *c = parse_ok("placement:\n"
                                  "  nodeSelectorKeys: [pool, topology.kubernetes.io/zone]\n"
                                  "  tolerationKeys:\n    - \"*\"\n"
                                  "security:\n  markKeyFile: /run/key\n  requiredPolicies: []\n");
    assert_int_equal(strv_length(c->placement_node_selector_keys), 2);
    assert_string_equal(c->placement_node_selector_keys[1], "topology.kubernetes.io/zone");
    assert_int_equal(strv_length(c->placement_toleration_keys), 1);
    assert_string_equal(c->placement_toleration_keys[0], "*");
    assert_string_equal(c->mark_key_file, "/run/key");
    assert_non_null(c->required_policies); /* empty, never NULL */
    assert_int_equal(strv_length(c->required_policies), 0);
    operator_config_free(c);

    c = parse_ok("");
    assert_int_equal(strv_length(c->placement_node_selector_keys), 0);
    assert_int_equal(strv_length(c->placement_toleration_keys), 0);
    assert_string_equal(c->mark_key_file, OPERATOR_MARK_KEY_FILE);
    assert_int_equal(strv_length(c->required_policies), 5);
    assert_string_equal(c->required_policies[0], "moat-sandbox-secrets");
    assert_string_equal(c->required_policies[4], "moat-agent-own-node");
    operator_config_free(c);

    assert_parse_error("placement:\n  nodeSelectorKeys: pool\n", MOAT_E_INVALID,
                       "placement.nodeSelectorKeys: expected a list, found a string");
    assert_parse_error("placement:\n  tolerationKeys: [a, \"\"]\n", MOAT_E_INVALID,
                       "placement.tolerationKeys[1]: expected a non-empty string");
    assert_parse_error("placement:\n  tolerationKeys: [[a]]\n", MOAT_E_INVALID,
                       "placement.tolerationKeys[0]: expected a non-empty string");
    assert_parse_error("security:\n  markKeyFile: \"\"\n", MOAT_E_INVALID,
                       "security.markKeyFile: must not be empty");

    c = parse_ok("network:\n  clusterCIDRs: [10.244.0.0/16, \"fd00:10:96::/108\"]\n");
    assert_int_equal(strv_length(c->cluster_cidrs), 2);
    assert_string_equal(c->cluster_cidrs[1], "fd00:10:96::/108");
    operator_config_free(c);
    static const char *const bad[] = {"10.0.0.0",    "10.0.0.0/33", "::/129",
                                      "10.0.0.0/08", "x/8",         "10.0.0.0/-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char yaml[128];
        snprintf(yaml, sizeof(yaml), "network:\n  clusterCIDRs: [\"%s\"]\n", bad[i]);
        assert_parse_error(yaml, MOAT_E_INVALID, "network.clusterCIDRs[0]: ");
    }
}

static void test_unknown_key(void **state)
{
    assert_parse_error("defaults:\n  cpuu: 1\n", MOAT_E_INVALID, "defaults.cpuu: unknown key");
    assert_parse_error("worker: 4\n", MOAT_E_INVALID, "operator.yaml: worker: unknown key");
    /* A dotted key is not a path into a section. */
    assert_parse_error("defaults.cpu: 1\n", MOAT_E_INVALID, "defaults.cpu: unknown key");
    /* Keys are case-sensitive, as the Go decoders' are. */
    assert_parse_error("Workers: 4\n", MOAT_E_INVALID, "Workers: unknown key");
    assert_parse_error("defaults:\n  [cpu]: 1\n", MOAT_E_INVALID,
                       "defaults: a key is a sequence, not a string");
}

static void test_syntax_error(void **state)
{
    assert_parse_error("defaults:\n  cpu: 1\n memory: 1Gi\n", MOAT_E_INVALID, "line 3, column ");
    assert_parse_error("defaults: {cpu: 1\n", MOAT_E_INVALID, "line ");
    assert_parse_error("defaults: *nowhere\n", MOAT_E_INVALID, "line 1, column 11");
    assert_parse_error("workers: 4\n---\nworkers: 5\n", MOAT_E_INVALID,
                       "more than one YAML document");
    assert_parse_error_len("workers: 4\0\n", 12, MOAT_E_INVALID, "byte 10");
}

static void test_wrong_type(void **state)
{
    assert_parse_error("defaults:\n  cpu: {value: 1}\n", MOAT_E_INVALID,
                       "operator.yaml: defaults.cpu: expected a string, found a mapping");
    assert_parse_error("workers: [4]\n", MOAT_E_INVALID,
                       "workers: expected a string, found a sequence");
    assert_parse_error("defaults: 1\n", MOAT_E_INVALID,
                       "defaults: expected a mapping, found a string");
    assert_parse_error("- workers: 4\n", MOAT_E_INVALID,
                       "expected a mapping at the top level, found a sequence");
    assert_parse_error("workers\n", MOAT_E_INVALID,
                       "expected a mapping at the top level, found a string");
    assert_parse_error("runtimeClasses:\n  vm: \"a\\0b\"\n", MOAT_E_INVALID,
                       "runtimeClasses.vm: contains a NUL byte");
}

static void test_duplicate_key(void **state)
{
    assert_parse_error("defaults:\n  cpu: 1\n  cpu: 2\n", MOAT_E_INVALID,
                       "defaults.cpu: duplicate key");
    assert_parse_error("defaults: {cpu: 1}\ndefaults: {memory: 1Gi}\n", MOAT_E_INVALID,
                       "defaults: duplicate key");
}

static void test_bad_values(void **state)
{
    assert_parse_error("defaults:\n  memory: 1GB\n", MOAT_E_INVALID,
                       "operator.yaml: defaults.memory: quantity \"1GB\" has an unknown suffix");
    assert_parse_error("maximums:\n  cpu: lots\n", MOAT_E_INVALID,
                       "maximums.cpu: quantity \"lots\" has no number");
    assert_parse_error("defaults:\n  cpu: \"0\"\n", MOAT_E_RANGE,
                       "defaults.cpu: quantity \"0\" is not positive");
    assert_parse_error("maximums:\n  ephemeralStorage: -1Gi\n", MOAT_E_RANGE,
                       "maximums.ephemeralStorage: quantity \"-1Gi\" is not positive");
    assert_parse_error("defaults:\n  timeout: 5 minutes\n", MOAT_E_INVALID, "defaults.timeout: ");
    assert_parse_error("defaults:\n  timeout: 300\n", MOAT_E_INVALID, "defaults.timeout: ");
    assert_parse_error("defaults:\n  ttlAfterFinished: 0s\n", MOAT_E_RANGE,
                       "defaults.ttlAfterFinished: duration \"0s\" is not positive");
    assert_parse_error("maximums:\n  timeout: -1h\n", MOAT_E_RANGE,
                       "maximums.timeout: duration \"-1h\" is not positive");

    assert_parse_error("maximums:\n  gpus: 9\n", MOAT_E_RANGE,
                       "maximums.gpus: 9 is not between 0 and 8");
    assert_parse_error("maximums:\n  gpus: -1\n", MOAT_E_INVALID,
                       "maximums.gpus: \"-1\" is not a whole number");
    assert_parse_error("workers: 0\n", MOAT_E_RANGE, "workers: 0 is not between 1 and 64");
    assert_parse_error("workers: 65\n", MOAT_E_RANGE, "workers: 65 is not between 1 and 64");
    assert_parse_error("workers: 99999999999999999999999\n", MOAT_E_RANGE,
                       "workers: 99999999999999999999999 is not between 1 and 64");
    assert_parse_error("workers: four\n", MOAT_E_INVALID,
                       "workers: \"four\" is not a whole number");
    assert_parse_error("workers: 4.0\n", MOAT_E_INVALID, "workers: \"4.0\" is not a whole number");
    assert_parse_error("workers: \"\"\n", MOAT_E_INVALID, "workers: \"\" is not a whole number");

    assert_parse_error("imagePullPolicy: always\n", MOAT_E_INVALID,
                       "imagePullPolicy: \"always\" is not Always, IfNotPresent or Never");
    assert_parse_error("nodes:\n  managedLabel: \"\"\n", MOAT_E_INVALID,
                       "nodes.managedLabel: must not be empty");
    assert_parse_error("gpu:\n  productLabel: ''\n", MOAT_E_INVALID,
                       "gpu.productLabel: must not be empty");
}

static void test_default_above_maximum(void **state)
{
    assert_parse_error("defaults:\n  cpu: 16\n", MOAT_E_RANGE,
                       "operator.yaml: defaults.cpu: 16 is above maximums.cpu 8");
    assert_parse_error("maximums:\n  memory: 256Mi\n", MOAT_E_RANGE,
                       "defaults.memory: 512Mi is above maximums.memory 256Mi");
    assert_parse_error(
        "defaults:\n  ephemeralStorage: 200Gi\nmaximums:\n  ephemeralStorage: 1e11\n", MOAT_E_RANGE,
        "defaults.ephemeralStorage: 200Gi is above maximums.ephemeralStorage 1e11");
    assert_parse_error("defaults:\n  timeout: 25h\n", MOAT_E_RANGE,
                       "defaults.timeout: 25h is above maximums.timeout 24h");

    /* Equal is fine, and raising the maximum makes room. */
    operator_config *c = parse_ok("defaults: {cpu: 8, timeout: 24h}\n");
    assert_int_equal(c->default_cpu_milli, c->max_cpu_milli);
    assert_int_equal(c->default_timeout_ns, c->max_timeout_ns);
    operator_config_free(c);
    c = parse_ok("maximums: {cpu: 32}\ndefaults: {cpu: 16}\n");
    assert_int_equal(c->default_cpu_milli, 16000);
    operator_config_free(c);
}

static void test_too_large(void **state)
{
    size_t len = 1024 * 1024 + 1;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '\n', len);
    assert_parse_error_len(text, len, MOAT_E_NOMEM, "larger than 1 MiB");

    /* Exactly at the cap is fine. */
    moat_error err = MOAT_ERROR_INIT;
    operator_config *c = NULL;
    assert_int_equal(operator_config_parse(&c, text, len - 1, "operator.yaml", &err), 0);
    assert_defaults(c);
    operator_config_free(c);
    free(text);
}

static char *write_temp(const char *content, size_t len)
{
    char *path = strdup("/tmp/moat-operator-config-XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    for (size_t off = 0; off < len;) {
        ssize_t r = write(fd, content + off, len - off);
        assert_true(r > 0);
        off += (size_t)r;
    }
    assert_int_equal(close(fd), 0);
    return path;
}

static void test_load(void **state)
{
    _cleanup_free_ char *path = write_temp(full_config, strlen(full_config));
    moat_error err = MOAT_ERROR_INIT;
    operator_config *c = NULL;
    if (operator_config_load(&c, path, &err) < 0)
        fail_msg("load failed: %s", err.message);
    assert_string_equal(c->runtime_class_auto, "rc-auto");
    assert_int_equal(c->workers, 64);
    assert_string_equal(c->dns_pod_label_keys[0], "app");
    operator_config_free(c);
    unlink(path);

    /* Errors name the file. */
    _cleanup_free_ char *bad = write_temp("defaults:\n  cpuu: 1\n", 20);
    _cleanup_error_ moat_error err2 = MOAT_ERROR_INIT;
    c = (operator_config *)0x1;
    assert_int_equal(operator_config_load(&c, bad, &err2), -1);
    assert_ptr_equal(c, (operator_config *)0x1);
    _cleanup_free_ char *want = NULL;
    assert_true(asprintf(&want, "%s: defaults.cpuu: unknown key", bad) > 0);
    assert_string_equal(err2.message, want);
    unlink(bad);
}

static void test_load_empty_file(void **state)
{
    _cleanup_free_ char *path = write_temp("", 0);
    moat_error err = MOAT_ERROR_INIT;
    operator_config *c = NULL;
    assert_int_equal(operator_config_load(&c, path, &err), 0);
    assert_defaults(c);
    operator_config_free(c);
    unlink(path);
}

static void test_load_missing(void **state)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    operator_config *c = (operator_config *)0x1;
    assert_int_equal(operator_config_load(&c, "/nonexistent/moat/operator.yaml", &err), -1);
    assert_ptr_equal(c, (operator_config *)0x1);
    assert_int_equal(err.code, MOAT_E_IO);
    assert_int_equal(err.errno_value, ENOENT);
    assert_string_equal(err.message, "/nonexistent/moat/operator.yaml: No such file or directory");

    moat_error_clear(&err);
    assert_int_equal(operator_config_load(&c, "/tmp", &err), -1);
    assert_int_equal(err.code, MOAT_E_IO);
    assert_int_equal(err.errno_value, EISDIR);
    assert_non_null(strstr(err.message, "/tmp: "));
}

static void test_load_too_large(void **state)
{
    size_t len = 1024 * 1024 + 1;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '#', len);
    _cleanup_free_ char *path = write_temp(text, len);
    free(text);

    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    operator_config *c = (operator_config *)0x1;
    assert_int_equal(operator_config_load(&c, path, &err), -1);
    assert_ptr_equal(c, (operator_config *)0x1);
    assert_int_equal(err.code, MOAT_E_NOMEM);
    _cleanup_free_ char *want = NULL;
    assert_true(asprintf(&want, "%s: larger than 1 MiB", path) > 0);
    assert_string_equal(err.message, want);
    unlink(path);
}

static void test_free_null(void **state)
{
    operator_config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_default),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_flow_and_aliases),
        cmocka_unit_test(test_dns_pod_labels),
        cmocka_unit_test(test_placement_and_security),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_default_above_maximum),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_load_empty_file),
        cmocka_unit_test(test_load_missing),
        cmocka_unit_test(test_load_too_large),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
