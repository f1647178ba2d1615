// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the peer-set snapshot of JOIN_RESPONSE (from the network). The decoder
 * sorts peers by id, so anything it accepts must encode to a document that decodes to the same
 * view, byte-identical to the input exactly when the input listed its peers in id order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/peerset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether an accepted document lists its peers in ascending id order: walk its records. */
static bool input_sorted(const uint8_t *p, size_t size)
{
	size_t off = 4 + 1 + 8, records = 0;
	uint64_t prev = 0;

	for (size_t r = 0;; r++) {
		uint64_t id = 0;

		if (off + 8 + 32 > size)
			abort();
		for (int i = 0; i < 8; i++)
			id = id << 8 | p[off + i];
		off += 8 + 32;
		for (int s = 0; s < 4; s++) {
			if (off >= size)
				abort();
			off += 1 + p[off];
		}
		if (r == 0) { /* self, then the count */
			if (off + 4 > size)
				abort();
			records = (size_t)p[off] << 24 | (size_t)p[off + 1] << 16 |
				  (size_t)p[off + 2] << 8 | p[off + 3];
			off += 4;
		} else {
			if (r > 1 && id <= prev)
				return false;
			prev = id;
		}
		if (r == records)
			return true;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peerset ps = { 0 }, again = { 0 };
	struct diag d;
	uint8_t *back = NULL;
	size_t len = 0;

	if (peerset_decode(data, size, &ps, &d) == 0) {
		if (peerset_encode(ps.generation, &ps.self, ps.peers, ps.n_peers, &back, &len) !=
			0 ||
		    len != size)
			abort();
		if ((memcmp(back, data, size) == 0) != input_sorted(data, size))
			abort();
		if (peerset_decode(back, len, &again, &d) != 0 ||
		    again.generation != ps.generation || again.self.node_id != ps.self.node_id ||
		    memcmp(again.self.wg_pubkey, ps.self.wg_pubkey, sizeof(ps.self.wg_pubkey)) !=
			0 ||
		    strcmp(again.self.endpoints, ps.self.endpoints) != 0 ||
		    strcmp(again.self.overlay_v4, ps.self.overlay_v4) != 0 ||
		    strcmp(again.self.overlay_v6, ps.self.overlay_v6) != 0 ||
		    strcmp(again.self.pod_cidr, ps.self.pod_cidr) != 0 ||
		    !peerset_equal(&again, &ps))
			abort();
		free(back);
	} else if (ps.peers || ps.n_peers) {
		abort();
	}
	peerset_clear(&ps);
	peerset_clear(&again);
	return 0;
}
