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

#include "cri-shim/config.h"

static shim_config *parse_ok(const char *yaml)
{
    moat_error err = MOAT_ERROR_INIT;
    shim_config *c = NULL;
    if (shim_config_parse(&c, yaml, strlen(yaml), "cri.yaml", &err) < 0)
        fail_msg("parse of\n%s\nfailed: %s", yaml, err.message);
    assert_non_null(c);
    return c;
}

/* Parsing must fail with `code` and exactly the message `want` after "cri.yaml: ", leaving
 * *out alone. */
static void assert_parse_error_len(const char *yaml, size_t len, moat_error_code code,
                                   const char *want)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    shim_config *c = (shim_config *)0x1;
    if (shim_config_parse(&c, yaml, len, "cri.yaml", &err) == 0)
        fail_msg("parse of\n%s\nsucceeded, wanted \"%s\"", yaml, want);
    assert_ptr_equal(c, (shim_config *)0x1);
    assert_non_null(err.message);
    if (strncmp(err.message, "cri.yaml: ", 10) != 0 || strcmp(err.message + 10, want) != 0)
        fail_msg("error\n  \"%s\", want\n  \"cri.yaml: %s\"", err.message, want);
    if (err.code != code)
        fail_msg("error \"%s\": code %d, want %d", err.message, err.code, code);
}

static void assert_parse_error(const char *yaml, moat_error_code code, const char *want)
{
    assert_parse_error_len(yaml, strlen(yaml), code, want);
}

static void assert_defaults(const shim_config *c)
{
    assert_string_equal(c->listen, "/run/moat/cri.sock");
    assert_string_equal(c->upstream, "/run/containerd/containerd.sock");
    assert_string_equal(c->metrics, "127.0.0.1:9466");
    assert_string_equal(c->handler_auto, "moat-auto");
    assert_string_equal(c->handler_vm, "moat-vm");
    assert_string_equal(c->handler_gvisor, "moat-gvisor");
    assert_string_equal(c->runsc, "runsc");
    assert_string_equal(c->runsc_nonet, "runsc-nonet");
    assert_string_equal(c->runsc_nvproxy, "runsc-nvproxy");
    assert_string_equal(c->kata_clh, "kata-clh");
    assert_string_equal(c->kata_gpu, "kata-qemu-nvidia-gpu");
    assert_string_equal(c->gpu_mode, "none");
    assert_string_equal(c->probe_kvm, "/dev/kvm");
    assert_string_equal(c->probe_mshv, "/dev/mshv");
    assert_int_equal(c->socket_mode, 0660);
    assert_null(c->socket_group);
}

static void test_new_default(void **state)
{
    moat_error err = MOAT_ERROR_INIT;
    shim_config *c = NULL;
    assert_int_equal(shim_config_new_default(&c, &err), 0);
    assert_null(err.message);
    assert_defaults(c);
    assert_int_equal(shim_config_check(c, &err), 0);
    shim_config_free(c);
}

static void test_empty(void **state)
{
    static const char *const texts[] = {
        "",
        "\n",
        "# nothing\n",
        "---\n",
        "~\n",
        "{}\n",
        "handlers:\nruntimes: ~\nprobe: {}\n",
        "gpuMode:\nsocketMode: null\nsocketGroup:\n",
    };
    for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
        shim_config *c = parse_ok(texts[i]);
        assert_defaults(c);
        shim_config_free(c);
    }

    moat_error err = MOAT_ERROR_INIT;
    shim_config *c = NULL;
    assert_int_equal(shim_config_parse(&c, NULL, 0, "cri.yaml", &err), 0);
    assert_defaults(c);
    shim_config_free(c);
}

static const char full_config[] = "listen: /var/run/moat/kubelet.sock\n"
                                  "upstream: /run/k3s/containerd/containerd.sock\n"
                                  "metrics: \"[::1]:19466\"\n"
                                  "handlers:\n"
                                  "  auto: sbx-auto\n"
                                  "  vm: sbx-vm\n"
                                  "  gvisor: sbx-gvisor\n"
                                  "runtimes:\n"
                                  "  runsc: gvisor\n"
                                  "  runscNoNetwork: gvisor-nonet\n"
                                  "  runscNvproxy: gvisor-gpu\n"
                                  "  kataClh: kata\n"
                                  "  kataGpu: kata-gpu\n"
                                  "gpuMode: vm-passthrough\n"
                                  "probe:\n"
                                  "  kvm: /host/dev/kvm\n"
                                  "  mshv: /host/dev/mshv\n"
                                  "socketMode: 0600\n"
                                  "socketGroup: kubelet\n";

static void test_full(void **state)
{
    shim_config *c = parse_ok(full_config);
    assert_string_equal(c->listen, "/var/run/moat/kubelet.sock");
    assert_string_equal(c->upstream, "/run/k3s/containerd/containerd.sock");
    assert_string_equal(c->metrics, "[::1]:19466");
    assert_string_equal(c->handler_auto, "sbx-auto");
    assert_string_equal(c->handler_vm, "sbx-vm");
    assert_string_equal(c->handler_gvisor, "sbx-gvisor");
    assert_string_equal(c->runsc, "gvisor");
    assert_string_equal(c->runsc_nonet, "gvisor-nonet");
    assert_string_equal(c->runsc_nvproxy, "gvisor-gpu");
    assert_string_equal(c->kata_clh, "kata");
    assert_string_equal(c->kata_gpu, "kata-gpu");
    assert_string_equal(c->gpu_mode, "vm-passthrough");
    assert_string_equal(c->probe_kvm, "/host/dev/kvm");
    assert_string_equal(c->probe_mshv, "/host/dev/mshv");
    assert_int_equal(c->socket_mode, 0600);
    assert_string_equal(c->socket_group, "kubelet");
    shim_config_free(c);
}

static void test_partial_and_flow(void **state)
{
    shim_config *c = parse_ok("handlers: {vm: isolated-vm}\n"
                              "runtimes: &r {kataClh: 'kata-clh-v2'}\n"
                              "gpuMode: container\n");
    assert_string_equal(c->handler_vm, "isolated-vm");
    assert_string_equal(c->handler_auto, "moat-auto");
    assert_string_equal(c->kata_clh, "kata-clh-v2");
    assert_string_equal(c->runsc, "runsc");
    assert_string_equal(c->gpu_mode, "container");
    shim_config_free(c);
}

static void test_socket_mode(void **state)
{
    static const struct {
        const char *yaml;
        unsigned int mode;
    } ok[] = {
        {"socketMode: \"0660\"\n", 0660}, {"socketMode: 0660\n", 0660}, {"socketMode: 660\n", 0660},
        {"socketMode: '0640'\n", 0640},   {"socketMode: 0600\n", 0600}, {"socketMode: 0\n", 0},
        {"socketMode: 00770\n", 0770},
    };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        shim_config *c = parse_ok(ok[i].yaml);
        assert_int_equal(c->socket_mode, ok[i].mode);
        shim_config_free(c);
    }

    assert_parse_error("socketMode: \"0666\"\n", MOAT_E_RANGE,
                       "socketMode: \"0666\" lets every local user use the CRI socket; give "
                       "access through socketGroup instead");
    assert_parse_error("socketMode: 0661\n", MOAT_E_RANGE,
                       "socketMode: \"0661\" lets every local user use the CRI socket; give "
                       "access through socketGroup instead");
    assert_parse_error("socketMode: 01000\n", MOAT_E_RANGE, "socketMode: \"01000\" is above 0777");
    assert_parse_error("socketMode: 7777777777777777777777\n", MOAT_E_RANGE,
                       "socketMode: \"7777777777777777777777\" is above 0777");
    assert_parse_error("socketMode: 0999\n", MOAT_E_INVALID,
                       "socketMode: \"0999\" is not an octal mode such as \"0660\"");
    assert_parse_error("socketMode: 0o660\n", MOAT_E_INVALID,
                       "socketMode: \"0o660\" is not an octal mode such as \"0660\"");
    assert_parse_error("socketMode: rw-rw----\n", MOAT_E_INVALID,
                       "socketMode: \"rw-rw----\" is not an octal mode such as \"0660\"");
    assert_parse_error("socketMode: \"\"\n", MOAT_E_INVALID,
                       "socketMode: \"\" is not an octal mode such as \"0660\"");
    assert_parse_error("socketMode: -0660\n", MOAT_E_INVALID,
                       "socketMode: \"-0660\" is not an octal mode such as \"0660\"");
}

static void test_socket_group(void **state)
{
    shim_config *c = parse_ok("socketGroup: \"1001\"\n");
    assert_string_equal(c->socket_group, "1001");
    shim_config_free(c);
    c = parse_ok("socketGroup: 1001\n");
    assert_string_equal(c->socket_group, "1001");
    shim_config_free(c);
    /* Empty is the default: leave the group alone. */
    c = parse_ok("socketGroup: \"\"\n");
    assert_null(c->socket_group);
    shim_config_free(c);
}

static void test_gpu_mode(void **state)
{
    static const char *const modes[] = {"container", "vm-passthrough", "none"};
    for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "gpuMode: %s\n", modes[i]);
        shim_config *c = parse_ok(yaml);
        assert_string_equal(c->gpu_mode, modes[i]);
        shim_config_free(c);
    }
    assert_parse_error("gpuMode: gpu\n", MOAT_E_INVALID,
                       "gpuMode: \"gpu\" is not container, vm-passthrough or none");
    assert_parse_error("gpuMode: Container\n", MOAT_E_INVALID,
                       "gpuMode: \"Container\" is not container, vm-passthrough or none");
    assert_parse_error("gpuMode: \"\"\n", MOAT_E_INVALID, "gpuMode: must not be empty");
}

static void test_egress_wall(void **state)
{
    shim_config *c = parse_ok("egressWall: {mode: none, table: moat_test}\n");
    assert_string_equal(c->wall_mode, "none");
    assert_string_equal(c->wall_table, "moat_test");
    shim_config_free(c);
    c = parse_ok("listen: /run/x.sock\n");
    assert_string_equal(c->wall_mode, "nftables"); /* on unless written down */
    assert_string_equal(c->wall_table, "moat");
    shim_config_free(c);
    assert_parse_error("egressWall: {mode: iptables}\n", MOAT_E_INVALID,
                       "egressWall.mode: \"iptables\" is not nftables or none");
    assert_parse_error("egressWall: {table: \"moat; flush ruleset\"}\n", MOAT_E_INVALID,
                       "egressWall.table: \"moat; flush ruleset\" is not an nftables table name "
                       "(up to 64 letters, digits or _)");
    assert_parse_error("egressWall: nftables\n", MOAT_E_INVALID,
                       "egressWall: expected a mapping, found a string");

    /* the cluster's ranges */
    c = parse_ok("egressWall:\n  clusterCIDRs: [10.244.0.0/16, \"2600:1f18::/56\"]\n");
    assert_string_equal(c->wall_cluster_cidrs[0], "10.244.0.0/16");
    assert_string_equal(c->wall_cluster_cidrs[1], "2600:1f18::/56");
    assert_null(c->wall_cluster_cidrs[2]);
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(shim_config_set(c, "egressWall.clusterCIDRs", "10.96.0.0/12,fd00::/8", &err),
                     0);
    assert_string_equal(c->wall_cluster_cidrs[1], "fd00::/8");
    assert_int_equal(shim_config_set(c, "egressWall.clusterCIDRs", "10.96.0.0", &err), -1);
    assert_non_null(strstr(err.message, "is not a CIDR"));
    moat_error_clear(&err);
    shim_config_free(c);
    c = parse_ok("");
    assert_non_null(c->wall_cluster_cidrs);
    assert_null(c->wall_cluster_cidrs[0]);
    shim_config_free(c);
    assert_parse_error("egressWall: {clusterCIDRs: [10.0.0.0/40]}\n", MOAT_E_INVALID,
                       "egressWall.clusterCIDRs[0]: \"10.0.0.0/40\" is not a CIDR "
                       "(address/prefix length)");
    assert_parse_error("egressWall: {clusterCIDRs: 10.0.0.0/8}\n", MOAT_E_INVALID,
                       "egressWall.clusterCIDRs: expected a list, found a string");
}

static void test_empty_strings(void **state)
{
    static const char *const keys[][2] = {
        {"listen: ''\n", "listen"},
        {"upstream: \"\"\n", "upstream"},
        {"metrics: ''\n", "metrics"},
        {"handlers: {auto: ''}\n", "handlers.auto"},
        {"handlers: {vm: ''}\n", "handlers.vm"},
        {"handlers: {gvisor: ''}\n", "handlers.gvisor"},
        {"runtimes: {runsc: ''}\n", "runtimes.runsc"},
        {"runtimes: {runscNoNetwork: ''}\n", "runtimes.runscNoNetwork"},
        {"runtimes: {runscNvproxy: ''}\n", "runtimes.runscNvproxy"},
        {"runtimes: {kataClh: ''}\n", "runtimes.kataClh"},
        {"runtimes: {kataGpu: ''}\n", "runtimes.kataGpu"},
        {"probe: {kvm: ''}\n", "probe.kvm"},
        {"probe: {mshv: ''}\n", "probe.mshv"},
    };
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        char want[96];
        snprintf(want, sizeof want, "%s: must not be empty", keys[i][1]);
        assert_parse_error(keys[i][0], MOAT_E_INVALID, want);
    }
}

static void test_paths(void **state)
{
    assert_parse_error("listen: run/moat/cri.sock\n", MOAT_E_INVALID,
                       "listen: \"run/moat/cri.sock\" is not an absolute path");
    assert_parse_error("upstream: unix:///run/containerd/containerd.sock\n", MOAT_E_INVALID,
                       "upstream: \"unix:///run/containerd/containerd.sock\" is not an absolute "
                       "path");
    assert_parse_error("probe: {kvm: dev/kvm}\n", MOAT_E_INVALID,
                       "probe.kvm: \"dev/kvm\" is not an absolute path");

    /* 107 bytes fit a unix socket's address; 108 do not. */
    char yaml[256], path[128];
    memset(path, 'a', sizeof path);
    path[0] = '/';
    path[107] = '\0';
    snprintf(yaml, sizeof yaml, "listen: %s\n", path);
    shim_config *c = parse_ok(yaml);
    assert_int_equal(strlen(c->listen), 107);
    shim_config_free(c);

    path[107] = 'a';
    path[108] = '\0';
    snprintf(yaml, sizeof yaml, "upstream: %s\n", path);
    char want[256];
    snprintf(want, sizeof want,
             "upstream: \"%s\" is longer than a unix socket's path can be (107 bytes)", path);
    assert_parse_error(yaml, MOAT_E_RANGE, want);

    /* Device paths have no such limit. */
    snprintf(yaml, sizeof yaml, "probe: {mshv: %s}\n", path);
    c = parse_ok(yaml);
    assert_string_equal(c->probe_mshv, path);
    shim_config_free(c);
}

static void test_metrics(void **state)
{
    static const char *const ok[] = {"0.0.0.0:9466", "localhost:1", "[::]:65535", "[::1]:9466",
                                     "node.example.com:8080"};
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "metrics: \"%s\"\n", ok[i]);
        shim_config *c = parse_ok(yaml);
        assert_string_equal(c->metrics, ok[i]);
        shim_config_free(c);
    }
    assert_parse_error("metrics: 9466\n", MOAT_E_INVALID,
                       "metrics: \"9466\" is not host:port with a port from 1 to 65535");
    assert_parse_error("metrics: \"127.0.0.1:0\"\n", MOAT_E_INVALID,
                       "metrics: \"127.0.0.1:0\" is not host:port with a port from 1 to 65535");
    assert_parse_error("metrics: \"127.0.0.1:65536\"\n", MOAT_E_INVALID,
                       "metrics: \"127.0.0.1:65536\" is not host:port with a port from 1 to "
                       "65535");
    assert_parse_error("metrics: \"127.0.0.1:\"\n", MOAT_E_INVALID,
                       "metrics: \"127.0.0.1:\" is not host:port with a port from 1 to 65535");
    assert_parse_error("metrics: \"127.0.0.1:http\"\n", MOAT_E_INVALID,
                       "metrics: \"127.0.0.1:http\" is not host:port with a port from 1 to "
                       "65535");
    assert_parse_error("metrics: \":9466\"\n", MOAT_E_INVALID,
                       "metrics: \":9466\" has no host; write 0.0.0.0:9466 for every interface");
    assert_parse_error("metrics: \"::1:9466\"\n", MOAT_E_INVALID,
                       "metrics: \"::1:9466\": an IPv6 host goes in brackets, e.g. [::1]:9466");
    assert_parse_error("metrics: \"[::1:9466\"\n", MOAT_E_INVALID,
                       "metrics: \"[::1:9466\": an IPv6 host goes in brackets, e.g. [::1]:9466");
    assert_parse_error("metrics: \"[]:9466\"\n", MOAT_E_INVALID,
                       "metrics: \"[]:9466\": an IPv6 host goes in brackets, e.g. [::1]:9466");
}

static void test_handler_names(void **state)
{
    assert_parse_error("handlers: {auto: Moat-Auto}\n", MOAT_E_INVALID,
                       "handlers.auto: \"Moat-Auto\" is not a RuntimeClass handler (a lowercase "
                       "DNS label)");
    assert_parse_error("handlers: {vm: moat_vm}\n", MOAT_E_INVALID,
                       "handlers.vm: \"moat_vm\" is not a RuntimeClass handler (a lowercase DNS "
                       "label)");
    assert_parse_error("handlers: {gvisor: -gvisor}\n", MOAT_E_INVALID,
                       "handlers.gvisor: \"-gvisor\" is not a RuntimeClass handler (a lowercase "
                       "DNS label)");
    char yaml[128], want[256];
    char label[65];
    memset(label, 'a', 64);
    label[64] = '\0';
    snprintf(yaml, sizeof yaml, "handlers: {vm: %s}\n", label);
    snprintf(want, sizeof want,
             "handlers.vm: \"%s\" is not a RuntimeClass handler (a lowercase DNS label)", label);
    assert_parse_error(yaml, MOAT_E_INVALID, want);
    label[63] = '\0';
    snprintf(yaml, sizeof yaml, "handlers: {vm: %s}\n", label);
    shim_config *c = parse_ok(yaml);
    assert_string_equal(c->handler_vm, label);
    shim_config_free(c);

    /* containerd's own names are not held to Kubernetes' rules. */
    c = parse_ok("runtimes: {kataClh: io.containerd.kata-clh.v2}\n");
    assert_string_equal(c->kata_clh, "io.containerd.kata-clh.v2");
    shim_config_free(c);
}

static void test_cross_checks(void **state)
{
    assert_parse_error("handlers: {vm: moat-auto}\n", MOAT_E_INVALID,
                       "handlers.vm: \"moat-auto\" is also handlers.auto");
    assert_parse_error("handlers: {auto: x, gvisor: x}\n", MOAT_E_INVALID,
                       "handlers.gvisor: \"x\" is also handlers.auto");
    assert_parse_error("handlers: {gvisor: runsc}\n", MOAT_E_INVALID,
                       "handlers.gvisor: \"runsc\" is also runtimes.runsc; a logical handler "
                       "must not be a containerd handler");
    assert_parse_error("runtimes: {kataGpu: moat-vm}\n", MOAT_E_INVALID,
                       "handlers.vm: \"moat-vm\" is also runtimes.kataGpu; a logical handler "
                       "must not be a containerd handler");
    assert_parse_error("listen: /run/containerd/containerd.sock\n", MOAT_E_INVALID,
                       "upstream: \"/run/containerd/containerd.sock\" is also listen; moat-cri "
                       "would relay to itself");

    /* Two containerd handlers may be one. */
    shim_config *c = parse_ok("runtimes: {runscNoNetwork: runsc}\n");
    assert_string_equal(c->runsc_nonet, "runsc");
    shim_config_free(c);
}

static void test_unknown_key(void **state)
{
    assert_parse_error("listn: /run/x.sock\n", MOAT_E_INVALID, "listn: unknown key");
    assert_parse_error("handlers:\n  kata: x\n", MOAT_E_INVALID, "handlers.kata: unknown key");
    assert_parse_error("runtimes: {runscNonet: x}\n", MOAT_E_INVALID,
                       "runtimes.runscNonet: unknown key");
    assert_parse_error("handlers.auto: x\n", MOAT_E_INVALID, "handlers.auto: unknown key");
    assert_parse_error("GpuMode: none\n", MOAT_E_INVALID, "GpuMode: unknown key");
    assert_parse_error("probe: {kvm: /dev/kvm, sev: /dev/sev}\n", MOAT_E_INVALID,
                       "probe.sev: unknown key");
    assert_parse_error("probe:\n  [kvm]: /dev/kvm\n", MOAT_E_INVALID,
                       "probe: a key is a sequence, not a string");
}

static void test_wrong_type(void **state)
{
    assert_parse_error("listen: [/run/x.sock]\n", MOAT_E_INVALID,
                       "listen: expected a string, found a sequence");
    assert_parse_error("gpuMode: {mode: none}\n", MOAT_E_INVALID,
                       "gpuMode: expected a string, found a mapping");
    assert_parse_error("handlers: moat-auto\n", MOAT_E_INVALID,
                       "handlers: expected a mapping, found a string");
    assert_parse_error("runtimes: [runsc]\n", MOAT_E_INVALID,
                       "runtimes: expected a mapping, found a sequence");
    assert_parse_error("- listen: /x\n", MOAT_E_INVALID,
                       "expected a mapping at the top level, found a sequence");
    assert_parse_error("listen\n", MOAT_E_INVALID,
                       "expected a mapping at the top level, found a string");
    assert_parse_error("runtimes:\n  runsc: \"a\\0b\"\n", MOAT_E_INVALID,
                       "runtimes.runsc: contains a NUL byte");
    assert_parse_error("handlers: &h {auto: *h}\n", MOAT_E_INVALID,
                       "handlers.auto: expected a string, found a mapping");
}

static void test_duplicate_key(void **state)
{
    assert_parse_error("gpuMode: none\ngpuMode: container\n", MOAT_E_INVALID,
                       "gpuMode: duplicate key");
    assert_parse_error("probe: {kvm: /a, kvm: /b}\n", MOAT_E_INVALID, "probe.kvm: duplicate key");
}

static void test_syntax_error(void **state)
{
    assert_parse_error("handlers:\n  auto: a\n vm: b\n", MOAT_E_INVALID,
                       "line 3, column 2: did not find expected key (while parsing a block "
                       "mapping at line 1)");
    assert_parse_error("gpuMode: none\n---\ngpuMode: container\n", MOAT_E_INVALID,
                       "more than one YAML document");
    assert_parse_error_len("gpuMode: none\0\n", 15, MOAT_E_INVALID,
                           "byte 13: control characters are not allowed");
}

static void test_too_large(void **state)
{
    size_t len = 1024 * 1024 + 1;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '\n', len);
    assert_parse_error_len(text, len, MOAT_E_NOMEM, "larger than 1 MiB");
    moat_error err = MOAT_ERROR_INIT;
    shim_config *c = NULL;
    assert_int_equal(shim_config_parse(&c, text, len - 1, "cri.yaml", &err), 0);
    assert_defaults(c);
    shim_config_free(c);
    free(text);
}

static void test_origin(void **state)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    shim_config *c = NULL;
    assert_int_equal(shim_config_parse(&c, "gpuMode: x\n", 11, NULL, &err), -1);
    assert_string_equal(err.message,
                        "moat-cri config: gpuMode: \"x\" is not container, vm-passthrough or none");
}

static char *write_temp(const char *content, size_t len)
{
    char *path = strdup("/tmp/moat-cri-config-XXXXXX");
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
    shim_config *c = NULL;
    if (shim_config_load(&c, path, &err) < 0)
        fail_msg("load failed: %s", err.message);
    assert_string_equal(c->handler_auto, "sbx-auto");
    assert_int_equal(c->socket_mode, 0600);
    shim_config_free(c);
    unlink(path);

    _cleanup_free_ char *bad = write_temp("gpuMode: gpu\n", 13);
    _cleanup_error_ moat_error err2 = MOAT_ERROR_INIT;
    c = (shim_config *)0x1;
    assert_int_equal(shim_config_load(&c, bad, &err2), -1);
    assert_ptr_equal(c, (shim_config *)0x1);
    _cleanup_free_ char *want = NULL;
    assert_true(
        asprintf(&want, "%s: gpuMode: \"gpu\" is not container, vm-passthrough or none", bad) > 0);
    assert_string_equal(err2.message, want);
    unlink(bad);

    _cleanup_free_ char *empty = write_temp("", 0);
    assert_int_equal(shim_config_load(&c, empty, &err), 0);
    assert_defaults(c);
    shim_config_free(c);
    unlink(empty);
}

static void test_load_errors(void **state)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    shim_config *c = (shim_config *)0x1;
    assert_int_equal(shim_config_load(&c, "/nonexistent/moat/cri.yaml", &err), -1);
    assert_ptr_equal(c, (shim_config *)0x1);
    assert_int_equal(err.code, MOAT_E_IO);
    assert_int_equal(err.errno_value, ENOENT);
    assert_string_equal(err.message, "/nonexistent/moat/cri.yaml: No such file or directory");

    size_t len = 1024 * 1024 + 1;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '#', len);
    _cleanup_free_ char *path = write_temp(text, len);
    free(text);
    moat_error_clear(&err);
    assert_int_equal(shim_config_load(&c, path, &err), -1);
    assert_ptr_equal(c, (shim_config *)0x1);
    assert_int_equal(err.code, MOAT_E_NOMEM);
    _cleanup_free_ char *want = NULL;
    assert_true(asprintf(&want, "%s: larger than 1 MiB", path) > 0);
    assert_string_equal(err.message, want);
    unlink(path);
}

/* What moat-cri's flags use. */
static void test_set(void **state)
{
    moat_error err = MOAT_ERROR_INIT;
    shim_config *c = NULL;
    assert_int_equal(shim_config_new_default(&c, &err), 0);

    assert_int_equal(shim_config_set(c, "gpuMode", "container", &err), 0);
    assert_string_equal(c->gpu_mode, "container");
    assert_int_equal(shim_config_set(c, "handlers.auto", "sbx-auto", &err), 0);
    assert_string_equal(c->handler_auto, "sbx-auto");
    assert_int_equal(shim_config_set(c, "socketMode", "0640", &err), 0);
    assert_int_equal(c->socket_mode, 0640);
    assert_int_equal(shim_config_set(c, "socketGroup", "kubelet", &err), 0);
    assert_string_equal(c->socket_group, "kubelet");
    assert_int_equal(shim_config_set(c, "socketGroup", "", &err), 0);
    assert_null(c->socket_group);
    assert_int_equal(shim_config_set(c, "listen", "/run/moat/other.sock", &err), 0);
    assert_string_equal(c->listen, "/run/moat/other.sock");
    assert_null(err.message);

    /* Refusals name the key and leave the value alone. */
    assert_int_equal(shim_config_set(c, "gpuMode", "gpu", &err), -1);
    assert_string_equal(err.message, "gpuMode: \"gpu\" is not container, vm-passthrough or none");
    assert_string_equal(c->gpu_mode, "container");
    assert_int_equal(shim_config_set(c, "socketMode", "0666", &err), -1);
    assert_int_equal(err.code, MOAT_E_RANGE);
    assert_int_equal(c->socket_mode, 0640);
    assert_int_equal(shim_config_set(c, "runtimes.runsc", "", &err), -1);
    assert_string_equal(err.message, "runtimes.runsc: must not be empty");
    assert_string_equal(c->runsc, "runsc");
    assert_int_equal(shim_config_set(c, "runtimes", "x", &err), -1);
    assert_string_equal(err.message, "runtimes: a section, not a single value");
    assert_int_equal(shim_config_set(c, "kataClh", "x", &err), -1);
    assert_string_equal(err.message, "kataClh: unknown key");
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);

    /* The checks across keys run once every flag is in. */
    assert_int_equal(shim_config_set(c, "handlers.vm", "sbx-auto", &err), 0);
    assert_int_equal(shim_config_check(c, &err), -1);
    assert_string_equal(err.message, "handlers.vm: \"sbx-auto\" is also handlers.auto");
    moat_error_clear(&err);
    assert_int_equal(shim_config_set(c, "handlers.vm", "sbx-vm", &err), 0);
    assert_int_equal(shim_config_check(c, &err), 0);

    /* Fields set by hand are checked too. */
    free(c->kata_gpu);
    c->kata_gpu = NULL;
    assert_int_equal(shim_config_check(c, &err), -1);
    assert_string_equal(err.message, "runtimes.kataGpu: must not be empty");
    moat_error_clear(&err);
    shim_config_free(c);
}

static void test_free_null(void **state)
{
    shim_config_free(NULL);
}

static void test_probe_assume(void **state)
{
    shim_config *c = parse_ok("probe: {assume: kvm}\n");
    assert_string_equal(c->probe_assume, "kvm");
    shim_config_free(c);
    c = parse_ok("probe: {assume: none}\n");
    assert_string_equal(c->probe_assume, "none");
    shim_config_free(c);
    c = parse_ok("listen: /run/moat/cri.sock\n");
    assert_null(c->probe_assume); /* probe the host */
    shim_config_free(c);
    assert_parse_error("probe: {assume: xen}\n", MOAT_E_INVALID,
                       "probe.assume: \"xen\" is not kvm, mshv or none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_default),   cmocka_unit_test(test_empty),
        cmocka_unit_test(test_full),          cmocka_unit_test(test_partial_and_flow),
        cmocka_unit_test(test_socket_mode),   cmocka_unit_test(test_socket_group),
        cmocka_unit_test(test_gpu_mode),      cmocka_unit_test(test_egress_wall),
        cmocka_unit_test(test_empty_strings), cmocka_unit_test(test_paths),
        cmocka_unit_test(test_metrics),       cmocka_unit_test(test_handler_names),
        cmocka_unit_test(test_cross_checks),  cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),    cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_syntax_error),  cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_origin),        cmocka_unit_test(test_load),
        cmocka_unit_test(test_load_errors),   cmocka_unit_test(test_set),
        cmocka_unit_test(test_free_null),     cmocka_unit_test(test_probe_assume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
