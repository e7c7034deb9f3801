/* RunPodSandbox and Status rewriting on the wire: decisions applied, the decision recorded
 * in the annotations, and every field the shim's small schema does not know carried
 * through byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cri-shim/messages.h"
#include "libmoat/cri/cri.pb-c.h"
#include "libmoat/names.h"

static const shim_handlers handlers = {
    "moat-auto",     "moat-vm",  "moat-gvisor",          "runsc", "runsc-nonet",
    "runsc-nvproxy", "kata-clh", "kata-qemu-nvidia-gpu", "none"};

/* Protobuf by hand: tag, length, bytes. */
typedef struct {
    uint8_t b[512];
    size_t n;
} buf;

static void put_len(buf *o, int field, const void *data, size_t len)
{
    o->b[o->n++] = (uint8_t)(field << 3 | 2);
    if (len >= 128) /* a two-byte varint: every test message is under 16 KiB */
        o->b[o->n++] = (uint8_t)(0x80 | (len & 0x7f));
    o->b[o->n++] = (uint8_t)(len >= 128 ? len >> 7 : len);
    memcpy(o->b + o->n, data, len);
    o->n += len;
}

static void put_str(buf *o, int field, const char *s)
{
    put_len(o, field, s, strlen(s));
}

static void annotation(buf *cfg, const char *k, const char *v)
{
    buf e = {0};
    put_str(&e, 1, k);
    put_str(&e, 2, v);
    put_len(cfg, 7, e.b, e.n);
}

/* A request with fields the shim's schema lacks: config.hostname (2) and a top-level field
 * 99 from some future CRI version; and config.dns_config (4), which it reads. */
static buf request_with(const char *handler, const char *network, const char *const *extra);

static buf request(const char *handler, const char *network)
{
    return request_with(handler, network, NULL);
}

/* Whether request_with leaves out the GPU count the operator always writes. */
static bool without_gpu_count;

/* ... with extra annotations: key, value, ..., NULL; and moat.dev/gpu-count "0" unless
 * extra has one (or without_gpu_count). */
static buf request_with(const char *handler, const char *network, const char *const *extra)
{
    buf meta = {0}, cfg = {0}, req = {0};
    put_str(&meta, 1, "pod");
    put_str(&meta, 3, "team");
    put_len(&cfg, 1, meta.b, meta.n);
    put_str(&cfg, 2, "kept-hostname");
    put_str(&cfg, 4,
            "\x0a\x06"
            "10.0.0"); /* DNSConfig{servers: ["10.0.0"]} */
    if (network)
        annotation(&cfg, MOAT_ANNOTATION_NETWORK, network);
    bool gpu = without_gpu_count;
    for (; extra && extra[0]; extra += 2) {
        annotation(&cfg, extra[0], extra[1]);
        gpu |= strcmp(extra[0], MOAT_ANNOTATION_GPU_COUNT) == 0;
    }
    if (!gpu)
        annotation(&cfg, MOAT_ANNOTATION_GPU_COUNT, "0");
    put_len(&req, 1, cfg.b, cfg.n);
    put_str(&req, 2, handler);
    req.b[req.n++] = 0x98; /* field 99, varint: the tag 99 << 3 as a varint */
    req.b[req.n++] = 0x06;
    req.b[req.n++] = 0x07;
    return req;
}

static bool contains(const uint8_t *hay, size_t n, const char *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

static void test_rewrite_keeps_unknown_fields(void **state)
{
    iso_probe_result probe = {.usable = false, .reason = "no /dev/kvm"};
    buf in = request("moat-auto", MOAT_EGRESS_NONE);
    uint8_t *out = NULL;
    size_t len = 0;
    char *pod = NULL;
    shim_decision d = {0};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(
        shim_run_pod_sandbox_rewrite(in.b, in.n, &handlers, &probe, &out, &len, &d, &pod, &err), 1);
    assert_string_equal(pod, "team/pod");
    assert_true(contains(out, len, "kept-hostname", 13));
    assert_true(contains(out, len,
                         "\x0a\x06"
                         "10.0.0",
                         8));
    assert_true(contains(out, len, "\x98\x06\x07", 3)); /* field 99 = 7 */

    Moat__Cri__RunPodSandboxRequest *req =
        moat__cri__run_pod_sandbox_request__unpack(NULL, len, out);
    assert_non_null(req);
    assert_string_equal(req->runtime_handler, "runsc-nonet");
    const char *want[][2] = {{MOAT_ANNOTATION_DECISION_RUNTIME, "gvisor"},
                             {MOAT_ANNOTATION_DECISION_HANDLER, "runsc-nonet"}};
    for (size_t w = 0; w < 2; w++) {
        bool found = false;
        for (size_t i = 0; i < req->config->n_annotations; i++)
            if (strcmp(req->config->annotations[i]->key, want[w][0]) == 0) {
                assert_string_equal(req->config->annotations[i]->value, want[w][1]);
                found = true;
            }
        assert_true(found);
    }
    moat__cri__run_pod_sandbox_request__free_unpacked(req, NULL);
    shim_decision_clear(&d);
    free(out);
    free(pod);
}

static void test_other_handlers_pass_and_vm_is_refused(void **state)
{
    iso_probe_result probe = {.usable = false, .reason = "no /dev/kvm"};
    uint8_t *out = NULL;
    size_t len = 0;
    shim_decision d = {0};
    moat_error err = MOAT_ERROR_INIT;
    buf runc = request("runc", NULL);
    assert_int_equal(
        shim_run_pod_sandbox_rewrite(runc.b, runc.n, &handlers, &probe, &out, &len, &d, NULL, &err),
        0);
    assert_null(out);
    shim_decision_clear(&d);

    buf vm = request("moat-vm", MOAT_EGRESS_INTERNET);
    assert_int_equal(
        shim_run_pod_sandbox_rewrite(vm.b, vm.n, &handlers, &probe, &out, &len, &d, NULL, &err),
        -1);
    assert_int_equal(err.code, MOAT_E_RANGE);
    assert_non_null(strstr(err.message, "hypervisor"));
    assert_null(out);
    moat_error_clear(&err);
    shim_decision_clear(&d);

    const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(shim_run_pod_sandbox_rewrite(garbage, sizeof(garbage), &handlers, &probe, &out,
                                                  &len, &d, NULL, &err),
                     -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);
    shim_decision_clear(&d);
}

/* Decision annotations a pod's author wrote never reach the runtime: on a handler the
 * shim passes through (nothing would overwrite them, and the node agent would read them
 * back) and on a Moat handler alike. */
static void test_authors_decisions_removed(void **state)
{
    static const char *const forged[] = {MOAT_ANNOTATION_DECISION_RUNTIME,
                                         "kata",
                                         "moat.dev/decision-x",
                                         "forged",
                                         "keep/me",
                                         "y",
                                         NULL};
    iso_probe_result probe = {.usable = false, .reason = "no /dev/kvm"};
    const char *handlers_in[] = {"runc", "moat-gvisor"};
    for (size_t h = 0; h < 2; h++) {
        buf in = request_with(handlers_in[h], MOAT_EGRESS_INTERNET, forged);
        uint8_t *out = NULL;
        size_t len = 0;
        shim_decision d = {0};
        moat_error err = MOAT_ERROR_INIT;
        assert_int_equal(
            shim_run_pod_sandbox_rewrite(in.b, in.n, &handlers, &probe, &out, &len, &d, NULL, &err),
            1);
        assert_false(contains(out, len, "forged", 6));
        assert_false(contains(out, len, "decision-x", 10));
        assert_true(contains(out, len, "keep/me", 7));
        assert_true(contains(out, len, "kept-hostname", 13));
        assert_true(contains(out, len, "\x98\x06\x07", 3));
        Moat__Cri__RunPodSandboxRequest *req =
            moat__cri__run_pod_sandbox_request__unpack(NULL, len, out);
        assert_non_null(req);
        size_t decisions = 0;
        for (size_t i = 0; i < req->config->n_annotations; i++)
            decisions += strncmp(req->config->annotations[i]->key, "moat.dev/decision-", 18) == 0;
        /* passed through: none left; decided: the shim's own three */
        assert_int_equal(decisions, h == 0 ? 0 : 3);
        assert_string_equal(req->runtime_handler, h == 0 ? "runc" : "runsc");
        moat__cri__run_pod_sandbox_request__free_unpacked(req, NULL);
        shim_decision_clear(&d);
        free(out);
    }
}

/* Moat's annotations are read strictly, and Kata or CDI overrides refuse a Moat pod. */
static void test_annotations_read_strictly(void **state)
{
    static const struct {
        const char *handler, *key, *value, *want; /* want: NULL when decided */
    } cases[] = {
        {"moat-gvisor", MOAT_ANNOTATION_GPU_COUNT, "1x", "moat.dev/gpu-count is not 0 to 8"},
        {"moat-gvisor", MOAT_ANNOTATION_GPU_COUNT, "9", "moat.dev/gpu-count is not 0 to 8"},
        {"moat-gvisor", MOAT_ANNOTATION_GPU_COUNT, "", "moat.dev/gpu-count is not 0 to 8"},
        {"moat-gvisor", MOAT_ANNOTATION_GPU_COUNT, "0", NULL},
        {"moat-auto", "io.katacontainers.config.hypervisor.kernel_params", "x",
         "io.katacontainers.config.hypervisor.kernel_params"},
        {"moat-auto", "cdi.k8s.io/gpu", "nvidia.com/gpu=all", "cdi.k8s.io/gpu"},
        {"runc", "io.katacontainers.config.hypervisor.kernel_params", "x", NULL},
    };
    iso_probe_result probe = {.usable = false, .reason = "no /dev/kvm"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const extra[] = {cases[i].key, cases[i].value, NULL};
        buf in = request_with(cases[i].handler, MOAT_EGRESS_INTERNET, extra);
        uint8_t *out = NULL;
        size_t len = 0;
        shim_decision d = {0};
        moat_error err = MOAT_ERROR_INIT;
        int r =
            shim_run_pod_sandbox_rewrite(in.b, in.n, &handlers, &probe, &out, &len, &d, NULL, &err);
        if (cases[i].want) {
            assert_int_equal(r, -1);
            assert_int_equal(err.code, MOAT_E_RANGE);
            if (!strstr(err.message, cases[i].want))
                fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.message, cases[i].want);
        } else {
            assert_true(r >= 0);
        }
        moat_error_clear(&err);
        shim_decision_clear(&d);
        free(out);
    }
    /* the network annotation: none or internet only */
    buf bad = request("moat-gvisor", "offline");
    uint8_t *out = NULL;
    size_t len = 0;
    shim_decision d = {0};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(
        shim_run_pod_sandbox_rewrite(bad.b, bad.n, &handlers, &probe, &out, &len, &d, NULL, &err),
        -1);
    assert_non_null(strstr(err.message, "moat.dev/network is not none or internet"));
    moat_error_clear(&err);
    shim_decision_clear(&d);

    /* a Moat pod without the operator's annotations is refused; another pod is not */
    static const struct {
        const char *handler, *network;
        bool gpu;
        int want;
        const char *words;
    } missing[] = {
        {"moat-gvisor", NULL, true, -1, "moat.dev/network is missing"},
        {"moat-auto", MOAT_EGRESS_NONE, false, -1, "moat.dev/gpu-count is missing"},
        {"moat-vm", NULL, false, -1, "moat.dev/network is missing"},
        {"runc", NULL, false, 0, NULL},
        {"moat-gvisor", MOAT_EGRESS_NONE, true, 1, NULL},
    };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        without_gpu_count = !missing[i].gpu;
        buf in = request(missing[i].handler, missing[i].network);
        without_gpu_count = false;
        out = NULL;
        int r =
            shim_run_pod_sandbox_rewrite(in.b, in.n, &handlers, &probe, &out, &len, &d, NULL, &err);
        assert_int_equal(r, missing[i].want);
        if (missing[i].words && !strstr(err.message, missing[i].words))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.message, missing[i].words);
        moat_error_clear(&err);
        shim_decision_clear(&d);
        free(out);
    }
}

static void test_status_gains_logical_handlers_once(void **state)
{
    buf h = {0}, resp = {0};
    put_str(&h, 1, "runsc");
    put_len(&resp, 3, h.b, h.n);
    put_str(&resp, 2, "\x0a\x01k\x12\x01v"); /* info map entry: unknown to the shim */
    const char *names[] = {"moat-auto", "moat-vm", "moat-gvisor"};
    uint8_t *out = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(shim_status_add_handlers(resp.b, resp.n, names, 3, &out, &len, &err), 1);
    assert_true(contains(out, len, "moat-vm", 7));
    assert_true(contains(out, len, "\x0a\x01k\x12\x01v", 6));
    /* a second pass finds nothing missing */
    assert_int_equal(shim_status_add_handlers(out, len, names, 3, &again, &len2, &err), 0);
    assert_null(again);
    free(out);
}

/* PodSandboxStatusResponse{status: {id, metadata, state, network{ip, additional_ips},
 * annotations}} and CreateContainerRequest{pod_sandbox_id, sandbox_config{metadata,
 * dns_config, annotations}}, as kubelet and containerd send them. */
static void test_wall_facts(void **state)
{
    (void)state;
    buf meta = {0}, net = {0}, extra = {0}, st = {0}, resp = {0};
    put_str(&meta, 1, "pod");
    put_str(&meta, 3, "team");
    put_str(&net, 1, "10.88.0.5");
    put_str(&extra, 1, "fd00::5");
    put_len(&net, 2, extra.b, extra.n);
    put_str(&st, 1, "sb1");
    put_len(&st, 2, meta.b, meta.n);
    st.b[st.n++] = 3 << 3; /* state: SANDBOX_READY (0) */
    st.b[st.n++] = 0;
    put_len(&st, 5, net.b, net.n);
    buf ann = {0};
    put_str(&ann, 1, MOAT_ANNOTATION_NETWORK);
    put_str(&ann, 2, MOAT_EGRESS_INTERNET);
    put_len(&st, 8, ann.b, ann.n);
    put_len(&resp, 1, st.b, st.n);
    shim_wall_facts f = {0};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(shim_sandbox_status_facts(resp.b, resp.n, &f, &err), 0);
    assert_string_equal(f.sandbox_id, "sb1");
    assert_string_equal(f.pod, "team/pod");
    assert_true(f.walled && f.internet && f.ready);
    assert_int_equal(f.n_addrs, 2);
    assert_string_equal(f.addrs[0], "10.88.0.5");
    assert_string_equal(f.addrs[1], "fd00::5");
    shim_wall_facts_clear(&f);

    /* not ready, no Moat network: neither walled nor ready */
    buf st2 = {0}, resp2 = {0};
    put_str(&st2, 1, "sb2");
    st2.b[st2.n++] = 3 << 3;
    st2.b[st2.n++] = 1; /* SANDBOX_NOTREADY */
    put_len(&resp2, 1, st2.b, st2.n);
    assert_int_equal(shim_sandbox_status_facts(resp2.b, resp2.n, &f, &err), 0);
    assert_false(f.walled || f.ready);
    assert_int_equal(f.n_addrs, 0);
    shim_wall_facts_clear(&f);
    /* no status at all: malformed for the wall's purpose */
    assert_int_equal(shim_sandbox_status_facts((const uint8_t *)"", 0, &f, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);

    buf dns = {0}, cfg = {0}, req = {0};
    put_str(&dns, 1, "10.96.0.10");
    put_str(&dns, 1, "10.96.0.11");
    put_len(&cfg, 1, meta.b, meta.n);
    put_len(&cfg, 4, dns.b, dns.n);
    annotation(&cfg, MOAT_ANNOTATION_NETWORK, MOAT_EGRESS_NONE);
    put_str(&req, 1, "sb1");
    put_len(&req, 3, cfg.b, cfg.n);
    assert_int_equal(shim_create_container_facts(req.b, req.n, &f, &err), 0);
    assert_string_equal(f.sandbox_id, "sb1");
    assert_true(f.walled);
    assert_false(f.internet);
    assert_int_equal(f.n_dns, 2);
    assert_string_equal(f.dns[1], "10.96.0.11");
    shim_wall_facts_clear(&f);

    buf rm = {0};
    put_str(&rm, 1, "sb1");
    char *id = NULL;
    assert_int_equal(shim_remove_pod_sandbox_id(rm.b, rm.n, &id, &err), 0);
    assert_string_equal(id, "sb1");
    free(id);
    const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(shim_create_container_facts(garbage, sizeof(garbage), &f, &err), -1);
    moat_error_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rewrite_keeps_unknown_fields),
        cmocka_unit_test(test_other_handlers_pass_and_vm_is_refused),
        cmocka_unit_test(test_authors_decisions_removed),
        cmocka_unit_test(test_annotations_read_strictly),
        cmocka_unit_test(test_status_gains_logical_handlers_once),
        cmocka_unit_test(test_wall_facts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
