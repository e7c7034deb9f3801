/* The host's service manager, as the node installer sees it: define a service it owns
 * (moat-cri), start, restart and stop services (moat-cri, containerd, kubelet).
 *
 * Two backends: systemd on real nodes (unit files under <host-root>/etc/systemd/system,
 * systemctl run through a configurable command, by default `nsenter --target 1 --mount --
 * systemctl` from a DaemonSet pod with hostPID), and a process backend for machines without
 * systemd (the local test cluster): each service is a command line in <dir>/<name>.argv (one
 * argument per line) and a pid in <dir>/<name>.pid. Tests replace the whole struct. */
#ifndef MOAT_ISO_SERVICE_H
#define MOAT_ISO_SERVICE_H

#include <stdbool.h>

#include "libmoat/error.h"

typedef struct iso_service_ops {
    /* Writes the definition of a service the installer owns, running argv (NULL-terminated,
     * argv[0] an absolute host path). run_dir (optional, absolute) is made before each start:
     * the directory of its socket, which a reboot empties when it lies under /run (systemd:
     * RuntimeDirectory=). *changed tells whether the definition was different (or absent).
     * Does not start or restart it. */
    int (*define)(void *impl, const char *name, const char *const *argv, const char *run_dir,
                  bool *changed, moat_error *err);
    /* Removes that definition (stopping the service first); *changed false when there was
     * none. */
    int (*undefine)(void *impl, const char *name, bool *changed, moat_error *err);
    /* Starts the service when it is not running; a running one is left alone. */
    int (*start)(void *impl, const char *name, moat_error *err);
    /* Stops the service (waiting for it to end) and starts it again. */
    int (*restart)(void *impl, const char *name, moat_error *err);
    /* Stops the service and waits for it to end; a stopped one is not an error. */
    int (*stop)(void *impl, const char *name, moat_error *err);
    /* Whether the service runs now. */
    int (*running)(void *impl, const char *name, bool *out, moat_error *err);
    void *impl;
} iso_service_ops;

typedef struct iso_service iso_service;

/* systemd: unit files go to <host_root>/etc/systemd/system/<name>.service; systemctl is the
 * command (argv, NULL-terminated; NULL: "nsenter --target 1 --mount -- systemctl") run with
 * the verb and unit appended. Caller frees with iso_service_free(). */
int iso_service_systemd_new(iso_service **out, const char *host_root, const char *const *systemctl,
                            moat_error *err);

/* Processes: dir (as the installer sees it) holds <name>.argv, <name>.pid and <name>.log.
 * start runs argv in a new session, its output appended to <name>.log; stop sends SIGTERM,
 * waits up to stop_timeout_ms, then SIGKILL. A service that is not defined by a .argv file
 * cannot be started. Caller frees. */
int iso_service_process_new(iso_service **out, const char *dir, int stop_timeout_ms,
                            moat_error *err);

/* The ops over a backend; s must outlive them. */
iso_service_ops iso_service_ops_of(iso_service *s);

/* Accepts NULL. */
void iso_service_free(iso_service *s);

#endif
