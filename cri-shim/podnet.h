/* Where a pod sandbox's network is on this node, for its egress wall: the node's ends of its
 * interfaces and the DNS servers kubelet gave it. Asked of the runtime's record (a verbose
 * PodSandboxStatus to containerd, libmoat/cri/cri.h) and of the kernel (cri-shim/netns.h),
 * never of the request a caller sent through the shim. */
#ifndef MOAT_SHIM_PODNET_H
#define MOAT_SHIM_PODNET_H

#include "libmoat/cri/cri.h"
#include "libmoat/error.h"

/* The lookup the wall worker calls (intercept.h: shim_pod_network); user is a cri_client
 * on containerd's socket. *ret_devices and *ret_dns are NULL-terminated lists the caller
 * frees with moat_strv_free. Errors name the sandbox and what failed. */
int shim_podnet_lookup(void *user, const char *sandbox_id, char ***ret_devices, char ***ret_dns,
                       moat_error *err);

#endif
