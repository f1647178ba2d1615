// SPDX-License-Identifier: Apache-2.0
/* wg_selftest: the WireGuard and rtnetlink modules against a real kernel, as root inside a node
 * VM (the debug image carries it; tests/e2e/test_wg.sh boots it). Two devices on 127.0.0.1
 * shake hands; 1000 more peers go in split across messages and come back from a multi-part
 * dump; 500 are removed without touching the rest; a peer cut between its allowed IPs keeps all
 * of them. Prints TAP, then "# wg_selftest done". */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>

#include "conclave/rtnl.h"
#include "conclave/wg.h"

#define N_EXTRA	   1000
#define EXTRA_IPS  3
#define PORT0	   51000
#define PORT1	   51001
#define N_CHECKS   25
#define SPLIT_SIZE 300 /* bytes: a peer with 8 allowed IPs does not fit */

static int n_done, n_failed;

static void tap(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tap(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", ok ? "" : "not ", ++n_done);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (!ok)
		n_failed++;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* " (why)" after a failure, "" after a success: the tail of a TAP line. */
static const char *why(int ret, const struct diag *d)
{
	static char buf[sizeof(d->msg) + 4];

	if (ret >= 0)
		return "";
	snprintf(buf, sizeof(buf), " (%s)", d->msg);
	return buf;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Extra peer i: a key of its own, an endpoint (IPv4 or IPv6), EXTRA_IPS allowed IPs, a
 * keepalive on a few only (each keepalive starts handshakes, which cost under TCG). */
static void extra_peer(struct wg_peer *p, unsigned int i)
{
	memset(p, 0, sizeof(*p));
	memset(p->pubkey, 0x3c, WG_KEY_LEN);
	memcpy(p->pubkey, &i, sizeof(i));
	if (i % 2) {
		struct sockaddr_in *s = (struct sockaddr_in *)&p->endpoint;

		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)(30000 + i));
		s->sin_addr.s_addr = htonl(0xc6120000u + i); /* 198.18.x.y */
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&p->endpoint;

		s->sin6_family = AF_INET6;
		s->sin6_port = htons((uint16_t)(30000 + i));
		inet_pton(AF_INET6, "2001:db8::", &s->sin6_addr);
		memcpy(&s->sin6_addr.s6_addr[12], &i, sizeof(i));
	}
	p->keepalive_s = i % 100 == 0 ? 25 : 0;
	p->n_allowed = EXTRA_IPS;
	p->allowed[0] = (struct wg_allowed_ip){
		.family = AF_INET, .cidr = 32, .addr = { 10, 200, (uint8_t)(i >> 8), (uint8_t)i }
	};
	p->allowed[1] = (struct wg_allowed_ip){ .family = AF_INET,
						.cidr = 30,
						.addr = { 10, 201, (uint8_t)(i >> 6),
							  (uint8_t)((i & 63) << 2) } };
	p->allowed[2] = (struct wg_allowed_ip){
		.family = AF_INET6,
		.cidr = 64,
		.addr = { 0xfd, 0x00, 0x02, 0x00, (uint8_t)(i >> 8), (uint8_t)i },
	};
}

static bool same_ip(const struct wg_allowed_ip *a, const struct wg_allowed_ip *b)
{
	return a->family == b->family && a->cidr == b->cidr &&
	       !memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16);
}

/* Same allowed IPs in any order, same endpoint and keepalive. */
static bool same_config(const struct wg_peer *got, const struct wg_peer *want)
{
	size_t len = want->endpoint.ss_family == AF_INET ? sizeof(struct sockaddr_in)
							 : sizeof(struct sockaddr_in6);

	if (got->n_allowed != want->n_allowed || got->allowed_truncated ||
	    got->keepalive_s != want->keepalive_s ||
	    got->endpoint.ss_family != want->endpoint.ss_family ||
	    (want->endpoint.ss_family && memcmp(&got->endpoint, &want->endpoint, len)))
		return false;
	for (size_t i = 0; i < want->n_allowed; i++) {
		bool found = false;

		for (size_t j = 0; j < got->n_allowed && !found; j++)
			found = same_ip(&got->allowed[j], &want->allowed[i]);
		if (!found)
			return false;
	}
	return true;
}

static const struct wg_peer *find(const struct wg_device *dev, const uint8_t key[WG_KEY_LEN])
{
	for (size_t i = 0; i < dev->n_peers; i++)
		if (!memcmp(dev->peers[i].pubkey, key, WG_KEY_LEN))
			return &dev->peers[i];
	return NULL;
}

static void loopback_endpoint(struct wg_peer *p, uint16_t port)
{
	struct sockaddr_in *s = (struct sockaddr_in *)&p->endpoint;

	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* --- SET_DEVICE messages cut small, sent on a socket of our own ------------------------------- */

struct raw {
	struct mnl_socket *nl;
	uint16_t family;
	void *buf;
	int msgs;
	struct diag *d;
};

static int family_attr(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID && !mnl_attr_validate(a, MNL_TYPE_U16))
		*(uint16_t *)data = mnl_attr_get_u16(a);
	return MNL_CB_OK;
}

static int family_reply(const struct nlmsghdr *nlh, void *data)
{
	return mnl_attr_parse(nlh, GENL_HDRLEN, family_attr, data) == MNL_CB_OK ? 0 : -EBADMSG;
}

static int raw_open(struct raw *r, struct diag *d)
{
	uint32_t req[128];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
	struct genlmsghdr *g;
	int ret;

	r->d = d;
	r->buf = malloc(NL_RECV_BUF);
	if (!r->buf)
		return -ENOMEM;
	ret = nl_open(NETLINK_GENERIC, &r->nl, d);
	if (ret < 0)
		return ret;
	nlh->nlmsg_type = GENL_ID_CTRL;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = CTRL_CMD_GETFAMILY;
	g->version = 1;
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, "wireguard");
	ret = nl_talk(r->nl, nlh, family_reply, &r->family, r->buf, NL_RECV_BUF, d);
	return ret < 0 ? ret : r->family ? 0 : -ENOENT;
}

static int raw_send(struct nlmsghdr *nlh, void *arg)
{
	struct raw *r = arg;

	r->msgs++;
	return nl_talk(r->nl, nlh, NULL, NULL, r->buf, NL_RECV_BUF, r->d);
}

static void raw_close(struct raw *r)
{
	if (r->nl)
		mnl_socket_close(r->nl);
	free(r->buf);
}

/* How the kernel cut a device dump: messages, and peers whose entry continues in the next one. */
struct parts {
	int msgs, continued;
	uint8_t first[WG_KEY_LEN], last[WG_KEY_LEN], prev_last[WG_KEY_LEN];
};

static int part_attr(const struct nlattr *a, void *data)
{
	const struct nlattr **peers = data;

	if (mnl_attr_get_type(a) == WGDEVICE_A_PEERS)
		*peers = a;
	return MNL_CB_OK;
}

static int peer_key(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == WGPEER_A_PUBLIC_KEY &&
	    mnl_attr_get_payload_len(a) == WG_KEY_LEN)
		memcpy(data, mnl_attr_get_payload(a), WG_KEY_LEN);
	return MNL_CB_OK;
}

static int part_reply(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *peers = NULL, *p;
	struct parts *c = data;
	bool first = true;

	mnl_attr_parse(nlh, GENL_HDRLEN, part_attr, &peers);
	c->msgs++;
	if (!peers)
		return 0;
	mnl_attr_for_each_nested(p, peers)
	{
		mnl_attr_parse_nested(p, peer_key, first ? c->first : c->last);
		if (first && c->msgs > 1 && !memcmp(c->first, c->prev_last, WG_KEY_LEN))
			c->continued++;
		if (first)
			memcpy(c->last, c->first, WG_KEY_LEN);
		first = false;
	}
	memcpy(c->prev_last, c->last, WG_KEY_LEN);
	return 0;
}

static void dump_parts_check(void)
{
	struct parts c = { 0 };
	struct diag d = { { 0 } };
	struct raw r = { 0 };
	uint32_t req[128];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
	struct genlmsghdr *g;
	int ret = raw_open(&r, &d);

	if (ret == 0) {
		nlh->nlmsg_type = r.family;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
		g->cmd = WG_CMD_GET_DEVICE;
		g->version = WG_GENL_VERSION;
		mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, "wg0");
		ret = nl_talk(r.nl, nlh, part_reply, &c, r.buf, NL_RECV_BUF, &d);
	}
	tap(ret == 0 && c.msgs > 1,
	    "the dump came in %d parts, %d peers continued into the next part (coalesced)%s",
	    c.msgs, c.continued, why(ret, &d));
	raw_close(&r);
}

/* A peer with 8 allowed IPs sent in pieces: the kernel must end up with all of them, and a
 * second, different set must replace the first exactly. */
static void split_peer_checks(struct wg *w)
{
	struct wg_peer p = { 0 }, q;
	struct wg_device dev = { 0 };
	struct diag d = { { 0 } };
	struct raw r = { 0 };
	const struct wg_peer *got;
	int ret;

	memset(p.pubkey, 0x77, WG_KEY_LEN);
	p.n_allowed = WG_MAX_ALLOWED;
	for (unsigned int i = 0; i < WG_MAX_ALLOWED; i++)
		p.allowed[i] = (struct wg_allowed_ip){ .family = AF_INET6,
						       .cidr = 128,
						       .addr = { 0xfd, 0x77, [15] = (uint8_t)i } };
	q = p;
	for (unsigned int i = 0; i < WG_MAX_ALLOWED; i++)
		q.allowed[i].addr[14] = 1;

	ret = raw_open(&r, &d);
	if (ret == 0)
		ret = wg_build_peer_msgs(r.family, "wg1", &p, 1, NULL, 0, SPLIT_SIZE, raw_send, &r,
					 &d);
	if (ret == 0)
		ret = wg_get_device(w, "wg1", &dev, &d);
	got = ret == 0 ? find(&dev, p.pubkey) : NULL;
	tap(got && same_config(got, &p) && r.msgs > 1,
	    "a peer cut between its allowed IPs (%d messages) keeps all 8%s", r.msgs,
	    ret < 0 ? why(ret, &d)
	    : got   ? ""
		    : " (peer missing)");
	wg_device_free(&dev);

	r.msgs = 0;
	ret = wg_build_peer_msgs(r.family, "wg1", &q, 1, NULL, 0, SPLIT_SIZE, raw_send, &r, &d);
	if (ret == 0)
		ret = wg_get_device(w, "wg1", &dev, &d);
	got = ret == 0 ? find(&dev, q.pubkey) : NULL;
	tap(got && same_config(got, &q) && r.msgs > 1,
	    "sent in pieces again, its new allowed IPs replace the old ones exactly%s",
	    why(ret, &d));
	wg_device_free(&dev);
	if (wg_set_peers(w, "wg1", NULL, 0, (const uint8_t(*)[WG_KEY_LEN])p.pubkey, 1, &d) < 0)
		note("cleanup: %s", d.msg);
	raw_close(&r);
}

/* --- the scenario ----------------------------------------------------------------------------- */

static struct wg_peer *extras;

static bool setup_links(int *i0, int *i1)
{
	struct diag d = { { 0 } };
	unsigned int mtu = 0;
	int lo = 0, again = 0, ret;

	ret = rtnl_link_get("lo", &lo, NULL, &d);
	if (ret == 0)
		ret = rtnl_link_up(lo, 0, &d);
	tap(ret == 0, "loopback up%s", why(ret, &d));
	ret = rtnl_link_ensure("wg0", "wireguard", i0, &d);
	if (ret == 0)
		ret = rtnl_link_ensure("wg1", "wireguard", i1, &d);
	tap(ret == 0, "wg0 and wg1 created over rtnetlink%s", why(ret, &d));
	if (ret < 0)
		return false;
	ret = rtnl_link_ensure("wg0", "wireguard", &again, &d);
	tap(ret == 0 && again == *i0, "ensuring wg0 again finds the same link (%d)", again);
	ret = rtnl_link_ensure("lo", "wireguard", &again, &d);
	tap(ret == -EEXIST, "ensuring a wireguard link named lo is -EEXIST (%s)", d.msg);
	ret = rtnl_link_up(*i0, wg_mtu(1500, AF_INET), &d);
	if (ret == 0)
		ret = rtnl_link_up(*i1, wg_mtu(1500, AF_INET6), &d);
	if (ret == 0)
		ret = rtnl_link_get("wg0", NULL, &mtu, &d);
	tap(ret == 0 && mtu == 1440, "wg0 up with MTU 1440 read back by rtnl_link_get (%u)%s", mtu,
	    why(ret, &d));
	ret = rtnl_addr_add(*i0, "10.77.0.1/24", &d);
	if (ret == 0)
		ret = rtnl_addr_add(*i0, "10.77.0.1/24", &d);
	if (ret == 0)
		ret = rtnl_addr_add(*i0, "fd77::1/64", &d);
	if (ret == 0)
		ret = rtnl_route_replace(*i0, "10.77.1.0/24", &d);
	if (ret == 0)
		ret = rtnl_route_replace(*i0, "10.77.1.0/24", &d);
	tap(ret == 0, "addresses (twice) and a route (twice) on wg0%s", why(ret, &d));
	return true;
}

static bool setup_devices(struct wg *w, int i0, uint8_t pub0[WG_KEY_LEN], uint8_t pub1[WG_KEY_LEN])
{
	struct secret *k0 = NULL, *k1 = NULL;
	struct wg_device dev = { 0 };
	struct diag d = { { 0 } };
	int ret;

	ret = wg_generate_key(&k0, pub0, &d);
	if (ret == 0)
		ret = wg_generate_key(&k1, pub1, &d);
	if (ret == 0)
		ret = wg_set_device(w, "wg0", k0, PORT0, &d);
	if (ret == 0)
		ret = wg_set_device(w, "wg1", k1, PORT1, &d);
	secret_free(k0);
	secret_free(k1);
	tap(ret == 0, "keys generated and set with ports %d, %d%s", PORT0, PORT1, why(ret, &d));
	if (ret < 0)
		return false;
	ret = wg_get_device(w, "wg0", &dev, &d);
	tap(ret == 0 && dev.has_private_key && !memcmp(dev.pubkey, pub0, WG_KEY_LEN) &&
		dev.listen_port == PORT0 && dev.ifindex == i0 && !strcmp(dev.ifname, "wg0") &&
		dev.n_peers == 0,
	    "wg0 reads back its key, port, index and no peers%s", why(ret, &d));
	wg_device_free(&dev);
	return true;
}

/* wg0 <-> wg1 over 127.0.0.1; keepalive makes them shake hands at once. */
static bool handshake(struct wg *w, const uint8_t pub0[WG_KEY_LEN], const uint8_t pub1[WG_KEY_LEN],
		      struct wg_peer *real)
{
	struct wg_peer to0 = { 0 };
	struct wg_device dev = { 0 };
	struct diag d = { { 0 } };
	const struct wg_peer *got = NULL;
	double t0;
	int ret;

	memset(real, 0, sizeof(*real));
	memcpy(real->pubkey, pub1, WG_KEY_LEN);
	loopback_endpoint(real, PORT1);
	real->keepalive_s = 1;
	real->n_allowed = 2;
	real->allowed[0] =
	    (struct wg_allowed_ip){ .family = AF_INET, .cidr = 24, .addr = { 10, 77, 1, 0 } };
	real->allowed[1] =
	    (struct wg_allowed_ip){ .family = AF_INET6, .cidr = 64, .addr = { 0xfd, 0x77, 0, 1 } };
	memcpy(to0.pubkey, pub0, WG_KEY_LEN);
	loopback_endpoint(&to0, PORT0);
	to0.keepalive_s = 1;
	to0.n_allowed = 1;
	to0.allowed[0] =
	    (struct wg_allowed_ip){ .family = AF_INET, .cidr = 24, .addr = { 10, 77, 0, 0 } };
	ret = wg_set_peers(w, "wg1", &to0, 1, NULL, 0, &d);
	if (ret == 0)
		ret = wg_set_peers(w, "wg0", real, 1, NULL, 0, &d);
	tap(ret == 0, "wg0 and wg1 are each other's peer%s", why(ret, &d));
	if (ret < 0)
		return false;
	t0 = now_ms();
	while (now_ms() - t0 < 30000) {
		ret = wg_get_device(w, "wg0", &dev, &d);
		got = ret == 0 ? find(&dev, pub1) : NULL;
		if (ret < 0 || (got && got->last_handshake_s && got->rx_bytes))
			break;
		wg_device_free(&dev);
		usleep(100 * 1000);
	}
	tap(got && got->last_handshake_s > 0 && got->rx_bytes > 0,
	    "wg0 and wg1 shake hands over 127.0.0.1 (%.0f ms, rx %llu bytes)%s", now_ms() - t0,
	    got ? (unsigned long long)got->rx_bytes : 0ULL, why(ret, &d));
	tap(got && same_config(got, real), "the real peer reads back as set");
	wg_device_free(&dev);
	return true;
}

static void thousand_peers(struct wg *w, const uint8_t pub1[WG_KEY_LEN], const struct wg_peer *real)
{
	uint8_t(*rm)[WG_KEY_LEN] = calloc(N_EXTRA / 2, WG_KEY_LEN);
	struct wg_device dev = { 0 };
	struct diag d = { { 0 } };
	struct wg_peer before;
	const struct wg_peer *got;
	size_t ok = 0, left = 0, gone = 0;
	double t0;
	int ret;

	extras = calloc(N_EXTRA, sizeof(*extras));
	if (!extras || !rm) {
		tap(false, "memory for %d peers", N_EXTRA);
		free(rm);
		return;
	}
	for (unsigned int i = 0; i < N_EXTRA; i++)
		extra_peer(&extras[i], i);
	t0 = now_ms();
	ret = wg_set_peers(w, "wg0", extras, N_EXTRA, NULL, 0, &d);
	tap(ret == 0, "%d more peers with %d allowed IPs each set on wg0 (%.0f ms)%s", N_EXTRA,
	    EXTRA_IPS, now_ms() - t0, why(ret, &d));
	t0 = now_ms();
	ret = wg_get_device(w, "wg0", &dev, &d);
	tap(ret == 0 && dev.n_peers == N_EXTRA + 1, "wg0 dumps %zu peers (%.0f ms)%s", dev.n_peers,
	    now_ms() - t0, why(ret, &d));
	dump_parts_check();
	for (unsigned int i = 0; i < N_EXTRA; i++) {
		got = find(&dev, extras[i].pubkey);
		ok += got && same_config(got, &extras[i]);
	}
	tap(ok == N_EXTRA,
	    "every extra peer's allowed IPs, endpoint and keepalive round-trip (%zu)", ok);
	got = find(&dev, pub1);
	tap(got && same_config(got, real), "the real peer is untouched by the additions");
	before = got ? *got : (struct wg_peer){ 0 };
	wg_device_free(&dev);

	for (unsigned int i = 0; i < N_EXTRA / 2; i++)
		memcpy(rm[i], extras[2 * i].pubkey, WG_KEY_LEN);
	t0 = now_ms();
	ret = wg_set_peers(w, "wg0", NULL, 0, (const uint8_t(*)[WG_KEY_LEN])rm, N_EXTRA / 2, &d);
	tap(ret == 0, "%d peers removed by key (%.0f ms)%s", N_EXTRA / 2, now_ms() - t0,
	    why(ret, &d));
	ret = wg_get_device(w, "wg0", &dev, &d);
	for (unsigned int i = 0; ret == 0 && i < N_EXTRA; i++) {
		got = find(&dev, extras[i].pubkey);
		if (i % 2 == 0)
			gone += !got;
		else
			left += got && same_config(got, &extras[i]);
	}
	tap(ret == 0 && dev.n_peers == N_EXTRA / 2 + 1 && gone == N_EXTRA / 2 &&
		left == N_EXTRA / 2,
	    "the removed are gone (%zu), the other %zu unchanged, %zu peers in all%s", gone, left,
	    dev.n_peers, why(ret, &d));
	got = ret == 0 ? find(&dev, pub1) : NULL;
	tap(got && same_config(got, real) && got->last_handshake_s == before.last_handshake_s &&
		!memcmp(&got->endpoint, &before.endpoint, sizeof(got->endpoint)),
	    "the real peer keeps its handshake time and endpoint through the removals");
	wg_device_free(&dev);
	free(rm);
}

static void refusals(struct wg *w)
{
	struct diag d = { { 0 } };
	struct wg_device dev = { 0 };
	int ret;

	ret = wg_set_device(w, "lo", NULL, 1, &d);
	tap(ret == -EOPNOTSUPP && strstr(d.msg, "not a WireGuard device"),
	    "setting lo as a WireGuard device is refused (%s)", d.msg);
	ret = wg_get_device(w, "nosuch0", &dev, &d);
	tap(ret == -ENODEV && strstr(d.msg, "no link named nosuch0"),
	    "reading a missing device is -ENODEV (%s)", d.msg);
}

static void teardown(void)
{
	struct diag d = { { 0 } };
	int ret;

	ret = rtnl_link_delete("wg1", &d);
	if (ret == 0)
		ret = rtnl_link_delete("wg0", &d);
	if (ret == 0)
		ret = rtnl_link_get("wg0", NULL, NULL, &d) == -ENODEV ? 0 : -EEXIST;
	tap(ret == 0, "wg0 and wg1 deleted%s", why(ret, &d));
}

int main(void)
{
	uint8_t pub0[WG_KEY_LEN], pub1[WG_KEY_LEN];
	struct wg_peer real;
	struct diag d = { { 0 } };
	struct wg *w = NULL;
	int i0 = 0, i1 = 0, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("1..%d\n", N_CHECKS);
	if (geteuid() != 0)
		note("not root: expect failures");
	ret = wg_open(&w, &d);
	tap(ret == 0, "generic netlink family \"wireguard\" resolved%s", why(ret, &d));
	if (ret == 0 && setup_links(&i0, &i1) && setup_devices(w, i0, pub0, pub1) &&
	    handshake(w, pub0, pub1, &real)) {
		thousand_peers(w, pub1, &real);
		split_peer_checks(w);
		refusals(w);
	}
	if (ret == 0)
		teardown();
	wg_close(w);
	free(extras);
	while (n_done < N_CHECKS)
		tap(false, "not reached");
	note("wg_selftest done: %d of %d failed", n_failed, n_done);
	return n_failed ? 1 : 0;
}
