#include "egress.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

/* ipBlock is meant for addresses outside the cluster; with most CNIs the pod and service
 * ranges sit in the private blocks below, and the cluster's own traffic is allowed only by
 * the DNS rule. A trap: NodeLocal DNSCache listens on 169.254.20.10, which this table
 * blocks; clusters using it need their DNS reachable through the DNS rule instead. */
const char *const moat_egress_blocked_ipv4[] = {
    "10.0.0.0/8",       /* RFC 1918 private: nodes, pods, services, the VPC */
    "172.16.0.0/12",    /* RFC 1918 private */
    "192.168.0.0/16",   /* RFC 1918 private */
    "100.64.0.0/10",    /* RFC 6598 CGNAT: pod ranges on some clouds, VPNs, carrier NAT */
    "169.254.0.0/16",   /* RFC 3927 link-local, incl. cloud metadata 169.254.169.254 */
    "127.0.0.0/8",      /* loopback */
    "0.0.0.0/8",        /* "this network": 0.0.0.0 reaches local listeners on Linux */
    "224.0.0.0/4",      /* multicast */
    "240.0.0.0/4",      /* reserved, incl. broadcast 255.255.255.255 */
    "168.63.129.16/32", /* Azure wireserver: VM agent, DNS, health probes, from any VM */
    "192.0.0.0/24",     /* RFC 6890 IETF protocol assignments (DS-Lite, NAT64 discovery) */
    "198.18.0.0/15",    /* RFC 2544 benchmarking: used inside some data centres */
};
const size_t moat_egress_blocked_ipv4_count = ELEMENTSOF(moat_egress_blocked_ipv4);

const char *const moat_egress_blocked_ipv6[] = {
    "fc00::/7",  /* RFC 4193 unique local: private IPv6 pod and VPC ranges */
    "fe80::/10", /* link-local */
    "::1/128",   /* loopback */
    /* AWS instance metadata over IPv6. fc00::/7 covers it; it is listed on its own so that
     * narrowing the ULA entry can never expose credentials. */
    "fd00:ec2::254/128", "ff00::/8", /* multicast */
    /* NAT64 (RFC 6052, RFC 8215): on a NAT64 network these reach IPv4 addresses, private
     * ones included. */
    "64:ff9b::/96", "64:ff9b:1::/48", "::/128", /* unspecified */
};
const size_t moat_egress_blocked_ipv6_count = ELEMENTSOF(moat_egress_blocked_ipv6);

bool moat_cidr_valid(const char *text, bool *ret_v6)
{
    char addr[INET6_ADDRSTRLEN];
    unsigned char bin[sizeof(struct in6_addr)];
    const char *slash = text ? strchr(text, '/') : NULL;
    if (!slash || (size_t)(slash - text) >= sizeof(addr))
        return false;
    snprintf(addr, sizeof(addr), "%.*s", (int)(slash - text), text);
    bool v6 = inet_pton(AF_INET6, addr, bin) == 1;
    if (!v6 && inet_pton(AF_INET, addr, bin) != 1)
        return false;
    const char *p = slash + 1;
    size_t n = strlen(p);
    if (n == 0 || n > 3 || strspn(p, "0123456789") != n || (n > 1 && p[0] == '0'))
        return false;
    int len = atoi(p);
    if (len > (v6 ? 128 : 32))
        return false;
    if (ret_v6)
        *ret_v6 = v6;
    return true;
}
