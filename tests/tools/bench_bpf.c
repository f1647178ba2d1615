// SPDX-License-Identifier: Apache-2.0
/* Datapath verdict benchmark: nanoseconds per packet under BPF_PROG_TEST_RUN with repeat, for
 * each main verdict of the ingress and egress programs, with 1 to 1,000,000 entries in the
 * peers map, against a baseline program that only returns TC_ACT_OK (two instructions, loaded
 * here with bpf_prog_load). Prints "baseline NS" and "verdict NAME ENTRIES NS" lines (medians);
 * scripts/bench-bpf-verdicts turns them into a table. Needs root. Maps live in a private bpffs.
 * Usage: bench_bpf [repeat [trials]] */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dp_fixture.h"
#include "pktgen.h"

#define WG_PORT	  51820
#define MAX_PEERS (1u << 21) /* one map size for every row: only the entry count changes */

struct verdict {
	const char *name;
	int egress;
	int action;
	unsigned reason;
	struct pkt pkt;
};

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Median over trials of the kernel's mean ns per run. */
static int measure(int prog, const struct pkt *p, uint32_t repeat, int trials, uint32_t *ns)
{
	uint32_t t[32];

	if (trials > 32)
		trials = 32;
	for (int i = 0; i < trials; i++)
		if (dp_fx_run(prog, p->buf, p->len, repeat, NULL, &t[i]) < 0)
			return -1;
	qsort(t, (size_t)trials, sizeof(t[0]), cmp_u32);
	*ns = t[trials / 2];
	return 0;
}

/* One run must give the verdict's action and move its reason counter. */
static int check(struct dp_fx *fx, int prog, const struct verdict *v)
{
	struct dp_counter_v1 before[DP_REASON_MAX] = { { 0 } }, after[DP_REASON_MAX] = { { 0 } };
	uint32_t ret = 0;

	if (dp_fx_counters(fx, before) < 0 ||
	    dp_fx_run(prog, v->pkt.buf, v->pkt.len, 1, &ret, NULL) < 0 ||
	    dp_fx_counters(fx, after) < 0)
		return -1;
	if ((int)ret != v->action || after[v->reason].packets != before[v->reason].packets + 1) {
		fprintf(stderr, "bench_bpf: %s: verdict %u, reason counter not moved\n", v->name,
			ret);
		return -1;
	}
	return 0;
}

static int baseline_prog(void)
{
	const struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = TC_ACT_OK },
		{ .code = BPF_JMP | BPF_EXIT },
	};

	return bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "baseline", "Dual BSD/GPL", insns, 2, NULL);
}

/* Grow the peers map to `want` entries with random endpoints (batched). */
static int fill_peers(struct dp_fx *fx, uint32_t *have, uint32_t want)
{
	enum { BATCH = 4096 };
	static struct dp_endpoint_v1 keys[BATCH];
	static struct dp_peer_v1 vals[BATCH];

	while (*have < want) {
		uint32_t n = want - *have < BATCH ? want - *have : BATCH;
		LIBBPF_OPTS(bpf_map_batch_opts, o, .elem_flags = BPF_ANY);

		for (uint32_t i = 0; i < n; i++) {
			uint32_t id = *have + i;

			memset(&keys[i], 0, sizeof(keys[i]));
			keys[i].addr[0] = 0xfd;
			keys[i].addr[1] = 0x99; /* fd99::/16, never one of the packets' addresses */
			memcpy(keys[i].addr + 12, &id, sizeof(id));
			keys[i].port = htons((uint16_t)(1024 + id % 60000));
			vals[i].node_id = id;
			vals[i].flags = 0;
		}
		if (bpf_map_update_batch(fx->peers, keys, vals, &n, &o) < 0) {
			fprintf(stderr, "bench_bpf: filling peers: %s\n", strerror(errno));
			return -1;
		}
		*have += n;
	}
	return 0;
}

static void build(struct verdict *v)
{
	struct pkt *p = &v->pkt;

	pkt_eth(p);
	if (!strcmp(v->name, "ingress_peer_v4") || !strcmp(v->name, "ingress_unknown_peer")) {
		pkt_ipv4(p, v->reason == DP_PASS_PEER ? "10.0.0.2" : "10.0.0.9", "10.0.0.1");
		pkt_udp(p, WG_PORT, WG_PORT);
	} else if (!strcmp(v->name, "ingress_peer_v6")) {
		pkt_ipv6(p, "fd00::2", "fd00::1");
		pkt_udp(p, WG_PORT, WG_PORT);
	} else if (!strcmp(v->name, "egress_to_peer_v4")) {
		pkt_ipv4(p, "10.0.0.1", "10.0.0.2");
		pkt_udp(p, WG_PORT, WG_PORT);
	} else if (!strcmp(v->name, "egress_strict_drop_v6")) {
		pkt_ipv6(p, "fd00::1", "fd10::5");
		pkt_tcp(p, 40000, 80, 0x18);
	} else { /* egress_outside_cluster_v4 */
		pkt_ipv4(p, "10.0.0.1", "192.0.2.7");
		pkt_tcp(p, 40000, 443, 0x18);
	}
	/* A typical full-size payload: the programs read headers only, so this sets skb->len. */
	if (v->pkt.udp)
		pkt_wireguard(p, 1400);
	else
		pkt_payload(p, NULL, 1400);
	pkt_finish(p);
}

int main(int argc, char **argv)
{
	static struct verdict v[] = {
		{ .name = "ingress_peer_v4",
		  .egress = 0,
		  .action = TC_ACT_OK,
		  .reason = DP_PASS_PEER },
		{ .name = "ingress_peer_v6",
		  .egress = 0,
		  .action = TC_ACT_OK,
		  .reason = DP_PASS_PEER },
		{ .name = "ingress_unknown_peer",
		  .egress = 0,
		  .action = TC_ACT_SHOT,
		  .reason = DP_DROP_UNKNOWN_PEER },
		{ .name = "egress_to_peer_v4",
		  .egress = 1,
		  .action = TC_ACT_OK,
		  .reason = DP_PASS_TO_PEER },
		{ .name = "egress_strict_drop_v6",
		  .egress = 1,
		  .action = TC_ACT_SHOT,
		  .reason = DP_DROP_STRICT },
		{ .name = "egress_outside_cluster_v4",
		  .egress = 1,
		  .action = TC_ACT_OK,
		  .reason = DP_PASS_OUTSIDE_CLUSTER },
	};
	const uint32_t sizes[] = { 1, 1000, 100000, 1000000 };
	uint32_t repeat = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 0) : 1000000;
	int trials = argc > 2 ? atoi(argv[2]) : 5;
	struct dp_config_v1 cfg = {
		.abi = DP_ABI_VERSION,
		.wg_port = WG_PORT,
		.join_port = 9000,
		.strict = 1,
		.exempt = DP_EXEMPT_ARP | DP_EXEMPT_ND | DP_EXEMPT_DHCP | DP_EXEMPT_ICMP_ERROR,
	};
	struct dp_fx fx = { 0 };
	uint32_t have = 0, ns;
	int base, failures = 0;

	if (geteuid() != 0) {
		fprintf(stderr, "bench_bpf: needs root (BPF_PROG_TEST_RUN, bpffs mount)\n");
		return 1;
	}
	if (trials < 1)
		trials = 1;
	if (dp_fx_isolate() < 0 || dp_fx_mount(&fx) < 0 ||
	    dp_fx_load(&fx, DP_FX_INGRESS | DP_FX_EGRESS, MAX_PEERS) < 0 ||
	    dp_fx_set_config(&fx, &cfg) < 0 ||
	    dp_fx_add_cidr(&fx, "10.0.0.0/24", DP_CIDR_NODE) < 0 ||
	    dp_fx_add_cidr(&fx, "fd00::/64", DP_CIDR_NODE) < 0 ||
	    dp_fx_add_cidr(&fx, "fd10::/56", DP_CIDR_POD) < 0) {
		fprintf(stderr, "bench_bpf: cannot set up the datapath in a private bpffs\n");
		dp_fx_close(&fx);
		return 1;
	}
	dp_fx_pin_cpu();
	base = baseline_prog();
	if (base < 0) {
		fprintf(stderr, "bench_bpf: cannot load the baseline program: %s\n",
			strerror(-base));
		dp_fx_close(&fx);
		return 1;
	}
	/* The attested peer the packets use: an IPv4 and an IPv6 endpoint, each with its address
	 * entry. These 4 entries are the smallest row; the others are filled up to the size. */
	if (dp_fx_add_peer(&fx, "10.0.0.2", WG_PORT, 2) < 0 ||
	    dp_fx_add_peer(&fx, "fd00::2", WG_PORT, 2) < 0)
		failures++;
	have = 4;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		build(&v[i]);
	if (measure(base, &v[0].pkt, repeat, trials, &ns) < 0)
		failures++;
	printf("baseline %u\n", ns);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		if (sizes[s] > have && fill_peers(&fx, &have, sizes[s]) < 0) {
			failures++;
			break;
		}
		for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
			int prog = bpf_program__fd(v[i].egress ? fx.eg->progs.dp_egress
							       : fx.in->progs.dp_ingress);

			if (check(&fx, prog, &v[i]) < 0 ||
			    measure(prog, &v[i].pkt, repeat, trials, &ns) < 0) {
				failures++;
				continue;
			}
			printf("verdict %s %u %u\n", v[i].name, have, ns);
		}
		fflush(stdout);
	}
	printf("failures %d\n", failures);
	close(base);
	dp_fx_close(&fx);
	return failures ? 1 : 0;
}
