/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What both programs share once a packet is parsed: the config, the exemptions (ND/MLD,
 * ICMP errors, DHCP), the peer lookup, per-reason counters, rate-limited drop events, and
 * turning a reason into a tc verdict (audit mode passes what it would drop). */
#ifndef CONCLAVE_BPF_VERDICT_H
#define CONCLAVE_BPF_VERDICT_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "conclave/datapath_abi.h"
#include "lib/maps.h"
#include "lib/parse.h"

#define DP_DIR_INGRESS 0
#define DP_DIR_EGRESS  1
#define DP_DIR_POD     2

#define DP_NSEC_PER_SEC 1000000000ull

/* The config, or NULL while userspace has not written one of our ABI: the programs are inert
 * (pass, count nothing) until then, so attaching before configuring cannot cut a node off. */
static __always_inline const struct dp_config_v1 *dp_config_get(void)
{
	__u32 zero = 0;
	const struct dp_config_v1 *c = bpf_map_lookup_elem(&config, &zero);

	if (!c || c->abi != DP_ABI_VERSION)
		return NULL;
	return c;
}

static __always_inline int dp_exempt(const struct dp_config_v1 *cfg, __u32 bit)
{
	return (cfg->exempt & bit) != 0;
}

static __always_inline int dp_is_drop(__u32 reason)
{
	return (reason >= DP_DROP_UNKNOWN_PEER && reason <= DP_DROP_STRICT) ||
	       reason == DP_DROP_POD_UNATTESTED || reason == DP_DROP_POD_SPOOFED;
}

static __always_inline int dp_has_ports(const struct dp_pkt *p)
{
	return p->l4 && (p->proto == IPPROTO_UDP || p->proto == IPPROTO_TCP);
}

/* IPv6 neighbour and router discovery (RS, RA, NS, NA, redirect: 133-137) arrive with hop
 * limit 255 (RFC 4861: anything else was forwarded and is invalid). MLD (130-132, 143) has
 * hop limit 1; it rides the same exemption because a node that ignores MLD queries drops out
 * of MLD-snooping switches' groups and stops receiving ND multicast. */
static __always_inline int dp_is_nd(const struct dp_pkt *p)
{
	__u8 t = p->icmp_type;

	if (p->family != 6 || p->proto != IPPROTO_ICMPV6 || !p->l4 || p->icmp_code != 0)
		return 0;
	if (t >= 133 && t <= 137)
		return p->ttl == 255;
	if ((t >= 130 && t <= 132) || t == 143)
		return p->ttl == 1;
	return 0;
}

/* ICMP destination unreachable, time exceeded, parameter problem; ICMPv6 the same plus packet
 * too big. Path MTU discovery depends on them. Echo and everything else are not errors. */
static __always_inline int dp_is_icmp_error(const struct dp_pkt *p)
{
	__u8 t = p->icmp_type;

	if (!p->l4)
		return 0;
	if (p->family == 4 && p->proto == IPPROTO_ICMP)
		return t == DP_ICMP_DEST_UNREACH || t == DP_ICMP_TIME_EXCEEDED ||
		       t == DP_ICMP_PARAMETERPROB;
	if (p->family == 6 && p->proto == IPPROTO_ICMPV6)
		return t >= ICMPV6_DEST_UNREACH && t <= ICMPV6_PARAMPROB;
	return 0;
}

/* DHCP client traffic: the server-to-client direction on ingress (67 -> 68, 547 -> 546),
 * client-to-server on egress. */
static __always_inline int dp_is_dhcp(const struct dp_pkt *p, int dir)
{
	__u16 client = p->family == 4 ? 68 : 546, server = p->family == 4 ? 67 : 547;
	__u16 sport = bpf_ntohs(p->sport), dport = bpf_ntohs(p->dport);

	if (!p->l4 || p->proto != IPPROTO_UDP)
		return 0;
	if (dir == DP_DIR_INGRESS)
		return sport == server && dport == client;
	return sport == client && dport == server;
}

/* Is {addr, port} an attested endpoint? Port 0 never is: {addr, 0} is a peer's address entry. */
static __always_inline int dp_peer_endpoint(const __u8 *addr, __be16 port)
{
	struct dp_endpoint_v1 k = {};

	if (!port)
		return 0;
	__builtin_memcpy(k.addr, addr, 16);
	k.port = port;
	return bpf_map_lookup_elem(&peers, &k) != NULL;
}

/* Does addr belong to some attested peer (its address entry)? */
static __always_inline int dp_peer_address(const __u8 *addr)
{
	struct dp_endpoint_v1 k = {};

	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&peers, &k) != NULL;
}

/* Longest-prefix match of addr (IPv4-mapped when family is 4) in one of a pair of LPM tries
 * keyed by dp_cidr4_v1 / dp_cidr6_v1: the value, or NULL if no range holds it. */
static __always_inline __u32 *dp_lpm(void *trie4, void *trie6, __u8 family, const __u8 *addr)
{
	if (family == 4) {
		struct dp_cidr4_v1 k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, addr + 12, 4);
		return bpf_map_lookup_elem(trie4, &k);
	}
	struct dp_cidr6_v1 k = { .prefixlen = 128 };

	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(trie6, &k);
}

/* Is the destination inside the cluster's ranges (cidr4/cidr6)? 1 and the range's kind if so. */
static __always_inline int dp_cluster_dest(const struct dp_pkt *p, __u32 *kind)
{
	__u32 *v = dp_lpm(&cidr4, &cidr6, p->family, p->daddr);

	if (!v)
		return 0;
	*kind = *v;
	return 1;
}

static __always_inline void dp_count(struct __sk_buff *skb, __u32 reason)
{
	struct dp_counter_v1 *c = bpf_map_lookup_elem(&counters, &reason);

	if (c) {
		c->packets++;
		c->bytes += skb->len;
	}
}

/* One event per drop (or audit would-drop), at most events_per_sec per CPU per one-second
 * window; the rest, and those that find the ring buffer full, are counted as suppressed. */
static __always_inline void dp_event(struct __sk_buff *skb, const struct dp_config_v1 *cfg,
				     const struct dp_pkt *p, __u32 reason, __u8 dir)
{
	struct dp_ratelimit_v1 *rl;
	struct dp_event_v1 *ev;
	__u32 zero = 0;
	__u64 now;

	if (!cfg->events_per_sec)
		return;
	rl = bpf_map_lookup_elem(&ratelimit, &zero);
	if (!rl)
		return;
	now = bpf_ktime_get_ns();
	if (now - rl->window_ns >= DP_NSEC_PER_SEC) {
		rl->window_ns = now;
		rl->sent = 0;
	}
	if (rl->sent >= cfg->events_per_sec) {
		rl->suppressed++;
		return;
	}
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		rl->suppressed++;
		return;
	}
	rl->sent++;
	ev->ts_ns = now;
	ev->reason = reason;
	ev->ifindex = skb->ifindex;
	ev->direction = dir;
	ev->proto = p->family ? p->proto : 0;
	ev->audit = cfg->audit;
	ev->pad = 0;
	ev->sport = p->sport;
	ev->dport = p->dport;
	__builtin_memcpy(ev->saddr, p->saddr, 16);
	__builtin_memcpy(ev->daddr, p->daddr, 16);
	bpf_ringbuf_submit(ev, 0);
}

/* Count the reason; drops also report an event and, unless in audit mode, drop. */
static __always_inline int dp_finish(struct __sk_buff *skb, const struct dp_config_v1 *cfg,
				     const struct dp_pkt *p, __u32 reason, __u8 dir)
{
	dp_count(skb, reason);
	if (!dp_is_drop(reason))
		return TC_ACT_OK;
	dp_event(skb, cfg, p, reason, dir);
	return cfg->audit ? TC_ACT_OK : TC_ACT_SHOT;
}

#endif
