/* Sessions' activity as moat-cri sees it: every Exec, Attach and PortForward that kubelet
 * relays through it (never ExecSync: kubelet's own probes are not activity). Each start
 * touches one file named by the call's container ID (Exec, Attach) or pod sandbox ID
 * (PortForward) in a directory beside moat-cri's socket, its modification time the start;
 * the node agent, which mounts that directory read-only, reads them (isolation/agent) and
 * publishes a Session's last activity on its Pod. Files survive a restart of moat-cri;
 * RemoveContainer and RemovePodSandbox remove theirs.
 *
 * An ID is kubelet's, from the runtime: only letters, digits, '-', '_' and '.' (not
 * leading), at most SHIM_ACTIVITY_ID_MAX bytes, is ever a file name; anything else is
 * refused (MOAT_E_INVALID), so no request names a path outside the directory. */
#ifndef MOAT_SHIM_ACTIVITY_H
#define MOAT_SHIM_ACTIVITY_H

#include <stdbool.h>

#include "libmoat/error.h"

#define SHIM_ACTIVITY_ID_MAX 128

/* The directory's name beside moat-cri's socket. */
#define SHIM_ACTIVITY_DIR_NAME "activity"

typedef struct shim_activity shim_activity;

/* Opens dir, creating it (0755) when missing. Caller frees. */
int shim_activity_new(shim_activity **out, const char *dir, moat_error *err);

/* The directory for a socket path: its directory and SHIM_ACTIVITY_DIR_NAME. Caller
 * frees; NULL when out of memory. */
char *shim_activity_dir_for(const char *socket_path);

/* Marks id active now (creates its file or sets its time). Thread-safe. */
int shim_activity_touch(shim_activity *a, const char *id, moat_error *err);

/* Removes id's file; a missing one is no error. Thread-safe. */
int shim_activity_forget(shim_activity *a, const char *id, moat_error *err);

/* True for an ID that may be a file name (the rules above). */
bool shim_activity_id_valid(const char *id);

/* Accepts NULL. */
void shim_activity_free(shim_activity *a);

#endif
