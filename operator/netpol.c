#include "netpol.h"

#include "libmoat/macro.h"
#include "libmoat/names.h"

/* Set by the API server on every namespace (Kubernetes 1.21 and later) and immutable, so
 * unlike a label a user adds, it cannot be put on another namespace to pose as DNS. */
#define NAMESPACE_NAME_LABEL "kubernetes.io/metadata.name"
#define DNS_PORT             53

/* jansson's own json_decrefp, under the house name. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* IPv4 addresses an "internet" sandbox must not reach although 0.0.0.0/0 covers them.
 * ipBlock is meant for addresses outside the cluster; with most CNIs the pod and service
 * ranges sit in the private blocks below, and the cluster's own traffic is allowed only by
 * the DNS rule. A trap: NodeLocal DNSCache listens on 169.254.20.10, which this table
 * blocks; clusters using it need their DNS reachable through the DNS rule instead. */
static const char *const ipv4_blocked[] = {
    "10.0.0.0/8",     /* RFC 1918 private: nodes, pods, services, the VPC */
    "172.16.0.0/12",  /* RFC 1918 private */
    "192.168.0.0/16", /* RFC 1918 private */
    "100.64.0.0/10",  /* RFC 6598 CGNAT: pod ranges on some clouds, VPNs, carrier NAT */
    "169.254.0.0/16", /* RFC 3927 link-local, incl. cloud metadata 169.254.169.254 (credentials) */
    "127.0.0.0/8",    /* loopback */
    "0.0.0.0/8",      /* "this network": 0.0.0.0 reaches local listeners on Linux */
    "224.0.0.0/4",    /* multicast */
    "240.0.0.0/4",    /* reserved, incl. broadcast 255.255.255.255 */
    "168.63.129.16/32", /* Azure wireserver: VM agent, DNS, health probes, reachable from any VM */
};

/* The same for IPv6. */
static const char *const ipv6_blocked[] = {
    "fc00::/7",  /* RFC 4193 unique local: private IPv6 pod and VPC ranges */
    "fe80::/10", /* link-local */
    "::1/128",   /* loopback */
    /* AWS instance metadata over IPv6. fc00::/7 covers it; it is listed on its own so that
     * narrowing the ULA entry can never expose credentials. */
    "fd00:ec2::254/128", "ff00::/8", /* multicast */
};

static int nomem(moat_error *err)
{
    return moat_error_set(err, MOAT_E_NOMEM, "out of memory building the NetworkPolicies");
}

/* {ipBlock: {cidr, except: [blocked...]}} */
static json_t *ip_block(const char *cidr, const char *const *blocked, size_t n)
{
    json_t *except = json_array();
    if (!except)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(except, json_string(blocked[i])) < 0) {
            json_decref(except);
            return NULL;
        }
    return json_pack("{s:{s:s, s:o}}", "ipBlock", "cidr", cidr, "except", except);
}

static json_t *dns_pod_labels(const operator_config *cfg)
{
    json_t *labels = json_object();
    if (!labels)
        return NULL;
    for (size_t i = 0; cfg->dns_pod_label_keys && cfg->dns_pod_label_keys[i]; i++)
        if (json_object_set_new(labels, cfg->dns_pod_label_keys[i],
                                json_string(cfg->dns_pod_label_values[i])) < 0) {
            json_decref(labels);
            return NULL;
        }
    return labels;
}

/* A NetworkPolicy for the sandbox Pods of one egress class, denying all ingress; egress is
 * its egress rules, or NULL for none (all egress denied). Steals egress. */
static json_t *policy(const char *name, const char *ns, const char *egress_class, json_t *egress)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:{s:{s:s}}, s:[s, s], s:o*}}",
                     "apiVersion", "networking.k8s.io/v1", "kind", "NetworkPolicy", "metadata",
                     "name", name, "namespace", ns, "labels", SANDBOX_NETPOL_MANAGED_BY_KEY,
                     SANDBOX_NETPOL_MANAGED_BY, "spec", "podSelector", "matchLabels",
                     MOAT_LABEL_EGRESS, egress_class, "policyTypes", "Ingress", "Egress", "egress",
                     egress);
}

int sandbox_netpols_build(json_t **out, const char *ns, const operator_config *cfg, moat_error *err)
{
    if (!ns || !*ns)
        return moat_error_set(err, MOAT_E_INVALID, "NetworkPolicies: the namespace is empty");
    if (!cfg->dns_namespace || !*cfg->dns_namespace)
        return moat_error_set(err, MOAT_E_INVALID,
                              "NetworkPolicies: network.dnsNamespace is empty");

    /* Namespace and pod selectors in one peer are ANDed: DNS pods in the DNS namespace,
     * not any pod there, nor pods with DNS labels anywhere. */
    json_t *labels = dns_pod_labels(cfg);
    if (!labels)
        return nomem(err);
    json_t *to_dns = json_pack(
        "{s:[{s:{s:{s:s}}, s:{s:o}}], s:[{s:s, s:i}, {s:s, s:i}]}", "to", "namespaceSelector",
        "matchLabels", NAMESPACE_NAME_LABEL, cfg->dns_namespace, "podSelector", "matchLabels",
        labels, "ports", "protocol", "UDP", "port", DNS_PORT, "protocol", "TCP", "port", DNS_PORT);
    json_t *to_public =
        json_pack("{s:[o, o]}", "to", ip_block("0.0.0.0/0", ipv4_blocked, ELEMENTSOF(ipv4_blocked)),
                  ip_block("::/0", ipv6_blocked, ELEMENTSOF(ipv6_blocked)));
    /* Checked before policy(), which would read NULL as "no egress rules". */
    json_t *egress = json_pack("[o, o]", to_dns, to_public);
    if (!egress)
        return nomem(err);
    _cleanup_json_ json_t *internet =
        policy(SANDBOX_NETPOL_EGRESS_INTERNET, ns, MOAT_EGRESS_INTERNET, egress);
    _cleanup_json_ json_t *none = policy(SANDBOX_NETPOL_EGRESS_NONE, ns, MOAT_EGRESS_NONE, NULL);
    if (!internet || !none)
        return nomem(err);

    json_t *policies = json_pack("[o, o]", TAKE_PTR(none), TAKE_PTR(internet));
    if (!policies)
        return nomem(err);
    *out = policies;
    return 0;
}
