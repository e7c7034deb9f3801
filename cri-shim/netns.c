#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/if_link.h>
#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cri-shim/wall.h"
#include "libmoat/strv.h"
#include "libmoat/macro.h"

#define MAX_PEERS 8
#define BUF_SIZE  (32 * 1024)

static int nl_send(int sock, struct nlmsghdr *h, moat_error *err)
{
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(sock, h, h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return moat_error_set_errno(err, errno, "netlink: send");
    return 0;
}

/* The attribute of type t in [rta, rta+len), or NULL. */
static struct rtattr *find_attr(struct rtattr *rta, int len, unsigned short t)
{
    for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len))
        if ((rta->rta_type & NLA_TYPE_MASK) == t)
            return rta;
    return NULL;
}

/* The id this namespace gives the one open as fd; -1 when it has none (no link crosses). */
static int netns_id(int sock, int fd, int32_t *ret, moat_error *err)
{
    /* header, struct rtgenmsg padded to NLMSG_ALIGNTO, then the attribute */
    union {
        struct nlmsghdr h;
        char bytes[NLMSG_SPACE(sizeof(struct rtgenmsg)) + RTA_SPACE(sizeof(uint32_t))];
    } req;
    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = NLMSG_SPACE(sizeof(struct rtgenmsg)) + RTA_LENGTH(sizeof(uint32_t));
    req.h.nlmsg_type = RTM_GETNSID;
    req.h.nlmsg_flags = NLM_F_REQUEST;
    req.h.nlmsg_seq = 1;
    ((struct rtgenmsg *)NLMSG_DATA(&req.h))->rtgen_family = AF_UNSPEC;
    struct rtattr *a = (struct rtattr *)(req.bytes + NLMSG_SPACE(sizeof(struct rtgenmsg)));
    a->rta_type = NETNSA_FD;
    a->rta_len = RTA_LENGTH(sizeof(uint32_t));
    uint32_t fd32 = (uint32_t)fd;
    memcpy(RTA_DATA(a), &fd32, sizeof(fd32));
    if (nl_send(sock, &req.h, err) < 0)
        return -1;
    _cleanup_free_ char *buf = malloc(BUF_SIZE);
    if (!buf)
        return moat_error_set(err, MOAT_E_NOMEM, "netlink: out of memory");
    ssize_t n = recv(sock, buf, BUF_SIZE, 0);
    if (n < 0)
        return moat_error_set_errno(err, errno, "netlink: RTM_GETNSID");
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (!NLMSG_OK(h, (size_t)n))
        return moat_error_set(err, MOAT_E_IO, "netlink: RTM_GETNSID: a short answer");
    if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        return moat_error_set(err, e->error == -EINVAL ? MOAT_E_INVALID : MOAT_E_IO,
                              "netlink: RTM_GETNSID: %s", strerror(-e->error));
    }
    if (h->nlmsg_type != RTM_NEWNSID)
        return moat_error_set(err, MOAT_E_IO, "netlink: RTM_GETNSID: answer of type %u",
                              h->nlmsg_type);
    struct rtattr *id =
        find_attr((struct rtattr *)((char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct rtgenmsg))),
                  (int)h->nlmsg_len - NLMSG_LENGTH(sizeof(struct rtgenmsg)), NETNSA_NSID);
    if (!id || RTA_PAYLOAD(id) < sizeof(int32_t))
        return moat_error_set(err, MOAT_E_IO, "netlink: RTM_GETNSID: no id in the answer");
    memcpy(ret, RTA_DATA(id), sizeof(int32_t));
    return 0;
}

/* Whether the link message describes a veth whose peer is in namespace nsid; its name. */
static bool veth_into(struct nlmsghdr *h, int32_t nsid, char name[IF_NAMESIZE])
{
    struct ifinfomsg *ifi = NLMSG_DATA(h);
    int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi));
    struct rtattr *attrs = IFLA_RTA(ifi);
    struct rtattr *ns = find_attr(attrs, len, IFLA_LINK_NETNSID);
    struct rtattr *ifname = find_attr(attrs, len, IFLA_IFNAME);
    struct rtattr *info = find_attr(attrs, len, IFLA_LINKINFO);
    if (!ns || !ifname || !info || RTA_PAYLOAD(ns) < sizeof(int32_t))
        return false;
    int32_t id;
    memcpy(&id, RTA_DATA(ns), sizeof(id));
    struct rtattr *kind = find_attr(RTA_DATA(info), (int)RTA_PAYLOAD(info), IFLA_INFO_KIND);
    if (id != nsid || !kind || strncmp(RTA_DATA(kind), "veth", RTA_PAYLOAD(kind)) != 0 ||
        RTA_PAYLOAD(kind) < 4)
        return false;
    size_t n = strnlen(RTA_DATA(ifname), RTA_PAYLOAD(ifname));
    if (n == 0 || n >= IF_NAMESIZE)
        return false;
    memcpy(name, RTA_DATA(ifname), n);
    name[n] = '\0';
    return true;
}

static int host_peers(int sock, int32_t nsid, char **v, size_t *ret_n, moat_error *err)
{
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } req = {0};
    req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    req.h.nlmsg_type = RTM_GETLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = 2;
    req.i.ifi_family = AF_UNSPEC;
    if (nl_send(sock, &req.h, err) < 0)
        return -1;
    _cleanup_free_ char *buf = malloc(BUF_SIZE);
    if (!buf)
        return moat_error_set(err, MOAT_E_NOMEM, "netlink: out of memory");
    size_t n = 0;
    for (;;) {
        ssize_t got = recv(sock, buf, BUF_SIZE, 0);
        if (got < 0)
            return moat_error_set_errno(err, errno, "netlink: RTM_GETLINK");
        size_t left = (size_t)got;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                *ret_n = n;
                return 0;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                return moat_error_set(err, MOAT_E_IO, "netlink: RTM_GETLINK: %s",
                                      strerror(-e->error));
            }
            char name[IF_NAMESIZE];
            if (h->nlmsg_type != RTM_NEWLINK || !veth_into(h, nsid, name))
                continue;
            if (n == MAX_PEERS)
                return moat_error_set(err, MOAT_E_RANGE,
                                      "more than %d veths lead into the namespace", MAX_PEERS);
            if (!(v[n++] = strdup(name)))
                return moat_error_set(err, MOAT_E_NOMEM, "netlink: out of memory");
        }
    }
}

int iso_netns_host_peers(const char *netns_path, char ***ret, moat_error *err)
{
    if (!netns_path || netns_path[0] != '/')
        return moat_error_set(err, MOAT_E_INVALID, "network namespace \"%s\" is not a path",
                              netns_path ? netns_path : "");
    _cleanup_close_ int fd = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return moat_error_set(err, errno == ENOENT ? MOAT_E_NOTFOUND : MOAT_E_IO,
                              "network namespace %s: %s", netns_path, strerror(errno));
    _cleanup_close_ int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (sock < 0)
        return moat_error_set_errno(err, errno, "netlink: socket");
    struct timeval tv = {.tv_sec = 5};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int32_t nsid = -1;
    if (netns_id(sock, fd, &nsid, err) < 0)
        return moat_error_prefix(err, "network namespace %s", netns_path);
    if (nsid < 0)
        return moat_error_set(err, MOAT_E_NOTFOUND,
                              "network namespace %s: no interface of the node leads into it",
                              netns_path);
    char **v = calloc(MAX_PEERS + 1, sizeof(char *));
    size_t n = 0;
    if (!v)
        return moat_error_set(err, MOAT_E_NOMEM, "netlink: out of memory");
    if (host_peers(sock, nsid, v, &n, err) < 0) {
        moat_strv_free(v);
        return moat_error_prefix(err, "network namespace %s", netns_path);
    }
    if (n == 0) {
        moat_strv_free(v);
        return moat_error_set(err, MOAT_E_NOTFOUND,
                              "network namespace %s: no veth of the node leads into it",
                              netns_path);
    }
    *ret = v;
    return 0;
}

int iso_netns_node_addresses(char ***ret, moat_error *err)
{
    struct ifaddrs *all = NULL;
    if (getifaddrs(&all) < 0)
        return moat_error_set_errno(err, errno, "the node's addresses");
    size_t n = 0;
    for (struct ifaddrs *a = all; a; a = a->ifa_next)
        n++;
    char **v = calloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (struct ifaddrs *a = all; v && a; a = a->ifa_next) {
        char text[INET6_ADDRSTRLEN];
        if (!a->ifa_addr)
            continue;
        if (a->ifa_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, text, sizeof(text));
        else if (a->ifa_addr->sa_family == AF_INET6) {
            const struct in6_addr *in6 = &((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr;
            if (IN6_IS_ADDR_LINKLOCAL(in6))
                continue;
            inet_ntop(AF_INET6, in6, text, sizeof(text));
        } else
            continue;
        if (!(v[k++] = strdup(text))) {
            moat_strv_free(v);
            v = NULL;
        }
    }
    freeifaddrs(all);
    if (!v)
        return moat_error_set(err, MOAT_E_NOMEM, "the node's addresses: out of memory");
    *ret = v;
    return 0;
}
