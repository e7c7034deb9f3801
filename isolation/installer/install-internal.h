/* What install.c (the steps, the run, uninstall) and state.c (files and the installer's
 * state) share; not for other parts.
 *
 * The state: <state>/manifest lists, one a line, "f <host path>" for each file the
 * installer wrote and "d <host path>" for each directory it created. <state>/backup/<path,
 * '/' as '%'> holds the bytes a file had before the installer first changed it; no backup
 * means the installer created the file. */
#ifndef MOAT_INSTALLER_INSTALL_INTERNAL_H
#define MOAT_INSTALLER_INSTALL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "install.h"
#include "libmoat/macro.h"

#define BUNDLE_MAX ((size_t)256 << 20) /* one file of the bundle */

typedef struct {
    const iso_install_options *o;
    char *state;    /* installer side */
    char **entries; /* "f /path" or "d /path" */
    size_t n;
    iso_install_report *rep;
} install_ctx;

/* Appends one line to rep (accepts NULL; a line that cannot be allocated is dropped). */
void install_report_add(iso_install_report *rep, const char *fmt, ...) _printf_(2, 3);

/* A file's text (at most max bytes) in *ret (malloc'd) and *ret_len, *ret_exists true; a
 * missing file is no error: *ret NULL, *ret_exists false. */
int install_read_file(char **ret, size_t *ret_len, bool *ret_exists, const char *path, size_t max,
                      moat_error *err);

/* The state of the host under o (its manifest loaded) into *c, reporting into rep; clear
 * it with install_ctx_clear, also after a failure. */
int install_ctx_open(install_ctx *c, const iso_install_options *o, iso_install_report *rep,
                     moat_error *err);

/* Records the state directory itself (and parents it needs) before anything else. */
int install_ctx_prepare(install_ctx *c, moat_error *err);

void install_ctx_clear(install_ctx *c);

/* The installer-side path of hostpath (under the host root), or NULL when out of memory;
 * the caller frees. */
char *install_host(const install_ctx *c, const char *hostpath);

/* Where hostpath's original bytes are kept, or NULL when out of memory; the caller frees. */
char *install_backup_path(const install_ctx *c, const char *hostpath);

/* Writes a host file the installer manages: its first original kept, its path and the
 * directories made for it recorded before it is written. *ret_changed says whether the
 * bytes or the mode changed (and the report gains "wrote <path>"). */
int install_put_tracked(install_ctx *c, const char *hostpath, const char *data, size_t len,
                        unsigned mode, bool *ret_changed, moat_error *err);

/* Restarts owed: <state>/pending-<service> is written before a restart and removed after
 * it, so a run that failed between changing a file and restarting its reader restarts it
 * next time although the file no longer changes. */
char *install_pending_path(const install_ctx *c, const char *name); /* caller frees; NULL: OOM */
bool install_pending(const install_ctx *c, const char *name);
int install_restart(install_ctx *c, const iso_service_ops *svc, const char *name, moat_error *err);

/* containerd restarted, and answering again: what comes next (moat-cri's check, kubelet's
 * startup) needs it, and a service manager may return before it listens. */
int install_restart_containerd(install_ctx *c, const iso_service_ops *svc,
                               const iso_install_checks *chk, moat_error *err);

#endif
