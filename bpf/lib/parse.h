/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header-only packet parsing for the tc programs: Ethernet with up to two in-data VLAN tags,
 * the IPv4/IPv6 fixed header (enough to read the addresses), the rest of the network layer
 * (IPv4 length and fragment fields, a bounded IPv6 extension-header walk), and the first bytes
 * of UDP/TCP/ICMP/ICMPv6. Every read is checked against data_end. Headers must end within the
 * first DP_HDR_MAX bytes, which dp_pull() brings into the linear area when they are not there.
 * Each parser returns 0 or -1 (malformed: truncated or inconsistent). The decisions behind each
 * check are in docs/datapath.md. Plain UAPI headers, no vmlinux.h: nothing here reads a kernel
 * structure other than the __sk_buff context. <linux/icmp.h> is left out on purpose: it pulls
 * <linux/if.h> and with it glibc's <sys/socket.h>, which does not build for -target bpf. */
#ifndef CONCLAVE_BPF_PARSE_H
#define CONCLAVE_BPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define DP_MAX_VLAN   2	  /* in-data 802.1Q / 802.1ad tags parsed; more is malformed */
#define DP_MAX_EXTHDR 8	  /* IPv6 extension headers walked; more is malformed */
#define DP_HDR_MAX    256 /* every header we read must start at or before this offset */

/* ICMP (IPv4) error types, from <linux/icmp.h>. */
#define DP_ICMP_DEST_UNREACH  3
#define DP_ICMP_TIME_EXCEEDED 11
#define DP_ICMP_PARAMETERPROB 12

#define DP_IP_MF     0x2000 /* IPv4 more fragments (host order) */
#define DP_IP_OFFSET 0x1fff /* IPv4 fragment offset (host order) */

enum dp_frag {
	DP_FRAG_NONE,  /* not a fragment, or an IPv6 atomic fragment */
	DP_FRAG_FIRST, /* offset 0, more to come: carries the transport header */
	DP_FRAG_LATER, /* offset > 0: no transport header, cannot be attributed to a port */
};

struct dp_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

struct dp_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M */
	__be32 id;
};

/* What the parsers learned. Addresses IPv4-mapped for IPv4, as in the peers map. */
struct dp_pkt {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;	  /* TCP/UDP only (l4 set) */
	__be16 dport;	  /* TCP/UDP only (l4 set) */
	__be16 ethertype; /* after the VLAN tags */
	__u16 ip_len;	  /* IPv4 total length / IPv6 payload length, as on the wire */
	__u16 ip_frag;	  /* IPv4 flags and fragment offset, host order */
	__u8 family;	  /* 0 (not IP yet), 4 or 6 */
	__u8 proto;	  /* transport protocol, after IPv6 extension headers */
	__u8 ttl;	  /* TTL / hop limit */
	__u8 ihl;	  /* IPv4 header length in 32-bit words */
	__u8 frag;	  /* enum dp_frag */
	__u8 l4;	  /* 1: the transport header below was read */
	__u8 icmp_type;	  /* ICMP/ICMPv6 only (l4 set) */
	__u8 icmp_code;	  /* ICMP/ICMPv6 only (l4 set) */
	__u32 l3_off;	  /* network header offset */
	__u32 l4_off;	  /* transport header offset */
	__u32 l4_end;	  /* end of the IP packet (offset), from the IP length fields */
};

static __always_inline int dp_is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* Make the first min(len, DP_HDR_MAX) bytes linear so direct packet access sees every header.
 * Never needed under BPF_PROG_TEST_RUN (its skb is linear); on a real NIC the headers may sit
 * in page fragments. Packet pointers taken before this call are invalid after it. */
static __always_inline void dp_pull(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 want = skb->len;

	if (want > DP_HDR_MAX)
		want = DP_HDR_MAX;
	if (data + want > end)
		bpf_skb_pull_data(skb, want);
}

/* Ethernet and up to DP_MAX_VLAN in-data tags. An offloaded tag (skb->vlan_tci) is not in the
 * data and needs nothing. A frame with more tags than we parse is malformed. */
static __always_inline int dp_parse_eth(struct __sk_buff *skb, struct dp_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct dp_vlan_hdr *vh;
	__u32 off = sizeof(*eth);
	__be16 proto;

	if ((void *)(eth + 1) > end)
		return -1;
	proto = eth->h_proto;
#pragma unroll
	for (int i = 0; i < DP_MAX_VLAN; i++) {
		if (!dp_is_vlan(proto))
			break;
		vh = data + off;
		if ((void *)(vh + 1) > end)
			return -1;
		proto = vh->encap_proto;
		off += sizeof(*vh);
	}
	if (dp_is_vlan(proto))
		return -1;
	p->ethertype = proto;
	p->l3_off = off;
	return 0;
}

/* The ARP fixed header (hardware/protocol types and lengths, opcode) must be present. */
static __always_inline int dp_parse_arp(struct __sk_buff *skb, const struct dp_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 off = p->l3_off;

	if (off > DP_HDR_MAX)
		return -1;
	return data + off + 8 > end ? -1 : 0;
}

static __always_inline void dp_map4(__u8 *dst, __be32 a)
{
	__u32 *d = (__u32 *)dst;

	d[0] = 0;
	d[1] = 0;
	d[2] = bpf_htonl(0xffff);
	d[3] = a;
}

static __always_inline int dp_is_v4mapped(const struct in6_addr *a)
{
	return a->in6_u.u6_addr32[0] == 0 && a->in6_u.u6_addr32[1] == 0 &&
	       a->in6_u.u6_addr32[2] == bpf_htonl(0xffff);
}

/* The IPv4 or IPv6 fixed header: version, addresses, protocol, TTL and length fields. Enough
 * to know where the packet goes; dp_parse_ip_rest() checks the rest. ethertype must be IP. */
static __always_inline int dp_parse_ip(struct __sk_buff *skb, struct dp_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 off = p->l3_off;

	if (off > DP_HDR_MAX)
		return -1;
	if (p->ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > end)
			return -1;
		if ((*(__u8 *)ip >> 4) != 4)
			return -1;
		p->family = 4;
		p->ihl = *(__u8 *)ip & 0xf;
		p->proto = ip->protocol;
		p->ttl = ip->ttl;
		p->ip_len = bpf_ntohs(ip->tot_len);
		p->ip_frag = bpf_ntohs(ip->frag_off);
		dp_map4(p->saddr, ip->saddr);
		dp_map4(p->daddr, ip->daddr);
		return 0;
	}
	{
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > end)
			return -1;
		if ((*(__u8 *)ip6 >> 4) != 6)
			return -1;
		/* IPv4-mapped addresses never appear on the wire (RFC 4291 2.5.5.2); one posing as
		 * a source would also meet an IPv4 peer's key in the peers map. */
		if (dp_is_v4mapped(&ip6->saddr) || dp_is_v4mapped(&ip6->daddr))
			return -1;
		p->family = 6;
		p->proto = ip6->nexthdr;
		p->ttl = ip6->hop_limit;
		p->ip_len = bpf_ntohs(ip6->payload_len);
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
	}
	return 0;
}

static __always_inline int dp_ip6_is_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT || nh == IPPROTO_AH;
}

/* IPv6 extension headers, at most DP_MAX_EXTHDR of them. Hop-by-hop only first (RFC 8200),
 * AH walked through (it authenticates, the transport header follows it), a non-first
 * fragment ends the walk (what follows is payload). ESP, "no next header" and anything
 * unknown are the transport protocol: they have no ports we could read. */
__attribute__((noinline)) int dp_parse_ip6_ext(struct __sk_buff *skb, struct dp_pkt *p)
{
	void *data, *end;
	__u32 avail, len, off;
	__u8 nh;

	if (!skb || !p || p->l3_off > DP_HDR_MAX)
		return -1;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	avail = skb->len - p->l3_off;
	if (avail < sizeof(struct ipv6hdr))
		return -1;
	len = p->ip_len;
	off = p->l3_off + sizeof(struct ipv6hdr);
	nh = p->proto;

	/* Payload length 0: a jumbogram or a BIG TCP GRO packet; the skb length is the truth. */
	if (len == 0)
		len = avail - sizeof(struct ipv6hdr);
	else if (len > avail - sizeof(struct ipv6hdr))
		return -1;
	p->l4_end = p->l3_off + sizeof(struct ipv6hdr) + len;

	for (int i = 0; i < DP_MAX_EXTHDR; i++) {
		struct ipv6_opt_hdr *h;

		if (!dp_ip6_is_ext(nh))
			break;
		if (off > DP_HDR_MAX)
			return -1;
		h = data + off;
		/* Every extension header is at least 8 bytes. */
		if ((void *)h + 8 > end || off + 8 > p->l4_end)
			return -1;
		if (nh == IPPROTO_FRAGMENT) {
			struct dp_frag_hdr *f = (void *)h;
			__u16 fo = bpf_ntohs(f->frag_off);

			if (fo & 0xfff8) {
				p->frag = DP_FRAG_LATER;
				p->proto = f->nexthdr;
				p->l4_off = off + 8;
				return 0;
			}
			if (fo & 1)
				p->frag = DP_FRAG_FIRST;
			off += 8;
		} else if (nh == IPPROTO_AH) {
			off += ((__u32)h->hdrlen + 2) * 4;
		} else {
			if (nh == IPPROTO_HOPOPTS && i != 0)
				return -1;
			off += ((__u32)h->hdrlen + 1) * 8;
		}
		nh = h->nexthdr;
	}
	if (dp_ip6_is_ext(nh) || off > p->l4_end)
		return -1;
	p->proto = nh;
	p->l4_off = off;
	return 0;
}

/* The rest of the network layer: IPv4 header length, total length against the skb, fragment
 * fields (options are skipped, not judged); IPv6 payload length and extension headers. */
static __always_inline int dp_parse_ip_rest(struct __sk_buff *skb, struct dp_pkt *p)
{
	__u32 avail = skb->len - p->l3_off;
	__u32 hlen, len;

	if (p->family == 6)
		return dp_parse_ip6_ext(skb, p);
	hlen = (__u32)p->ihl * 4;
	len = p->ip_len;
	if (hlen < sizeof(struct iphdr))
		return -1;
	/* Total length 0 on a packet above 64 KiB: BIG TCP GSO/GRO; the skb length is the truth. */
	if (len == 0 && avail > 0xffff)
		len = avail;
	if (len < hlen || len > avail)
		return -1;
	if (p->ip_frag & DP_IP_OFFSET)
		p->frag = DP_FRAG_LATER;
	else if (p->ip_frag & DP_IP_MF)
		p->frag = DP_FRAG_FIRST;
	p->l4_off = p->l3_off + hlen;
	p->l4_end = p->l3_off + len;
	return 0;
}

/* The transport header's fixed part for UDP, TCP, ICMP (IPv4) and ICMPv6 (IPv6): it must be
 * whole, inside the IP packet. Other protocols and non-first fragments read nothing. */
__attribute__((noinline)) int dp_parse_l4(struct __sk_buff *skb, struct dp_pkt *p)
{
	void *data, *end;
	__u32 off, need;

	if (!skb || !p)
		return -1;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	off = p->l4_off;

	if (p->frag == DP_FRAG_LATER)
		return 0;
	if (p->proto == IPPROTO_UDP)
		need = sizeof(struct udphdr);
	else if (p->proto == IPPROTO_TCP)
		need = sizeof(struct tcphdr);
	else if ((p->proto == IPPROTO_ICMP && p->family == 4) ||
		 (p->proto == IPPROTO_ICMPV6 && p->family == 6))
		need = 8;
	else
		return 0;
	if (off > DP_HDR_MAX || off + need > p->l4_end)
		return -1;
	if (p->proto == IPPROTO_UDP) {
		struct udphdr *udp = data + off;

		if ((void *)(udp + 1) > end)
			return -1;
		p->sport = udp->source;
		p->dport = udp->dest;
	} else if (p->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = data + off;

		if ((void *)(tcp + 1) > end)
			return -1;
		if ((((__u8 *)tcp)[12] >> 4) < 5) /* data offset below the fixed header */
			return -1;
		p->sport = tcp->source;
		p->dport = tcp->dest;
	} else {
		__u8 *icmp = data + off;

		if ((void *)(icmp + 8) > end)
			return -1;
		p->icmp_type = icmp[0];
		p->icmp_code = icmp[1];
	}
	p->l4 = 1;
	return 0;
}

/* What dp_parse() could read: how far the packet is understood. */
enum dp_parsed {
	DP_PARSED_IP,	   /* IPv4/IPv6 fully parsed (the transport header if we read one) */
	DP_PARSED_ARP,	   /* ARP with its fixed header */
	DP_PARSED_OTHER,   /* another ethertype: nothing more read */
	DP_PARSED_BAD_L2,  /* truncated Ethernet, VLAN tag or ARP header, or too many tags */
	DP_PARSED_BAD_IP,  /* IP ethertype but no readable fixed header of the right version */
	DP_PARSED_BAD_L34, /* addresses read (p->family set) but the rest is malformed */
};

/* The network and transport layers, from p->l3_off on. Global like dp_parse(), so that the
 * verifier walks it once rather than once per VLAN layout. */
__attribute__((noinline)) int dp_parse_net(struct __sk_buff *skb, struct dp_pkt *p)
{
	if (!skb || !p)
		return DP_PARSED_BAD_IP;
	if (dp_parse_ip(skb, p))
		return DP_PARSED_BAD_IP;
	if (dp_parse_ip_rest(skb, p) || dp_parse_l4(skb, p))
		return DP_PARSED_BAD_L34;
	return DP_PARSED_IP;
}

/* Parse everything once. A global function: the verifier checks it on its own, once, instead
 * of once per path through the caller, which keeps both programs' verification small. The
 * caller's p must be zeroed; the return value is an enum dp_parsed. */
__attribute__((noinline)) int dp_parse(struct __sk_buff *skb, struct dp_pkt *p)
{
	if (!skb || !p)
		return DP_PARSED_BAD_L2;
	if (dp_parse_eth(skb, p))
		return DP_PARSED_BAD_L2;
	if (p->ethertype == bpf_htons(ETH_P_ARP))
		return dp_parse_arp(skb, p) ? DP_PARSED_BAD_L2 : DP_PARSED_ARP;
	if (p->ethertype != bpf_htons(ETH_P_IP) && p->ethertype != bpf_htons(ETH_P_IPV6))
		return DP_PARSED_OTHER;
	return dp_parse_net(skb, p);
}

#endif
