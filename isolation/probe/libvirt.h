/* libvirt as a second witness for the host probe: where a libvirt daemon runs, ask it
 * which domain types it offers (virConnectGetDomainCapabilities for "kvm" and for "qemu",
 * software emulation) and compare its kvm answer with the direct probe's. The direct probe
 * always wins; a disagreement is reported, never acted on. Without a daemon the answer is
 * "libvirt: not running", which is not an error.
 *
 * A trap worth knowing: on a kvm_pvm host (this project's CI machine) libvirt offers the
 * kvm domain type, since QEMU's KVM accelerator initialises on /dev/kvm, while Kata with its
 * stock guest kernel cannot run there. That is the disagreement this module reports. */
#ifndef MOAT_ISO_LIBVIRT_H
#define MOAT_ISO_LIBVIRT_H

#include <stdbool.h>

#include "isolation/probe/probe.h"
#include "libmoat/error.h"

#define ISO_LIBVIRT_URI "qemu:///system"

/* How libvirt is asked; tests give its answers. Each call returns 0 on success, or < 0
 * with *ret_msg set to libvirt's message (owned by the caller; may stay NULL).
 *   open: connects to uri; *ret_not_running is set when no daemon listens (the socket is
 *         missing or refuses), as opposed to any other failure.
 *   domain_caps: the domain capabilities XML of virttype (owned by the caller), or < 0
 *         when libvirt does not offer that type.
 *   close: closes what open returned. */
typedef struct iso_libvirt_ops {
    int (*open)(void *impl, void **ret_conn, bool *ret_not_running, char **ret_msg,
                const char *uri);
    int (*domain_caps)(void *impl, char **ret_xml, char **ret_msg, void *conn,
                       const char *virttype);
    void (*close)(void *impl, void *conn);
    void *impl;
} iso_libvirt_ops;

/* The real libvirt client (libvirt's default error handler, which prints to stderr, is
 * replaced by a quiet one the first time it connects). Static; never NULL. */
const iso_libvirt_ops *iso_libvirt_host(void);

typedef struct {
    bool running;             /* a daemon answered */
    char *status;             /* owned: "connected to qemu:///system", "not running",
                               * "cannot connect to qemu:///system: <libvirt's message>" */
    iso_tri kvm, qemu;        /* the domain type is offered; unknown when not running */
    char *kvm_msg, *qemu_msg; /* owned: libvirt's message when not offered, else NULL */
    iso_tri agrees;           /* its kvm answer matches the direct probe's; unknown without one */
    /* owned, always set: "libvirt: not running", "libvirt agrees: kvm usable",
     * "libvirt agrees: kvm not offered", or "libvirt disagrees: it offers the kvm domain
     * type, the direct probe says kvm is not usable (<reason>); the direct probe wins". */
    char *verdict;
} iso_libvirt_result;

/* Asks libvirt at uri (NULL: ISO_LIBVIRT_URI) through ops and compares with direct (may be
 * NULL: no comparison). Fills *out (the caller clears it) and returns 0; fails only for
 * NULL ops or out (MOAT_E_INVALID) and out of memory (MOAT_E_NOMEM), *out untouched then. */
int iso_libvirt_probe(iso_libvirt_result *out, const iso_libvirt_ops *ops, const char *uri,
                      const iso_probe_result *direct, moat_error *err);

/* Frees what r owns and zeroes it; accepts NULL. */
void iso_libvirt_result_clear(iso_libvirt_result *r);

#endif
