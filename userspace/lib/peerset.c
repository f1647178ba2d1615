// SPDX-License-Identifier: Apache-2.0
/* Peer-set documents: the snapshot a node gets at join, and the deltas pushed afterwards. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/bytes.h"
#include "conclave/peerset.h"
#include "conclave/util.h"

/* The smallest encoded peer: id, key and four empty strings. */
#define PEER_MIN_SIZE (8 + MEMBERSHIP_WG_KEY_LEN + 4)
/* The smallest encoded delta entry: op and a peer. */
#define DELTA_MIN_SIZE (1 + PEER_MIN_SIZE)

static int wr_str(struct writer *w, const char *s, size_t field_size)
{
	size_t n = strnlen(s, field_size);

	if (n >= field_size || n > UINT8_MAX)
		return -EINVAL;
	wr_u8(w, (uint8_t)n);
	return wr_bytes(w, s, n);
}

static int wr_peer(struct writer *w, const struct peer *p)
{
	if (p->node_id <= 0)
		return -EINVAL;
	wr_be64(w, (uint64_t)p->node_id);
	wr_bytes(w, p->wg_pubkey, sizeof(p->wg_pubkey));
	if (wr_str(w, p->endpoints, sizeof(p->endpoints)) < 0 ||
	    wr_str(w, p->overlay_v4, sizeof(p->overlay_v4)) < 0 ||
	    wr_str(w, p->overlay_v6, sizeof(p->overlay_v6)) < 0 ||
	    wr_str(w, p->pod_cidr, sizeof(p->pod_cidr)) < 0)
		return -EINVAL;
	return w->failed ? -ENOMEM : 0;
}

/* A removal names the node only: zero key, empty strings, whatever else the caller's struct held.
 */
static int wr_removed_peer(struct writer *w, int64_t node_id)
{
	static const uint8_t zero[MEMBERSHIP_WG_KEY_LEN + 4];

	if (node_id <= 0)
		return -EINVAL;
	wr_be64(w, (uint64_t)node_id);
	wr_bytes(w, zero, sizeof(zero));
	return w->failed ? -ENOMEM : 0;
}

static int finish(struct writer *w, int ret, uint8_t **out, size_t *len)
{
	if (ret == 0 && w->failed)
		ret = -ENOMEM;
	if (ret < 0) {
		writer_free(w);
		return ret;
	}
	*out = w->p;
	*len = w->len;
	return 0;
}

int peerset_encode(uint64_t generation, const struct peer *self, const struct peer *peers, size_t n,
		   uint8_t **out, size_t *len)
{
	struct writer w = { 0 };
	int ret;

	if (n > PEERSET_MAX_PEERS)
		return -E2BIG;
	wr_bytes(&w, PEERSET_MAGIC, 4);
	wr_u8(&w, PEERSET_VERSION);
	wr_be64(&w, generation);
	ret = wr_peer(&w, self);
	wr_be32(&w, (uint32_t)n);
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = wr_peer(&w, &peers[i]);
	return finish(&w, ret, out, len);
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_peer(const void *a, const void *b)
{
	return cmp_id(&((const struct peer *)a)->node_id, &((const struct peer *)b)->node_id);
}

/* A change of a delta, sortable by the node it is about. */
struct change_ref {
	int64_t id;
	const struct peer_delta *e;
};

static int cmp_change_ref(const void *a, const void *b)
{
	return cmp_id(&((const struct change_ref *)a)->id, &((const struct change_ref *)b)->id);
}

/* Whether any node id occurs twice among the n deltas (-ENOMEM if that cannot be checked). */
static int has_duplicate_ids(const struct peer_delta *deltas, size_t n, int64_t *dup)
{
	_cleanup_free_ int64_t *ids = malloc((n ? n : 1) * sizeof(*ids));

	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		ids[i] = deltas[i].peer.node_id;
	qsort(ids, n, sizeof(*ids), cmp_id);
	for (size_t i = 1; i < n; i++)
		if (ids[i] == ids[i - 1]) {
			*dup = ids[i];
			return 1;
		}
	return 0;
}

int peerdelta_encode(uint64_t from, uint64_t to, const struct peer_delta *deltas, size_t n,
		     uint8_t **out, size_t *len)
{
	struct writer w = { 0 };
	int64_t dup;
	int ret;

	if (to <= from)
		return -EINVAL;
	if (n > PEERSET_MAX_PEERS)
		return -E2BIG;
	ret = has_duplicate_ids(deltas, n, &dup);
	if (ret != 0)
		return ret < 0 ? ret : -EINVAL;
	wr_bytes(&w, PEERDELTA_MAGIC, 4);
	wr_u8(&w, PEERSET_VERSION);
	wr_be64(&w, from);
	wr_be64(&w, to);
	wr_be32(&w, (uint32_t)n);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		const struct peer_delta *e = &deltas[i];

		switch (e->op) {
		case PEER_ADD:
		case PEER_UPDATE:
			wr_u8(&w, (uint8_t)e->op);
			ret = wr_peer(&w, &e->peer);
			break;
		case PEER_REMOVE:
			wr_u8(&w, (uint8_t)e->op);
			ret = wr_removed_peer(&w, e->peer.node_id);
			break;
		default: ret = -EINVAL;
		}
	}
	return finish(&w, ret, out, len);
}

static int rd_str(struct reader *r, char *out, size_t size)
{
	const uint8_t *p;
	uint8_t n;

	if (rd_u8(r, &n) < 0 || n >= size || rd_bytes(r, n, &p) < 0)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return -EBADMSG;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

static int rd_peer(struct reader *r, struct peer *p)
{
	const uint8_t *wg;
	uint64_t id;

	memset(p, 0, sizeof(*p));
	if (rd_be64(r, &id) < 0 || id == 0 || id > INT64_MAX ||
	    rd_bytes(r, sizeof(p->wg_pubkey), &wg) < 0 ||
	    rd_str(r, p->endpoints, sizeof(p->endpoints)) < 0 ||
	    rd_str(r, p->overlay_v4, sizeof(p->overlay_v4)) < 0 ||
	    rd_str(r, p->overlay_v6, sizeof(p->overlay_v6)) < 0 ||
	    rd_str(r, p->pod_cidr, sizeof(p->pod_cidr)) < 0)
		return -EBADMSG;
	p->node_id = (int64_t)id;
	memcpy(p->wg_pubkey, wg, sizeof(p->wg_pubkey));
	return 0;
}

static bool is_bare_id(const struct peer *p)
{
	for (size_t i = 0; i < sizeof(p->wg_pubkey); i++)
		if (p->wg_pubkey[i])
			return false;
	return !p->endpoints[0] && !p->overlay_v4[0] && !p->overlay_v6[0] && !p->pod_cidr[0];
}

int peerset_decode(const uint8_t *buf, size_t len, struct peerset *out, struct diag *d)
{
	struct reader r = reader_init(buf, len);
	const uint8_t *magic;
	uint8_t version;
	uint32_t n;
	int ret = -EBADMSG;

	free(out->peers);
	out->peers = NULL;
	out->n_peers = 0;
	if (rd_bytes(&r, 4, &magic) < 0 || memcmp(magic, PEERSET_MAGIC, 4) != 0 ||
	    rd_u8(&r, &version) < 0 || version != PEERSET_VERSION ||
	    rd_be64(&r, &out->generation) < 0) {
		diag_set(d, "peer set: not a version %d peer-set document", PEERSET_VERSION);
		return -EBADMSG;
	}
	if (rd_peer(&r, &out->self) < 0 || rd_be32(&r, &n) < 0 ||
	    n > reader_left(&r) / PEER_MIN_SIZE) {
		diag_set(d, "peer set: malformed header at offset %zu", r.off);
		return -EBADMSG;
	}
	if (n > PEERSET_MAX_PEERS) {
		diag_set(d, "peer set: %u peers, more than the limit of %d", n, PEERSET_MAX_PEERS);
		return -EBADMSG;
	}
	out->peers = calloc(n ? n : 1, sizeof(*out->peers));
	if (!out->peers) {
		diag_set(d, "peer set: out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (rd_peer(&r, &out->peers[i]) < 0) {
			diag_set(d, "peer set: malformed peer %u at offset %zu", i, r.off);
			goto fail;
		}
		if (out->peers[i].node_id == out->self.node_id) {
			diag_set(d, "peer set: peer %u is the node itself (id %lld)", i,
				 (long long)out->self.node_id);
			goto fail;
		}
	}
	if (reader_left(&r) != 0) {
		diag_set(d, "peer set: %zu trailing bytes", reader_left(&r));
		goto fail;
	}
	qsort(out->peers, n, sizeof(*out->peers), cmp_peer);
	for (uint32_t i = 1; i < n; i++)
		if (out->peers[i].node_id == out->peers[i - 1].node_id) {
			diag_set(d, "peer set: node %lld listed twice",
				 (long long)out->peers[i].node_id);
			goto fail;
		}
	out->n_peers = n;
	return 0;
fail:
	free(out->peers);
	out->peers = NULL;
	return ret;
}

int peerdelta_decode(const uint8_t *buf, size_t len, struct peerdelta *out, struct diag *d)
{
	struct reader r = reader_init(buf, len);
	const uint8_t *magic;
	uint8_t version, op;
	uint32_t n;
	int64_t dup;
	int ret;

	peerdelta_free(out);
	if (rd_bytes(&r, 4, &magic) < 0 || memcmp(magic, PEERDELTA_MAGIC, 4) != 0 ||
	    rd_u8(&r, &version) < 0 || version != PEERSET_VERSION) {
		diag_set(d, "peer delta: not a version %d peer-set delta", PEERSET_VERSION);
		return -EBADMSG;
	}
	if (rd_be64(&r, &out->from) < 0 || rd_be64(&r, &out->to) < 0 || rd_be32(&r, &n) < 0 ||
	    n > reader_left(&r) / DELTA_MIN_SIZE) {
		diag_set(d, "peer delta: malformed header at offset %zu", r.off);
		ret = -EBADMSG;
		goto fail;
	}
	if (out->to <= out->from) {
		diag_set(d, "peer delta: generation %llu does not follow %llu",
			 (unsigned long long)out->to, (unsigned long long)out->from);
		ret = -EBADMSG;
		goto fail;
	}
	if (n > PEERSET_MAX_PEERS) {
		diag_set(d, "peer delta: %u changes, more than the limit of %d", n,
			 PEERSET_MAX_PEERS);
		ret = -EBADMSG;
		goto fail;
	}
	out->deltas = calloc(n ? n : 1, sizeof(*out->deltas));
	if (!out->deltas) {
		diag_set(d, "peer delta: out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	ret = -EBADMSG;
	for (uint32_t i = 0; i < n; i++, out->n++) {
		struct peer_delta *e = &out->deltas[i];

		if (rd_u8(&r, &op) < 0 || op > PEER_REMOVE || rd_peer(&r, &e->peer) < 0) {
			diag_set(d, "peer delta: malformed change %u at offset %zu", i, r.off);
			goto fail;
		}
		e->op = (enum peer_op)op;
		if (e->op == PEER_REMOVE && !is_bare_id(&e->peer)) {
			diag_set(d, "peer delta: removal of node %lld carries peer data",
				 (long long)e->peer.node_id);
			goto fail;
		}
	}
	if (reader_left(&r) != 0) {
		diag_set(d, "peer delta: %zu trailing bytes", reader_left(&r));
		goto fail;
	}
	ret = has_duplicate_ids(out->deltas, out->n, &dup);
	if (ret != 0) {
		if (ret > 0)
			diag_set(d, "peer delta: node %lld changed twice", (long long)dup);
		else
			diag_set(d, "peer delta: out of memory");
		ret = ret < 0 ? ret : -EBADMSG;
		goto fail;
	}
	return 0;
fail:
	peerdelta_free(out);
	return ret;
}

void peerdelta_free(struct peerdelta *pd)
{
	free(pd->deltas);
	memset(pd, 0, sizeof(*pd));
}

int peerset_apply(struct peerset *ps, const struct peerdelta *pd, bool *self_removed,
		  struct diag *d)
{
	const struct peer_delta *about_self = NULL;
	size_t n_sorted = 0, cap = ps->n_peers + pd->n, i = 0, j = 0, k = 0;
	struct change_ref *sorted;
	struct peer *next;
	int64_t dup;
	int ret;

	if (self_removed)
		*self_removed = false;
	if (pd->from != ps->generation) {
		diag_set(d, "peer delta: from generation %llu, but this view is at %llu",
			 (unsigned long long)pd->from, (unsigned long long)ps->generation);
		return -ESTALE;
	}
	if (pd->to <= pd->from || pd->n > PEERSET_MAX_PEERS) {
		diag_set(d, "peer delta: malformed (generation %llu to %llu, %zu changes)",
			 (unsigned long long)pd->from, (unsigned long long)pd->to, pd->n);
		return -EINVAL;
	}
	ret = has_duplicate_ids(pd->deltas, pd->n, &dup);
	if (ret != 0) {
		if (ret > 0)
			diag_set(d, "peer delta: node %lld changed twice", (long long)dup);
		else
			diag_set(d, "peer delta: out of memory");
		return ret < 0 ? ret : -EINVAL;
	}
	for (size_t m = 0; m < pd->n; m++)
		if ((unsigned int)pd->deltas[m].op > PEER_REMOVE ||
		    pd->deltas[m].peer.node_id <= 0) {
			diag_set(d, "peer delta: malformed change %zu", m);
			return -EINVAL;
		}

	/* Everything is allocated before ps is touched, so a failure leaves the view as it was. */
	sorted = malloc((pd->n ? pd->n : 1) * sizeof(*sorted));
	next = calloc(cap ? cap : 1, sizeof(*next));
	if (!sorted || !next) {
		free(sorted);
		free(next);
		diag_set(d, "peer delta: out of memory");
		return -ENOMEM;
	}
	for (size_t m = 0; m < pd->n; m++) {
		if (pd->deltas[m].peer.node_id == ps->self.node_id)
			about_self = &pd->deltas[m];
		else
			sorted[n_sorted++] =
			    (struct change_ref){ pd->deltas[m].peer.node_id, &pd->deltas[m] };
	}
	qsort(sorted, n_sorted, sizeof(*sorted), cmp_change_ref);

	/* Merge two id-sorted lists; a change wins over the peer with its id. Adds of a known id
	 * and updates of an unknown one are upserts (joind may coalesce changes), and removing an
	 * unknown id is a no-op (removes are idempotent). */
	while (i < ps->n_peers || j < n_sorted) {
		const struct peer_delta *e;

		if (j == n_sorted || (i < ps->n_peers && ps->peers[i].node_id < sorted[j].id)) {
			next[k++] = ps->peers[i++];
			continue;
		}
		e = sorted[j++].e;
		if (i < ps->n_peers && ps->peers[i].node_id == e->peer.node_id)
			i++;
		if (e->op != PEER_REMOVE)
			next[k++] = e->peer;
	}
	free(sorted);
	if (k > PEERSET_MAX_PEERS) {
		free(next);
		diag_set(d, "peer delta: view would hold %zu peers, more than the limit of %d", k,
			 PEERSET_MAX_PEERS);
		return -E2BIG;
	}

	if (about_self && about_self->op == PEER_REMOVE) {
		if (self_removed)
			*self_removed = true;
	} else if (about_self) {
		ps->self = about_self->peer;
	}
	free(ps->peers);
	ps->peers = next;
	ps->n_peers = k;
	ps->generation = pd->to;
	return 0;
}

static bool peer_equal(const struct peer *a, const struct peer *b)
{
	return a->node_id == b->node_id &&
	       memcmp(a->wg_pubkey, b->wg_pubkey, sizeof(a->wg_pubkey)) == 0 &&
	       strncmp(a->endpoints, b->endpoints, sizeof(a->endpoints)) == 0 &&
	       strncmp(a->overlay_v4, b->overlay_v4, sizeof(a->overlay_v4)) == 0 &&
	       strncmp(a->overlay_v6, b->overlay_v6, sizeof(a->overlay_v6)) == 0 &&
	       strncmp(a->pod_cidr, b->pod_cidr, sizeof(a->pod_cidr)) == 0;
}

bool peerset_equal(const struct peerset *a, const struct peerset *b)
{
	if (a->n_peers != b->n_peers)
		return false;
	for (size_t i = 0; i < a->n_peers; i++)
		if (!peer_equal(&a->peers[i], &b->peers[i]))
			return false;
	return true;
}

void peerset_clear(struct peerset *ps)
{
	free(ps->peers);
	memset(ps, 0, sizeof(*ps));
}
