// SPDX-License-Identifier: Apache-2.0
/* The datapath side of scripts/bench-datapath: load and attach the programs in a namespace with
 * N synthetic peers (plus the real flow's), detach, print the peer list for the nftables and
 * iptables comparisons, and time datapath_apply_peers on large sets.
 *
 *   bench_apply peers N REAL_ADDR                      one address per line
 *   bench_apply load PIN_ROOT NETNS DEV N REAL_ADDR    open (or reuse), apply, attach
 *   bench_apply attach PIN_ROOT NETNS DEV              attach again from the pinned maps
 *   bench_apply unload PIN_ROOT NETNS DEV              detach, unpin
 *   bench_apply time PIN_ROOT N                        apply timings, "key value" lines
 *
 * Synthetic peers are 10.16.0.0 + i (i < 2^20); every endpoint uses port WG_PORT. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conclave/datapath.h"

#define WG_PORT	   51820
#define IPERF_PORT 51820 /* iperf3's control connection and TCP test: on the allow list */
#define MAX_PEERS  (1u << 20)

static void synthetic_addr(uint32_t i, char *buf, size_t len)
{
	snprintf(buf, len, "10.%u.%u.%u", 16 + (i >> 16), (i >> 8) & 0xff, i & 0xff);
}

/* N peers: the real one first, then N-1 synthetic ones. */
static struct dp_peer_entry *make_peers(uint32_t n, const char *real)
{
	struct dp_peer_entry *set = calloc(n ? n : 1, sizeof(*set));
	char a[32];

	if (!set || dp_endpoint_parse(real, WG_PORT, &set[0].ep) < 0)
		return NULL;
	set[0].peer.node_id = 1;
	for (uint32_t i = 1; i < n; i++) {
		synthetic_addr(i - 1, a, sizeof(a));
		dp_endpoint_parse(a, WG_PORT, &set[i].ep);
		set[i].peer.node_id = i + 1;
	}
	return set;
}

static int enter_netns(const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		fprintf(stderr, "bench_apply: cannot enter netns %s: %s\n", name, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

static struct dp_opts bench_opts(const char *pin_root, int ifindex)
{
	return (struct dp_opts){
		.pin_root = pin_root,
		.ifindex = ifindex,
		.config = { .wg_port = WG_PORT,
			    .exempt = DP_EXEMPT_ARP | DP_EXEMPT_ND | DP_EXEMPT_ICMP_ERROR },
		.max_peers = MAX_PEERS,
		.reset = true,
	};
}

static int load(char **argv)
{
	const char *pin_root = argv[0], *ns = argv[1], *dev = argv[2], *real = argv[4];
	uint32_t n = (uint32_t)strtoul(argv[3], NULL, 10);
	struct dp_allow_v1 allow = { .proto = IPPROTO_TCP, .port = IPERF_PORT };
	struct dp_peer_entry *set = make_peers(n, real);
	struct dp_apply_stats st;
	struct datapath *dp = NULL;
	struct diag d = { { 0 } };
	struct dp_opts o;
	int ifindex, ret = 1;

	if (!set || enter_netns(ns) < 0)
		goto out;
	ifindex = (int)if_nametoindex(dev);
	o = bench_opts(pin_root, ifindex);
	if (datapath_open(&o, &dp, &d) < 0 || datapath_set_allow(dp, &allow, 1, &d) < 0 ||
	    datapath_apply_peers(dp, set, n, &st, &d) < 0 || datapath_attach(dp, &d) < 0) {
		fprintf(stderr, "bench_apply: load: %s\n", d.msg);
		goto out;
	}
	printf("apply_ms %.1f added %zu removed %zu unchanged %zu\n", (double)st.usec / 1000,
	       st.added, st.removed, st.unchanged);
	ret = 0;
out:
	datapath_close(dp); /* stays attached */
	free(set);
	return ret;
}

static int attach(char **argv)
{
	struct datapath *dp = NULL;
	struct diag d = { { 0 } };
	struct dp_opts o;
	int ret = 0;

	if (enter_netns(argv[1]) < 0)
		return 1;
	o = bench_opts(argv[0], (int)if_nametoindex(argv[2]));
	o.reset = false; /* the peers are in the pinned map: keep them */
	if (datapath_open(&o, &dp, &d) < 0 || datapath_attach(dp, &d) < 0) {
		fprintf(stderr, "bench_apply: attach: %s\n", d.msg);
		ret = 1;
	}
	datapath_close(dp);
	return ret;
}

static int unload(char **argv)
{
	struct datapath *dp = NULL;
	struct diag d = { { 0 } };
	struct dp_opts o;
	int ret = 0;

	if (enter_netns(argv[1]) < 0)
		return 1;
	o = bench_opts(argv[0], (int)if_nametoindex(argv[2]));
	if (datapath_open(&o, &dp, &d) < 0 || datapath_detach(dp, &d) < 0) {
		fprintf(stderr, "bench_apply: unload: %s\n", d.msg);
		ret = 1;
	}
	datapath_close(dp);
	if (datapath_unpin(argv[0], &d) < 0) {
		fprintf(stderr, "bench_apply: unload: %s\n", d.msg);
		ret = 1;
	}
	return ret;
}

/* Into an empty map, again unchanged, with 1% replaced, then emptied. */
static int timings(char **argv)
{
	uint32_t n = (uint32_t)strtoul(argv[1], NULL, 10);
	struct dp_peer_entry *set = make_peers(n, "10.201.0.1");
	struct dp_opts o = bench_opts(argv[0], 0);
	struct dp_apply_stats st[4];
	struct datapath *dp = NULL;
	struct diag d = { { 0 } };
	char a[32];
	int ret = 1;

	if (!set)
		return 1;
	if (datapath_open(&o, &dp, &d) < 0 || datapath_apply_peers(dp, set, n, &st[0], &d) < 0 ||
	    datapath_apply_peers(dp, set, n, &st[1], &d) < 0)
		goto fail;
	for (uint32_t i = 1; i < n; i += 100) {
		synthetic_addr(MAX_PEERS - 1 - i / 100, a, sizeof(a));
		dp_endpoint_parse(a, WG_PORT, &set[i].ep);
	}
	if (datapath_apply_peers(dp, set, n, &st[2], &d) < 0 ||
	    datapath_apply_peers(dp, set, 0, &st[3], &d) < 0)
		goto fail;
	printf("peers %u\nfresh_ms %.1f\nunchanged_ms %.1f\nchange1pct_ms %.1f\nchange1pct_entries "
	       "%zu\nclear_ms %.1f\n",
	       n, (double)st[0].usec / 1000, (double)st[1].usec / 1000, (double)st[2].usec / 1000,
	       st[2].added + st[2].removed + st[2].updated, (double)st[3].usec / 1000);
	ret = 0;
	goto out;
fail:
	fprintf(stderr, "bench_apply: time: %s\n", d.msg);
out:
	datapath_close(dp);
	datapath_unpin(argv[0], &d);
	free(set);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "peers")) {
		uint32_t n = (uint32_t)strtoul(argv[2], NULL, 10);
		char a[32];

		printf("%s\n", argv[3]);
		for (uint32_t i = 0; i + 1 < n; i++) {
			synthetic_addr(i, a, sizeof(a));
			printf("%s\n", a);
		}
		return 0;
	}
	if (argc == 7 && !strcmp(argv[1], "load"))
		return load(argv + 2);
	if (argc == 5 && !strcmp(argv[1], "attach"))
		return attach(argv + 2);
	if (argc == 5 && !strcmp(argv[1], "unload"))
		return unload(argv + 2);
	if (argc == 4 && !strcmp(argv[1], "time"))
		return timings(argv + 2);
	fprintf(stderr,
		"usage: bench_apply peers N REAL | load PIN_ROOT NETNS DEV N REAL | "
		"attach PIN_ROOT NETNS DEV | unload PIN_ROOT NETNS DEV | time PIN_ROOT N\n");
	return 2;
}
