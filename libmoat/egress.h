/* What a sandbox with egress Internet must not reach: the private, local and special
 * address ranges. One table for the two walls that enforce it, the NetworkPolicy the
 * operator writes (operator/netpol.c, as ipBlock excepts) and the node's own egress wall
 * (cri-shim/wall.h, as nftables sets), so they can never disagree. */
#ifndef MOAT_EGRESS_H
#define MOAT_EGRESS_H

#include <stdbool.h>
#include <stddef.h>

/* CIDRs, IPv4 and IPv6. Some overlap on purpose (see egress.c): users of an interval set
 * must merge them. */
extern const char *const moat_egress_blocked_ipv4[];
extern const size_t moat_egress_blocked_ipv4_count;
extern const char *const moat_egress_blocked_ipv6[];
extern const size_t moat_egress_blocked_ipv6_count;

/* Whether text is a CIDR: an IPv4 or IPv6 address, '/', a prefix length of 0..32 or
 * 0..128 (decimal, no sign or leading zero). *ret_v6 tells the family when it is. */
bool moat_cidr_valid(const char *text, bool *ret_v6);

/* The port cluster DNS answers on; the one private destination Internet egress keeps. */
#define MOAT_EGRESS_DNS_PORT 53

#endif
