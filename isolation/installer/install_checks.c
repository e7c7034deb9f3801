/* The installer's checks against the real host: the hypervisor probe, the runtime's CRI
 * Version (libmoat/cri/cri.h), kubelet's healthz, and the egress wall's removal. Tests give
 * their own (install.h: iso_install_checks). */
#include "install.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <time.h>

#include "libmoat/cri/cri.h"
#include "isolation/probe/probe.h"
#include "cri-shim/wall.h"
#include "libmoat/clock.h"
#include "libmoat/macro.h"
#include "libmoat/names.h"
#include "libmoat/strbuf.h"

/* ---- the checks ---- */

static int real_hypervisor(void *impl, const char **ret, moat_error *err)
{
    iso_install_real *r = impl;
    if (r->assume_hypervisor) {
        if (strcmp(r->assume_hypervisor, MOAT_HYPERVISOR_KVM) == 0)
            *ret = MOAT_HYPERVISOR_KVM;
        else if (strcmp(r->assume_hypervisor, MOAT_HYPERVISOR_MSHV) == 0)
            *ret = MOAT_HYPERVISOR_MSHV;
        else if (strcmp(r->assume_hypervisor, MOAT_HYPERVISOR_NONE) == 0)
            *ret = NULL;
        else
            return moat_error_set(err, MOAT_E_INVALID,
                                  "assumed hypervisor \"%s\" is not kvm, "
                                  "mshv or none",
                                  r->assume_hypervisor);
        return 0;
    }
    iso_probe_result res = {0};
    iso_probe_paths paths = {.root = r->host_root};
    if (iso_probe_run(&res, iso_sys_host(), &paths, err) < 0)
        return moat_error_prefix(err, "host probe");
    const char *h = NULL;
    if (res.usable && res.hypervisor)
        h = strcmp(res.hypervisor, MOAT_HYPERVISOR_MSHV) == 0 ? MOAT_HYPERVISOR_MSHV
                                                              : MOAT_HYPERVISOR_KVM;
    iso_probe_result_clear(&res);
    *ret = h;
    return 0;
}

/* One Version call through the CRI client (libmoat/cri/cri.h). */
static int cri_version_once(const char *path, char **ret_runtime, moat_error *err)
{
    cri_client *c = NULL;
    if (cri_client_new(&c, path, err) < 0)
        return -1;
    int r = cri_version(c, ret_runtime, 5000, err);
    cri_client_free(c);
    if (r < 0)
        return moat_error_prefix(err, "CRI Version on %s", path);
    return 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *user)
{
    size_t add = sz * n;
    return moat_strbuf_append(user, p, add) < 0 ? 0 : add;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int real_cri_version(void *impl, const char *path, int timeout_ms, char **ret,
                            moat_error *err)
{
    (void)impl;
    long long end = (moat_mono_ns() / 1000000) + timeout_ms;
    for (;;) {
        if (cri_version_once(path, ret, err) == 0)
            return 0;
        if ((moat_mono_ns() / 1000000) >= end)
            return -1;
        sleep_ms(200);
    }
}

static int healthz_once(const char *url, moat_error *err)
{
    CURL *h = curl_easy_init();
    if (!h)
        return moat_error_set(err, MOAT_E_NOMEM, "curl_easy_init failed");
    moat_strbuf a = {.max = 1 << 20};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    int r = 0;
    if (rc != CURLE_OK)
        r = moat_error_set(err, MOAT_E_NETWORK, "%s: %s", url, curl_easy_strerror(rc));
    else if (code != 200)
        r = moat_error_set(err, MOAT_E_NETWORK, "%s: HTTP %ld %s", url, code, a.buf ? a.buf : "");
    moat_strbuf_free(&a);
    return r;
}

static int real_healthy(void *impl, const char *url, int timeout_ms, int settle_ms, moat_error *err)
{
    (void)impl;
    long long start = (moat_mono_ns() / 1000000), end = start + timeout_ms, healthy_since = -1;
    for (;;) {
        moat_error_clear(err);
        if (healthz_once(url, err) == 0) {
            if (healthy_since < 0)
                healthy_since = (moat_mono_ns() / 1000000);
            if ((moat_mono_ns() / 1000000) - healthy_since >= settle_ms)
                return 0;
        } else {
            healthy_since = -1;
        }
        if ((moat_mono_ns() / 1000000) >= end) {
            if (err && !err->message)
                moat_error_set(err, MOAT_E_NETWORK, "%s: healthy for less than %d ms", url,
                               settle_ms);
            return -1;
        }
        sleep_ms(250);
    }
}

static int real_remove_wall(void *impl, const char *table, moat_error *err)
{
    (void)impl;
    iso_nft nft;
    if (iso_nft_open(&nft, err) < 0)
        return -1;
    int r = iso_wall_delete(&nft, table, err);
    iso_nft_close(&nft);
    return r;
}

iso_install_checks iso_install_checks_real(iso_install_real *r)
{
    return (iso_install_checks){real_hypervisor, real_cri_version, real_healthy, real_remove_wall,
                                r};
}
