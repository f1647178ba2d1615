/* SPDX-License-Identifier: Apache-2.0 */
/* The node's mesh: keeps WireGuard's peers and the datapath's attested-peer map equal to the
 * attested peer set (docs/mesh.md). A peer is in both or, between two steps of one change, in
 * WireGuard only while being added and in neither the datapath nor (after) WireGuard while
 * being removed: added to WireGuard before the datapath allows its traffic, removed from the
 * datapath before WireGuard forgets it. Strict mode is the datapath's job and is on before the
 * first peer. */
#ifndef CONCLAVE_MESH_H
#define CONCLAVE_MESH_H

#include <stddef.h>
#include <stdint.h>

#include "conclave/datapath.h"
#include "conclave/diag.h"
#include "conclave/peerset.h"
#include "conclave/wg.h"

struct mesh_config {
	struct wg *wg;	       /* NULL: no WireGuard (a host without it; tests say so) */
	const char *wg_ifname; /* e.g. "cnc0" */
	struct datapath *dp;   /* NULL: no datapath */
	uint16_t keepalive_s;  /* persistent keepalive for every peer; 0: off */
};

struct mesh_stats {
	size_t added, updated, removed, unchanged; /* peers */
};

struct mesh;

int mesh_new(const struct mesh_config *c, struct mesh **out, struct diag *d);
void mesh_free(struct mesh *m);

/* Make WireGuard and the datapath hold exactly the peers of ps (ps->self excluded), touching
 * only what changed. After a failure, calling again with the same set completes the change. */
int mesh_apply(struct mesh *m, const struct peerset *ps, struct mesh_stats *st, struct diag *d);

/* Start a handshake with every peer now (after our own key changed: whoever learns of a new key
 * last must be the one to initiate, or the first attempt fails and WireGuard retries only after
 * 5 s). Needs a keepalive interval. */
int mesh_kick(struct mesh *m, struct diag *d);

/* The peers applied last (the mesh's view), for status. */
size_t mesh_peer_count(const struct mesh *m);

/* "ip:port[,ip:port]" as WireGuard wants its first endpoint; -EINVAL if unparsable. */
int mesh_parse_endpoint(const char *endpoints, unsigned int index, struct sockaddr_storage *out);

/* A peer's allowed IPs for WireGuard: overlay v4 /32, overlay v6 /128, pod CIDR. */
int mesh_allowed_ips(const struct peer *p, struct wg_allowed_ip *out, size_t cap, size_t *n);

#endif
