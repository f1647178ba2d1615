/* SPDX-License-Identifier: Apache-2.0 */
/* The datapath's control: load the tc programs (bpf/ingress.bpf.c, bpf/egress.bpf.c) with their
 * maps pinned under a bpffs directory, attach them to the node's interface, and keep the maps
 * equal to the agent's view (peers, cluster CIDRs, allow list, config). Counters and drop
 * events for `conclavectl status` and `conclavectl monitor`.
 *
 * Lifecycle: datapath_open (reuses pinned maps, so peers survive an agent restart; moves the
 * pods conclave-cni attached earlier to the pod program it pins) ->
 * datapath_apply_peers and the other setters -> datapath_attach (replaces our tc filters in
 * place, so traffic of existing peers never stops) -> datapath_close (programs stay attached and
 * maps pinned). datapath_detach and datapath_unpin undo it for good. */
#ifndef CONCLAVE_DATAPATH_H
#define CONCLAVE_DATAPATH_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conclave/datapath_abi.h"
#include "conclave/diag.h"
#include "conclave/podpath.h"

/* The peers map holds two entries per peer (endpoint and address), so 2^20 peers fill 2^21. */
#define DP_DEFAULT_MAX_PEERS 65536u
#define DP_MAX_PEERS_LIMIT   (1u << 20)
/* Our tc filters' fixed place in the clsact qdisc: attaching again replaces them atomically. */
#define DP_TC_PRIORITY 1
#define DP_TC_HANDLE   0xc1a7
/* Program pins under the pin root, for bpftool and `conclavectl status`. */
#define DP_PIN_PROG_INGRESS "prog_ingress"
#define DP_PIN_PROG_EGRESS  "prog_egress"
/* The per-pod program (bpf/pod.bpf.c): loaded and pinned at open, attached by conclave-cni;
 * open replaces it in place on the pods already registered. */
#define DP_PIN_PROG_POD "prog_pod"

struct datapath;

struct dp_opts {
	const char *pin_root;	    /* bpffs directory of our pins; NULL: DP_PIN_ROOT */
	int ifindex;		    /* interface datapath_attach/detach act on */
	struct dp_config_v1 config; /* written at open (abi filled in) */
	uint32_t max_peers;	    /* 0: the pinned map's size, or DP_DEFAULT_MAX_PEERS */
	bool reset; /* pinned maps of another ABI or too small: unpin and start empty */
};

/* One attested peer: its WireGuard endpoint and node id. */
struct dp_peer_entry {
	struct dp_endpoint_v1 ep;
	struct dp_peer_v1 peer;
};

struct dp_apply_stats {
	size_t added, updated, removed, unchanged; /* map entries, helper entries included */
	uint64_t usec;				   /* wall time of the whole call */
};

/* A cluster range for the "cidr4"/"cidr6" tries. */
struct dp_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t prefixlen;
	uint8_t addr[16]; /* 4 bytes used for AF_INET */
	uint32_t kind;	  /* DP_CIDR_NODE or DP_CIDR_POD */
};

/* Where a tc filter of ours (our handle and priority) sits in the current network namespace. */
struct dp_attachment {
	uint32_t prog_id;
	int ifindex;
	char ifname[IF_NAMESIZE];
	uint8_t direction; /* 0 ingress, 1 egress */
	bool current;	   /* the program pinned under the pin root (not a stale one) */
};

/* Route libbpf's messages to the conclave log (quiet: none, for calls whose failures the
 * caller expects and reports itself). datapath_open does this on its own. */
void datapath_log_libbpf(bool quiet);

/* Mount a bpffs at path (created if missing) unless one is already there. */
int datapath_ensure_bpffs(const char *path, struct diag *d);

/* Load the programs, reusing the maps pinned under opts->pin_root (or creating and pinning
 * them), write opts->config, pin the pod program and move every registered pod to it
 * (podpath_reattach, in the calling thread's network namespace). Refuses pins of another ABI
 * unless opts->reset. Routes libbpf's messages (verifier logs) to the conclave log. */
int datapath_open(const struct dp_opts *opts, struct datapath **dp, struct diag *d);

/* What datapath_open did to the pods registered before it pinned its pod program (all zero
 * when there were none, or when they could not be read: that is logged). */
void datapath_pods_reattached(const struct datapath *dp, struct podpath_reattach_stats *st);

/* Open only the pinned maps and programs, read-only use (status, monitor); no loading. */
int datapath_open_pinned(const char *pin_root, struct datapath **dp, struct diag *d);

/* Attach (or atomically replace) our ingress and egress filters on opts->ifindex and pin the
 * programs. Acts in the calling thread's network namespace. Needs datapath_open. */
int datapath_attach(struct datapath *dp, struct diag *d);

/* Remove our filters from opts->ifindex (absent ones are fine) and the program pins. */
int datapath_detach(struct datapath *dp, struct diag *d);

/* Free dp; attached programs stay attached and pinned maps stay pinned. NULL is fine. */
void datapath_close(struct datapath *dp);

/* Remove our pins under pin_root (maps, programs) and the directory if that empties it. */
int datapath_unpin(const char *pin_root, struct diag *d);

/* Make the peers map equal to set[0..n) (plus one address entry per peer address, the ABI's
 * convention) by removing, then adding and updating, only the differences: unchanged entries
 * are never touched, and no intermediate state admits more than the old set or the new one.
 * Atomic for the caller, not for the kernel, which sees one update per entry; after a failure
 * the map lies between the two sets and calling again with the same set completes it. */
int datapath_apply_peers(struct datapath *dp, const struct dp_peer_entry *set, size_t n,
			 struct dp_apply_stats *stats, struct diag *d);

/* Make the cidr4/cidr6 tries equal to c[0..n) (additions first: strict mode never weakens). */
int datapath_set_cidrs(struct datapath *dp, const struct dp_cidr *c, size_t n, struct diag *d);

/* Make the peer_net4/peer_net6 tries equal to c[0..n), kind = the owning node's id: the
 * attested nodes' ranges (this node's too), where pods may send cluster traffic. */
int datapath_set_peer_nets(struct datapath *dp, const struct dp_cidr *c, size_t n, struct diag *d);

/* Make the allow map equal to a[0..n) (removals first). */
int datapath_set_allow(struct datapath *dp, const struct dp_allow_v1 *a, size_t n, struct diag *d);

/* Write the config (abi filled in); takes effect on the next packet. */
int datapath_set_config(struct datapath *dp, const struct dp_config_v1 *cfg, struct diag *d);
int datapath_get_config(struct datapath *dp, struct dp_config_v1 *cfg, struct diag *d);

/* Counters per enum dp_reason, summed over CPUs. */
int datapath_read_counters(struct datapath *dp, struct dp_counter_v1 out[DP_REASON_MAX],
			   struct diag *d);

/* Number of attested endpoints in the peers map (helper entries not counted). */
int datapath_peer_count(struct datapath *dp, size_t *n, struct diag *d);

/* Our filters in the current network namespace: up to max into out, total count in *n. */
int datapath_list_attachments(struct datapath *dp, struct dp_attachment *out, size_t max, size_t *n,
			      struct diag *d);

/* Ids of the pinned programs (0 if not pinned). */
void datapath_prog_ids(struct datapath *dp, uint32_t *ingress, uint32_t *egress);

struct dp_events;
typedef int (*dp_event_fn)(const struct dp_event_v1 *ev, void *ctx);

/* Consume the events ring buffer: fn runs for each event; a negative return stops the poll and
 * is returned. A ring buffer has one consumer: two readers each see part of the events. */
int datapath_events_open(struct datapath *dp, dp_event_fn fn, void *ctx, struct dp_events **ev,
			 struct diag *d);
/* Wait up to timeout_ms (-1: forever); returns events handled, fn's negative return or -errno. */
int datapath_events_poll(struct dp_events *ev, int timeout_ms);
void datapath_events_close(struct dp_events *ev);

/* "pass_peer", "drop_unknown_peer", ...; "unknown" out of range. */
const char *datapath_reason_name(uint32_t reason);

/* Endpoint from a textual IPv4/IPv6 address and a host-order port; -EINVAL if unparsable. */
int dp_endpoint_parse(const char *addr, uint16_t port, struct dp_endpoint_v1 *ep);

/* "10.0.0.1" for IPv4-mapped addresses, RFC 5952 text otherwise; len >= INET6_ADDRSTRLEN. */
void dp_addr_format(const uint8_t addr[16], char *buf, size_t len);

/* "10.0.0.0/8" or "fd00::/64" with a kind; -EINVAL if unparsable. */
int dp_cidr_parse(const char *s, uint32_t kind, struct dp_cidr *c);

#endif
