/* The egress wall's hooks against a gated nftables backend and a made-up pod network: the
 * wall goes up on a worker, never on the caller's thread; a CreateContainer waits for it
 * (SHIM_HOOK_LATER) and is let in once it is up, refused when raising it failed; while
 * nftables hangs, every other call, and /metrics, goes on. (The relay's side of a put-off
 * call and the rules on a real kernel: tests/integration/shim/test_shim.py.) */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "cri-shim/intercept.h"
#include "libmoat/cri/cri.pb-c.h"
#include "libmoat/names.h"

static const shim_handlers handlers = {
    "moat-auto",     "moat-vm",  "moat-gvisor",          "runsc", "runsc-nonet",
    "runsc-nvproxy", "kata-clh", "kata-qemu-nvidia-gpu", "none"};

/* nftables: transactions wait while the gate is shut; listings answer at once. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool shut, waiting;
    int transactions;
} gated_nft;

static int gated_run(void *user, const char *commands, char **ret_json, moat_error *err)
{
    gated_nft *g = user;
    if (ret_json) {
        *ret_json = strdup("{\"nftables\": [{\"metainfo\": {}}]}");
        return 0;
    }
    pthread_mutex_lock(&g->lock);
    g->waiting = g->shut;
    pthread_cond_broadcast(&g->cond);
    while (g->shut)
        pthread_cond_wait(&g->cond, &g->lock);
    g->waiting = false;
    g->transactions++;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static void gate(gated_nft *g, bool shut)
{
    pthread_mutex_lock(&g->lock);
    g->shut = shut;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Waits until a transaction is held at the shut gate. */
static void wait_held(gated_nft *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->waiting)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

/* The pod network: one interface, one DNS server; or a failure. */
static bool lookup_fails;

static int fake_lookup(void *user, const char *sandbox_id, char ***ret_devices, char ***ret_dns,
                       moat_error *err)
{
    (void)user;
    if (lookup_fails)
        return moat_error_set(err, MOAT_E_NOTFOUND, "pod sandbox %s: no veth leads into it",
                              sandbox_id);
    char **d = calloc(2, sizeof(char *)), **s = calloc(2, sizeof(char *));
    d[0] = strdup("veth1");
    s[0] = strdup("10.96.0.10");
    *ret_devices = d;
    *ret_dns = s;
    return 0;
}

static uint8_t *pack_msg(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len + 1);
    protobuf_c_message_pack(m, b);
    return b;
}

/* A ready sandbox's status with its address and Moat's egress class. */
static uint8_t *status_response(const char *id, const char *ip, const char *network, size_t *len)
{
    Moat__Cri__PodSandboxStatusResponse resp = MOAT__CRI__POD_SANDBOX_STATUS_RESPONSE__INIT;
    Moat__Cri__PodSandboxStatus st = MOAT__CRI__POD_SANDBOX_STATUS__INIT;
    Moat__Cri__PodSandboxNetworkStatus net = MOAT__CRI__POD_SANDBOX_NETWORK_STATUS__INIT;
    Moat__Cri__PodSandboxStatus__AnnotationsEntry a =
        MOAT__CRI__POD_SANDBOX_STATUS__ANNOTATIONS_ENTRY__INIT;
    Moat__Cri__PodSandboxStatus__AnnotationsEntry *as[] = {&a};
    st.id = (char *)id;
    st.state = 0;
    net.ip = (char *)ip;
    st.network = &net;
    a.key = (char *)MOAT_ANNOTATION_NETWORK;
    a.value = (char *)network;
    st.n_annotations = network ? 1 : 0;
    st.annotations = as;
    resp.status = &st;
    return pack_msg(&resp.base, len);
}

/* kubelet's copy of the sandbox's config says it is walled */
static uint8_t *create_request(const char *id, size_t *len)
{
    Moat__Cri__CreateContainerRequest req = MOAT__CRI__CREATE_CONTAINER_REQUEST__INIT;
    Moat__Cri__PodSandboxConfig cfg = MOAT__CRI__POD_SANDBOX_CONFIG__INIT;
    Moat__Cri__PodSandboxConfig__AnnotationsEntry a =
        MOAT__CRI__POD_SANDBOX_CONFIG__ANNOTATIONS_ENTRY__INIT;
    Moat__Cri__PodSandboxConfig__AnnotationsEntry *as[] = {&a};
    a.key = (char *)MOAT_ANNOTATION_NETWORK;
    a.value = (char *)MOAT_EGRESS_INTERNET;
    cfg.n_annotations = 1;
    cfg.annotations = as;
    req.pod_sandbox_id = (char *)id;
    req.sandbox_config = &cfg;
    return pack_msg(&req.base, len);
}

#define M_STATUS  "/runtime.v1.RuntimeService/PodSandboxStatus"
#define M_CREATE  "/runtime.v1.RuntimeService/CreateContainer"
#define M_VERSION "/runtime.v1.RuntimeService/Version"
#define M_RUNTIME "/runtime.v1.RuntimeService/Status"

static int create(shim_hooks *h, const char *id, int *status, char **message)
{
    size_t len;
    uint8_t *in = create_request(id, &len), *out = NULL;
    size_t out_len = 0;
    *message = NULL;
    int r = h->on_request(h->user, M_CREATE, in, len, &out, &out_len, status, message);
    free(in);
    free(out);
    return r;
}

/* CreateContainer asked again, as the relay does, until it is no longer put off (5 s). */
static int create_settled(shim_hooks *h, const char *id, int *status, char **message)
{
    for (int i = 0; i < 5000; i++) {
        int r = create(h, id, status, message);
        if (r != SHIM_HOOK_LATER)
            return r;
        usleep(1000);
    }
    fail_msg("CreateContainer of %s still put off after 5 s", id);
    return -1;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "a hook blocked on the hung nftables backend\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(1);
}

static void test_wall_on_a_worker_create_waits_others_do_not(void **state)
{
    (void)state;
    gated_nft g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
    iso_nft nft = {gated_run, &g};
    iso_wall *wall = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_wall_open(&wall, &nft, "moat", NULL, 0, &err), 0);
    iso_probe_result probe = {0};
    shim_intercept *s = NULL;
    shim_pod_network net = {fake_lookup, NULL};
    assert_int_equal(shim_intercept_new(&s, &handlers, &probe, wall, &net, &err), 0);
    shim_hooks h = shim_intercept_hooks(s);
    int status = 0;
    char *message = NULL;

    /* before its status came through: refused, nothing waits */
    assert_int_equal(create(&h, "sb1", &status, &message), -1);
    assert_int_equal(status, SHIM_FAILED_PRECONDITION);
    assert_non_null(strstr(message, "not walled yet"));
    free(message);

    /* nftables hangs: the status answer still goes back at once (the worker holds the
     * transaction), and every hook and /metrics answer; CreateContainer is put off */
    int before = g.transactions;
    gate(&g, true);
    signal(SIGALRM, on_alarm);
    alarm(10);
    size_t len = 0, out_len = 0;
    uint8_t *resp = status_response("sb1", "10.88.0.1", MOAT_EGRESS_INTERNET, &len), *out = NULL;
    assert_int_equal(h.on_response(h.user, M_STATUS, resp, len, &out, &out_len), 0);
    free(resp);
    wait_held(&g);
    assert_int_equal(create(&h, "sb1", &status, &message), SHIM_HOOK_LATER);
    assert_int_equal(
        h.on_request(h.user, M_VERSION, (const uint8_t *)"", 0, &out, &out_len, &status, &message),
        0);
    Moat__Cri__StatusResponse sr = MOAT__CRI__STATUS_RESPONSE__INIT;
    resp = pack_msg(&sr.base, &len);
    assert_int_equal(h.on_response(h.user, M_RUNTIME, resp, len, &out, &out_len), 1);
    free(resp);
    free(out);
    out = NULL;
    h.on_done(h.user, M_VERSION, 0, 1000);
    char *metrics = shim_intercept_metrics(s);
    assert_non_null(strstr(metrics, "moat_cri_egress_wall_sandboxes 0\n"));
    free(metrics);
    /* another pod's status goes by too (its wall queues behind the first) */
    resp = status_response("sb2", "10.88.0.2", MOAT_EGRESS_NONE, &len);
    assert_int_equal(h.on_response(h.user, M_STATUS, resp, len, &out, &out_len), 0);
    free(resp);
    alarm(0);
    assert_int_equal(g.transactions, before); /* the wall is not up yet */

    /* nftables answers: the waiting CreateContainer goes on */
    gate(&g, false);
    assert_int_equal(create_settled(&h, "sb1", &status, &message), 0);
    assert_int_equal(create_settled(&h, "sb2", &status, &message), 0);
    metrics = shim_intercept_metrics(s);
    assert_non_null(strstr(metrics, "moat_cri_egress_wall_sandboxes 2\n"));
    free(metrics);

    /* raising a wall fails: its CreateContainer is refused with why */
    lookup_fails = true;
    resp = status_response("sb3", "10.88.0.3", MOAT_EGRESS_INTERNET, &len);
    assert_int_equal(h.on_response(h.user, M_STATUS, resp, len, &out, &out_len), 0);
    free(resp);
    assert_int_equal(create_settled(&h, "sb3", &status, &message), -1);
    assert_int_equal(status, SHIM_FAILED_PRECONDITION);
    assert_non_null(strstr(message, "no veth leads into it"));
    free(message);
    /* ... and its next status tries again */
    lookup_fails = false;
    resp = status_response("sb3", "10.88.0.3", MOAT_EGRESS_INTERNET, &len);
    assert_int_equal(h.on_response(h.user, M_STATUS, resp, len, &out, &out_len), 0);
    free(resp);
    assert_int_equal(create_settled(&h, "sb3", &status, &message), 0);

    shim_intercept_free(s);
    iso_wall_free(wall);
}

/* Decisions are counted by handler and runtime whole, however long a handler's name (a
 * name the configuration gives: nothing cuts it). */
static void test_decisions_counted_by_whole_names(void **state)
{
    (void)state;
    char runsc[201];
    memset(runsc, 'r', 200);
    runsc[200] = '\0';
    shim_handlers h = handlers;
    h.runsc = runsc;
    iso_probe_result probe = {0};
    shim_intercept *s = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(shim_intercept_new(&s, &h, &probe, NULL, NULL, &err), 0);
    shim_hooks hk = shim_intercept_hooks(s);
    Moat__Cri__RunPodSandboxRequest req = MOAT__CRI__RUN_POD_SANDBOX_REQUEST__INIT;
    Moat__Cri__PodSandboxConfig cfg = MOAT__CRI__POD_SANDBOX_CONFIG__INIT;
    Moat__Cri__PodSandboxConfig__AnnotationsEntry a[2] = {
        MOAT__CRI__POD_SANDBOX_CONFIG__ANNOTATIONS_ENTRY__INIT,
        MOAT__CRI__POD_SANDBOX_CONFIG__ANNOTATIONS_ENTRY__INIT};
    Moat__Cri__PodSandboxConfig__AnnotationsEntry *as[] = {&a[0], &a[1]};
    a[0].key = (char *)MOAT_ANNOTATION_NETWORK;
    a[0].value = (char *)MOAT_EGRESS_INTERNET;
    a[1].key = (char *)MOAT_ANNOTATION_GPU_COUNT;
    a[1].value = "0";
    cfg.n_annotations = 2;
    cfg.annotations = as;
    req.config = &cfg;
    req.runtime_handler = "moat-gvisor";
    size_t len = 0, out_len = 0;
    uint8_t *in = pack_msg(&req.base, &len), *out = NULL;
    int status = 0;
    char *message = NULL;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(hk.on_request(hk.user, "/runtime.v1.RuntimeService/RunPodSandbox", in, len,
                                       &out, &out_len, &status, &message),
                         1);
        free(out);
        out = NULL;
    }
    free(in);
    char *metrics = shim_intercept_metrics(s);
    char want[300];
    snprintf(want, sizeof(want), "moat_cri_decisions_total{handler=\"%s\",runtime=\"gvisor\"} 2\n",
             runsc);
    assert_non_null(strstr(metrics, want));
    free(metrics);
    shim_intercept_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wall_on_a_worker_create_waits_others_do_not),
        cmocka_unit_test(test_decisions_counted_by_whole_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
