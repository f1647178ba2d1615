// SPDX-License-Identifier: Apache-2.0
/* dp_node: a node's datapath as the agent leaves it after mesh-setup and a peer-set apply,
 * without a join service, TPM or WireGuard, for the CNI tests and scripts/bench-cni. It loads
 * the real programs with their maps pinned under PIN_ROOT (the pod program pinned too), writes
 * the config (events on), the cluster ranges and the attested nodes' ranges, and exits: the
 * pins keep everything. Loading again is what an agent restart does to the datapath: the pods
 * registered earlier move to the new pod program; the counts are printed ("pods: moved N
 * current N gone N skipped N failed N"). `unpin` removes it all again.
 *
 *   dp_node load PIN_ROOT --cidr CIDR... [--node CIDR=ID...]
 *   dp_node unpin PIN_ROOT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/datapath.h"

#define MAX_RANGES 32

int main(int argc, char **argv)
{
	struct dp_cidr cidrs[MAX_RANGES], nodes[MAX_RANGES];
	struct podpath_reattach_stats st;
	struct dp_opts o = { 0 };
	struct datapath *dp = NULL;
	struct diag d = { { 0 } };
	size_t nc = 0, nn = 0;
	int ret;

	if (argc == 3 && !strcmp(argv[1], "unpin")) {
		ret = datapath_unpin(argv[2], &d);
		if (ret < 0)
			fprintf(stderr, "dp_node: %s\n", d.msg);
		return ret < 0;
	}
	if (argc < 3 || strcmp(argv[1], "load"))
		goto usage;
	for (int i = 3; i + 1 < argc; i += 2) {
		char *eq = strchr(argv[i + 1], '=');

		if (!strcmp(argv[i], "--cidr") && nc < MAX_RANGES &&
		    dp_cidr_parse(argv[i + 1], DP_CIDR_POD, &cidrs[nc]) == 0) {
			nc++;
		} else if (!strcmp(argv[i], "--node") && nn < MAX_RANGES && eq) {
			*eq = '\0';
			if (dp_cidr_parse(argv[i + 1], (uint32_t)atoi(eq + 1), &nodes[nn++]) < 0)
				goto usage;
		} else {
			goto usage;
		}
	}
	if ((argc - 3) % 2)
		goto usage;
	o.pin_root = argv[2];
	o.config.events_per_sec = 1000;
	o.config.exempt = DP_EXEMPT_ARP | DP_EXEMPT_ND | DP_EXEMPT_DHCP | DP_EXEMPT_ICMP_ERROR;
	ret = datapath_ensure_bpffs(argv[2], &d);
	if (ret == 0)
		ret = datapath_open(&o, &dp, &d);
	if (ret == 0) {
		datapath_pods_reattached(dp, &st);
		printf("pods: moved %zu current %zu gone %zu skipped %zu failed %zu\n",
		       st.reattached, st.current, st.gone, st.skipped, st.failed);
	}
	if (ret == 0)
		ret = datapath_set_cidrs(dp, cidrs, nc, &d);
	if (ret == 0)
		ret = datapath_set_peer_nets(dp, nodes, nn, &d);
	datapath_close(dp);
	if (ret < 0)
		fprintf(stderr, "dp_node: %s\n", d.msg);
	return ret < 0;
usage:
	fprintf(stderr, "usage: dp_node load PIN_ROOT --cidr CIDR... [--node CIDR=ID...]\n"
			"       dp_node unpin PIN_ROOT\n");
	return 2;
}
