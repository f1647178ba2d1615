// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for peer-set deltas (pushed by joind over the network): anything the decoder
 * accepts must encode back to the identical bytes, and applying it to a small view must keep
 * that view's invariants (sorted, unique ids, never self, generation moved to the delta's). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/peerset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SELF_ID 3

/* Self 3, peers 1, 2 and 5, at generation gen. */
static struct peerset small_view(uint64_t gen)
{
	struct peerset ps = { .generation = gen, .self = { .node_id = SELF_ID } };
	static const int64_t ids[] = { 1, 2, 5 };

	ps.peers = calloc(3, sizeof(*ps.peers));
	if (!ps.peers)
		abort();
	for (size_t i = 0; i < 3; i++) {
		ps.peers[i].node_id = ids[i];
		memset(ps.peers[i].wg_pubkey, (int)ids[i], sizeof(ps.peers[i].wg_pubkey));
		strcpy(ps.peers[i].endpoints, "192.0.2.1:51820");
	}
	ps.n_peers = 3;
	return ps;
}

static const struct peer *find(const struct peerset *ps, int64_t id)
{
	for (size_t i = 0; i < ps->n_peers; i++)
		if (ps->peers[i].node_id == id)
			return &ps->peers[i];
	return NULL;
}

static bool same(const struct peer *a, const struct peer *b)
{
	return a->node_id == b->node_id &&
	       memcmp(a->wg_pubkey, b->wg_pubkey, sizeof(a->wg_pubkey)) == 0 &&
	       strcmp(a->endpoints, b->endpoints) == 0 &&
	       strcmp(a->overlay_v4, b->overlay_v4) == 0 &&
	       strcmp(a->overlay_v6, b->overlay_v6) == 0 && strcmp(a->pod_cidr, b->pod_cidr) == 0;
}

static void check_applied(const struct peerdelta *pd)
{
	struct peerset ps = small_view(pd->from), stale = small_view(pd->from + 1), before;
	bool self_removed = false, want_removed = false;
	int ret;

	before = small_view(pd->from + 1);
	if (peerset_apply(&stale, pd, &self_removed, NULL) != -ESTALE ||
	    stale.generation != pd->from + 1 || !peerset_equal(&stale, &before))
		abort();
	ret = peerset_apply(&ps, pd, &self_removed, NULL);
	if (ret == -E2BIG)
		goto out;
	if (ret != 0 || ps.generation != pd->to)
		abort();
	for (size_t i = 0; i < ps.n_peers; i++)
		if (ps.peers[i].node_id == SELF_ID ||
		    (i > 0 && ps.peers[i - 1].node_id >= ps.peers[i].node_id))
			abort();
	for (size_t i = 0; i < pd->n; i++) {
		const struct peer_delta *e = &pd->deltas[i];
		const struct peer *p = find(&ps, e->peer.node_id);

		if (e->peer.node_id == SELF_ID) {
			want_removed = e->op == PEER_REMOVE;
			if (want_removed ? ps.self.node_id != SELF_ID : !same(&ps.self, &e->peer))
				abort();
		} else if (e->op == PEER_REMOVE ? p != NULL : !p || !same(p, &e->peer)) {
			abort();
		}
	}
	if (self_removed != want_removed)
		abort();
out:
	peerset_clear(&ps);
	peerset_clear(&stale);
	peerset_clear(&before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peerdelta pd = { 0 };
	struct diag d;
	uint8_t *back = NULL;
	size_t len = 0;

	if (peerdelta_decode(data, size, &pd, &d) == 0) {
		if (peerdelta_encode(pd.from, pd.to, pd.deltas, pd.n, &back, &len) != 0 ||
		    len != size || memcmp(back, data, size) != 0)
			abort();
		free(back);
		check_applied(&pd);
	} else if (pd.deltas || pd.n) {
		abort();
	}
	peerdelta_free(&pd);
	return 0;
}
