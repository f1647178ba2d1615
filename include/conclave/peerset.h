/* SPDX-License-Identifier: Apache-2.0 */
/* The peer-set documents joind sends nodes: a full snapshot at join, deltas afterwards
 * (docs/joind.md). Both sides share these codecs; decoders are strict and fuzzed. */
#ifndef CONCLAVE_PEERSET_H
#define CONCLAVE_PEERSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"
#include "conclave/membership.h"

#define PEERSET_MAGIC	  "CPST"
#define PEERSET_VERSION	  1
#define PEERDELTA_MAGIC	  "CPSD"
#define PEERSET_MAX_PEERS 65536

/* A node's view of the cluster: itself and every other active member. */
struct peerset {
	uint64_t generation;
	struct peer self;
	struct peer
	    *peers; /* malloc'ed, sorted by node id, never self (decode and apply keep it so) */
	size_t n_peers;
};

/* Snapshot (big-endian), at most PEERSET_MAX_PEERS peers, node ids > 0:
 *   "CPST" | u8 version | u64 generation | self | u32 count | count x peer
 *   peer = u64 node id | wg key[32] | str endpoints | str overlay v4 | str overlay v6 | str pod
 *   str  = u8 length | printable ASCII (shorter than the struct peer field) */
int peerset_encode(uint64_t generation, const struct peer *self, const struct peer *peers, size_t n,
		   uint8_t **out, size_t *len);

/* Strict decode into out (out's previous peers are freed; out may be zeroed memory); peers come
 * out sorted by node id; a duplicate id, or a peer with the id of self, is refused. */
int peerset_decode(const uint8_t *buf, size_t len, struct peerset *out, struct diag *d);

/* Delta (big-endian): "CPSD" | u8 version | u64 from generation | u64 to generation |
 *   u32 count | count x (u8 op (0 add, 1 update, 2 remove) | peer)
 * A remove carries the node id and an all-zero key with empty strings (the encoder writes that
 * whatever else its struct peer holds). to > from; at most one change per node id. */
int peerdelta_encode(uint64_t from, uint64_t to, const struct peer_delta *deltas, size_t n,
		     uint8_t **out, size_t *len);

struct peerdelta {
	uint64_t from, to;
	struct peer_delta *deltas; /* malloc'ed */
	size_t n;
};

/* Strict decode into out (its previous deltas are freed: out must be zeroed or decoded before);
 * the changes keep their wire order. On failure out holds none. */
int peerdelta_decode(const uint8_t *buf, size_t len, struct peerdelta *out, struct diag *d);
/* Free the changes and zero pd. */
void peerdelta_free(struct peerdelta *pd);

/* Apply a delta to a node's view: from must equal ps->generation (-ESTALE otherwise: ask for a
 * snapshot); adds/updates insert or replace, removes delete (a missing id is no error); a delta
 * about ps->self updates self, and a removal of self sets *self_removed (the node was revoked;
 * self is kept). Then ps->generation = to. Any error (-ENOMEM, -EINVAL, -E2BIG) leaves ps as is. */
int peerset_apply(struct peerset *ps, const struct peerdelta *pd, bool *self_removed,
		  struct diag *d);

/* Whether two views hold the same peers (ids and all fields), generation not compared. */
bool peerset_equal(const struct peerset *a, const struct peerset *b);

void peerset_clear(struct peerset *ps);

#endif
