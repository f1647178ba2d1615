// SPDX-License-Identifier: Apache-2.0
/* The per-pod program (bpf/pod.bpf.c) under BPF_PROG_TEST_RUN, on the maps the node programs
 * pinned (one pin root): a pod's cluster traffic passes to pods of this node and into attested
 * nodes' ranges, is dropped to any other cluster address and from any source that is not the
 * pod's, and is counted in the pod's record; traffic outside the cluster is not counted. The
 * test skb comes in on the loopback device, so the "pod" is registered at ifindex 1. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <cmocka.h>

#include <bpf/libbpf.h>

#include "dp_expect.h"
#include "pod.skel.h"

#define POD_IFINDEX   1u /* the test skb's device */
#define OTHER_IFINDEX 77u
#define ME4	      "10.244.1.5" /* our pod */
#define ME6	      "fd10:0:0:1::5"
#define NEIGHBOUR4    "10.244.1.6" /* another pod of this node */
#define PEER_POD4     "10.244.2.9" /* in attested node 2's range */
#define PEER_POD6     "fd10:0:0:2::9"
#define STRANGER4     "10.244.3.9" /* cluster range, no attested node */
#define STRANGER6     "fd10:0:0:3::9"

struct pod_fx {
	struct dp_fx dp;
	struct pod_bpf *pod;
	int pods, pod_addrs, net4, net6;
};

static int map_fd(struct pod_fx *f, const char *name)
{
	return bpf_map__fd(bpf_object__find_map_by_name(f->pod->obj, name));
}

static int add_pod_addr(struct pod_fx *f, const char *addr, uint32_t ifindex)
{
	struct dp_pod_addr_v1 k;

	if (dp_fx_addr(addr, k.addr) < 0)
		return -EINVAL;
	return dp_fx_err(bpf_map_update_elem(f->pod_addrs, &k, &ifindex, BPF_ANY));
}

static int add_net(struct pod_fx *f, const char *text, int plen, uint32_t node)
{
	uint8_t a[16];

	if (dp_fx_addr(text, a) == 4) {
		struct dp_cidr4_v1 k = { .prefixlen = (uint32_t)plen };

		memcpy(k.addr, a + 12, 4);
		return dp_fx_err(bpf_map_update_elem(f->net4, &k, &node, BPF_ANY));
	}
	struct dp_cidr6_v1 k = { .prefixlen = (uint32_t)plen };

	memcpy(k.addr, a, 16);
	return dp_fx_err(bpf_map_update_elem(f->net6, &k, &node, BPF_ANY));
}

/* The cluster of dp_expect.h plus: pod ranges of this node (10.244.1.0/24, fd10:0:0:1::/64) and of
 * attested node 2 (10.244.2.0/24, fd10:0:0:2::/64) in peer_net; our pod at ifindex 1, a neighbour
 * at another ifindex. */
static int setup(void **state)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	struct pod_fx *f = calloc(1, sizeof(*f));
	struct dp_pod_v1 rec = { .naddrs = 2 };
	int ret;

	if (!f)
		return -1;
	if (cluster_setup(state, DP_FX_INGRESS) < 0) {
		free(f);
		return -1;
	}
	memcpy(&f->dp, *state, sizeof(f->dp));
	free(*state);
	*state = f;
	oo.pin_root_path = f->dp.root;
	f->pod = pod_bpf__open_opts(&oo);
	if (!f->pod || pod_bpf__load(f->pod) < 0)
		return -1;
	f->pods = map_fd(f, "pods");
	f->pod_addrs = map_fd(f, "pod_addrs");
	f->net4 = map_fd(f, "peer_net4");
	f->net6 = map_fd(f, "peer_net6");
	snprintf(rec.name, sizeof(rec.name), "default/web-1");
	dp_fx_addr(ME4, rec.addrs[0]);
	dp_fx_addr(ME6, rec.addrs[1]);
	ret = dp_fx_err(bpf_map_update_elem(f->pods, &(uint32_t){ POD_IFINDEX }, &rec, BPF_ANY));
	if (!ret)
		ret = add_pod_addr(f, ME4, POD_IFINDEX);
	if (!ret)
		ret = add_pod_addr(f, ME6, POD_IFINDEX);
	if (!ret)
		ret = add_pod_addr(f, NEIGHBOUR4, OTHER_IFINDEX);
	if (!ret)
		ret = add_net(f, "10.244.1.0", 24, 1);
	if (!ret)
		ret = add_net(f, "10.244.2.0", 24, 2);
	if (!ret)
		ret = add_net(f, "fd10:0:0:1::", 64, 1);
	if (!ret)
		ret = add_net(f, "fd10:0:0:2::", 64, 2);
	return ret ? -1 : 0;
}

static int teardown(void **state)
{
	struct pod_fx *f = *state;

	if (!f)
		return 0;
	pod_bpf__destroy(f->pod);
	dp_fx_close(&f->dp);
	free(f);
	return 0;
}

static void udp_from(struct pkt *p, const char *src, const char *dst)
{
	pkt_eth(p);
	if (strchr(src, ':'))
		pkt_ipv6(p, src, dst);
	else
		pkt_ipv4(p, src, dst);
	pkt_udp(p, 40000, 53);
	pkt_payload(p, "pod data", 8);
	pkt_finish(p);
}

static void expect(void **state, struct pkt *p, int action, unsigned reason)
{
	struct pod_fx *f = *state;

	expect_verdict(&f->dp, bpf_program__fd(f->pod->progs.dp_pod), p, action, reason);
}

static struct dp_pod_v1 record(void **state)
{
	struct pod_fx *f = *state;
	struct dp_pod_v1 rec;

	assert_int_equal(bpf_map_lookup_elem(f->pods, &(uint32_t){ POD_IFINDEX }, &rec), 0);
	return rec;
}

static void to_a_pod_of_this_node_passes(void **state)
{
	struct pkt p;

	udp_from(&p, ME4, NEIGHBOUR4);
	expect(state, &p, TC_ACT_OK, DP_PASS_POD_LOCAL);
}

static void into_an_attested_nodes_range_passes(void **state)
{
	struct pkt p;

	udp_from(&p, ME4, PEER_POD4);
	expect(state, &p, TC_ACT_OK, DP_PASS_POD_PEER);
	udp_from(&p, ME6, PEER_POD6);
	expect(state, &p, TC_ACT_OK, DP_PASS_POD_PEER);
	udp_from(&p, ME4, "10.244.1.1"); /* this node's own range: the bridge's gateway */
	expect(state, &p, TC_ACT_OK, DP_PASS_POD_PEER);
}

static void to_a_cluster_address_of_no_attested_node_is_dropped_and_counted(void **state)
{
	struct dp_pod_v1 before = record(state), after;
	struct pkt p, q;

	udp_from(&p, ME4, STRANGER4);
	expect(state, &p, TC_ACT_SHOT, DP_DROP_POD_UNATTESTED);
	udp_from(&q, ME6, STRANGER6);
	expect(state, &q, TC_ACT_SHOT, DP_DROP_POD_UNATTESTED);
	after = record(state);
	assert_int_equal(after.drop_packets - before.drop_packets, 2);
	assert_int_equal(after.drop_bytes - before.drop_bytes, p.len + q.len);
	assert_string_equal(after.name, "default/web-1"); /* the program keeps the identity */
}

static void from_an_address_that_is_not_the_pods_is_dropped(void **state)
{
	struct pkt p;

	udp_from(&p, "10.244.1.99", PEER_POD4); /* registered to nobody */
	expect(state, &p, TC_ACT_SHOT, DP_DROP_POD_SPOOFED);
	udp_from(&p, NEIGHBOUR4, PEER_POD4); /* registered to another pod's veth */
	expect(state, &p, TC_ACT_SHOT, DP_DROP_POD_SPOOFED);
}

static void outside_the_cluster_passes_uncounted(void **state)
{
	struct pkt p;

	udp_from(&p, ME4, OUT4);
	expect(state, &p, TC_ACT_OK, NO_REASON);
	udp_from(&p, ME6, OUT6);
	expect(state, &p, TC_ACT_OK, NO_REASON);
	udp_from(&p, "10.244.1.99", OUT4); /* the source is not checked outside the cluster */
	expect(state, &p, TC_ACT_OK, NO_REASON);
	pkt_eth(&p);
	pkt_arp(&p);
	pkt_finish(&p);
	expect(state, &p, TC_ACT_OK, NO_REASON);
}

static void audit_mode_counts_and_passes(void **state)
{
	struct pod_fx *f = *state;
	struct dp_config_v1 cfg = default_config();
	struct pkt p;

	cfg.audit = 1;
	set_config(&f->dp, &cfg);
	udp_from(&p, ME4, STRANGER4);
	expect(state, &p, TC_ACT_OK, DP_DROP_POD_UNATTESTED);
}

static void unconfigured_passes_everything_uncounted(void **state)
{
	struct pod_fx *f = *state;
	struct dp_config_v1 cfg = { 0 };
	struct pkt p;

	set_config(&f->dp, &cfg);
	udp_from(&p, ME4, STRANGER4);
	expect(state, &p, TC_ACT_OK, NO_REASON);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(to_a_pod_of_this_node_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(into_an_attested_nodes_range_passes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
		    to_a_cluster_address_of_no_attested_node_is_dropped_and_counted, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(from_an_address_that_is_not_the_pods_is_dropped,
						setup, teardown),
		cmocka_unit_test_setup_teardown(outside_the_cluster_passes_uncounted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(audit_mode_counts_and_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(unconfigured_passes_everything_uncounted, setup,
						teardown),
	};

	if (geteuid() != 0) {
		printf("1..0 # SKIP BPF tests need root\n");
		return 0;
	}
	if (dp_fx_isolate() < 0) {
		printf("1..0 # SKIP cannot make a private mount namespace\n");
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
