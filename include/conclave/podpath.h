/* SPDX-License-Identifier: Apache-2.0 */
/* Pods in the node datapath: the per-pod program (bpf/pod.bpf.c, loaded and pinned by the
 * agent's datapath_open) attached to the host side of a pod's veth, and the pod's identity and
 * addresses in the pinned "pods" and "pod_addrs" maps. Used by conclave-cni (ADD, DEL, CHECK,
 * GC) and `conclavectl pods`. Acts in the calling thread's network namespace. */
#ifndef CONCLAVE_PODPATH_H
#define CONCLAVE_PODPATH_H

#include <stdbool.h>
#include <stdint.h>

#include "conclave/datapath_abi.h"
#include "conclave/diag.h"

struct podpath;

/* Open the pinned pod maps, config and program under pin_root (NULL: DP_PIN_ROOT). -ENOENT
 * when the datapath is not loaded there; with configured, -EAGAIN when it is loaded but not
 * configured (what enforcing needs; removing and listing do not). */
int podpath_open(const char *pin_root, bool configured, struct podpath **pp, struct diag *d);
void podpath_close(struct podpath *pp);

/* Register pod under its host-side veth (ifindex) and attach the program to the veth's tc
 * ingress. An address registered to another pod whose veth still exists is refused (-EEXIST).
 * On failure every change made here is undone. */
int podpath_add(struct podpath *pp, uint32_t ifindex, const struct dp_pod_v1 *pod, struct diag *d);

/* The record of container_id/ifname: 1 and *ifindex, *pod if found, 0 if not. */
int podpath_find(struct podpath *pp, const char *container_id, const char *ifname,
		 uint32_t *ifindex, struct dp_pod_v1 *pod, struct diag *d);

/* The record under ifindex: 1 found, 0 not. */
int podpath_get(struct podpath *pp, uint32_t ifindex, struct dp_pod_v1 *pod);

/* Unregister the pod at ifindex: its addresses that still point to it, its record, and our tc
 * filter on the veth (gone with the veth is fine). Missing pieces are not errors. */
int podpath_del(struct podpath *pp, uint32_t ifindex, const struct dp_pod_v1 *pod, struct diag *d);

/* podpath_del of the pod of container_id/ifname, if one is registered (none: 0). */
int podpath_forget(struct podpath *pp, const char *container_id, const char *ifname,
		   struct diag *d);

/* Everything ADD made is in place: the record of this container and ifname at ifindex holding
 * exactly these addresses, each address mapping to ifindex, and our filter on the veth running
 * the currently pinned pod program (an older one is -ESTALE). -ENOENT / -ESTALE with what is
 * missing or wrong in d. */
int podpath_check(struct podpath *pp, uint32_t ifindex, const struct dp_pod_v1 *want,
		  struct diag *d);

/* What runs in our tc slot on a pod's veth, against the pinned pod program. */
enum podpath_prog {
	PODPATH_PROG_CURRENT, /* the program pinned now */
	PODPATH_PROG_STALE,   /* a dp_pod program an earlier agent loaded */
	PODPATH_PROG_FOREIGN, /* some other program in our slot */
	PODPATH_PROG_NONE,    /* no filter of ours (or no such interface) */
};

/* The program in our slot on ifindex's tc ingress: its state, and its id in *prog_id (0: none). */
enum podpath_prog podpath_prog_state(struct podpath *pp, uint32_t ifindex, uint32_t *prog_id);

/* "current", "stale", "foreign", "none". */
const char *podpath_prog_name(enum podpath_prog state);

/* Id of the pinned pod program this podpath attaches. */
uint32_t podpath_prog_id(const struct podpath *pp);

/* What podpath_reattach did, pod by pod. */
struct podpath_reattach_stats {
	size_t reattached; /* replaced in place: they run the pinned program now */
	size_t current;	   /* already ran it */
	size_t gone;	   /* the veth no longer exists: record and addresses removed */
	size_t skipped;	   /* the veth exists without a dp_pod filter of ours: left alone */
	size_t failed;	   /* the replace itself failed: they keep their program */
};

/* Move every registered pod to the pinned pod program: each dp_pod filter of ours is replaced
 * in place (one netlink request, same tc slot, no packet unfiltered); pods whose veth is gone
 * lose their record and addresses. Each pod not moved is logged; -errno only if the pod map
 * cannot be read. Acts in the calling thread's network namespace, which must be conclave-cni's
 * (the records hold ifindexes, not namespaces). */
int podpath_reattach(struct podpath *pp, struct podpath_reattach_stats *st, struct diag *d);

typedef int (*podpath_fn)(uint32_t ifindex, const struct dp_pod_v1 *pod, void *ctx);

/* Call fn for every registered pod; fn's non-zero return stops and is returned. */
int podpath_for_each(struct podpath *pp, podpath_fn fn, void *ctx, struct diag *d);

/* An address (16 bytes, IPv4-mapped for IPv4) from a family and 4 or 16 address bytes. */
void podpath_addr(int family, const uint8_t *addr, uint8_t out[16]);

#endif
