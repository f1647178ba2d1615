// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tc clsact ingress on the host side of a pod's veth, i.e. every packet the pod sends, before
 * the node routes or bridges it. A packet to the cluster's ranges passes only to a pod of this
 * node or into the ranges of an attested node (the agent's peer_net tries, this node's own
 * ranges included), and only from an address registered for this pod; everything else to the
 * cluster is dropped, counted in the pod's record and reported with the veth's ifindex, which
 * names the pod. Traffic outside the cluster is not this program's business. One program,
 * loaded and pinned by the agent, attached by conclave-cni to every pod. docs/cni.md. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "conclave/datapath_abi.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/verdict.h"

static __always_inline __u32 pod_verdict(struct __sk_buff *skb, struct dp_pkt *p)
{
	struct dp_pod_addr_v1 k;
	__u32 kind = 0, *owner;
	int parsed = dp_parse(skb, p);

	/* ARP, ND's link-local traffic, anything that is not IP: the bridge's business. */
	if (parsed == DP_PARSED_ARP || parsed == DP_PARSED_OTHER)
		return DP_PASS_OUTSIDE_CLUSTER;
	/* An IP packet whose destination cannot be read could be going anywhere. */
	if (parsed != DP_PARSED_IP && parsed != DP_PARSED_BAD_L34)
		return DP_DROP_MALFORMED;
	if (!dp_cluster_dest(p, &kind))
		return DP_PASS_OUTSIDE_CLUSTER;
	/* The source must be this pod's: another pod's address would borrow its standing. */
	__builtin_memcpy(k.addr, p->saddr, 16);
	owner = bpf_map_lookup_elem(&pod_addrs, &k);
	if (!owner || *owner != skb->ifindex)
		return DP_DROP_POD_SPOOFED;
	__builtin_memcpy(k.addr, p->daddr, 16);
	if (bpf_map_lookup_elem(&pod_addrs, &k))
		return DP_PASS_POD_LOCAL;
	if (dp_lpm(&peer_net4, &peer_net6, p->family, p->daddr))
		return DP_PASS_POD_PEER;
	return DP_DROP_POD_UNATTESTED;
}

SEC("tc")
int dp_pod(struct __sk_buff *skb)
{
	const struct dp_config_v1 *cfg = dp_config_get();
	struct dp_pod_v1 *pod;
	struct dp_pkt p = {};
	__u32 reason, ifindex = skb->ifindex;

	if (!cfg)
		return TC_ACT_OK;
	dp_pull(skb);
	reason = pod_verdict(skb, &p);
	/* Like strict egress, passes outside the cluster are not counted: they are most of a
	 * pod's traffic and say nothing about enforcement. */
	if (reason == DP_PASS_OUTSIDE_CLUSTER)
		return TC_ACT_OK;
	if (dp_is_drop(reason)) {
		pod = bpf_map_lookup_elem(&pods, &ifindex);
		if (pod) {
			__sync_fetch_and_add(&pod->drop_packets, 1);
			__sync_fetch_and_add(&pod->drop_bytes, skb->len);
		}
	}
	return dp_finish(skb, cfg, &p, reason, DP_DIR_POD);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
