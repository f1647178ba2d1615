/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the ingress and egress tests: the cluster every test starts from, and the one
 * assertion they all make (the tc verdict, and that exactly the expected reason counter moved
 * by one packet of this packet's length). Include after <cmocka.h>. */
#ifndef CONCLAVE_TEST_DP_EXPECT_H
#define CONCLAVE_TEST_DP_EXPECT_H

#include <linux/pkt_cls.h>

#include "dp_fixture.h"
#include "pktgen.h"

#define WG_PORT	  51820
#define JOIN_PORT 9000
#define NO_REASON DP_REASON_MAX /* no counter may move */

/* This node is 10.0.0.1 / fd00::1. Peers: node 2 at 10.0.0.2:51820 and [fd00::2]:51820, node 3
 * behind NAT at 10.0.0.3:40000. Node ranges 10.0.0.0/24 and fd00::/64, pod ranges
 * 10.244.0.0/16 and fd10::/56. */
#define SELF4	  "10.0.0.1"
#define SELF6	  "fd00::1"
#define PEER4	  "10.0.0.2"
#define PEER6	  "fd00::2"
#define NAT4	  "10.0.0.3"
#define NAT4_PORT 40000
#define POD4	  "10.244.1.5"
#define POD6	  "fd10::5"
#define OUT4	  "192.0.2.7"
#define OUT6	  "2001:db8::7"

static const char *const reason_name[DP_REASON_MAX + 1] = {
	[DP_PASS_PEER] = "PASS_PEER",
	[DP_PASS_JOIN] = "PASS_JOIN",
	[DP_PASS_ARP] = "PASS_ARP",
	[DP_PASS_ND] = "PASS_ND",
	[DP_PASS_DHCP] = "PASS_DHCP",
	[DP_PASS_ICMP_ERROR] = "PASS_ICMP_ERROR",
	[DP_PASS_ALLOW_LIST] = "PASS_ALLOW_LIST",
	[DP_PASS_OUTSIDE_CLUSTER] = "PASS_OUTSIDE_CLUSTER",
	[DP_PASS_TO_PEER] = "PASS_TO_PEER",
	[DP_DROP_UNKNOWN_PEER] = "DROP_UNKNOWN_PEER",
	[DP_DROP_SPOOFED_PORT] = "DROP_SPOOFED_PORT",
	[DP_DROP_JOIN_ON_WORKER] = "DROP_JOIN_ON_WORKER",
	[DP_DROP_NOT_ALLOWED] = "DROP_NOT_ALLOWED",
	[DP_DROP_MALFORMED] = "DROP_MALFORMED",
	[DP_DROP_FRAGMENT] = "DROP_FRAGMENT",
	[DP_DROP_STRICT] = "DROP_STRICT",
	[DP_PASS_REPLY] = "PASS_REPLY",
	[DP_PASS_POD_LOCAL] = "PASS_POD_LOCAL",
	[DP_PASS_POD_PEER] = "PASS_POD_PEER",
	[DP_DROP_POD_UNATTESTED] = "DROP_POD_UNATTESTED",
	[DP_DROP_POD_SPOOFED] = "DROP_POD_SPOOFED",
	[DP_REASON_MAX] = "(none)",
};

static inline struct dp_config_v1 default_config(void)
{
	struct dp_config_v1 c = {
		.abi = DP_ABI_VERSION,
		.wg_port = WG_PORT,
		.join_port = JOIN_PORT,
		.strict = 1,
		.exempt = DP_EXEMPT_ARP | DP_EXEMPT_ND | DP_EXEMPT_DHCP | DP_EXEMPT_ICMP_ERROR,
	};

	return c;
}

/* Mount, load `which`, and configure the cluster above. */
static inline int cluster_setup(void **state, unsigned which)
{
	struct dp_fx *fx = calloc(1, sizeof(*fx));
	struct dp_config_v1 cfg = default_config();
	int ret;

	if (!fx)
		return -1;
	*state = fx;
	ret = dp_fx_mount(fx);
	if (!ret)
		ret = dp_fx_load(fx, which, 0);
	if (!ret)
		ret = dp_fx_set_config(fx, &cfg);
	if (!ret)
		ret = dp_fx_add_peer(fx, PEER4, WG_PORT, 2);
	if (!ret)
		ret = dp_fx_add_peer(fx, PEER6, WG_PORT, 2);
	if (!ret)
		ret = dp_fx_add_peer(fx, NAT4, NAT4_PORT, 3);
	if (!ret)
		ret = dp_fx_add_cidr(fx, "10.0.0.0/24", DP_CIDR_NODE);
	if (!ret)
		ret = dp_fx_add_cidr(fx, "10.244.0.0/16", DP_CIDR_POD);
	if (!ret)
		ret = dp_fx_add_cidr(fx, "fd00::/64", DP_CIDR_NODE);
	if (!ret)
		ret = dp_fx_add_cidr(fx, "fd10::/56", DP_CIDR_POD);
	if (ret) {
		fprintf(stderr, "# datapath fixture: %s\n", strerror(-ret));
		return -1;
	}
	return 0;
}

static inline int cluster_teardown(void **state)
{
	struct dp_fx *fx = *state;

	if (fx) {
		dp_fx_close(fx);
		free(fx);
	}
	return 0;
}

static inline void set_config(struct dp_fx *fx, const struct dp_config_v1 *cfg)
{
	assert_int_equal(dp_fx_set_config(fx, cfg), 0);
}

/* Run p through prog: the tc verdict must be `action` and exactly `reason` must have moved by
 * one packet of p's length (NO_REASON: nothing moved). */
static inline void expect_verdict(struct dp_fx *fx, int prog, struct pkt *p, int action,
				  unsigned reason)
{
	struct dp_counter_v1 before[DP_REASON_MAX] = { { 0 } }, after[DP_REASON_MAX] = { { 0 } };
	uint32_t ret = 0xdead;
	int bad = 0;

	assert_int_equal(dp_fx_counters(fx, before), 0);
	assert_int_equal(dp_fx_run(prog, p->buf, p->len, 1, &ret, NULL), 0);
	assert_int_equal(dp_fx_counters(fx, after), 0);
	for (unsigned r = 0; r < DP_REASON_MAX; r++) {
		uint64_t dp = after[r].packets - before[r].packets;
		uint64_t db = after[r].bytes - before[r].bytes;
		uint64_t want = r == reason;

		if (dp != want || db != want * p->len) {
			print_error("# counter %s moved by %llu packets, %llu bytes; expected %s\n",
				    reason_name[r], (unsigned long long)dp, (unsigned long long)db,
				    reason_name[reason]);
			bad = 1;
		}
	}
	if ((int)ret != action)
		print_error("# verdict %u, expected %d (%s)\n", ret, action,
			    action == TC_ACT_OK ? "TC_ACT_OK" : "TC_ACT_SHOT");
	assert_int_equal(ret, action);
	assert_false(bad);
}

#endif
