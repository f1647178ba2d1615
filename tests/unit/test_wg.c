// SPDX-License-Identifier: Apache-2.0
/* WireGuard and rtnetlink without WireGuard (the host kernel has none; tests/e2e/test_wg.sh runs
 * the real thing in a node VM): X25519 keys against RFC 7748, the MTU arithmetic, the
 * SET_DEVICE messages a large peer set is split into (parsed back with libmnl), the coalescing
 * of a multi-part GET_DEVICE dump, wg_open's refusal, and the rtnl calls in a fresh network
 * namespace of a forked child (root only). */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/time_types.h>
#include <linux/wireguard.h>

#include "conclave/rtnl.h"
#include "conclave/util.h"
#include "conclave/wg.h"

#define FAMILY 0x1234 /* a made-up generic netlink family id */

/* --- keys ------------------------------------------------------------------------------------- */

static struct secret *secret_hex(const char *hex)
{
	struct secret *s = secret_new(WG_KEY_LEN);
	size_t n;

	assert_non_null(s);
	assert_int_equal(hex_decode(hex, s->data, WG_KEY_LEN, &n), 0);
	assert_int_equal(n, WG_KEY_LEN);
	return s;
}

static void unhex(const char *hex, uint8_t out[WG_KEY_LEN])
{
	size_t n;

	assert_int_equal(hex_decode(hex, out, WG_KEY_LEN, &n), 0);
	assert_int_equal(n, WG_KEY_LEN);
}

/* RFC 7748 section 6.1: Alice's and Bob's key pairs. */
static void public_key_matches_rfc7748_vectors(void **state)
{
	static const char *const pairs[][2] = {
		{ "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
		  "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a" },
		{ "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
		  "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f" },
	};
	uint8_t pub[WG_KEY_LEN], want[WG_KEY_LEN];

	for (size_t i = 0; i < 2; i++) {
		struct secret *k = secret_hex(pairs[i][0]);

		unhex(pairs[i][1], want);
		assert_int_equal(wg_public_key(k, pub, NULL), 0);
		assert_memory_equal(pub, want, WG_KEY_LEN);
		secret_free(k);
	}
}

/* X25519 clamps the scalar itself: RFC 7748's unclamped key and its clamped form agree. */
static void clamping_does_not_change_the_public_key(void **state)
{
	struct secret *k =
	    secret_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
	uint8_t a[WG_KEY_LEN], b[WG_KEY_LEN];

	assert_int_equal(wg_public_key(k, a, NULL), 0);
	k->data[0] &= 248;
	k->data[31] &= 127;
	k->data[31] |= 64;
	assert_int_equal(wg_public_key(k, b, NULL), 0);
	assert_memory_equal(a, b, WG_KEY_LEN);
	secret_free(k);
}

static void generated_key_is_clamped_and_matches_its_public_key(void **state)
{
	uint8_t pub[WG_KEY_LEN], again[WG_KEY_LEN], first[WG_KEY_LEN];

	for (int i = 0; i < 64; i++) {
		struct secret *k = NULL;
		struct diag d = { { 0 } };

		assert_int_equal(wg_generate_key(&k, pub, &d), 0);
		assert_int_equal(k->len, WG_KEY_LEN);
		assert_int_equal(k->data[0] & 7, 0);
		assert_int_equal(k->data[31] & 0xc0, 0x40);
		assert_int_equal(wg_public_key(k, again, NULL), 0);
		assert_memory_equal(pub, again, WG_KEY_LEN);
		if (i == 0)
			memcpy(first, pub, WG_KEY_LEN);
		else
			assert_memory_not_equal(pub, first, WG_KEY_LEN);
		secret_free(k);
	}
}

static void public_key_refuses_a_secret_of_the_wrong_length(void **state)
{
	struct secret *k = secret_new(31);
	struct diag d = { { 0 } };
	uint8_t pub[WG_KEY_LEN];

	assert_int_equal(wg_public_key(k, pub, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "32 bytes"));
	assert_int_equal(wg_public_key(NULL, pub, &d), -EINVAL);
	secret_free(k);
}

static void mtu_subtracts_the_outer_headers(void **state)
{
	assert_int_equal(wg_mtu(1500, AF_INET), 1440);
	assert_int_equal(wg_mtu(1500, AF_INET6), 1420);
	assert_int_equal(wg_mtu(9000, AF_INET), 8940);
	assert_int_equal(wg_mtu(9000, AF_INET6), 8920);
	assert_int_equal(wg_mtu(1400, AF_INET), 1340);
	assert_int_equal(wg_mtu(60, AF_INET), 0);
	assert_int_equal(wg_mtu(70, AF_INET6), 0);
}

static void open_without_kernel_wireguard_says_so(void **state)
{
	struct diag d = { { 0 } };
	struct wg *w = NULL;
	int ret = wg_open(&w, &d);

	if (ret == 0) {
		wg_close(w);
		skip(); /* this kernel has WireGuard: nothing to refuse */
	}
	assert_int_equal(ret, -EPROTONOSUPPORT);
	assert_non_null(strstr(d.msg, "no WireGuard"));
	assert_non_null(strstr(d.msg, "\"wireguard\""));
}

/* --- SET_DEVICE messages ---------------------------------------------------------------------- */

static void make_peer(struct wg_peer *p, unsigned int i, size_t n_allowed)
{
	memset(p, 0, sizeof(*p));
	memset(p->pubkey, 0xa5, WG_KEY_LEN);
	memcpy(p->pubkey, &i, sizeof(i));
	if (i % 5 == 0) {
		/* no endpoint */
	} else if (i % 2 == 0) {
		struct sockaddr_in *s = (struct sockaddr_in *)&p->endpoint;

		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)(20000 + i));
		s->sin_addr.s_addr = htonl(0xc0000200u + i % 250 + 1); /* 192.0.2.x */
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&p->endpoint;

		s->sin6_family = AF_INET6;
		s->sin6_port = htons((uint16_t)(20000 + i));
		s->sin6_addr.s6_addr[0] = 0x20;
		s->sin6_addr.s6_addr[1] = 0x01;
		s->sin6_addr.s6_addr[2] = 0x0d;
		s->sin6_addr.s6_addr[3] = 0xb8;
		memcpy(&s->sin6_addr.s6_addr[12], &i, sizeof(i));
	}
	p->keepalive_s = (uint16_t)(i % 30);
	p->n_allowed = n_allowed;
	for (size_t j = 0; j < n_allowed; j++) {
		struct wg_allowed_ip *a = &p->allowed[j];

		if (j % 2 == 0) { /* 10.(64+j).(i>>8).(i&255)/32 */
			a->family = AF_INET;
			a->addr[0] = 10;
			a->addr[1] = (uint8_t)(64 + j);
			a->addr[2] = (uint8_t)(i >> 8);
			a->addr[3] = (uint8_t)i;
			a->cidr = 32;
		} else { /* fd00:j:i::/64 */
			a->family = AF_INET6;
			a->addr[0] = 0xfd;
			a->addr[3] = (uint8_t)j;
			a->addr[4] = (uint8_t)(i >> 8);
			a->addr[5] = (uint8_t)i;
			a->cidr = 64;
		}
	}
}

/* One peer entry of a SET_DEVICE message, as parsed back. */
struct entry {
	uint8_t key[WG_KEY_LEN];
	bool has_flags, has_endpoint, has_keepalive;
	uint32_t flags;
	struct sockaddr_storage endpoint;
	size_t endpoint_len;
	uint16_t keepalive;
	struct wg_allowed_ip ips[WG_MAX_ALLOWED];
	size_t n_ips;
};

struct sent {
	size_t budget, n_msgs, max_len;
	struct entry *e;
	size_t n, cap;
};

static int keep(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;

	tb[mnl_attr_get_type(a)] = a;
	return MNL_CB_OK;
}

static void parse_ip(const struct nlattr *n, struct entry *e)
{
	const struct nlattr *tb[WGALLOWEDIP_A_MAX + 1] = { 0 };
	struct wg_allowed_ip *ip;

	assert_int_equal(mnl_attr_parse_nested(n, keep, tb), MNL_CB_OK);
	assert_non_null(tb[WGALLOWEDIP_A_FAMILY]);
	assert_non_null(tb[WGALLOWEDIP_A_IPADDR]);
	assert_non_null(tb[WGALLOWEDIP_A_CIDR_MASK]);
	assert_int_equal(mnl_attr_validate(tb[WGALLOWEDIP_A_FAMILY], MNL_TYPE_U16), 0);
	assert_int_equal(mnl_attr_validate(tb[WGALLOWEDIP_A_CIDR_MASK], MNL_TYPE_U8), 0);
	assert_true(e->n_ips < WG_MAX_ALLOWED);
	ip = &e->ips[e->n_ips++];
	ip->family = mnl_attr_get_u16(tb[WGALLOWEDIP_A_FAMILY]);
	ip->cidr = mnl_attr_get_u8(tb[WGALLOWEDIP_A_CIDR_MASK]);
	assert_int_equal(mnl_attr_get_payload_len(tb[WGALLOWEDIP_A_IPADDR]),
			 ip->family == AF_INET ? 4 : 16);
	memcpy(ip->addr, mnl_attr_get_payload(tb[WGALLOWEDIP_A_IPADDR]),
	       mnl_attr_get_payload_len(tb[WGALLOWEDIP_A_IPADDR]));
}

static void parse_entry(const struct nlattr *n, struct entry *e)
{
	const struct nlattr *tb[WGPEER_A_MAX + 1] = { 0 }, *ip;

	memset(e, 0, sizeof(*e));
	assert_int_equal(mnl_attr_parse_nested(n, keep, tb), MNL_CB_OK);
	assert_non_null(tb[WGPEER_A_PUBLIC_KEY]);
	assert_int_equal(mnl_attr_get_payload_len(tb[WGPEER_A_PUBLIC_KEY]), WG_KEY_LEN);
	memcpy(e->key, mnl_attr_get_payload(tb[WGPEER_A_PUBLIC_KEY]), WG_KEY_LEN);
	if ((e->has_flags = tb[WGPEER_A_FLAGS] != NULL)) {
		assert_int_equal(mnl_attr_validate(tb[WGPEER_A_FLAGS], MNL_TYPE_U32), 0);
		e->flags = mnl_attr_get_u32(tb[WGPEER_A_FLAGS]);
	}
	if ((e->has_endpoint = tb[WGPEER_A_ENDPOINT] != NULL)) {
		e->endpoint_len = mnl_attr_get_payload_len(tb[WGPEER_A_ENDPOINT]);
		assert_true(e->endpoint_len <= sizeof(e->endpoint));
		memcpy(&e->endpoint, mnl_attr_get_payload(tb[WGPEER_A_ENDPOINT]), e->endpoint_len);
	}
	if ((e->has_keepalive = tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL] != NULL)) {
		assert_int_equal(
		    mnl_attr_validate(tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL], MNL_TYPE_U16), 0);
		e->keepalive = mnl_attr_get_u16(tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL]);
	}
	assert_null(tb[WGPEER_A_PRESHARED_KEY]);
	if (!tb[WGPEER_A_ALLOWEDIPS])
		return;
	mnl_attr_for_each_nested(ip, tb[WGPEER_A_ALLOWEDIPS])
	{
		parse_ip(ip, e);
	}
}

/* The emit callback: check the message frame and keep its peer entries. */
static int record(struct nlmsghdr *nlh, void *arg)
{
	const struct nlattr *tb[WGDEVICE_A_MAX + 1] = { 0 }, *n;
	struct sent *s = arg;
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);
	size_t before = s->n;

	assert_true(nlh->nlmsg_len <= s->budget);
	if (nlh->nlmsg_len > s->max_len)
		s->max_len = nlh->nlmsg_len;
	assert_int_equal(nlh->nlmsg_type, FAMILY);
	assert_int_equal(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
	assert_int_equal(g->cmd, WG_CMD_SET_DEVICE);
	assert_int_equal(g->version, WG_GENL_VERSION);
	assert_int_equal(mnl_attr_parse(nlh, GENL_HDRLEN, keep, tb), MNL_CB_OK);
	assert_non_null(tb[WGDEVICE_A_IFNAME]);
	assert_string_equal(mnl_attr_get_str(tb[WGDEVICE_A_IFNAME]), "wg0");
	assert_null(tb[WGDEVICE_A_FLAGS]); /* never WGDEVICE_F_REPLACE_PEERS */
	assert_null(tb[WGDEVICE_A_PRIVATE_KEY]);
	assert_non_null(tb[WGDEVICE_A_PEERS]);
	mnl_attr_for_each_nested(n, tb[WGDEVICE_A_PEERS])
	{
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 256;
			s->e = realloc(s->e, s->cap * sizeof(*s->e));
			assert_non_null(s->e);
		}
		parse_entry(n, &s->e[s->n++]);
	}
	assert_true(s->n > before); /* no empty message */
	s->n_msgs++;
	return 0;
}

static size_t endpoint_len(const struct wg_peer *p)
{
	switch (p->endpoint.ss_family) {
	case AF_INET: return sizeof(struct sockaddr_in);
	case AF_INET6: return sizeof(struct sockaddr_in6);
	default: return 0;
	}
}

/* The entries, in order, say exactly: remove these, then set these peers; returns the number of
 * peers that were split across messages. */
static size_t expect_round_trip(const struct sent *s, const struct wg_peer *peers, size_t n,
				const uint8_t (*rm)[WG_KEY_LEN], size_t n_rm)
{
	size_t k = 0, split = 0;

	for (size_t i = 0; i < n_rm; i++, k++) {
		assert_true(k < s->n);
		assert_memory_equal(s->e[k].key, rm[i], WG_KEY_LEN);
		assert_true(s->e[k].has_flags);
		assert_int_equal(s->e[k].flags, WGPEER_F_REMOVE_ME);
		assert_false(s->e[k].has_endpoint);
		assert_int_equal(s->e[k].n_ips, 0);
	}
	for (size_t i = 0; i < n; i++) {
		const struct wg_peer *p = &peers[i];
		struct wg_allowed_ip ips[WG_MAX_ALLOWED];
		size_t got = 0, chunks = 0;

		do {
			const struct entry *e = &s->e[k];

			assert_true(k < s->n);
			assert_memory_equal(e->key, p->pubkey, WG_KEY_LEN);
			if (chunks == 0) {
				assert_true(e->has_flags);
				assert_int_equal(e->flags, WGPEER_F_REPLACE_ALLOWEDIPS);
				assert_true(e->has_keepalive);
				assert_int_equal(e->keepalive, p->keepalive_s);
				assert_int_equal(e->has_endpoint, p->endpoint.ss_family != 0);
				if (e->has_endpoint) {
					assert_int_equal(e->endpoint_len, endpoint_len(p));
					assert_memory_equal(&e->endpoint, &p->endpoint,
							    e->endpoint_len);
				}
			} else {
				/* A continuation adds: no replace, nothing but the IPs. */
				assert_false(e->has_flags &&
					     (e->flags & WGPEER_F_REPLACE_ALLOWEDIPS));
				assert_false(e->has_endpoint);
				assert_false(e->has_keepalive);
				assert_true(e->n_ips > 0);
			}
			assert_true(got + e->n_ips <= p->n_allowed);
			memcpy(&ips[got], e->ips, e->n_ips * sizeof(ips[0]));
			got += e->n_ips;
			chunks++;
			k++;
		} while (got < p->n_allowed);
		for (size_t j = 0; j < p->n_allowed; j++) {
			assert_int_equal(ips[j].family, p->allowed[j].family);
			assert_int_equal(ips[j].cidr, p->allowed[j].cidr);
			assert_memory_equal(ips[j].addr, p->allowed[j].addr,
					    p->allowed[j].family == AF_INET ? 4 : 16);
		}
		if (chunks > 1)
			split++;
	}
	assert_int_equal(k, s->n); /* nothing else was sent */
	return split;
}

static struct wg_peer *many_peers(size_t n, size_t n_allowed)
{
	struct wg_peer *p = calloc(n, sizeof(*p));

	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		make_peer(&p[i], (unsigned int)i, n_allowed);
	return p;
}

static void thousand_peers_fit_the_budget_whole_and_round_trip(void **state)
{
	struct wg_peer *p = many_peers(1000, WG_MAX_ALLOWED);
	struct sent s = { .budget = WG_MSG_BUDGET };
	struct diag d = { { 0 } };

	assert_int_equal(
	    wg_build_peer_msgs(FAMILY, "wg0", p, 1000, NULL, 0, WG_MSG_BUDGET, record, &s, &d), 0);
	assert_true(s.n_msgs > 1);
	assert_true(s.max_len > WG_MSG_BUDGET / 2); /* messages are filled, not one peer each */
	/* A peer that fits a message is never split: no window with half its IPs. */
	assert_int_equal(expect_round_trip(&s, p, 1000, NULL, 0), 0);
	free(s.e);
	free(p);
}

static void a_peer_split_between_allowed_ips_replaces_only_in_its_first_part(void **state)
{
	struct wg_peer *p = many_peers(1000, WG_MAX_ALLOWED);
	struct sent s = { .budget = 300 }; /* a peer with 8 allowed IPs needs about 400 bytes */
	struct diag d = { { 0 } };

	assert_int_equal(
	    wg_build_peer_msgs(FAMILY, "wg0", p, 1000, NULL, 0, s.budget, record, &s, &d), 0);
	assert_int_equal(expect_round_trip(&s, p, 1000, NULL, 0), 1000);
	free(s.e);
	free(p);
}

/* Every budget from "one allowed IP" up: whatever the cut, the same peers come out. */
static void any_budget_gives_the_same_peers(void **state)
{
	const uint8_t rm[3][WG_KEY_LEN] = { { 1 }, { 2 }, { 3 } };
	struct wg_peer *p = many_peers(40, 0);
	struct diag d = { { 0 } };

	for (size_t i = 0; i < 40; i++)
		make_peer(&p[i], (unsigned int)i, i % (WG_MAX_ALLOWED + 1));
	for (size_t budget = 170; budget < 2200; budget += 7) {
		struct sent s = { .budget = budget };

		assert_int_equal(
		    wg_build_peer_msgs(FAMILY, "wg0", p, 40, rm, 3, budget, record, &s, &d), 0);
		expect_round_trip(&s, p, 40, rm, 3);
		free(s.e);
	}
	free(p);
}

static void removals_come_first_and_only_remove(void **state)
{
	uint8_t rm[500][WG_KEY_LEN];
	struct wg_peer *p = many_peers(2, 3);
	struct sent s = { .budget = 4096 };

	for (unsigned int i = 0; i < 500; i++) {
		memset(rm[i], 0x5a, WG_KEY_LEN);
		memcpy(rm[i], &i, sizeof(i));
	}
	assert_int_equal(wg_build_peer_msgs(FAMILY, "wg0", p, 2, (const uint8_t(*)[WG_KEY_LEN])rm,
					    500, s.budget, record, &s, NULL),
			 0);
	assert_true(s.n_msgs > 1);
	expect_round_trip(&s, p, 2, (const uint8_t(*)[WG_KEY_LEN])rm, 500);
	free(s.e);
	free(p);
}

static void nothing_to_do_sends_nothing(void **state)
{
	struct sent s = { .budget = 4096 };

	assert_int_equal(
	    wg_build_peer_msgs(FAMILY, "wg0", NULL, 0, NULL, 0, 4096, record, &s, NULL), 0);
	assert_int_equal(s.n_msgs, 0);
}

static void builder_refuses_bad_input_before_sending(void **state)
{
	struct wg_peer *p = many_peers(3, 2);
	struct sent s = { .budget = 4096 };
	struct diag d = { { 0 } };

	p[2].allowed[0].cidr = 33;
	assert_int_equal(wg_build_peer_msgs(FAMILY, "wg0", p, 3, NULL, 0, 4096, record, &s, &d),
			 -EINVAL);
	assert_non_null(strstr(d.msg, "peer 2"));
	make_peer(&p[2], 2, 2);
	p[1].allowed[0].cidr = 16; /* 10.64.0.1/16: host bits set */
	assert_int_equal(wg_build_peer_msgs(FAMILY, "wg0", p, 3, NULL, 0, 4096, record, &s, &d),
			 -EINVAL);
	assert_non_null(strstr(d.msg, "bits set"));
	make_peer(&p[1], 1, 2);
	p[0].allowed[1].family = AF_UNIX;
	assert_int_equal(wg_build_peer_msgs(FAMILY, "wg0", p, 3, NULL, 0, 4096, record, &s, &d),
			 -EINVAL);
	make_peer(&p[0], 0, 2);
	p[0].n_allowed = WG_MAX_ALLOWED + 1;
	assert_int_equal(wg_build_peer_msgs(FAMILY, "wg0", p, 3, NULL, 0, 4096, record, &s, &d),
			 -EINVAL);
	make_peer(&p[0], 0, 2);
	p[0].endpoint.ss_family = AF_UNIX;
	assert_int_equal(wg_build_peer_msgs(FAMILY, "wg0", p, 3, NULL, 0, 4096, record, &s, &d),
			 -EINVAL);
	make_peer(&p[0], 0, 2);
	assert_int_equal(wg_build_peer_msgs(FAMILY, "a-name-too-long-for-linux", p, 3, NULL, 0,
					    4096, record, &s, &d),
			 -EINVAL);
	assert_int_equal(s.n_msgs, 0);
	/* Too small for one peer with one allowed IP. */
	assert_int_equal(wg_build_peer_msgs(FAMILY, "wg0", p, 3, NULL, 0, 100, record, &s, &d),
			 -EMSGSIZE);
	assert_int_equal(wg_build_peer_msgs(FAMILY, "wg0", p, 3, NULL, 0, 8, record, &s, &d),
			 -EMSGSIZE);
	assert_int_equal(s.n_msgs, 0);
	free(p);
}

static int refuse(struct nlmsghdr *nlh, void *arg)
{
	(*(int *)arg)++;
	return -EIO;
}

static void the_first_send_failure_stops_the_rest(void **state)
{
	struct wg_peer *p = many_peers(1000, 4);
	int calls = 0;

	assert_int_equal(
	    wg_build_peer_msgs(FAMILY, "wg0", p, 1000, NULL, 0, 4096, refuse, &calls, NULL), -EIO);
	assert_int_equal(calls, 1);
	free(p);
}

/* --- GET_DEVICE dumps ------------------------------------------------------------------------- */

static struct nlmsghdr *dump_msg(void *buf)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct genlmsghdr *g;

	nlh->nlmsg_type = FAMILY;
	nlh->nlmsg_flags = NLM_F_MULTI;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = WG_CMD_GET_DEVICE;
	g->version = WG_GENL_VERSION;
	return nlh;
}

static void put_ip4(struct nlmsghdr *nlh, uint8_t last, uint8_t cidr)
{
	struct nlattr *n = mnl_attr_nest_start(nlh, 0);
	uint8_t a[4] = { 10, 0, 0, last };

	mnl_attr_put_u16(nlh, WGALLOWEDIP_A_FAMILY, AF_INET);
	mnl_attr_put(nlh, WGALLOWEDIP_A_IPADDR, sizeof(a), a);
	mnl_attr_put_u8(nlh, WGALLOWEDIP_A_CIDR_MASK, cidr);
	mnl_attr_nest_end(nlh, n);
}

/* A peer entry as the kernel writes it (first part: everything; continuation: key and IPs),
 * with the 64-bit counters' padding attributes. */
static void put_dump_peer(struct nlmsghdr *nlh, uint8_t id, bool first, uint8_t ip_from,
			  uint8_t n_ips)
{
	struct nlattr *peer = mnl_attr_nest_start(nlh, 0), *ips;
	uint8_t key[WG_KEY_LEN], zero[WG_KEY_LEN] = { 0 };

	memset(key, id, sizeof(key));
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, sizeof(key), key);
	if (first) {
		struct __kernel_timespec ts = { .tv_sec = 1700000000 + id, .tv_nsec = 5 };
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(51820) };
		struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(51821) };

		mnl_attr_put(nlh, WGPEER_A_PRESHARED_KEY, sizeof(zero), zero);
		mnl_attr_put(nlh, WGPEER_A_LAST_HANDSHAKE_TIME, sizeof(ts), &ts);
		mnl_attr_put_u16(nlh, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, id);
		mnl_attr_put(nlh, WGPEER_A_UNSPEC, 0, NULL); /* padding before a u64 */
		mnl_attr_put_u64(nlh, WGPEER_A_TX_BYTES, 1000u * id);
		mnl_attr_put_u64(nlh, WGPEER_A_RX_BYTES, 2000u * id);
		mnl_attr_put_u32(nlh, WGPEER_A_PROTOCOL_VERSION, 1);
		s4.sin_addr.s_addr = htonl(0xc0000200u + id);
		s6.sin6_addr.s6_addr[15] = id;
		if (id % 2)
			mnl_attr_put(nlh, WGPEER_A_ENDPOINT, sizeof(s4), &s4);
		else
			mnl_attr_put(nlh, WGPEER_A_ENDPOINT, sizeof(s6), &s6);
	}
	ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
	for (uint8_t i = 0; i < n_ips; i++)
		put_ip4(nlh, (uint8_t)(ip_from + i), 32);
	mnl_attr_nest_end(nlh, ips);
	mnl_attr_nest_end(nlh, peer);
}

static void dump_parts_are_coalesced_by_public_key(void **state)
{
	uint32_t b1[1024], b2[1024];
	struct nlmsghdr *m1 = dump_msg(b1), *m2 = dump_msg(b2);
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	struct wg_device dev = { 0 };
	struct diag d = { { 0 } };
	struct nlattr *peers;
	const struct wg_peer *b;

	memset(priv, 0x11, sizeof(priv));
	memset(pub, 0x22, sizeof(pub));
	mnl_attr_put_u16(m1, WGDEVICE_A_LISTEN_PORT, 51820);
	mnl_attr_put_u32(m1, WGDEVICE_A_FWMARK, 0);
	mnl_attr_put_u32(m1, WGDEVICE_A_IFINDEX, 7);
	mnl_attr_put_strz(m1, WGDEVICE_A_IFNAME, "wg0");
	mnl_attr_put(m1, WGDEVICE_A_PRIVATE_KEY, sizeof(priv), priv);
	mnl_attr_put(m1, WGDEVICE_A_PUBLIC_KEY, sizeof(pub), pub);
	peers = mnl_attr_nest_start(m1, WGDEVICE_A_PEERS);
	put_dump_peer(m1, 1, true, 1, 2);
	put_dump_peer(m1, 2, true, 10, 3); /* continued in the next message */
	mnl_attr_nest_end(m1, peers);
	peers = mnl_attr_nest_start(m2, WGDEVICE_A_PEERS);
	put_dump_peer(m2, 2, false, 13, 2);
	put_dump_peer(m2, 3, true, 20, WG_MAX_ALLOWED + 2);
	mnl_attr_nest_end(m2, peers);

	assert_int_equal(wg_parse_device_msg(m1, &dev, &d), 0);
	assert_int_equal(wg_parse_device_msg(m2, &dev, &d), 0);
	assert_string_equal(dev.ifname, "wg0");
	assert_int_equal(dev.ifindex, 7);
	assert_int_equal(dev.listen_port, 51820);
	assert_true(dev.has_private_key);
	assert_memory_equal(dev.pubkey, pub, WG_KEY_LEN);
	assert_int_equal(dev.n_peers, 3);

	b = &dev.peers[1];
	assert_int_equal(b->pubkey[0], 2);
	assert_int_equal(b->n_allowed, 5);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(b->allowed[i].family, AF_INET);
		assert_int_equal(b->allowed[i].addr[3], 10 + i);
		assert_int_equal(b->allowed[i].cidr, 32);
	}
	/* The continuation did not wipe what the first part said. */
	assert_int_equal(b->last_handshake_s, 1700000002);
	assert_int_equal(b->keepalive_s, 2);
	assert_int_equal(b->tx_bytes, 2000);
	assert_int_equal(b->rx_bytes, 4000);
	assert_int_equal(b->endpoint.ss_family, AF_INET6);
	assert_int_equal(ntohs(((const struct sockaddr_in6 *)&b->endpoint)->sin6_port), 51820);
	assert_false(b->allowed_truncated);

	assert_int_equal(dev.peers[0].n_allowed, 2);
	assert_int_equal(dev.peers[0].endpoint.ss_family, AF_INET);
	assert_int_equal(
	    ntohl(((const struct sockaddr_in *)&dev.peers[0].endpoint)->sin_addr.s_addr),
	    0xc0000201u);
	assert_int_equal(dev.peers[2].n_allowed, WG_MAX_ALLOWED);
	assert_true(dev.peers[2].allowed_truncated);
	wg_device_free(&dev);
	assert_null(dev.peers);
	assert_int_equal(dev.n_peers, 0);
}

static void many_dumped_peers_grow_the_array(void **state)
{
	static uint32_t buf[16384];
	struct wg_device dev = { 0 };
	struct nlattr *peers;
	struct nlmsghdr *m;

	for (int part = 0; part < 10; part++) {
		m = dump_msg(buf);
		peers = mnl_attr_nest_start(m, WGDEVICE_A_PEERS);
		for (int i = 0; i < 100; i++) {
			struct nlattr *p = mnl_attr_nest_start(m, 0);
			uint32_t key[8] = { (uint32_t)(part * 100 + i), 1, 2, 3, 4, 5, 6, 7 };

			mnl_attr_put(m, WGPEER_A_PUBLIC_KEY, sizeof(key), key);
			mnl_attr_nest_end(m, p);
		}
		mnl_attr_nest_end(m, peers);
		assert_int_equal(wg_parse_device_msg(m, &dev, NULL), 0);
	}
	assert_int_equal(dev.n_peers, 1000);
	for (uint32_t i = 0; i < 1000; i++) {
		uint32_t k;

		memcpy(&k, dev.peers[i].pubkey, sizeof(k));
		assert_int_equal(k, i);
	}
	wg_device_free(&dev);
}

/* One malformed thing in an otherwise good message. */
enum flaw {
	SHORT_KEY,
	V4_WITH_V6_LENGTH,
	NO_PREFIX,
	SHORT_ENDPOINT,
	BAD_HANDSHAKE,
	NAME_UNTERMINATED,
	CUT_SHORT, /* the peer's length leaves out its last attribute's tail */
};

static int parse_flawed(enum flaw f, struct diag *d)
{
	uint32_t buf[512];
	struct nlmsghdr *m = dump_msg(buf);
	struct nlattr *peers, *peer, *ips, *ip;
	uint8_t key[WG_KEY_LEN] = { 9 }, addr[16] = { 10 };
	struct wg_device dev = { 0 };
	int ret;

	if (f == NAME_UNTERMINATED)
		mnl_attr_put(m, WGDEVICE_A_IFNAME, 3, "wg0");
	peers = mnl_attr_nest_start(m, WGDEVICE_A_PEERS);
	peer = mnl_attr_nest_start(m, 0);
	mnl_attr_put(m, WGPEER_A_PUBLIC_KEY, f == SHORT_KEY ? 31 : 32, key);
	if (f == SHORT_ENDPOINT)
		mnl_attr_put(m, WGPEER_A_ENDPOINT, 10, addr);
	if (f == BAD_HANDSHAKE)
		mnl_attr_put(m, WGPEER_A_LAST_HANDSHAKE_TIME, 8, addr);
	ips = mnl_attr_nest_start(m, WGPEER_A_ALLOWEDIPS);
	ip = mnl_attr_nest_start(m, 0);
	mnl_attr_put_u16(m, WGALLOWEDIP_A_FAMILY, AF_INET);
	mnl_attr_put(m, WGALLOWEDIP_A_IPADDR, f == V4_WITH_V6_LENGTH ? 16 : 4, addr);
	if (f != NO_PREFIX)
		mnl_attr_put_u8(m, WGALLOWEDIP_A_CIDR_MASK, 8);
	mnl_attr_nest_end(m, ip);
	mnl_attr_nest_end(m, ips);
	mnl_attr_nest_end(m, peer);
	if (f == CUT_SHORT)
		peer->nla_len -= 4;
	mnl_attr_nest_end(m, peers);
	ret = wg_parse_device_msg(m, &dev, d);
	wg_device_free(&dev);
	return ret;
}

static void malformed_dumps_are_refused(void **state)
{
	static const enum flaw flaws[] = { SHORT_KEY,	   V4_WITH_V6_LENGTH, NO_PREFIX,
					   SHORT_ENDPOINT, BAD_HANDSHAKE,     NAME_UNTERMINATED,
					   CUT_SHORT };
	struct diag d = { { 0 } };

	for (size_t i = 0; i < sizeof(flaws) / sizeof(flaws[0]); i++) {
		d.msg[0] = '\0';
		assert_int_equal(parse_flawed(flaws[i], &d), -EBADMSG);
		assert_non_null(strstr(d.msg, "malformed WireGuard dump"));
	}
}

/* --- rtnetlink in a fresh network namespace -------------------------------------------------- */

/* A check inside the child: on failure say where and why, and leave. */
#define REQUIRE(cond, ...)                                                               \
	do {                                                                             \
		if (!(cond)) {                                                           \
			snprintf(why, why_len, "line %d: %s: ", __LINE__, #cond);        \
			snprintf(why + strlen(why), why_len - strlen(why), __VA_ARGS__); \
			return -1;                                                       \
		}                                                                        \
	} while (0)

/* Run fn in a forked child inside a new network namespace; fail with its reason. */
static void in_fresh_netns(int (*fn)(char *why, size_t why_len))
{
	char why[1024] = "";
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	if (geteuid() != 0)
		skip();
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int r = -1;

		close(fds[0]);
		if (unshare(CLONE_NEWNET) < 0)
			snprintf(why, sizeof(why), "unshare(CLONE_NEWNET): %s", strerror(errno));
		else
			r = fn(why, sizeof(why));
		if (r != 0 && write(fds[1], why, strlen(why)) < 0)
			_exit(3);
		_exit(r == 0 ? 0 : 1);
	}
	close(fds[1]);
	n = read(fds[0], why, sizeof(why) - 1);
	why[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s", why[0] ? why : "the child died");
}

/* Output of a shell command (tests may use `ip`; the product never does). */
static void run(const char *cmd, char *out, size_t len)
{
	FILE *f = popen(cmd, "r");
	size_t n = 0;

	out[0] = '\0';
	if (!f)
		return;
	n = fread(out, 1, len - 1, f);
	out[n] = '\0';
	pclose(f);
}

static int count(const char *hay, const char *needle)
{
	int c = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		c++;
	return c;
}

static int ns_link_ensure_creates_once(char *why, size_t why_len)
{
	struct diag d = { { 0 } };
	int a = 0, b = 0, c = 0;
	unsigned int mtu = 0;

	REQUIRE(rtnl_link_ensure("cvbr0", "bridge", &a, &d) == 0, "%s", d.msg);
	REQUIRE(a > 0, "index %d", a);
	REQUIRE(rtnl_link_ensure("cvbr0", "bridge", &b, &d) == 0, "%s", d.msg);
	REQUIRE(a == b, "%d then %d", a, b);
	REQUIRE(rtnl_link_get("cvbr0", &c, &mtu, &d) == 0, "%s", d.msg);
	REQUIRE(c == a && mtu == 1500, "index %d, MTU %u", c, mtu);
	return 0;
}

static void link_ensure_creates_once_then_finds_it(void **state)
{
	in_fresh_netns(ns_link_ensure_creates_once);
}

static int ns_link_of_another_kind(char *why, size_t why_len)
{
	struct diag d = { { 0 } };
	int idx = 0, ret;

	REQUIRE(system("ip link add v0 type veth peer name v1") == 0, "ip link add veth");
	ret = rtnl_link_ensure("v0", "bridge", &idx, &d);
	REQUIRE(ret == -EEXIST, "%d: %s", ret, d.msg);
	REQUIRE(strstr(d.msg, "kind 'veth', not 'bridge'"), "%s", d.msg);
	ret = rtnl_link_ensure("lo", "bridge", &idx, &d);
	REQUIRE(ret == -EEXIST, "%d: %s", ret, d.msg);
	REQUIRE(strstr(d.msg, "kind 'none'"), "%s", d.msg);
	return 0;
}

static void link_ensure_refuses_a_link_of_another_kind(void **state)
{
	in_fresh_netns(ns_link_of_another_kind);
}

static int ns_link_kind_missing(char *why, size_t why_len)
{
	struct diag d = { { 0 } };
	int idx = 0, ret;

	ret = rtnl_link_ensure("wg0", "wireguard", &idx, &d);
	if (ret == 0)
		return 0; /* a kernel with WireGuard */
	REQUIRE(ret == -EOPNOTSUPP, "%d: %s", ret, d.msg);
	REQUIRE(strstr(d.msg, "no 'wireguard' links"), "%s", d.msg);
	ret = rtnl_link_ensure("x0", "no-such-kind", &idx, &d);
	REQUIRE(ret == -EOPNOTSUPP, "%d: %s", ret, d.msg);
	return 0;
}

static void link_ensure_of_a_kind_the_kernel_lacks_is_eopnotsupp(void **state)
{
	in_fresh_netns(ns_link_kind_missing);
}

static int ns_link_up(char *why, size_t why_len)
{
	struct diag d = { { 0 } };
	unsigned int mtu = 0, lo_mtu = 0;
	int v0 = 0, lo = 0;
	char out[4096];

	REQUIRE(system("ip link add v0 type veth peer name v1") == 0, "ip link add veth");
	REQUIRE(rtnl_link_get("v0", &v0, NULL, &d) == 0, "%s", d.msg);
	REQUIRE(rtnl_link_up(v0, 1400, &d) == 0, "%s", d.msg);
	REQUIRE(rtnl_link_get("v0", NULL, &mtu, &d) == 0 && mtu == 1400, "MTU %u", mtu);
	run("ip -o link show dev v0", out, sizeof(out));
	REQUIRE(strstr(out, ",UP") || strstr(out, "<UP"), "%s", out);
	REQUIRE(strstr(out, "mtu 1400"), "%s", out);
	/* MTU 0: only up. */
	REQUIRE(rtnl_link_get("lo", &lo, &lo_mtu, &d) == 0, "%s", d.msg);
	REQUIRE(rtnl_link_up(lo, 0, &d) == 0, "%s", d.msg);
	REQUIRE(rtnl_link_get("lo", NULL, &mtu, &d) == 0 && mtu == lo_mtu, "MTU %u", mtu);
	REQUIRE(rtnl_link_up(0, 1400, &d) == -EINVAL, "index 0");
	return 0;
}

static void link_up_sets_the_mtu_and_the_up_flag(void **state)
{
	in_fresh_netns(ns_link_up);
}

static int ns_addr_add(char *why, size_t why_len)
{
	struct diag d = { { 0 } };
	char out[4096];
	int v0 = 0;

	REQUIRE(system("ip link add v0 type veth peer name v1") == 0, "ip link add veth");
	REQUIRE(rtnl_link_get("v0", &v0, NULL, &d) == 0, "%s", d.msg);
	for (int i = 0; i < 2; i++) {
		REQUIRE(rtnl_addr_add(v0, "10.100.0.1/16", &d) == 0, "%s", d.msg);
		REQUIRE(rtnl_addr_add(v0, "fd00:100::1/64", &d) == 0, "%s", d.msg);
	}
	run("ip -o addr show dev v0", out, sizeof(out));
	REQUIRE(count(out, "inet 10.100.0.1/16 ") == 1, "%s", out);
	REQUIRE(count(out, "inet6 fd00:100::1/64 ") == 1, "%s", out);
	return 0;
}

static void addr_add_is_idempotent(void **state)
{
	in_fresh_netns(ns_addr_add);
}

static int ns_route_replace(char *why, size_t why_len)
{
	struct diag d = { { 0 } };
	char out[4096];
	int v0 = 0, v1 = 0;

	REQUIRE(system("ip link add v0 type veth peer name v1") == 0, "ip link add veth");
	REQUIRE(rtnl_link_get("v0", &v0, NULL, &d) == 0, "%s", d.msg);
	REQUIRE(rtnl_link_get("v1", &v1, NULL, &d) == 0, "%s", d.msg);
	REQUIRE(rtnl_link_up(v0, 0, &d) == 0 && rtnl_link_up(v1, 0, &d) == 0, "%s", d.msg);
	for (int i = 0; i < 2; i++) {
		REQUIRE(rtnl_route_replace(v0, "10.9.0.0/16", &d) == 0, "%s", d.msg);
		REQUIRE(rtnl_route_replace(v0, "fd00:9::/48", &d) == 0, "%s", d.msg);
	}
	run("ip route show table main 10.9.0.0/16", out, sizeof(out));
	REQUIRE(count(out, "10.9.0.0/16 dev v0 proto static scope link") == 1 &&
		    count(out, "\n") == 1,
		"%s", out);
	run("ip -6 route show table main fd00:9::/48", out, sizeof(out));
	REQUIRE(count(out, "fd00:9::/48 dev v0 proto static") == 1 && count(out, "\n") == 1, "%s",
		out);
	/* Replaced, not added: the route moves to v1. */
	REQUIRE(rtnl_route_replace(v1, "10.9.0.0/16", &d) == 0, "%s", d.msg);
	run("ip route show table main 10.9.0.0/16", out, sizeof(out));
	REQUIRE(count(out, "dev v1") == 1 && count(out, "\n") == 1, "%s", out);
	/* A network, not an address on one. */
	REQUIRE(rtnl_route_replace(v0, "10.9.0.1/16", &d) == -EINVAL, "host bits");
	REQUIRE(strstr(d.msg, "not a network"), "%s", d.msg);
	REQUIRE(rtnl_addr_add(v0, "10.9.0.1/16", &d) == 0, "%s", d.msg);
	return 0;
}

static void route_replace_adds_and_replaces(void **state)
{
	in_fresh_netns(ns_route_replace);
}

static int ns_link_delete(char *why, size_t why_len)
{
	struct diag d = { { 0 } };
	int idx = 0, ret;

	REQUIRE(rtnl_link_ensure("cvbr1", "bridge", &idx, &d) == 0, "%s", d.msg);
	REQUIRE(rtnl_link_delete("cvbr1", &d) == 0, "%s", d.msg);
	ret = rtnl_link_delete("cvbr1", &d);
	REQUIRE(ret == -ENODEV, "%d: %s", ret, d.msg);
	REQUIRE(strstr(d.msg, "no such link"), "%s", d.msg);
	ret = rtnl_link_get("cvbr1", &idx, NULL, &d);
	REQUIRE(ret == -ENODEV, "%d: %s", ret, d.msg);
	REQUIRE(strstr(d.msg, "no link named cvbr1"), "%s", d.msg);
	return 0;
}

static void link_delete_then_none(void **state)
{
	in_fresh_netns(ns_link_delete);
}

/* Refused while parsing, before any socket: safe outside a namespace. */
static void cidrs_are_parsed_strictly(void **state)
{
	static const char *const bad[] = {
		"10.0.0.1",
		"10.0.0.0/33",
		"fd00::/129",
		"/8",
		"10.0.0.0/",
		"10.0.0.0/-1",
		"10.0.0.0/ 8",
		"10.0.0.0/8 ",
		"10.0.0.0/08",
		"10.0.0/8",
		"x/8",
		"10.0.0.0/1a",
		"10.0.0.0/8/8",
		"::ffff:1.2.3",
		"10.0.0.0/0000",
		" 10.0.0.0/8",
		"",
		"fd00::1%lo/64",
	};
	struct diag d = { { 0 } };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(rtnl_addr_add(1, bad[i], &d), -EINVAL);
		assert_int_equal(rtnl_route_replace(1, bad[i], &d), -EINVAL);
	}
	assert_int_equal(rtnl_addr_add(1, NULL, &d), -EINVAL);
	assert_int_equal(rtnl_link_ensure("", "bridge", NULL, &d), -EINVAL);
	assert_int_equal(rtnl_link_ensure("sixteen-chars-xx", "bridge", NULL, &d), -EINVAL);
	assert_int_equal(rtnl_link_ensure("x", "", NULL, &d), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(public_key_matches_rfc7748_vectors),
		cmocka_unit_test(clamping_does_not_change_the_public_key),
		cmocka_unit_test(generated_key_is_clamped_and_matches_its_public_key),
		cmocka_unit_test(public_key_refuses_a_secret_of_the_wrong_length),
		cmocka_unit_test(mtu_subtracts_the_outer_headers),
		cmocka_unit_test(open_without_kernel_wireguard_says_so),
		cmocka_unit_test(thousand_peers_fit_the_budget_whole_and_round_trip),
		cmocka_unit_test(a_peer_split_between_allowed_ips_replaces_only_in_its_first_part),
		cmocka_unit_test(any_budget_gives_the_same_peers),
		cmocka_unit_test(removals_come_first_and_only_remove),
		cmocka_unit_test(nothing_to_do_sends_nothing),
		cmocka_unit_test(builder_refuses_bad_input_before_sending),
		cmocka_unit_test(the_first_send_failure_stops_the_rest),
		cmocka_unit_test(dump_parts_are_coalesced_by_public_key),
		cmocka_unit_test(many_dumped_peers_grow_the_array),
		cmocka_unit_test(malformed_dumps_are_refused),
		cmocka_unit_test(cidrs_are_parsed_strictly),
		cmocka_unit_test(link_ensure_creates_once_then_finds_it),
		cmocka_unit_test(link_ensure_refuses_a_link_of_another_kind),
		cmocka_unit_test(link_ensure_of_a_kind_the_kernel_lacks_is_eopnotsupp),
		cmocka_unit_test(link_up_sets_the_mtu_and_the_up_flag),
		cmocka_unit_test(addr_add_is_idempotent),
		cmocka_unit_test(route_replace_adds_and_replaces),
		cmocka_unit_test(link_delete_then_none),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
