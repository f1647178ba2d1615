/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The datapath ABI: map keys and values shared by the eBPF programs (bpf/) and libconclave's
 * datapath module. Included by both sides, so only <linux/types.h> types.
 *
 * Versioning: every struct name carries the ABI version (…_v1) so `bpftool map dump` shows it,
 * and the config map records DP_ABI_VERSION. A change of layout bumps both; userspace refuses to
 * reuse pinned maps of another version (it detaches, unpins and loads fresh). */
#ifndef CONCLAVE_DATAPATH_ABI_H
#define CONCLAVE_DATAPATH_ABI_H

#include <linux/types.h>

#define DP_ABI_VERSION 1
#define DP_PIN_ROOT    "/sys/fs/bpf/conclave"

/* Why a packet passed or was dropped: the index of the per-CPU counters and of drop events. */
enum dp_reason {
	DP_PASS_PEER,		 /* ingress: WireGuard UDP from an attested peer's endpoint */
	DP_PASS_JOIN,		 /* join port: ingress on control-plane nodes; egress to a node
				  * address's join port, and a control plane's replies from it */
	DP_PASS_ARP,		 /* exemption: ARP */
	DP_PASS_ND,		 /* exemption: IPv6 neighbour/router discovery, MLD */
	DP_PASS_DHCP,		 /* exemption: DHCPv4 / DHCPv6 client traffic */
	DP_PASS_ICMP_ERROR,	 /* exemption: ICMP/ICMPv6 errors (PMTU discovery needs them) */
	DP_PASS_ALLOW_LIST,	 /* exemption: configured protocol/port */
	DP_PASS_OUTSIDE_CLUSTER, /* egress: destination outside the cluster's CIDRs */
	DP_PASS_TO_PEER,	 /* egress: WireGuard UDP to an attested peer */
	DP_DROP_UNKNOWN_PEER,	 /* WireGuard port, source is no attested peer */
	DP_DROP_SPOOFED_PORT,	 /* a peer's address but not its WireGuard source port */
	DP_DROP_JOIN_ON_WORKER,	 /* join port on a node that is not control plane */
	DP_DROP_NOT_ALLOWED,	 /* ingress: nothing above matched */
	DP_DROP_MALFORMED,	 /* truncated or inconsistent headers */
	DP_DROP_FRAGMENT, /* IP fragment that cannot be attributed (documented in docs/datapath.md)
			   */
	DP_DROP_STRICT,	  /* egress: plaintext to a cluster destination (strict mode) */
	/* Appended after the drops so that existing values keep their numbers; it is a pass. */
	DP_PASS_REPLY, /* ingress: reply to a connection this node opened (DP_EXEMPT_REPLY) */
	/* Appended: the per-pod program (bpf/pod.bpf.c), on the host side of each pod's veth. */
	DP_PASS_POD_LOCAL,	/* pod: to a pod registered on this node */
	DP_PASS_POD_PEER,	/* pod: into the ranges of an attested node (this one included) */
	DP_DROP_POD_UNATTESTED, /* pod: to a cluster address no attested node owns */
	DP_DROP_POD_SPOOFED,	/* pod: to the cluster from an address that is not the pod's */
	DP_REASON_MAX,
};

/* An attested peer's WireGuard endpoint. IPv4 is stored as an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) so one map serves both families. Port in network byte order.
 * "peers" holds, for every peer, its endpoint {addr, port} AND an address entry {addr, port 0}
 * (same value): ingress tells a spoofed source port (address entry only) from an unknown
 * source (neither). No real endpoint has port 0; a packet's port 0 never counts as an endpoint. */
struct dp_endpoint_v1 {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
};

struct dp_peer_v1 {
	__u32 node_id;
	__u32 flags; /* reserved, 0 */
};

/* Exemption bits in dp_config_v1.exempt. */
#define DP_EXEMPT_ARP	     (1u << 0)
#define DP_EXEMPT_ND	     (1u << 1)
#define DP_EXEMPT_DHCP	     (1u << 2)
#define DP_EXEMPT_ICMP_ERROR (1u << 3)
/* Ingress TCP/UDP for which a local connected socket exists (bpf_sk_lookup_*): replies to
 * connections this node opened, e.g. a worker's join client, DNS, image pulls. */
#define DP_EXEMPT_REPLY (1u << 4)

/* Single-entry array "config"; host byte order. Changes take effect on the next packet. */
struct dp_config_v1 {
	__u32 abi;	      /* DP_ABI_VERSION */
	__u16 wg_port;	      /* WireGuard listen port of every node */
	__u16 join_port;      /* join service port; 0 = none */
	__u8 control_plane;   /* 1: this node serves the join port */
	__u8 audit;	      /* 1: count and report, never drop */
	__u8 strict;	      /* 1: egress strict mode on */
	__u8 exempt;	      /* DP_EXEMPT_* */
	__u32 events_per_sec; /* drop events per second per CPU; 0 = no events */
};

/* "allow": explicit ingress allow list (destination protocol/port). Value: __u8 1. */
struct dp_allow_v1 {
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad;
	__u16 port; /* host byte order */
};

/* "cidr4" / "cidr6": LPM tries of the cluster's node and pod ranges. Value: __u32 kind. */
struct dp_cidr4_v1 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct dp_cidr6_v1 {
	__u32 prefixlen;
	__u8 addr[16];
};

#define DP_CIDR_NODE 1
#define DP_CIDR_POD  2

/* "counters": per-CPU array indexed by enum dp_reason. */
struct dp_counter_v1 {
	__u64 packets;
	__u64 bytes;
};

/* "events": ring buffer of drop (or, in audit mode, would-drop) events. */
struct dp_event_v1 {
	__u64 ts_ns;
	__u32 reason;
	__u32 ifindex;
	__u8 direction; /* 0 ingress, 1 egress, 2 a pod's traffic (ifindex: its host-side veth) */
	__u8 proto;
	__u8 audit;
	__u8 pad;
	__be16 sport;
	__be16 dport;
	__u8 saddr[16]; /* IPv4-mapped for IPv4 */
	__u8 daddr[16];
};

/* "peer_net4" / "peer_net6": LPM tries of the attested nodes' own ranges (overlay addresses
 * and pod CIDR, the WireGuard allowed IPs), this node's included; keys are dp_cidr4_v1 /
 * dp_cidr6_v1, the value the owner's node id. Written by the agent's mesh, read by pods. */

/* Per-pod enforcement: "pods" maps the host-side veth's ifindex to the pod's identity and
 * drop counters; "pod_addrs" maps each registered pod address (IPv4-mapped) to that ifindex.
 * Written by conclave-cni at ADD, removed at DEL. */
#define DP_POD_ADDRS_MAX 4
#define DP_POD_NAME_MAX	 128
#define DP_POD_ID_MAX	 128

struct dp_pod_v1 {
	__u64 drop_packets; /* drops of this pod's traffic, any reason (atomic adds) */
	__u64 drop_bytes;
	__u64 added_ns;			  /* CLOCK_MONOTONIC time of the ADD */
	__u32 naddrs;			  /* used entries of addrs */
	__u32 flags;			  /* reserved, 0 */
	__u8 addrs[DP_POD_ADDRS_MAX][16]; /* IPv4-mapped for IPv4 */
	char name[DP_POD_NAME_MAX]; /* "namespace/name" from CNI_ARGS, else the container id */
	char container_id[DP_POD_ID_MAX]; /* CNI_CONTAINERID */
	char ifname[16];		  /* CNI_IFNAME, the interface inside the pod */
};

struct dp_pod_addr_v1 {
	__u8 addr[16];
};

/* "ratelimit": per-CPU array of one entry, the event budget of both programs on that CPU. */
struct dp_ratelimit_v1 {
	__u64 window_ns;  /* start of the current one-second window (bpf_ktime_get_ns) */
	__u64 sent;	  /* events emitted in the window */
	__u64 suppressed; /* events not emitted (budget spent or ring buffer full), since load */
};

#endif
