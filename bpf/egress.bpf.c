// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tc clsact egress on the underlay NIC, strict mode: an IPv4 or IPv6 packet to a cluster
 * destination (node or pod CIDR) leaves only as WireGuard UDP to an attested peer's endpoint,
 * as join traffic between nodes, or as an exemption (ND/MLD, ICMP errors, DHCP). Everything
 * else to the cluster is dropped and counted (audit mode: counted, passed), so a missing or
 * half-configured peer cannot leak plaintext. Order and decisions: docs/datapath.md. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "conclave/datapath_abi.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/verdict.h"

/* The UDP payload starts like a WireGuard message: type 1-4, then three zero bytes. Keeps
 * another process's plaintext sent from the WireGuard port to a peer endpoint from leaving. */
static __always_inline int wireguard_message(struct __sk_buff *skb, const struct dp_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 off = p->l4_off;
	__u8 *b;

	if (off > DP_HDR_MAX || off + sizeof(struct udphdr) + 4 > p->l4_end)
		return 0;
	b = data + off + sizeof(struct udphdr);
	if ((void *)(b + 4) > end)
		return 0;
	return b[0] >= 1 && b[0] <= 4 && !b[1] && !b[2] && !b[3];
}

static __always_inline __u32 egress_verdict(struct __sk_buff *skb, const struct dp_config_v1 *cfg,
					    struct dp_pkt *p)
{
	__u16 sport, dport;
	__u32 kind = 0;
	int parsed = dp_parse(skb, p);

	if (parsed == DP_PARSED_ARP)
		return DP_PASS_ARP;
	/* Not IP: it has no IP destination, so none inside the cluster. */
	if (parsed == DP_PARSED_OTHER)
		return DP_PASS_OUTSIDE_CLUSTER;
	/* IP whose destination cannot be read could go anywhere: drop. */
	if (parsed != DP_PARSED_IP && parsed != DP_PARSED_BAD_L34)
		return DP_DROP_MALFORMED;
	if (!dp_cluster_dest(p, &kind))
		return DP_PASS_OUTSIDE_CLUSTER;
	/* From here on the packet goes to the cluster: what we cannot classify is dropped. */
	if (parsed != DP_PARSED_IP)
		return DP_DROP_MALFORMED;
	if (p->frag == DP_FRAG_LATER)
		return DP_DROP_FRAGMENT;

	if (dp_is_nd(p) && dp_exempt(cfg, DP_EXEMPT_ND))
		return DP_PASS_ND;
	if (dp_is_icmp_error(p) && dp_exempt(cfg, DP_EXEMPT_ICMP_ERROR))
		return DP_PASS_ICMP_ERROR;
	if (dp_is_dhcp(p, DP_DIR_EGRESS) && dp_exempt(cfg, DP_EXEMPT_DHCP))
		return DP_PASS_DHCP;

	if (!dp_has_ports(p))
		return DP_DROP_STRICT;
	sport = bpf_ntohs(p->sport);
	dport = bpf_ntohs(p->dport);
	if (p->proto == IPPROTO_UDP && cfg->wg_port && sport == cfg->wg_port &&
	    dp_peer_endpoint(p->daddr, p->dport) && wireguard_message(skb, p))
		return DP_PASS_TO_PEER;
	/* Join traffic is attested TLS: the client to a node's join port, and a control plane's
	 * answers from it. It cannot wait for WireGuard: joining is how a node gets its peers. */
	if (cfg->join_port && kind == DP_CIDR_NODE &&
	    (dport == cfg->join_port || (cfg->control_plane && sport == cfg->join_port)))
		return DP_PASS_JOIN;
	return DP_DROP_STRICT;
}

SEC("tc")
int dp_egress(struct __sk_buff *skb)
{
	const struct dp_config_v1 *cfg = dp_config_get();
	struct dp_pkt p = {};
	__u32 reason;

	/* Strict mode off: nothing to enforce, nothing counted. */
	if (!cfg || !cfg->strict)
		return TC_ACT_OK;
	dp_pull(skb);
	reason = egress_verdict(skb, cfg, &p);
	return dp_finish(skb, cfg, &p, reason, DP_DIR_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
