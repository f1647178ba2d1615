/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The datapath's maps, declared once and included by every program. Each is pinned by name
 * (LIBBPF_PIN_BY_NAME) under the pin root the loader passes as pin_root_path, so the second
 * skeleton loaded (egress) reuses the maps the first one (ingress) created and pinned, and an
 * agent restart reuses both. Keys and values are the ABI structs of datapath_abi.h so the BTF
 * shows named fields in `bpftool map dump`. */
#ifndef CONCLAVE_BPF_MAPS_H
#define CONCLAVE_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "conclave/datapath_abi.h"

#define DP_PEERS_DEFAULT 65536 /* userspace resizes before load, up to 2^21 */
#define DP_ALLOW_MAX	 256
#define DP_CIDR_MAX	 1024
#define DP_EVENTS_BYTES	 (256 * 1024)
#define DP_PEER_NETS_MAX 65536 /* allowed-IP ranges of attested nodes: a few per node */
#define DP_PODS_MAX	 4096
#define DP_POD_ADDRS	 (DP_PODS_MAX * DP_POD_ADDRS_MAX)

/* Attested peers' WireGuard endpoints, plus one address entry {addr, port 0} per peer address
 * (see datapath_abi.h): endpoint lookups never use port 0. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DP_PEERS_DEFAULT);
	__type(key, struct dp_endpoint_v1);
	__type(value, struct dp_peer_v1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dp_config_v1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DP_ALLOW_MAX);
	__type(key, struct dp_allow_v1);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DP_CIDR_MAX);
	__type(key, struct dp_cidr4_v1);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cidr4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DP_CIDR_MAX);
	__type(key, struct dp_cidr6_v1);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cidr6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DP_REASON_MAX);
	__type(key, __u32);
	__type(value, struct dp_counter_v1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DP_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dp_ratelimit_v1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ratelimit SEC(".maps");

/* The attested nodes' ranges (this node's too): where a pod may send cluster traffic. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DP_PEER_NETS_MAX);
	__type(key, struct dp_cidr4_v1);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} peer_net4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DP_PEER_NETS_MAX);
	__type(key, struct dp_cidr6_v1);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} peer_net6 SEC(".maps");

/* Pods on this node, by the ifindex of their host-side veth (conclave-cni). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DP_PODS_MAX);
	__type(key, __u32);
	__type(value, struct dp_pod_v1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DP_POD_ADDRS);
	__type(key, struct dp_pod_addr_v1);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pod_addrs SEC(".maps");

#endif
