#include "netpol.h"

#include "libmoat/egress.h"
#include "libmoat/macro.h"
#include "libmoat/names.h"

/* Set by the API server on every namespace (Kubernetes 1.21 and later) and immutable, so
 * unlike a label a user adds, it cannot be put on another namespace to pose as DNS. */
#define NAMESPACE_NAME_LABEL "kubernetes.io/metadata.name"

/* jansson's own json_decrefp, under the house name. */
#define _cleanup_json_ _cleanup_(json_decrefp)

static int nomem(moat_error *err)
{
    return moat_error_set(err, MOAT_E_NOMEM, "out of memory building the NetworkPolicies");
}

/* {ipBlock: {cidr, except: [blocked..., the cluster's own ranges of that family...]}} */
static json_t *ip_block(const char *cidr, const char *const *blocked, size_t n,
                        char *const *cluster, bool v6)
{
    json_t *except = json_array();
    if (!except)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(except, json_string(blocked[i])) < 0) {
            json_decref(except);
            return NULL;
        }
    /* Pod and service ranges outside the private blocks (public IPv6 GUA ranges, say):
     * an except must be of the cidr's family. */
    for (; cluster && *cluster; cluster++) {
        bool is_v6 = false;
        if (moat_cidr_valid(*cluster, &is_v6) && is_v6 == v6 &&
            json_array_append_new(except, json_string(*cluster)) < 0) {
            json_decref(except);
            return NULL;
        }
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
    json_t *to_dns =
        json_pack("{s:[{s:{s:{s:s}}, s:{s:o}}], s:[{s:s, s:i}, {s:s, s:i}]}", "to",
                  "namespaceSelector", "matchLabels", NAMESPACE_NAME_LABEL, cfg->dns_namespace,
                  "podSelector", "matchLabels", labels, "ports", "protocol", "UDP", "port",
                  MOAT_EGRESS_DNS_PORT, "protocol", "TCP", "port", MOAT_EGRESS_DNS_PORT);
    json_t *to_public =
        json_pack("{s:[o, o]}", "to",
                  ip_block("0.0.0.0/0", moat_egress_blocked_ipv4, moat_egress_blocked_ipv4_count,
                           cfg->cluster_cidrs, false),
                  ip_block("::/0", moat_egress_blocked_ipv6, moat_egress_blocked_ipv6_count,
                           cfg->cluster_cidrs, true));
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
