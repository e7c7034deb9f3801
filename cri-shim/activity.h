/* Sessions' activity as moat-cri sees it: every Exec, Attach and PortForward that kubelet
 * relays through it (never ExecSync: kubelet's own probes are not activity). Each start
 * touches one file named by the call's container ID (Exec, Attach) or pod sandbox ID
 * (PortForward) in a directory beside moat-cri's socket, its modification time the start;
 * the node agent, which mounts that directory read-only, reads them (isolation/agent) and
 * publishes a Session's last activity on its Pod. Files survive a restart of moat-cri;
 * RemoveContainer and RemovePodSandbox remove theirs. The files' names and place are
 * libmoat/activity.h's (the agent's side of the contract); an ID that may not be a file
 * name is refused (MOAT_E_INVALID). */
#ifndef MOAT_SHIM_ACTIVITY_H
#define MOAT_SHIM_ACTIVITY_H

#include <stdbool.h>

#include "libmoat/error.h"

typedef struct shim_activity shim_activity;

/* Opens dir, creating it (0755) when missing. Caller frees. */
int shim_activity_new(shim_activity **out, const char *dir, moat_error *err);

/* Marks id active now (creates its file or sets its time). Thread-safe. */
int shim_activity_touch(shim_activity *a, const char *id, moat_error *err);

/* Removes id's file; a missing one is no error. Thread-safe. */
int shim_activity_forget(shim_activity *a, const char *id, moat_error *err);

/* Accepts NULL. */
void shim_activity_free(shim_activity *a);

#endif
