// SPDX-License-Identifier: Apache-2.0
/* Peer-set documents: the snapshot a node gets at join, and the deltas pushed afterwards. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/bytes.h"
#include "conclave/peerset.h"

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
	wr_be64(w, (uint64_t)p->node_id);
	wr_bytes(w, p->wg_pubkey, sizeof(p->wg_pubkey));
	if (wr_str(w, p->endpoints, sizeof(p->endpoints)) < 0 ||
	    wr_str(w, p->overlay_v4, sizeof(p->overlay_v4)) < 0 ||
	    wr_str(w, p->overlay_v6, sizeof(p->overlay_v6)) < 0 ||
	    wr_str(w, p->pod_cidr, sizeof(p->pod_cidr)) < 0)
		return -EINVAL;
	return w->failed ? -ENOMEM : 0;
}

int peerset_encode(uint64_t generation, const struct peer *self, const struct peer *peers, size_t n,
		   uint8_t **out, size_t *len)
{
	struct writer w = { 0 };
	int ret;

	if (n > UINT32_MAX)
		return -E2BIG;
	wr_bytes(&w, PEERSET_MAGIC, 4);
	wr_u8(&w, PEERSET_VERSION);
	wr_be64(&w, generation);
	ret = wr_peer(&w, self);
	wr_be32(&w, (uint32_t)n);
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = wr_peer(&w, &peers[i]);
	if (ret == 0 && w.failed)
		ret = -ENOMEM;
	if (ret < 0) {
		writer_free(&w);
		return ret;
	}
	*out = w.p;
	*len = w.len;
	return 0;
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

/* The smallest encoded peer: id, key and four empty strings. */
#define PEER_MIN_SIZE (8 + 32 + 4)

int peerset_decode(const uint8_t *buf, size_t len, struct peerset *out, struct diag *d)
{
	struct reader r = reader_init(buf, len);
	const uint8_t *magic;
	uint8_t version;
	uint32_t n;

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
	out->peers = calloc(n ? n : 1, sizeof(*out->peers));
	if (!out->peers) {
		diag_set(d, "peer set: out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++, out->n_peers++)
		if (rd_peer(&r, &out->peers[i]) < 0) {
			diag_set(d, "peer set: malformed peer %u at offset %zu", i, r.off);
			return -EBADMSG;
		}
	if (reader_left(&r) != 0) {
		diag_set(d, "peer set: %zu trailing bytes", reader_left(&r));
		return -EBADMSG;
	}
	return 0;
}

void peerset_clear(struct peerset *ps)
{
	free(ps->peers);
	memset(ps, 0, sizeof(*ps));
}
