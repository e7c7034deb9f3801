/* The node's network as its kernel tells it. The node's end of a pod's network: the host-side
 * interfaces of the veth pairs whose other end is in the pod's network namespace. The egress wall
 * keys its per-pod chains on them (cri-shim/wall.h).
 *
 * Asked of the kernel over rtnetlink, from the caller's own network namespace (the node's):
 * the namespace's id as this one knows it (RTM_GETNSID with the namespace's file), then
 * every veth whose peer lives in that namespace (RTM_GETLINK, IFLA_LINK_NETNSID). Nothing
 * the pod can write is read: a pod may name its interfaces and addresses as it likes, but
 * not which namespace its veth peer is in. */
#ifndef MOAT_ISO_NETNS_H
#define MOAT_ISO_NETNS_H

#include "libmoat/error.h"

/* The names (NULL-terminated, caller frees with moat_strv_free) of this namespace's
 * veths whose peer is in the namespace at netns_path ("/var/run/netns/cni-..."). None:
 * MOAT_E_NOTFOUND (a pod on the node's network, or a plugin without veths); a path that is
 * not a network namespace: MOAT_E_INVALID; netlink failing: MOAT_E_IO. */
int iso_netns_host_peers(const char *netns_path, char ***ret, moat_error *err);

/* The node's own addresses (every interface, both families, but IPv6 link-local ones,
 * which the wall's fe80::/10 blocks already), for the wall to block: a NULL-terminated list
 * the caller frees with moat_strv_free (libmoat/strv.h). MOAT_E_IO when the kernel cannot
 * list them. */
int iso_netns_node_addresses(char ***ret, moat_error *err);

#endif
