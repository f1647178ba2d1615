/* SPDX-License-Identifier: Apache-2.0 */
/* rtnetlink through libmnl: the few link, address and route operations the agent needs, and the
 * request/reply plumbing wg.c shares (docs/mesh.md). */
#ifndef CONCLAVE_RTNL_H
#define CONCLAVE_RTNL_H

#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

/* Create a link of kind ("wireguard") named ifname unless it exists (an existing link of
 * another kind is -EEXIST); *ifindex gets its index. A kernel without the kind: -EOPNOTSUPP. */
int rtnl_link_ensure(const char *ifname, const char *kind, int *ifindex, struct diag *d);

/* Delete a link; -ENODEV if there is none. */
int rtnl_link_delete(const char *ifname, struct diag *d);

/* Set MTU (0: leave it) and bring the link up. */
int rtnl_link_up(int ifindex, unsigned int mtu, struct diag *d);

/* The MTU and index of a link (either pointer may be NULL); -ENODEV if there is none. */
int rtnl_link_get(const char *ifname, int *ifindex, unsigned int *mtu, struct diag *d);

struct rtnl_link {
	int ifindex;
	int peer_ifindex; /* IFLA_LINK: a veth's peer, as an index of the peer's namespace; 0 none
			   */
	unsigned int mtu;
	char kind[32]; /* IFLA_INFO_KIND ("veth", "bridge"); "" for links without one */
};

/* A link by name, or (ifname NULL) by index, in the caller's network namespace; -ENODEV. */
int rtnl_link_info(const char *ifname, int ifindex, struct rtnl_link *out, struct diag *d);

/* Add an address ("10.100.0.1/16", "fd00:100::1/64") to a link; an existing one is fine. */
int rtnl_addr_add(int ifindex, const char *cidr, struct diag *d);

/* Add (or replace) a route to cidr (no host bits set) through a link (no gateway): main table,
 * protocol static, scope link. */
int rtnl_route_replace(int ifindex, const char *cidr, struct diag *d);

/* --- netlink plumbing shared with wg.c ------------------------------------------------------ */
struct mnl_socket;
struct nlmsghdr;

/* Receive buffer size: the kernel sizes dump messages to the reader's buffer, up to 32 KiB. */
#define NL_RECV_BUF 32768

/* A reply handler: 0 to go on, -errno to fail the request (the rest of the reply is drained). */
typedef int (*nl_reply_cb)(const struct nlmsghdr *nlh, void *data);

/* A bound netlink socket of bus (NETLINK_ROUTE, NETLINK_GENERIC) with extended ACKs on and
 * error replies capped (they never echo a request, which may hold a key). */
int nl_open(int bus, struct mnl_socket **out, struct diag *d);

/* Send req (its sequence number is set here) and read replies into buf (len bytes, at least
 * NL_RECV_BUF) until the ACK or NLMSG_DONE, passing data messages to cb (may be NULL). The
 * kernel's error as -errno with its extended-ACK message in d; -EAGAIN if a dump was
 * interrupted by a concurrent change (retry it). */
int nl_talk(struct mnl_socket *nl, struct nlmsghdr *req, nl_reply_cb cb, void *data, void *buf,
	    size_t len, struct diag *d);

#endif
