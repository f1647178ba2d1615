// SPDX-License-Identifier: Apache-2.0
/* rtnetlink through libmnl (links, addresses, routes) and the request/reply loop wg.c shares.
 * Each rtnl_* call opens its own socket: they are rare (set-up), and the API keeps no state. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "conclave/rtnl.h"

/* Requests here are a header and a few short attributes. */
#define REQ_BUF 512

/* --- the request/reply loop ------------------------------------------------------------------ */

struct nl_ctx {
	uint32_t seq, portid;
	nl_reply_cb cb;
	void *data;
	bool stop_on_data; /* neither an ACK nor a dump was asked for: one reply ends it */
	bool interrupted;  /* NLM_F_DUMP_INTR: the dump is not a consistent snapshot */
	int err;	   /* the kernel's (or a malformed reply's) -errno */
	int cb_err;	   /* the first failure of cb; cb said why */
	char ext[256];	   /* the kernel's extended-ACK message */
};

static uint32_t next_seq(void)
{
	static uint32_t seq;

	/* Zero means "no sequence number" to netlink users: never use it. */
	uint32_t s = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);

	return s ? s : __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
}

static int ext_attr_cb(const struct nlattr *a, void *data)
{
	struct nl_ctx *c = data;

	if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
	    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
		snprintf(c->ext, sizeof(c->ext), "%s", mnl_attr_get_str(a));
	return MNL_CB_OK;
}

/* The extended-ACK TLVs follow struct nlmsgerr and, unless capped, the echoed request. */
static void read_ext_ack(struct nl_ctx *c, const struct nlmsghdr *nlh, const struct nlmsgerr *e)
{
	size_t off = sizeof(*e), plen = mnl_nlmsg_get_payload_len(nlh);

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) {
		if (e->msg.nlmsg_len < sizeof(struct nlmsghdr))
			return;
		off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
	}
	if (off > plen)
		return;
	mnl_attr_parse(nlh, (unsigned int)off, ext_attr_cb, c);
}

static void on_error(struct nl_ctx *c, const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*e)) {
		c->err = -EBADMSG;
		return;
	}
	if (e->error == 0)
		return; /* the ACK */
	c->err = e->error < 0 && e->error > -4096 ? e->error : -EPROTO;
	read_ext_ack(c, nlh, e);
}

/* NLMSG_DONE of a dump may carry the error that ended it, and extended-ACK TLVs. */
static void on_done(struct nl_ctx *c, const struct nlmsghdr *nlh)
{
	int32_t e;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(e))
		return;
	memcpy(&e, mnl_nlmsg_get_payload(nlh), sizeof(e));
	if (e < 0) {
		c->err = e > -4096 ? e : -EPROTO;
		if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) &&
		    mnl_nlmsg_get_payload_len(nlh) >= MNL_ALIGN(sizeof(e)))
			mnl_attr_parse(nlh, sizeof(e), ext_attr_cb, c);
	}
}

/* One datagram of replies: 1 to read more, 0 when the request is answered. Messages of other
 * requests (left over from an aborted one) are skipped. */
static int dispatch(struct nl_ctx *c, const void *buf, size_t n)
{
	const struct nlmsghdr *nlh = buf;
	int len = (int)n, r;

	for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
		if (nlh->nlmsg_seq != c->seq || (nlh->nlmsg_pid && nlh->nlmsg_pid != c->portid))
			continue;
		if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
			c->interrupted = true;
		switch (nlh->nlmsg_type) {
		case NLMSG_NOOP: continue;
		case NLMSG_ERROR: on_error(c, nlh); return 0;
		case NLMSG_DONE: on_done(c, nlh); return 0;
		case NLMSG_OVERRUN: c->err = -EOVERFLOW; return 0;
		default: break;
		}
		if (nlh->nlmsg_type < NLMSG_MIN_TYPE)
			continue;
		if (!c->cb_err && c->cb && (r = c->cb(nlh, c->data)) < 0)
			c->cb_err = r;
		if (c->stop_on_data)
			return 0;
	}
	if (len != 0) {
		c->err = -EBADMSG; /* a truncated message: the rest cannot be framed */
		return 0;
	}
	return 1;
}

int nl_open(int bus, struct mnl_socket **out, struct diag *d)
{
	struct mnl_socket *nl = mnl_socket_open2(bus, SOCK_CLOEXEC);
	int one = 1, ret;

	if (!nl) {
		ret = errno ? -errno : -EIO;
		diag_set(d, "netlink socket: %s", strerror(-ret));
		return ret;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = errno ? -errno : -EIO;
		mnl_socket_close(nl);
		diag_set(d, "netlink bind: %s", strerror(-ret));
		return ret;
	}
	/* Best effort (older kernels lack them): errors then echo requests and say less. */
	(void)mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one));
	(void)mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof(one));
	*out = nl;
	return 0;
}

int nl_talk(struct mnl_socket *nl, struct nlmsghdr *req, nl_reply_cb cb, void *data, void *buf,
	    size_t len, struct diag *d)
{
	struct nl_ctx c = { .cb = cb, .data = data, .portid = mnl_socket_get_portid(nl) };
	ssize_t n;
	int ret;

	c.seq = req->nlmsg_seq = next_seq();
	c.stop_on_data = !(req->nlmsg_flags & (NLM_F_ACK | NLM_F_DUMP));
	n = mnl_socket_sendto(nl, req, req->nlmsg_len);
	if (n < 0 || (size_t)n != req->nlmsg_len) {
		ret = n < 0 ? -errno : -EMSGSIZE;
		diag_set(d, "netlink send: %s", strerror(-ret));
		return ret;
	}
	for (;;) {
		n = mnl_socket_recvfrom(nl, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = errno ? -errno : -EIO;
			diag_set(d, "netlink receive: %s", strerror(-ret));
			return ret;
		}
		if (!dispatch(&c, buf, (size_t)n))
			break;
	}
	if (c.cb_err)
		return c.cb_err;
	if (c.err) {
		diag_set(d, "%s%s%s%s", strerror(-c.err), c.ext[0] ? " (kernel: " : "", c.ext,
			 c.ext[0] ? ")" : "");
		return c.err;
	}
	if (c.interrupted) {
		diag_set(d, "the dump was interrupted by a concurrent change");
		return -EAGAIN;
	}
	return 0;
}

/* One request on a fresh rtnetlink socket. */
static int rtnl_do(struct nlmsghdr *req, nl_reply_cb cb, void *data, struct diag *d)
{
	struct mnl_socket *nl = NULL;
	void *buf;
	int ret;

	ret = nl_open(NETLINK_ROUTE, &nl, d);
	if (ret < 0)
		return ret;
	buf = malloc(NL_RECV_BUF);
	if (!buf) {
		mnl_socket_close(nl);
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	ret = nl_talk(nl, req, cb, data, buf, NL_RECV_BUF, d);
	free(buf);
	mnl_socket_close(nl);
	return ret;
}

/* --- links ------------------------------------------------------------------------------------ */

struct link_info {
	bool found;
	int ifindex;
	int link; /* IFLA_LINK: a veth's peer index (in the peer's namespace), else 0 */
	unsigned int mtu;
	char kind[32]; /* "" when the link has no IFLA_INFO_KIND (physical, loopback) */
};

struct attrs {
	const struct nlattr **tb;
	uint16_t max;
};

/* Keep the attributes we read; unknown (newer) types are skipped. Types are checked later. */
static int keep_attr(const struct nlattr *a, void *data)
{
	struct attrs *t = data;
	uint16_t type = mnl_attr_get_type(a);

	if (type <= t->max)
		t->tb[type] = a;
	return MNL_CB_OK;
}

static int link_reply(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[IFLA_MAX + 1] = { 0 }, *info[IFLA_INFO_MAX + 1] = { 0 };
	struct attrs t = { tb, IFLA_MAX }, ti = { info, IFLA_INFO_MAX };
	struct link_info *li = data;
	const struct ifinfomsg *ifi;

	if (nlh->nlmsg_type != RTM_NEWLINK || li->found)
		return 0;
	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi) ||
	    mnl_attr_parse(nlh, sizeof(*ifi), keep_attr, &t) != MNL_CB_OK)
		return -EBADMSG;
	ifi = mnl_nlmsg_get_payload(nlh);
	if (ifi->ifi_index <= 0 ||
	    (tb[IFLA_MTU] && mnl_attr_validate(tb[IFLA_MTU], MNL_TYPE_U32)) ||
	    (tb[IFLA_LINK] && mnl_attr_validate(tb[IFLA_LINK], MNL_TYPE_U32)))
		return -EBADMSG;
	li->ifindex = ifi->ifi_index;
	li->link = tb[IFLA_LINK] ? (int)mnl_attr_get_u32(tb[IFLA_LINK]) : 0;
	li->mtu = tb[IFLA_MTU] ? mnl_attr_get_u32(tb[IFLA_MTU]) : 0;
	if (tb[IFLA_LINKINFO]) {
		if (mnl_attr_validate(tb[IFLA_LINKINFO], MNL_TYPE_NESTED) ||
		    mnl_attr_parse_nested(tb[IFLA_LINKINFO], keep_attr, &ti) != MNL_CB_OK)
			return -EBADMSG;
		if (info[IFLA_INFO_KIND]) {
			if (mnl_attr_validate(info[IFLA_INFO_KIND], MNL_TYPE_NUL_STRING))
				return -EBADMSG;
			snprintf(li->kind, sizeof(li->kind), "%s",
				 mnl_attr_get_str(info[IFLA_INFO_KIND]));
		}
	}
	li->found = true;
	return 0;
}

static int check_ifname(const char *ifname, struct diag *d)
{
	size_t n = ifname ? strnlen(ifname, IFNAMSIZ) : 0;

	if (n == 0 || n >= IFNAMSIZ) {
		diag_set(d, "interface name '%.32s' must have 1 to %d characters",
			 ifname ? ifname : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	return 0;
}

static struct nlmsghdr *link_msg(void *buf, uint16_t type, uint16_t flags, int ifindex)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifi;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	return nlh;
}

/* The link named ifname: -ENODEV if there is none. */
/* The link named ifname, or (ifname NULL) the link with index ifindex. */
static int link_query_any(const char *ifname, int ifindex, struct link_info *li, struct diag *d)
{
	uint32_t buf[REQ_BUF / 4] = { 0 }; /* libmnl leaves attribute padding as it finds it */
	struct nlmsghdr *nlh = link_msg(buf, RTM_GETLINK, 0, ifname ? 0 : ifindex);
	char what[32];
	int ret;

	*li = (struct link_info){ 0 };
	if (ifname)
		mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	ret = rtnl_do(nlh, link_reply, li, d);
	if (ret == 0 && !li->found) {
		diag_set(d, "no reply");
		ret = -EBADMSG;
	}
	if (ifname)
		snprintf(what, sizeof(what), "named %s", ifname);
	else
		snprintf(what, sizeof(what), "with index %d", ifindex);
	if (ret == -ENODEV)
		diag_set(d, "no link %s", what);
	else if (ret < 0)
		diag_prefix(d, "look up link %s", what);
	return ret;
}

static int link_query(const char *ifname, struct link_info *li, struct diag *d)
{
	return link_query_any(ifname, 0, li, d);
}

int rtnl_link_info(const char *ifname, int ifindex, struct rtnl_link *out, struct diag *d)
{
	struct link_info li;
	int ret = ifname ? check_ifname(ifname, d) : 0;

	if (ret == 0 && !ifname && ifindex <= 0) {
		diag_set(d, "no link named or indexed");
		ret = -EINVAL;
	}
	if (ret == 0)
		ret = link_query_any(ifname, ifindex, &li, d);
	if (ret < 0)
		return ret;
	*out = (struct rtnl_link){ .ifindex = li.ifindex, .peer_ifindex = li.link, .mtu = li.mtu };
	snprintf(out->kind, sizeof(out->kind), "%s", li.kind);
	return 0;
}

int rtnl_link_get(const char *ifname, int *ifindex, unsigned int *mtu, struct diag *d)
{
	struct link_info li;
	int ret = check_ifname(ifname, d);

	if (ret == 0)
		ret = link_query(ifname, &li, d);
	if (ret < 0)
		return ret;
	if (ifindex)
		*ifindex = li.ifindex;
	if (mtu)
		*mtu = li.mtu;
	return 0;
}

int rtnl_link_ensure(const char *ifname, const char *kind, int *ifindex, struct diag *d)
{
	uint32_t buf[REQ_BUF / 4] = { 0 }; /* libmnl leaves attribute padding as it finds it */
	struct nlmsghdr *nlh;
	struct nlattr *nest;
	struct link_info li;
	int ret;

	ret = check_ifname(ifname, d);
	if (ret < 0)
		return ret;
	if (!kind || !*kind || strlen(kind) >= sizeof(li.kind)) {
		diag_set(d, "link %s: no valid kind given", ifname);
		return -EINVAL;
	}
	nlh = link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	nest = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, kind);
	mnl_attr_nest_end(nlh, nest);
	ret = rtnl_do(nlh, NULL, NULL, d);
	if (ret == -EOPNOTSUPP) {
		diag_prefix(d, "create link %s: the kernel has no '%s' links (module missing?)",
			    ifname, kind);
		return ret;
	}
	if (ret < 0 && ret != -EEXIST) {
		diag_prefix(d, "create %s link %s", kind, ifname);
		return ret;
	}
	ret = link_query(ifname, &li, d);
	if (ret < 0)
		return ret;
	if (strcmp(li.kind, kind) != 0) {
		diag_set(d,
			 "a link named %s exists with kind '%s', not '%s': delete it or choose "
			 "another name",
			 ifname, li.kind[0] ? li.kind : "none", kind);
		return -EEXIST;
	}
	if (ifindex)
		*ifindex = li.ifindex;
	return 0;
}

int rtnl_link_delete(const char *ifname, struct diag *d)
{
	uint32_t buf[REQ_BUF / 4] = { 0 }; /* libmnl leaves attribute padding as it finds it */
	struct nlmsghdr *nlh;
	int ret = check_ifname(ifname, d);

	if (ret < 0)
		return ret;
	nlh = link_msg(buf, RTM_DELLINK, 0, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	ret = rtnl_do(nlh, NULL, NULL, d);
	if (ret == -ENODEV)
		diag_set(d, "delete link %s: there is no such link", ifname);
	else if (ret < 0)
		diag_prefix(d, "delete link %s", ifname);
	return ret;
}

int rtnl_link_up(int ifindex, unsigned int mtu, struct diag *d)
{
	uint32_t buf[REQ_BUF / 4] = { 0 }; /* libmnl leaves attribute padding as it finds it */
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;
	int ret;

	if (ifindex <= 0) {
		diag_set(d, "link up: bad interface index %d", ifindex);
		return -EINVAL;
	}
	nlh = link_msg(buf, RTM_NEWLINK, 0, ifindex);
	ifi = mnl_nlmsg_get_payload(nlh);
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	ret = rtnl_do(nlh, NULL, NULL, d);
	if (ret < 0)
		diag_prefix(d, "set link %d up with MTU %u", ifindex, mtu);
	return ret;
}

/* --- addresses and routes --------------------------------------------------------------------- */

struct cidr {
	int family;
	uint8_t addr[16];
	unsigned int prefix;
};

/* "ADDRESS/PREFIX", IPv4 dotted quad or IPv6; the prefix in decimal without sign, spaces or
 * leading zeros. strict: no bits set after the prefix (a network, not an address on one). */
static int parse_cidr(const char *s, bool strict, struct cidr *c, struct diag *d)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = s ? strchr(s, '/') : NULL, *p;
	unsigned int max, bit;
	size_t hl;

	*c = (struct cidr){ 0 };
	if (!slash || slash == s || (hl = (size_t)(slash - s)) >= sizeof(host)) {
		diag_set(d, "'%.64s' is not ADDRESS/PREFIX", s ? s : "");
		return -EINVAL;
	}
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (inet_pton(AF_INET, host, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		diag_set(d, "'%.64s': '%s' is not an IPv4 or IPv6 address", s, host);
		return -EINVAL;
	}
	p = slash + 1;
	if (!*p || strlen(p) > 3 || (p[0] == '0' && p[1])) {
		diag_set(d, "'%.64s': bad prefix length", s);
		return -EINVAL;
	}
	for (; *p; p++) {
		if (*p < '0' || *p > '9') {
			diag_set(d, "'%.64s': bad prefix length", s);
			return -EINVAL;
		}
		c->prefix = c->prefix * 10 + (unsigned int)(*p - '0');
	}
	if (c->prefix > max) {
		diag_set(d, "'%.64s': prefix length above %u", s, max);
		return -EINVAL;
	}
	for (bit = c->prefix; strict && bit < max; bit++) {
		if (c->addr[bit / 8] & (0x80u >> (bit % 8))) {
			diag_set(d, "'%.64s' has bits set after the prefix: not a network", s);
			return -EINVAL;
		}
	}
	return 0;
}

static size_t addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

int rtnl_addr_add(int ifindex, const char *cidr, struct diag *d)
{
	uint32_t buf[REQ_BUF / 4] = { 0 }; /* libmnl leaves attribute padding as it finds it */
	struct nlmsghdr *nlh;
	struct ifaddrmsg *ifa;
	struct cidr c;
	int ret;

	ret = parse_cidr(cidr, false, &c, d);
	if (ret < 0)
		return ret;
	if (ifindex <= 0) {
		diag_set(d, "add address %s: bad interface index %d", cidr, ifindex);
		return -EINVAL;
	}
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)c.family;
	ifa->ifa_prefixlen = (uint8_t)c.prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (uint32_t)ifindex;
	/* Mesh addresses are unique by assignment: no duplicate detection delaying their use. */
	if (c.family == AF_INET6)
		ifa->ifa_flags = IFA_F_NODAD;
	mnl_attr_put(nlh, IFA_LOCAL, addr_len(c.family), c.addr);
	mnl_attr_put(nlh, IFA_ADDRESS, addr_len(c.family), c.addr);
	ret = rtnl_do(nlh, NULL, NULL, d);
	if (ret == -EEXIST)
		return 0;
	if (ret < 0)
		diag_prefix(d, "add address %s to link %d", cidr, ifindex);
	return ret;
}

int rtnl_route_replace(int ifindex, const char *cidr, struct diag *d)
{
	uint32_t buf[REQ_BUF / 4] = { 0 }; /* libmnl leaves attribute padding as it finds it */
	struct nlmsghdr *nlh;
	struct rtmsg *rtm;
	struct cidr c;
	int ret;

	ret = parse_cidr(cidr, true, &c, d);
	if (ret < 0)
		return ret;
	if (ifindex <= 0) {
		diag_set(d, "route %s: bad interface index %d", cidr, ifindex);
		return -EINVAL;
	}
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)c.family;
	rtm->rtm_dst_len = (uint8_t)c.prefix;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_LINK;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(nlh, RTA_DST, addr_len(c.family), c.addr);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)ifindex);
	ret = rtnl_do(nlh, NULL, NULL, d);
	if (ret < 0)
		diag_prefix(d, "route %s via link %d", cidr, ifindex);
	return ret;
}
