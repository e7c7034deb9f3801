#include "isolation/probe/libvirt.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "libmoat/names.h"

/* ---- the real client -------------------------------------------------------------------- */

/* libvirt's default handler prints every error to stderr; the probe reports them itself. */
static void quiet_error(_unused_ void *user, _unused_ virErrorPtr e)
{
}

static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

static void quiet_init(void)
{
    virInitialize();
    virSetErrorFunc(NULL, quiet_error);
}

static char *last_message(void)
{
    virErrorPtr e = virGetLastError();
    return strdup(e && e->message ? e->message : "unknown libvirt error");
}

static int host_open(_unused_ void *impl, void **ret_conn, bool *ret_not_running, char **ret_msg,
                     const char *uri)
{
    pthread_once(&quiet_once, quiet_init);
    /* Read-write: a read-only connection is refused virConnectGetDomainCapabilities
     * ("read only access prevents virConnectGetDomainCapabilities"). */
    virConnectPtr c = virConnectOpen(uri);
    if (!c) {
        virErrorPtr e = virGetLastError();
        /* A system error carries its errno in int1: no socket, or nobody accepting. */
        *ret_not_running =
            e && e->code == VIR_ERR_SYSTEM_ERROR && (e->int1 == ENOENT || e->int1 == ECONNREFUSED);
        *ret_msg = last_message();
        virResetLastError();
        return -1;
    }
    *ret_conn = c;
    return 0;
}

static int host_domain_caps(_unused_ void *impl, char **ret_xml, char **ret_msg, void *conn,
                            const char *virttype)
{
    char *xml = virConnectGetDomainCapabilities(conn, NULL, NULL, NULL, virttype, 0);
    if (!xml) {
        *ret_msg = last_message();
        virResetLastError();
        return -1;
    }
    *ret_xml = xml;
    return 0;
}

static void host_close(_unused_ void *impl, void *conn)
{
    if (conn)
        virConnectClose(conn);
}

static const iso_libvirt_ops host_ops = {
    .open = host_open,
    .domain_caps = host_domain_caps,
    .close = host_close,
};

const iso_libvirt_ops *iso_libvirt_host(void)
{
    return &host_ops;
}

/* ---- the witness ------------------------------------------------------------------------ */

/* One domain type: yes, or no with libvirt's message in *ret_msg. */
static iso_tri ask(char **ret_msg, const iso_libvirt_ops *ops, void *conn, const char *virttype,
                   bool *nomem)
{
    char *xml = NULL, *msg = NULL;
    if (ops->domain_caps(ops->impl, &xml, &msg, conn, virttype) == 0) {
        free(xml);
        free(msg);
        return ISO_TRI_YES;
    }
    free(xml);
    *ret_msg = msg ? msg : strdup("not offered");
    if (!*ret_msg)
        *nomem = true;
    return ISO_TRI_NO;
}

int iso_libvirt_probe(iso_libvirt_result *out, const iso_libvirt_ops *ops, const char *uri,
                      const iso_probe_result *direct, moat_error *err)
{
    if (!ops || !out)
        return moat_error_set(err, MOAT_E_INVALID, "libvirt: no client or result");
    if (!uri)
        uri = ISO_LIBVIRT_URI;

    iso_libvirt_result r = {
        .kvm = ISO_TRI_UNKNOWN, .qemu = ISO_TRI_UNKNOWN, .agrees = ISO_TRI_UNKNOWN};
    bool nomem = false;
    void *conn = NULL;
    bool not_running = false;
    _cleanup_free_ char *msg = NULL;

    if (ops->open(ops->impl, &conn, &not_running, &msg, uri) < 0) {
        if (not_running) {
            r.status = strdup("not running");
            r.verdict = strdup("libvirt: not running");
        } else {
            r.status = iso_strf("cannot connect to %s: %s", uri, msg ? msg : "unknown error");
            r.verdict = iso_strf("libvirt: cannot connect to %s", uri);
        }
        if (!r.status || !r.verdict)
            goto nomem;
        *out = r;
        return 0;
    }

    r.running = true;
    r.kvm = ask(&r.kvm_msg, ops, conn, MOAT_HYPERVISOR_KVM, &nomem);
    r.qemu = ask(&r.qemu_msg, ops, conn, "qemu", &nomem);
    ops->close(ops->impl, conn);
    if (nomem || !(r.status = iso_strf("connected to %s", uri)))
        goto nomem;

    bool offers = r.kvm == ISO_TRI_YES;
    if (!direct) {
        r.verdict = iso_strf("libvirt: kvm %s (no direct probe to compare)",
                             offers ? "offered" : "not offered");
    } else {
        bool direct_kvm = direct->usable && direct->hypervisor &&
                          strcmp(direct->hypervisor, MOAT_HYPERVISOR_KVM) == 0;
        r.agrees = direct_kvm == offers ? ISO_TRI_YES : ISO_TRI_NO;
        if (direct_kvm == offers)
            r.verdict = iso_strf("libvirt agrees: kvm %s", offers ? "usable" : "not offered");
        else if (offers)
            r.verdict =
                iso_strf("libvirt disagrees: it offers the kvm domain type, the direct probe "
                         "says kvm is not usable (%s); the direct probe wins",
                         direct->reason ? direct->reason : "no reason");
        else
            r.verdict =
                iso_strf("libvirt disagrees: it does not offer the kvm domain type (%s), the "
                         "direct probe says kvm is usable; the direct probe wins",
                         r.kvm_msg ? r.kvm_msg : "no message");
    }
    if (!r.verdict)
        goto nomem;
    *out = r;
    return 0;

nomem:
    iso_libvirt_result_clear(&r);
    return moat_error_set(err, MOAT_E_NOMEM, "libvirt: out of memory");
}

void iso_libvirt_result_clear(iso_libvirt_result *r)
{
    if (!r)
        return;
    free(r->status);
    free(r->kvm_msg);
    free(r->qemu_msg);
    free(r->verdict);
    *r = (iso_libvirt_result){0};
}
