/* Sessions' activity files: the contract between moat-cri, which writes them
 * (cri-shim/activity.h), and the node agent, which reads them (isolation/agent). One file per
 * container or pod sandbox ID in a directory beside moat-cri's socket, its modification time
 * the last Exec, Attach or PortForward start.
 *
 * An ID is kubelet's, from the runtime: only letters, digits, '-', '_' and '.' (not
 * leading), at most MOAT_ACTIVITY_ID_MAX bytes, is ever a file name, so no ID names a path
 * outside the directory. */
#ifndef MOAT_ACTIVITY_H
#define MOAT_ACTIVITY_H

#include <stdbool.h>

#define MOAT_ACTIVITY_ID_MAX 128

/* The directory's name beside moat-cri's socket. */
#define MOAT_ACTIVITY_DIR_NAME "activity"

/* True for an ID that may be a file name (the rules above). */
bool moat_activity_id_valid(const char *id);

/* The directory for a socket path: its directory and MOAT_ACTIVITY_DIR_NAME. Caller frees;
 * NULL when out of memory. */
char *moat_activity_dir_for(const char *socket_path);

#endif
