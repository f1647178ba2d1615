// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tc clsact ingress on the underlay NIC: only attested peers' WireGuard traffic, the join port
 * on control-plane nodes, the configured exemptions and the allow list pass; everything else is
 * dropped and counted by reason (audit mode: counted, passed). Order and decisions:
 * docs/datapath.md. */
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

/* WireGuard port: the source {address, port} must be an attested endpoint. A known address
 * with another port is a spoofed (or stale) port; anything else is an unknown peer. */
static __always_inline __u32 peer_verdict(const struct dp_pkt *p)
{
	if (dp_peer_endpoint(p->saddr, p->sport))
		return DP_PASS_PEER;
	return dp_peer_address(p->saddr) ? DP_DROP_SPOOFED_PORT : DP_DROP_UNKNOWN_PEER;
}

/* The allow list matches the destination: {TCP or UDP, port}, or {protocol, 0} for protocols
 * without ports we read (ICMP, ESP, GRE, SCTP, ...). */
static __always_inline int allowed(const struct dp_pkt *p)
{
	struct dp_allow_v1 k = {};

	k.proto = p->proto;
	k.port = dp_has_ports(p) ? bpf_ntohs(p->dport) : 0;
	return bpf_map_lookup_elem(&allow, &k) != NULL;
}

/* A reply to a connection this node opened: a local TCP socket that is not a listener, or a
 * connected UDP socket, for the packet's 4-tuple in the device's network namespace. */
static __always_inline int local_connection(struct __sk_buff *skb, const struct dp_pkt *p)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	int tcp = p->proto == IPPROTO_TCP, ok;

	if (!dp_has_ports(p))
		return 0;
	if (p->family == 4) {
		__builtin_memcpy(&t.ipv4.saddr, p->saddr + 12, 4);
		__builtin_memcpy(&t.ipv4.daddr, p->daddr + 12, 4);
		t.ipv4.sport = p->sport;
		t.ipv4.dport = p->dport;
		if (tcp)
			sk = bpf_sk_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		else
			sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	} else {
		__builtin_memcpy(t.ipv6.saddr, p->saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, p->daddr, 16);
		t.ipv6.sport = p->sport;
		t.ipv6.dport = p->dport;
		if (tcp)
			sk = bpf_sk_lookup_tcp(skb, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
		else
			sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return 0;
	/* A request socket resolves to its listener, so LISTEN covers new inbound connections;
	 * an unconnected UDP socket is in state CLOSE. */
	ok = tcp ? sk->state != BPF_TCP_LISTEN : sk->state == BPF_TCP_ESTABLISHED;
	bpf_sk_release(sk);
	return ok;
}

static __always_inline __u32 ingress_verdict(struct __sk_buff *skb, const struct dp_config_v1 *cfg,
					     struct dp_pkt *p)
{
	__u16 dport;

	switch (dp_parse(skb, p)) {
	case DP_PARSED_IP: break;
	case DP_PARSED_ARP:
		return dp_exempt(cfg, DP_EXEMPT_ARP) ? DP_PASS_ARP : DP_DROP_NOT_ALLOWED;
	case DP_PARSED_OTHER: return DP_DROP_NOT_ALLOWED;
	default: return DP_DROP_MALFORMED;
	}
	if (p->frag == DP_FRAG_LATER)
		return DP_DROP_FRAGMENT;

	if (dp_is_nd(p) && dp_exempt(cfg, DP_EXEMPT_ND))
		return DP_PASS_ND;
	if (dp_is_icmp_error(p) && dp_exempt(cfg, DP_EXEMPT_ICMP_ERROR))
		return DP_PASS_ICMP_ERROR;
	if (dp_is_dhcp(p, DP_DIR_INGRESS) && dp_exempt(cfg, DP_EXEMPT_DHCP))
		return DP_PASS_DHCP;

	dport = bpf_ntohs(p->dport);
	if (p->l4 && p->proto == IPPROTO_UDP && cfg->wg_port && dport == cfg->wg_port)
		return peer_verdict(p);
	if (dp_has_ports(p) && cfg->join_port && dport == cfg->join_port)
		return cfg->control_plane ? DP_PASS_JOIN : DP_DROP_JOIN_ON_WORKER;
	if (allowed(p))
		return DP_PASS_ALLOW_LIST;
	if (dp_exempt(cfg, DP_EXEMPT_REPLY) && local_connection(skb, p))
		return DP_PASS_REPLY;
	return DP_DROP_NOT_ALLOWED;
}

SEC("tc")
int dp_ingress(struct __sk_buff *skb)
{
	const struct dp_config_v1 *cfg = dp_config_get();
	struct dp_pkt p = {};
	__u32 reason;

	if (!cfg)
		return TC_ACT_OK;
	dp_pull(skb);
	reason = ingress_verdict(skb, cfg, &p);
	return dp_finish(skb, cfg, &p, reason, DP_DIR_INGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
