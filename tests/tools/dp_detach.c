// SPDX-License-Identifier: Apache-2.0
/* dp_detach: take the agent's tc programs off a node's underlay interface, or put them back, for
 * scripts/bench-mesh (the debug image only: a production node has no way to switch its datapath
 * off). The pinned maps stay as the agent left them; only the filters and the program pins go.
 * The agent attaches at start only, so a detached node stays detached until `dp_detach attach`
 * or an agent restart.
 *
 *   dp_detach detach IFNAME [PIN_ROOT]   our filters off IFNAME (absent ones are fine)
 *   dp_detach attach IFNAME [PIN_ROOT]   load the programs on the pinned maps and attach them,
 *                                        as the agent does at start
 *
 * Both end by printing the number of our filters left in the namespace ("attached N"). */
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "conclave/datapath.h"

/* datapath_detach needs the interface, which only datapath_open records: open on the pinned
 * maps (their ABI and size) with the config they hold, so nothing the agent set changes. */
static int open_on(const char *pin_root, int ifindex, struct datapath **dp, struct diag *d)
{
	struct dp_opts o = { .pin_root = pin_root, .ifindex = ifindex };
	struct datapath *pinned = NULL;
	int ret = datapath_open_pinned(pin_root, &pinned, d);

	if (ret == 0)
		ret = datapath_get_config(pinned, &o.config, d);
	datapath_close(pinned);
	if (ret == 0)
		ret = datapath_open(&o, dp, d);
	return ret;
}

int main(int argc, char **argv)
{
	const char *pin_root = argc > 3 ? argv[3] : DP_PIN_ROOT;
	struct dp_attachment at[8];
	struct datapath *dp = NULL;
	struct diag d = { { 0 } };
	size_t n = 0;
	int ifindex, ret;
	bool attach;

	if (argc < 3 || argc > 4 || (strcmp(argv[1], "detach") && strcmp(argv[1], "attach"))) {
		fprintf(stderr, "usage: dp_detach detach|attach IFNAME [PIN_ROOT]\n");
		return 2;
	}
	attach = !strcmp(argv[1], "attach");
	ifindex = (int)if_nametoindex(argv[2]);
	if (!ifindex) {
		fprintf(stderr, "dp_detach: no interface %s\n", argv[2]);
		return 1;
	}
	ret = open_on(pin_root, ifindex, &dp, &d);
	if (ret == 0)
		ret = attach ? datapath_attach(dp, &d) : datapath_detach(dp, &d);
	if (ret == 0)
		ret = datapath_list_attachments(dp, at, sizeof(at) / sizeof(at[0]), &n, &d);
	datapath_close(dp);
	if (ret < 0) {
		fprintf(stderr, "dp_detach: %s on %s: %s\n", argv[1], argv[2], d.msg);
		return 1;
	}
	printf("attached %zu\n", n);
	return 0;
}
