// SPDX-License-Identifier: Apache-2.0
/* WireGuard over generic netlink (linux/wireguard.h) with libmnl, and X25519 keys with OpenSSL.
 * docs/mesh.md describes the messages, how peer sets are split and how dumps are coalesced. */
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/time_types.h>
#include <linux/wireguard.h>
#include <openssl/evp.h>

#include "conclave/rtnl.h"
#include "conclave/wg.h"

/* The kernel's MAX_PEERS_PER_DEVICE: a dump claiming more is not from WireGuard. */
#define WG_MAX_PEERS (1u << 20)
/* SET_DEVICE without peers and GETFAMILY: a header, a name, a key, a port. */
#define SMALL_REQ 512
/* A dump changed under us this many times in a row: give up (-EAGAIN). */
#define DUMP_ATTEMPTS 5

struct wg {
	struct mnl_socket *nl;
	uint16_t family;
	struct secret *rbuf; /* receive buffer: a device dump carries its private key */
};

/* --- keys ------------------------------------------------------------------------------------- */

int wg_public_key(const struct secret *private_key, uint8_t pubkey[WG_KEY_LEN], struct diag *d)
{
	size_t len = WG_KEY_LEN;
	EVP_PKEY *k;

	if (!private_key || private_key->len != WG_KEY_LEN) {
		diag_set(d, "WireGuard private key: need %d bytes", WG_KEY_LEN);
		return -EINVAL;
	}
	k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, private_key->data, WG_KEY_LEN);
	if (!k || EVP_PKEY_get_raw_public_key(k, pubkey, &len) != 1 || len != WG_KEY_LEN) {
		EVP_PKEY_free(k);
		diag_set(d, "X25519 public key: OpenSSL failed");
		return -EIO;
	}
	EVP_PKEY_free(k); /* OpenSSL wipes its copy of the private key */
	return 0;
}

int wg_generate_key(struct secret **private_key, uint8_t pubkey[WG_KEY_LEN], struct diag *d)
{
	struct secret *s = secret_new(WG_KEY_LEN);
	size_t len = WG_KEY_LEN;
	EVP_PKEY_CTX *ctx;
	EVP_PKEY *k = NULL;
	int ret = 0;

	if (!s) {
		diag_set(d, "WireGuard private key: locked memory: %s", strerror(errno));
		return -ENOMEM;
	}
	ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &k) != 1 ||
	    EVP_PKEY_get_raw_private_key(k, s->data, &len) != 1 || len != WG_KEY_LEN) {
		diag_set(d, "X25519 key generation: OpenSSL failed");
		ret = -EIO;
	}
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(ctx);
	if (ret == 0) {
		/* Stored clamped, as `wg genkey` writes it and as the kernel reports it back;
		 * X25519 clamps anyway, so the public key is the same either way. */
		s->data[0] &= 248;
		s->data[31] &= 127;
		s->data[31] |= 64;
		ret = wg_public_key(s, pubkey, d);
	}
	if (ret < 0) {
		secret_free(s);
		return ret;
	}
	*private_key = s;
	return 0;
}

/* --- the socket and the family ---------------------------------------------------------------- */

static struct nlmsghdr *genl_msg(void *buf, uint16_t family, uint16_t flags, uint8_t cmd,
				 uint8_t version)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct genlmsghdr *g;

	nlh->nlmsg_type = family;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

static int family_attr(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID) {
		if (mnl_attr_validate(a, MNL_TYPE_U16) < 0)
			return MNL_CB_ERROR;
		*(uint16_t *)data = mnl_attr_get_u16(a);
	}
	return MNL_CB_OK;
}

static int family_reply(const struct nlmsghdr *nlh, void *data)
{
	if (mnl_nlmsg_get_payload_len(nlh) < GENL_HDRLEN ||
	    mnl_attr_parse(nlh, GENL_HDRLEN, family_attr, data) != MNL_CB_OK)
		return -EBADMSG;
	return 0;
}

int wg_open(struct wg **out, struct diag *d)
{
	uint32_t buf[SMALL_REQ / 4] = { 0 }; /* libmnl leaves attribute padding as it finds it */
	struct nlmsghdr *nlh;
	struct wg *w;
	int ret;

	w = calloc(1, sizeof(*w));
	if (!w || !(w->rbuf = secret_new(NL_RECV_BUF))) {
		ret = -ENOMEM;
		diag_set(d, "WireGuard: out of (locked) memory");
		goto fail;
	}
	ret = nl_open(NETLINK_GENERIC, &w->nl, d);
	if (ret < 0)
		goto fail;
	nlh = genl_msg(buf, GENL_ID_CTRL, NLM_F_ACK, CTRL_CMD_GETFAMILY, 1);
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
	ret = nl_talk(w->nl, nlh, family_reply, &w->family, w->rbuf->data, w->rbuf->len, d);
	if (ret == -ENOENT) {
		diag_set(d,
			 "this kernel has no WireGuard: generic netlink family \"%s\" not found "
			 "(CONFIG_WIREGUARD off or module wireguard not loaded)",
			 WG_GENL_NAME);
		ret = -EPROTONOSUPPORT;
		goto fail;
	}
	if (ret == 0 && w->family == 0) {
		diag_set(d, "no family id in the reply");
		ret = -EBADMSG;
	}
	if (ret < 0) {
		diag_prefix(d, "resolve generic netlink family \"%s\"", WG_GENL_NAME);
		goto fail;
	}
	*out = w;
	return 0;
fail:
	wg_close(w);
	return ret;
}

void wg_close(struct wg *w)
{
	if (!w)
		return;
	if (w->nl)
		mnl_socket_close(w->nl);
	secret_free(w->rbuf);
	free(w);
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

/* The kernel's answer for a name that is not a WireGuard device, said plainly. */
static void explain_lookup(int ret, const char *ifname, struct diag *d)
{
	if (ret == -ENODEV)
		diag_set(d, "there is no link named %s", ifname);
	else if (ret == -EOPNOTSUPP)
		diag_set(d, "link %s is not a WireGuard device", ifname);
}

static int talk(struct wg *w, struct nlmsghdr *nlh, nl_reply_cb cb, void *data, struct diag *d)
{
	return nl_talk(w->nl, nlh, cb, data, w->rbuf->data, w->rbuf->len, d);
}

/* --- SET_DEVICE ------------------------------------------------------------------------------- */

int wg_set_device(struct wg *w, const char *ifname, const struct secret *private_key,
		  uint16_t listen_port, struct diag *d)
{
	struct secret *msg;
	struct nlmsghdr *nlh;
	int ret = check_ifname(ifname, d);

	if (ret < 0)
		return ret;
	if (private_key && private_key->len != WG_KEY_LEN) {
		diag_set(d, "WireGuard device %s: the private key must have %d bytes", ifname,
			 WG_KEY_LEN);
		return -EINVAL;
	}
	/* The message holds the key: build it in locked memory, wiped when freed. */
	msg = secret_new(SMALL_REQ);
	if (!msg) {
		ret = errno ? -errno : -ENOMEM;
		diag_set(d, "WireGuard device %s: locked memory: %s", ifname, strerror(-ret));
		return ret;
	}
	nlh = genl_msg(msg->data, w->family, NLM_F_ACK, WG_CMD_SET_DEVICE, WG_GENL_VERSION);
	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, ifname);
	if (private_key)
		mnl_attr_put(nlh, WGDEVICE_A_PRIVATE_KEY, WG_KEY_LEN, private_key->data);
	mnl_attr_put_u16(nlh, WGDEVICE_A_LISTEN_PORT, listen_port);
	ret = talk(w, nlh, NULL, NULL, d);
	secret_free(msg);
	if (ret < 0) {
		explain_lookup(ret, ifname, d);
		diag_prefix(d, "set WireGuard device %s", ifname);
	}
	return ret;
}

static int check_allowed(const struct wg_allowed_ip *a, size_t peer, struct diag *d)
{
	unsigned int max = a->family == AF_INET ? 32 : 128, bit;

	if (a->family != AF_INET && a->family != AF_INET6) {
		diag_set(d, "peer %zu: allowed IP of address family %d", peer, a->family);
		return -EINVAL;
	}
	if (a->cidr > max) {
		diag_set(d, "peer %zu: allowed IP prefix /%u above /%u", peer, a->cidr, max);
		return -EINVAL;
	}
	/* The kernel would mask them silently: a set host bit is a caller's mistake. */
	for (bit = a->cidr; bit < max; bit++) {
		if (a->addr[bit / 8] & (0x80u >> (bit % 8))) {
			diag_set(d, "peer %zu: allowed IP with bits set after its /%u prefix", peer,
				 a->cidr);
			return -EINVAL;
		}
	}
	return 0;
}

static int check_peers(const struct wg_peer *up, size_t n_up, const uint8_t (*rm)[WG_KEY_LEN],
		       size_t n_rm, struct diag *d)
{
	int ret;

	if ((n_up && !up) || (n_rm && !rm)) {
		diag_set(d, "peer list missing");
		return -EINVAL;
	}
	for (size_t i = 0; i < n_up; i++) {
		int fam = up[i].endpoint.ss_family;

		if (fam != 0 && fam != AF_INET && fam != AF_INET6) {
			diag_set(d, "peer %zu: endpoint of address family %d", i, fam);
			return -EINVAL;
		}
		if (up[i].n_allowed > WG_MAX_ALLOWED) {
			diag_set(d, "peer %zu: %zu allowed IPs, at most %d", i, up[i].n_allowed,
				 WG_MAX_ALLOWED);
			return -EINVAL;
		}
		for (size_t j = 0; j < up[i].n_allowed; j++)
			if ((ret = check_allowed(&up[i].allowed[j], i, d)) < 0)
				return ret;
	}
	return 0;
}

struct builder {
	uint8_t *buf;
	size_t budget;
	uint16_t family;
	const char *ifname;
	struct nlmsghdr *nlh;
	struct nlattr *peers;
	size_t n_in_msg; /* peer entries in the open message */
	int (*emit)(struct nlmsghdr *nlh, void *arg);
	void *arg;
};

static int msg_start(struct builder *b)
{
	b->nlh = genl_msg(b->buf, b->family, NLM_F_ACK, WG_CMD_SET_DEVICE, WG_GENL_VERSION);
	b->n_in_msg = 0;
	if (!mnl_attr_put_strz_check(b->nlh, b->budget, WGDEVICE_A_IFNAME, b->ifname) ||
	    !(b->peers = mnl_attr_nest_start_check(b->nlh, b->budget, WGDEVICE_A_PEERS)))
		return -EMSGSIZE;
	return 0;
}

/* Send the open message and start the next. */
static int msg_next(struct builder *b)
{
	int ret;

	mnl_attr_nest_end(b->nlh, b->peers);
	ret = b->emit(b->nlh, b->arg);
	return ret < 0 ? ret : msg_start(b);
}

static bool put_allowed(struct builder *b, const struct wg_allowed_ip *a)
{
	struct nlattr *n = mnl_attr_nest_start_check(b->nlh, b->budget, 0);

	if (!n)
		return false;
	if (!mnl_attr_put_u16_check(b->nlh, b->budget, WGALLOWEDIP_A_FAMILY, (uint16_t)a->family) ||
	    !mnl_attr_put_check(b->nlh, b->budget, WGALLOWEDIP_A_IPADDR,
				a->family == AF_INET ? 4 : 16, a->addr) ||
	    !mnl_attr_put_u8_check(b->nlh, b->budget, WGALLOWEDIP_A_CIDR_MASK, a->cidr)) {
		mnl_attr_nest_cancel(b->nlh, n);
		return false;
	}
	mnl_attr_nest_end(b->nlh, n);
	return true;
}

/* One entry of peer p from its allowed IP `from` on: the number of allowed IPs placed, or
 * -EMSGSIZE with the message unchanged. Unless partial, all of them or nothing. */
static int put_peer(struct builder *b, const struct wg_peer *p, size_t from, bool partial)
{
	struct nlmsghdr *nlh = b->nlh;
	struct nlattr *peer, *ips;
	size_t i = from, cap = b->budget;

	peer = mnl_attr_nest_start_check(nlh, cap, 0);
	if (!peer)
		return -EMSGSIZE;
	if (!mnl_attr_put_check(nlh, cap, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, p->pubkey))
		goto full;
	/* A continuation only adds IPs: replacing again would drop the ones already sent. */
	if (from == 0 &&
	    (!mnl_attr_put_u32_check(nlh, cap, WGPEER_A_FLAGS, WGPEER_F_REPLACE_ALLOWEDIPS) ||
	     (p->endpoint.ss_family &&
	      !mnl_attr_put_check(nlh, cap, WGPEER_A_ENDPOINT,
				  p->endpoint.ss_family == AF_INET ? sizeof(struct sockaddr_in)
								   : sizeof(struct sockaddr_in6),
				  &p->endpoint)) ||
	     !mnl_attr_put_u16_check(nlh, cap, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
				     p->keepalive_s)))
		goto full;
	if (from < p->n_allowed) {
		ips = mnl_attr_nest_start_check(nlh, cap, WGPEER_A_ALLOWEDIPS);
		if (!ips)
			goto full;
		while (i < p->n_allowed && put_allowed(b, &p->allowed[i]))
			i++;
		if (i == from || (i < p->n_allowed && !partial))
			goto full;
		mnl_attr_nest_end(nlh, ips);
	}
	mnl_attr_nest_end(nlh, peer);
	b->n_in_msg++;
	return (int)(i - from);
full:
	mnl_attr_nest_cancel(nlh, peer);
	return -EMSGSIZE;
}

static int put_removal(struct builder *b, const uint8_t key[WG_KEY_LEN])
{
	struct nlattr *peer = mnl_attr_nest_start_check(b->nlh, b->budget, 0);

	if (!peer)
		return -EMSGSIZE;
	if (!mnl_attr_put_check(b->nlh, b->budget, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key) ||
	    !mnl_attr_put_u32_check(b->nlh, b->budget, WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME)) {
		mnl_attr_nest_cancel(b->nlh, peer);
		return -EMSGSIZE;
	}
	mnl_attr_nest_end(b->nlh, peer);
	b->n_in_msg++;
	return 0;
}

static int too_small(struct builder *b, struct diag *d)
{
	diag_set(d, "a %zu-byte message cannot hold one peer", b->budget);
	return -EMSGSIZE;
}

int wg_build_peer_msgs(uint16_t genl_family, const char *ifname, const struct wg_peer *upsert,
		       size_t n_upsert, const uint8_t (*remove)[WG_KEY_LEN], size_t n_remove,
		       size_t budget, int (*emit)(struct nlmsghdr *nlh, void *arg), void *arg,
		       struct diag *d)
{
	struct builder b = {
		.budget = budget, .family = genl_family, .ifname = ifname, .emit = emit, .arg = arg
	};
	int ret, r;

	if ((ret = check_ifname(ifname, d)) < 0 ||
	    (ret = check_peers(upsert, n_upsert, remove, n_remove, d)) < 0)
		return ret;
	if (n_upsert == 0 && n_remove == 0)
		return 0;
	if (budget < SMALL_REQ / 4) /* not even the message header and the name */
		return too_small(&b, d);
	if (budget > UINT32_MAX || !(b.buf = calloc(1, budget))) {
		diag_set(d, "no memory for a %zu-byte message", budget);
		return -ENOMEM;
	}
	/* From here on a message always has room for its header: msg_start cannot fail. */
	ret = msg_start(&b);
	if (ret < 0) {
		ret = too_small(&b, d);
		goto out;
	}
	for (size_t i = 0; i < n_remove; i++) {
		while (put_removal(&b, remove[i]) < 0) {
			if (b.n_in_msg == 0) {
				ret = too_small(&b, d);
				goto out;
			}
			if ((ret = msg_next(&b)) < 0)
				goto out;
		}
	}
	for (size_t i = 0; i < n_upsert; i++) {
		const struct wg_peer *p = &upsert[i];
		size_t from = 0;

		for (;;) {
			/* Whole peers where they fit; split one only when it fills a message. */
			r = put_peer(&b, p, from, b.n_in_msg == 0);
			if (r == -EMSGSIZE && b.n_in_msg == 0) {
				ret = too_small(&b, d);
				goto out;
			}
			if (r >= 0) {
				from += (size_t)r;
				if (from == p->n_allowed)
					break;
			}
			if ((ret = msg_next(&b)) < 0)
				goto out;
		}
	}
	ret = 0;
	if (b.n_in_msg) {
		mnl_attr_nest_end(b.nlh, b.peers);
		ret = emit(b.nlh, arg);
	}
out:
	free(b.buf);
	return ret;
}

struct send_ctx {
	struct wg *w;
	struct diag *d;
	size_t sent;
};

static int send_msg(struct nlmsghdr *nlh, void *arg)
{
	struct send_ctx *s = arg;
	int ret = talk(s->w, nlh, NULL, NULL, s->d);

	if (ret == 0)
		s->sent++;
	return ret;
}

int wg_set_peers(struct wg *w, const char *ifname, const struct wg_peer *upsert, size_t n_upsert,
		 const uint8_t (*remove)[WG_KEY_LEN], size_t n_remove, struct diag *d)
{
	struct send_ctx s = { .w = w, .d = d };
	int ret;

	ret = wg_build_peer_msgs(w->family, ifname, upsert, n_upsert, remove, n_remove,
				 WG_MSG_BUDGET, send_msg, &s, d);
	if (ret < 0) {
		explain_lookup(ret, ifname, d);
		diag_prefix(d, "set peers of WireGuard device %s (%zu messages applied)", ifname,
			    s.sent);
	}
	return ret;
}

/* --- GET_DEVICE ------------------------------------------------------------------------------- */

struct tb {
	const struct nlattr **a;
	uint16_t max;
};

static int bad(struct diag *d, const char *what)
{
	diag_set(d, "malformed WireGuard dump: %s", what);
	return -EBADMSG;
}

/* Call fn on each attribute of a payload: -EBADMSG unless they frame it exactly (libmnl's
 * iterators stop quietly at a truncated attribute), else fn's first -errno. */
static int walk(const void *payload, size_t len, int (*fn)(const struct nlattr *a, void *arg),
		void *arg, struct diag *d)
{
	const struct nlattr *a = payload;
	size_t left = len, step;
	int ret;

	while (left > 0) {
		if (left < sizeof(*a) || a->nla_len < sizeof(*a) || a->nla_len > left)
			return bad(d, "truncated attribute");
		ret = fn(a, arg);
		if (ret < 0)
			return ret;
		step = MNL_ALIGN(a->nla_len);
		left = step < left ? left - step : 0;
		a = (const struct nlattr *)((const char *)a + step);
	}
	return 0;
}

/* Collect attributes by type; unknown (newer) and padding (type 0) attributes are skipped. */
static int collect(const struct nlattr *a, void *data)
{
	struct tb *t = data;
	uint16_t type = mnl_attr_get_type(a);

	if (type != 0 && type <= t->max)
		t->a[type] = a;
	return 0;
}

/* The attributes nested in a, by type, into t (cleared first). */
static int nested(const struct nlattr *a, struct tb *t)
{
	for (unsigned int i = 0; i <= t->max; i++)
		t->a[i] = NULL;
	if (mnl_attr_validate(a, MNL_TYPE_NESTED) < 0)
		return -EBADMSG;
	return walk(mnl_attr_get_payload(a), mnl_attr_get_payload_len(a), collect, t, NULL);
}

static bool is_key(const struct nlattr *a)
{
	return mnl_attr_get_payload_len(a) == WG_KEY_LEN;
}

static bool is(const struct nlattr *a, enum mnl_attr_data_type type)
{
	return mnl_attr_validate(a, type) == 0;
}

struct peer_ctx {
	struct wg_device *dev;
	struct wg_peer *p;
	struct diag *d;
};

static int parse_allowed(const struct nlattr *n, void *arg)
{
	const struct nlattr *a[WGALLOWEDIP_A_MAX + 1];
	struct tb t = { a, WGALLOWEDIP_A_MAX };
	struct peer_ctx *c = arg;
	struct wg_allowed_ip ip = { 0 };
	struct wg_peer *p = c->p;
	size_t len;

	if (nested(n, &t) < 0)
		return bad(c->d, "allowed IP entry");
	if (!a[WGALLOWEDIP_A_FAMILY] || !is(a[WGALLOWEDIP_A_FAMILY], MNL_TYPE_U16) ||
	    !a[WGALLOWEDIP_A_IPADDR] || !a[WGALLOWEDIP_A_CIDR_MASK] ||
	    !is(a[WGALLOWEDIP_A_CIDR_MASK], MNL_TYPE_U8))
		return bad(c->d, "allowed IP without family, address or prefix");
	ip.family = mnl_attr_get_u16(a[WGALLOWEDIP_A_FAMILY]);
	ip.cidr = mnl_attr_get_u8(a[WGALLOWEDIP_A_CIDR_MASK]);
	len = mnl_attr_get_payload_len(a[WGALLOWEDIP_A_IPADDR]);
	if (!((ip.family == AF_INET && len == 4 && ip.cidr <= 32) ||
	      (ip.family == AF_INET6 && len == 16 && ip.cidr <= 128)))
		return bad(c->d, "allowed IP family, address length and prefix disagree");
	if (p->n_allowed == WG_MAX_ALLOWED) {
		p->allowed_truncated = true;
		return 0;
	}
	memcpy(ip.addr, mnl_attr_get_payload(a[WGALLOWEDIP_A_IPADDR]), len);
	p->allowed[p->n_allowed++] = ip;
	return 0;
}

static int parse_endpoint(const struct nlattr *a, struct wg_peer *p, struct diag *d)
{
	size_t len = mnl_attr_get_payload_len(a);
	sa_family_t fam;

	if (len < sizeof(fam))
		return bad(d, "endpoint");
	memcpy(&fam, mnl_attr_get_payload(a), sizeof(fam));
	if (!((fam == AF_INET && len == sizeof(struct sockaddr_in)) ||
	      (fam == AF_INET6 && len == sizeof(struct sockaddr_in6))))
		return bad(d, "endpoint is neither sockaddr_in nor sockaddr_in6");
	memset(&p->endpoint, 0, sizeof(p->endpoint));
	memcpy(&p->endpoint, mnl_attr_get_payload(a), len);
	return 0;
}

/* The peer entry's fields that are present; a continuation has only the key and IPs. */
static int parse_peer_fields(const struct nlattr **a, struct peer_ctx *c)
{
	struct wg_peer *p = c->p;
	struct __kernel_timespec ts;

	if (a[WGPEER_A_ENDPOINT] && parse_endpoint(a[WGPEER_A_ENDPOINT], p, c->d) < 0)
		return -EBADMSG;
	if (a[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL]) {
		if (!is(a[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL], MNL_TYPE_U16))
			return bad(c->d, "keepalive interval");
		p->keepalive_s = mnl_attr_get_u16(a[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL]);
	}
	if (a[WGPEER_A_LAST_HANDSHAKE_TIME]) {
		if (mnl_attr_get_payload_len(a[WGPEER_A_LAST_HANDSHAKE_TIME]) != sizeof(ts))
			return bad(c->d, "last handshake time");
		memcpy(&ts, mnl_attr_get_payload(a[WGPEER_A_LAST_HANDSHAKE_TIME]), sizeof(ts));
		if (ts.tv_sec < 0)
			return bad(c->d, "last handshake time before 1970");
		p->last_handshake_s = ts.tv_sec;
	}
	if (a[WGPEER_A_RX_BYTES]) {
		if (!is(a[WGPEER_A_RX_BYTES], MNL_TYPE_U64))
			return bad(c->d, "received bytes");
		p->rx_bytes = mnl_attr_get_u64(a[WGPEER_A_RX_BYTES]);
	}
	if (a[WGPEER_A_TX_BYTES]) {
		if (!is(a[WGPEER_A_TX_BYTES], MNL_TYPE_U64))
			return bad(c->d, "sent bytes");
		p->tx_bytes = mnl_attr_get_u64(a[WGPEER_A_TX_BYTES]);
	}
	if (!a[WGPEER_A_ALLOWEDIPS])
		return 0;
	if (!is(a[WGPEER_A_ALLOWEDIPS], MNL_TYPE_NESTED))
		return bad(c->d, "allowed IPs");
	return walk(mnl_attr_get_payload(a[WGPEER_A_ALLOWEDIPS]),
		    mnl_attr_get_payload_len(a[WGPEER_A_ALLOWEDIPS]), parse_allowed, c, c->d);
}

/* The peer entry for key: the last one if it has the same key (the kernel continued it from
 * the previous message), else a new one. */
static struct wg_peer *peer_for(struct wg_device *dev, const uint8_t *key, struct diag *d)
{
	struct wg_peer *p;
	size_t n, cap;

	if (dev->n_peers && !memcmp(dev->peers[dev->n_peers - 1].pubkey, key, WG_KEY_LEN))
		return &dev->peers[dev->n_peers - 1];
	if (dev->n_peers >= WG_MAX_PEERS) {
		diag_set(d, "WireGuard dump: more than %u peers", WG_MAX_PEERS);
		return NULL;
	}
	/* The capacity is implied by the count: 16, then doubled whenever the count reaches a
	 * power of two (dev starts zeroed and only this function adds peers). */
	n = dev->n_peers;
	if (n == 0 || (n >= 16 && (n & (n - 1)) == 0)) {
		cap = n ? 2 * n : 16;
		p = realloc(dev->peers, cap * sizeof(*p));
		if (!p) {
			diag_set(d, "out of memory for %zu peers", cap);
			return NULL;
		}
		dev->peers = p;
	}
	p = &dev->peers[dev->n_peers++];
	memset(p, 0, sizeof(*p));
	memcpy(p->pubkey, key, WG_KEY_LEN);
	return p;
}

static int parse_peer(const struct nlattr *n, void *arg)
{
	const struct nlattr *a[WGPEER_A_MAX + 1];
	struct tb t = { a, WGPEER_A_MAX };
	struct peer_ctx *c = arg;

	if (nested(n, &t) < 0)
		return bad(c->d, "peer entry");
	if (!a[WGPEER_A_PUBLIC_KEY] || !is_key(a[WGPEER_A_PUBLIC_KEY]))
		return bad(c->d, "peer without a 32-byte public key");
	if (a[WGPEER_A_PRESHARED_KEY] && !is_key(a[WGPEER_A_PRESHARED_KEY]))
		return bad(c->d, "preshared key");
	c->p = peer_for(c->dev, mnl_attr_get_payload(a[WGPEER_A_PUBLIC_KEY]), c->d);
	if (!c->p)
		return c->dev->n_peers >= WG_MAX_PEERS ? -EOVERFLOW : -ENOMEM;
	return parse_peer_fields(a, c);
}

int wg_parse_device_msg(const struct nlmsghdr *nlh, struct wg_device *dev, struct diag *d)
{
	const struct nlattr *a[WGDEVICE_A_MAX + 1] = { 0 };
	struct tb t = { a, WGDEVICE_A_MAX };
	struct peer_ctx c = { .dev = dev, .d = d };
	size_t len = mnl_nlmsg_get_payload_len(nlh);
	uint32_t ifindex;

	if (len < GENL_HDRLEN || walk(mnl_nlmsg_get_payload_offset(nlh, GENL_HDRLEN),
				      len - GENL_HDRLEN, collect, &t, NULL) < 0)
		return bad(d, "message framing");
	if (a[WGDEVICE_A_IFINDEX]) {
		if (!is(a[WGDEVICE_A_IFINDEX], MNL_TYPE_U32) ||
		    (ifindex = mnl_attr_get_u32(a[WGDEVICE_A_IFINDEX])) > INT_MAX)
			return bad(d, "interface index");
		dev->ifindex = (int)ifindex;
	}
	if (a[WGDEVICE_A_IFNAME]) {
		if (!is(a[WGDEVICE_A_IFNAME], MNL_TYPE_NUL_STRING) ||
		    mnl_attr_get_payload_len(a[WGDEVICE_A_IFNAME]) > sizeof(dev->ifname))
			return bad(d, "interface name");
		snprintf(dev->ifname, sizeof(dev->ifname), "%s",
			 mnl_attr_get_str(a[WGDEVICE_A_IFNAME]));
	}
	if (a[WGDEVICE_A_PRIVATE_KEY]) {
		if (!is_key(a[WGDEVICE_A_PRIVATE_KEY]))
			return bad(d, "private key");
		dev->has_private_key = true; /* its bytes stay in the (wiped) receive buffer */
	}
	if (a[WGDEVICE_A_PUBLIC_KEY]) {
		if (!is_key(a[WGDEVICE_A_PUBLIC_KEY]))
			return bad(d, "public key");
		memcpy(dev->pubkey, mnl_attr_get_payload(a[WGDEVICE_A_PUBLIC_KEY]), WG_KEY_LEN);
	}
	if (a[WGDEVICE_A_LISTEN_PORT]) {
		if (!is(a[WGDEVICE_A_LISTEN_PORT], MNL_TYPE_U16))
			return bad(d, "listen port");
		dev->listen_port = mnl_attr_get_u16(a[WGDEVICE_A_LISTEN_PORT]);
	}
	if (a[WGDEVICE_A_FWMARK] && !is(a[WGDEVICE_A_FWMARK], MNL_TYPE_U32))
		return bad(d, "firewall mark");
	if (!a[WGDEVICE_A_PEERS])
		return 0;
	if (!is(a[WGDEVICE_A_PEERS], MNL_TYPE_NESTED))
		return bad(d, "peer list");
	return walk(mnl_attr_get_payload(a[WGDEVICE_A_PEERS]),
		    mnl_attr_get_payload_len(a[WGDEVICE_A_PEERS]), parse_peer, &c, d);
}

struct dump_ctx {
	struct wg_device *dev;
	struct diag *d;
};

static int dump_reply(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *c = data;

	return wg_parse_device_msg(nlh, c->dev, c->d);
}

void wg_device_free(struct wg_device *dev)
{
	if (!dev)
		return;
	free(dev->peers);
	memset(dev, 0, sizeof(*dev));
}

int wg_get_device(struct wg *w, const char *ifname, struct wg_device *out, struct diag *d)
{
	struct dump_ctx c = { .dev = out, .d = d };
	uint32_t buf[SMALL_REQ / 4] = { 0 }; /* libmnl leaves attribute padding as it finds it */
	struct nlmsghdr *nlh;
	int ret = check_ifname(ifname, d);

	if (ret < 0)
		return ret;
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < DUMP_ATTEMPTS; i++) {
		nlh = genl_msg(buf, w->family, NLM_F_DUMP, WG_CMD_GET_DEVICE, WG_GENL_VERSION);
		mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, ifname);
		ret = talk(w, nlh, dump_reply, &c, d);
		if (ret != -EAGAIN)
			break;
		wg_device_free(out);
	}
	explicit_bzero(w->rbuf->data, w->rbuf->len);
	if (ret < 0) {
		wg_device_free(out);
		explain_lookup(ret, ifname, d);
		diag_prefix(d, "read WireGuard device %s", ifname);
	}
	return ret;
}
