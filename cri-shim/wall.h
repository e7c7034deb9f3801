/* The egress wall: nftables rules on the node that keep a sandbox with egress Internet off
 * private and local addresses (libmoat/egress.h), and one with egress None off everything,
 * from the moment its pod has an address, before any of its containers starts. moat-cri
 * raises it (cri-shim/intercept.c).
 *
 * Why a wall of Moat's own: the operator's NetworkPolicy says the same, but Kubernetes has
 * no signal of when a network plugin enforces a policy for a new pod, and some plugins
 * (kube-router 2.1, measured here) program a pod only after they have seen its address:
 * the first instants of a pod were open. The wall is raised between the pod's network
 * setup (RunPodSandbox) and its first container, so there is no such instant. The
 * NetworkPolicy stays: it also denies ingress, and it holds where the wall cannot.
 *
 * Kernel state, an inet and a netdev table of one name (ISO_WALL_TABLE unless configured),
 * every change one nft transaction:
 *   set blocked4, blocked6    the ranges of libmoat/egress.h (interval, auto-merge)
 *   set walled4, walled6      the walled pods' addresses; each element's comment is the
 *                             pod sandbox's id
 *   set dns4, dns6            pod address . DNS server . protocol . 53: the DNS servers
 *                             kubelet gave the pod (by their address before DNAT, so a
 *                             cluster DNS Service's address works); comment as above
 *   chains forward, input     hooks forward and input, priority filter - 10: a packet
 *                             from a walled address to a blocked one is rejected
 *                             (administratively prohibited) unless its pod may reach that
 *                             DNS server
 *   netdev chain "<mode>/<interface>/<sandbox id>", one per host-side interface of a
 *                             walled pod (the node's end of its veth), hook ingress
 *                             priority -500, policy drop: under None nothing from the pod
 *                             passes; under Internet only packets whose source is one of
 *                             the pod's addresses (ARP too; IPv6 neighbour discovery from
 *                             link-local or ::), so the inet rules above, which go by
 *                             source address, cannot be dodged with an added or spoofed
 *                             one. Keyed on the interface, not an address: with
 *                             br_netfilter the inet hooks see the bridge, not the veth.
 * The kernel keeps the table across moat-cri restarts (running pods stay walled);
 * iso_wall_open reads the walled elements back. iso_wall_delete removes it (uninstall).
 *
 * Limit: the wall holds where pod traffic enters the node through a veth and crosses the
 * node's netfilter hooks: bridge CNIs (with br_netfilter, as kube-proxy needs anyway) and
 * routed ones. A datapath that bypasses netfilter (eBPF host routing) bypasses the inet
 * rules; the NetworkPolicy is then the only one besides the interface chains.
 *
 * Not thread-safe: one caller at a time (moat-cri holds its lock). */
#ifndef MOAT_ISO_WALL_H
#define MOAT_ISO_WALL_H

#include <stdbool.h>
#include <stddef.h>

#include "libmoat/error.h"

#define ISO_WALL_TABLE     "moat"
#define ISO_WALL_MAX_TABLE 64

/* A table name the wall accepts: 1 to ISO_WALL_MAX_TABLE letters, digits or '_'. */
bool iso_wall_table_valid(const char *table);

/* nftables, behind a backend the tests replace. run() executes commands in nft's own
 * syntax (a transaction: all or nothing); with ret_json non-NULL it asks for JSON output
 * and hands it over (caller frees). Errors carry nft's message. */
typedef struct {
    int (*run)(void *user, const char *commands, char **ret_json, moat_error *err);
    void *user;
} iso_nft;

/* The real backend: libnftables. Caller closes. */
int iso_nft_open(iso_nft *out, moat_error *err);
void iso_nft_close(iso_nft *n);

typedef struct iso_wall iso_wall;

/* Creates the table, or takes over the one there: the blocked ranges and the rules are
 * written again, the walled elements are kept and read back. table is a name of letters,
 * digits and '_' (iso_wall_table_valid). extra: more blocked destinations besides
 * libmoat/egress.h's, CIDRs or addresses of either family (the cluster's pod and service
 * ranges, the node's own addresses); an entry that is neither is MOAT_E_INVALID. nft is
 * borrowed and must outlive the wall; extra is copied. */
int iso_wall_open(iso_wall **out, const iso_nft *nft, const char *table, const char *const *extra,
                  size_t n_extra, moat_error *err);

/* Puts the wall back as it should be, in one transaction: the table, its sets (the blocked
 * ranges with extra, which replaces the earlier extra), its rules and every walled element
 * the wall knows (someone may have flushed the ruleset, deleted the table or an element).
 * *ret_restored (may be NULL) tells whether the kernel's table differed from what the wall
 * knows before that (missing, or elements or rules gone). */
int iso_wall_reassert(iso_wall *w, const char *const *extra, size_t n_extra, bool *ret_restored,
                      moat_error *err);

typedef enum { ISO_WALL_INTERNET, ISO_WALL_NONE } iso_wall_mode;

/* A pod sandbox to wall: its IPv4/IPv6 addresses (1 to 8), the DNS servers it may reach on
 * port 53, UDP and TCP (0 to 8; ignored under None), and the node's ends of its interfaces
 * (1 to 8 names of [A-Za-z0-9_.-], iso_netns.h finds them). Borrowed. */
typedef struct {
    const char *id;
    iso_wall_mode mode;
    const char *const *addrs;
    size_t n_addrs;
    const char *const *dns;
    size_t n_dns;
    const char *const *devices;
    size_t n_devices;
} iso_wall_pod;

/* Walls a pod sandbox, in one transaction. Walling it again with the same facts does
 * nothing; other facts replace the old ones. An address walled for another sandbox moves
 * to this one (addresses are unique among a node's live pods: the other one is gone). Bad
 * addresses, ids or interface names are MOAT_E_INVALID and change nothing. */
int iso_wall_add(iso_wall *w, const iso_wall_pod *pod, moat_error *err);

/* Calls fn for each walled sandbox with its mode (a sandbox walled by a moat-cri before
 * interface chains has none, and counts as Internet). */
void iso_wall_foreach(const iso_wall *w, void (*fn)(void *user, const char *id, iso_wall_mode mode),
                      void *user);

/* Whether the sandbox is walled. */
bool iso_wall_has(const iso_wall *w, const char *sandbox_id);

/* Takes the sandbox's elements out (its pod stopped: its addresses go back to the node's
 * pool). Not walled: nothing to do, 0. */
int iso_wall_remove(iso_wall *w, const char *sandbox_id, moat_error *err);

/* An address now belongs to sandbox_id, which is not walled: an element a missed stop
 * left behind for another sandbox is taken out, so the new pod is not walled by mistake.
 * No such element: 0. */
int iso_wall_release(iso_wall *w, const char *addr, const char *sandbox_id, moat_error *err);

/* Walled sandboxes now. */
size_t iso_wall_count(const iso_wall *w);

/* Frees the object; the kernel's table stays. Accepts NULL. */
void iso_wall_free(iso_wall *w);

/* Deletes the tables (inet and netdev) with everything in them; no such table is 0. */
int iso_wall_delete(const iso_nft *nft, const char *table, moat_error *err);

#endif
