// SPDX-License-Identifier: Apache-2.0
/* Peer-set snapshots and deltas: round trips, the decoders' refusals, applying deltas to a
 * node's view, and a randomized comparison of encode -> decode -> apply against a plain model. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conclave/bytes.h"
#include "conclave/peerset.h"

/* Offsets in an encoded delta. */
#define D_VERSION 4
#define D_FROM	  5
#define D_TO	  13
#define D_COUNT	  21
#define D_FIRST	  25 /* op of the first change */
#define BARE_SIZE (1 + 8 + 32 + 4)

static struct peer make_peer(int64_t id, unsigned int v)
{
	struct peer p = { .node_id = id };

	memset(p.wg_pubkey, (int)(v & 0xff) | 1, sizeof(p.wg_pubkey));
	snprintf(p.endpoints, sizeof(p.endpoints), "192.0.2.%u:51820", v % 256);
	snprintf(p.overlay_v4, sizeof(p.overlay_v4), "10.100.0.%u", v % 256);
	snprintf(p.overlay_v6, sizeof(p.overlay_v6), "fd00:100::%x", v);
	snprintf(p.pod_cidr, sizeof(p.pod_cidr), "10.244.%u.0/24", v % 256);
	return p;
}

static void assert_peer_equal(const struct peer *a, const struct peer *b)
{
	assert_int_equal(a->node_id, b->node_id);
	assert_memory_equal(a->wg_pubkey, b->wg_pubkey, sizeof(a->wg_pubkey));
	assert_string_equal(a->endpoints, b->endpoints);
	assert_string_equal(a->overlay_v4, b->overlay_v4);
	assert_string_equal(a->overlay_v6, b->overlay_v6);
	assert_string_equal(a->pod_cidr, b->pod_cidr);
}

/* A view decoded from a snapshot of self and peers (in the order given). */
static void view_of(struct peerset *ps, uint64_t gen, const struct peer *self,
		    const struct peer *peers, size_t n)
{
	struct diag d = { { 0 } };
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(peerset_encode(gen, self, peers, n, &buf, &len), 0);
	if (peerset_decode(buf, len, ps, &d) != 0)
		fail_msg("decode: %s", d.msg);
	free(buf);
}

static uint8_t *encode_delta(uint64_t from, uint64_t to, const struct peer_delta *e, size_t n,
			     size_t *len)
{
	uint8_t *buf = NULL;

	assert_int_equal(peerdelta_encode(from, to, e, n, &buf, len), 0);
	return buf;
}

static int decode_delta(const uint8_t *buf, size_t len, struct diag *d)
{
	struct peerdelta pd = { 0 };
	int ret = peerdelta_decode(buf, len, &pd, d);

	if (ret < 0) {
		assert_null(pd.deltas);
		assert_int_equal(pd.n, 0);
	}
	peerdelta_free(&pd);
	return ret;
}

/* Apply deltas (as they would arrive: encoded, then decoded) to ps. */
static int apply(struct peerset *ps, uint64_t from, uint64_t to, const struct peer_delta *e,
		 size_t n, bool *self_removed)
{
	struct peerdelta pd = { 0 };
	struct diag d = { { 0 } };
	size_t len;
	uint8_t *buf = encode_delta(from, to, e, n, &len);
	int ret;

	if (peerdelta_decode(buf, len, &pd, &d) != 0)
		fail_msg("delta decode: %s", d.msg);
	free(buf);
	ret = peerset_apply(ps, &pd, self_removed, &d);
	peerdelta_free(&pd);
	return ret;
}

static void snapshot_round_trips(void **state)
{
	struct peer self = make_peer(3, 3), peers[] = { make_peer(1, 1), make_peer(2, 2) };
	struct peerset ps = { 0 };
	uint8_t *a = NULL, *b = NULL;
	size_t alen, blen;

	assert_int_equal(peerset_encode(42, &self, peers, 2, &a, &alen), 0);
	assert_int_equal(peerset_decode(a, alen, &ps, NULL), 0);
	assert_int_equal(ps.generation, 42);
	assert_peer_equal(&ps.self, &self);
	assert_int_equal(ps.n_peers, 2);
	assert_peer_equal(&ps.peers[0], &peers[0]);
	assert_peer_equal(&ps.peers[1], &peers[1]);
	assert_int_equal(peerset_encode(ps.generation, &ps.self, ps.peers, ps.n_peers, &b, &blen),
			 0);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(a);
	free(b);
	peerset_clear(&ps);
}

static void snapshot_with_no_peers_round_trips(void **state)
{
	struct peer self = make_peer(1, 1);
	struct peerset ps = { 0 };

	view_of(&ps, 1, &self, NULL, 0);
	assert_int_equal(ps.n_peers, 0);
	assert_peer_equal(&ps.self, &self);
	peerset_clear(&ps);
}

static void snapshot_decode_sorts_peers_by_id(void **state)
{
	struct peer self = make_peer(50, 50);
	struct peer peers[] = { make_peer(9, 9), make_peer(100, 100), make_peer(2, 2),
				make_peer(77, 77), make_peer(1, 1) };
	static const int64_t want[] = { 1, 2, 9, 77, 100 };
	struct peerset ps = { 0 };

	view_of(&ps, 5, &self, peers, 5);
	assert_int_equal(ps.n_peers, 5);
	for (size_t i = 0; i < 5; i++) {
		struct peer p = make_peer(want[i], (unsigned int)want[i]);

		assert_peer_equal(&ps.peers[i], &p);
	}
	peerset_clear(&ps);
}

static void snapshot_with_a_duplicate_id_is_refused(void **state)
{
	struct peer self = make_peer(1, 1),
		    peers[] = { make_peer(4, 4), make_peer(2, 2), make_peer(4, 5) };
	struct peerset ps = { 0 };
	struct diag d = { { 0 } };
	uint8_t *buf = NULL;
	size_t len;

	assert_int_equal(peerset_encode(1, &self, peers, 3, &buf, &len), 0);
	assert_int_equal(peerset_decode(buf, len, &ps, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "node 4 listed twice"));
	assert_null(ps.peers);
	assert_int_equal(ps.n_peers, 0);
	free(buf);
	peerset_clear(&ps);
}

static void snapshot_listing_self_as_a_peer_is_refused(void **state)
{
	struct peer self = make_peer(2, 2), peers[] = { make_peer(1, 1), make_peer(2, 2) };
	struct peerset ps = { 0 };
	struct diag d = { { 0 } };
	uint8_t *buf = NULL;
	size_t len;

	assert_int_equal(peerset_encode(1, &self, peers, 2, &buf, &len), 0);
	assert_int_equal(peerset_decode(buf, len, &ps, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "the node itself"));
	free(buf);
	peerset_clear(&ps);
}

static void snapshot_truncated_at_every_byte_is_refused(void **state)
{
	struct peer self = make_peer(3, 3), peers[] = { make_peer(1, 1), make_peer(2, 2) };
	struct peerset ps = { 0 };
	uint8_t *buf = NULL;
	size_t len;

	assert_int_equal(peerset_encode(1, &self, peers, 2, &buf, &len), 0);
	for (size_t n = 0; n < len; n++)
		assert_int_equal(peerset_decode(buf, n, &ps, NULL), -EBADMSG);
	assert_int_equal(peerset_decode(buf, len, &ps, NULL), 0);
	free(buf);
	peerset_clear(&ps);
}

/* PEERSET_MAX_PEERS peers decode; one more is refused by both sides. */
static void snapshot_peer_limit_is_enforced(void **state)
{
	const size_t max = PEERSET_MAX_PEERS;
	static const uint8_t zero[32 + 4]; /* a key and four empty strings */
	struct peer *peers = calloc(max + 1, sizeof(*peers));
	struct peer self = { .node_id = (int64_t)max + 10 };
	struct writer w = { 0 };
	struct peerset ps = { 0 };
	struct diag d = { { 0 } };
	uint8_t *buf = NULL;
	size_t len;

	assert_non_null(peers);
	for (size_t i = 0; i <= max; i++)
		peers[i].node_id = (int64_t)i + 1;
	assert_int_equal(peerset_encode(1, &self, peers, max + 1, &buf, &len), -E2BIG);
	assert_int_equal(peerset_encode(1, &self, peers, max, &buf, &len), 0);
	assert_int_equal(peerset_decode(buf, len, &ps, NULL), 0);
	assert_int_equal(ps.n_peers, max);
	free(buf);

	/* Hand-built: one peer more than the limit, every byte of it present. */
	wr_bytes(&w, PEERSET_MAGIC, 4);
	wr_u8(&w, PEERSET_VERSION);
	wr_be64(&w, 1);
	wr_be64(&w, (uint64_t)self.node_id);
	wr_bytes(&w, zero, sizeof(zero));
	wr_be32(&w, (uint32_t)max + 1);
	for (size_t i = 0; i <= max; i++) {
		wr_be64(&w, i + 1);
		wr_bytes(&w, zero, sizeof(zero));
	}
	assert_false(w.failed);
	assert_int_equal(peerset_decode(w.p, w.len, &ps, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "limit"));
	writer_free(&w);
	free(peers);
	peerset_clear(&ps);
}

static void delta_round_trips_in_wire_order(void **state)
{
	struct peer_delta e[] = {
		{ PEER_UPDATE, make_peer(9, 90) },
		{ PEER_ADD, make_peer(3, 30) },
		{ PEER_REMOVE, { .node_id = 5 } },
	};
	struct peerdelta pd = { 0 };
	uint8_t *back = NULL;
	size_t len, blen;
	uint8_t *buf = encode_delta(7, 9, e, 3, &len);

	assert_int_equal(peerdelta_decode(buf, len, &pd, NULL), 0);
	assert_int_equal(pd.from, 7);
	assert_int_equal(pd.to, 9);
	assert_int_equal(pd.n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(pd.deltas[i].op, e[i].op);
		assert_peer_equal(&pd.deltas[i].peer, &e[i].peer);
	}
	assert_int_equal(peerdelta_encode(pd.from, pd.to, pd.deltas, pd.n, &back, &blen), 0);
	assert_int_equal(blen, len);
	assert_memory_equal(back, buf, len);
	free(back);
	free(buf);
	peerdelta_free(&pd);
	assert_null(pd.deltas);
	assert_int_equal(pd.n, 0);
}

static void empty_delta_round_trips(void **state)
{
	struct peerdelta pd = { 0 };
	size_t len;
	uint8_t *buf = encode_delta(1, 2, NULL, 0, &len);

	assert_int_equal(len, D_FIRST);
	assert_int_equal(peerdelta_decode(buf, len, &pd, NULL), 0);
	assert_int_equal(pd.n, 0);
	free(buf);
	peerdelta_free(&pd);
}

static void delta_removal_is_written_as_a_bare_id(void **state)
{
	struct peer_delta e = { PEER_REMOVE, make_peer(5, 5) };
	struct peerdelta pd = { 0 };
	static const uint8_t zero[36];
	size_t len;
	uint8_t *buf = encode_delta(1, 2, &e, 1, &len);

	assert_int_equal(len, D_FIRST + BARE_SIZE);
	assert_int_equal(buf[D_FIRST], PEER_REMOVE);
	assert_memory_equal(buf + D_FIRST + 9, zero, sizeof(zero));
	assert_int_equal(peerdelta_decode(buf, len, &pd, NULL), 0);
	assert_int_equal(pd.deltas[0].peer.node_id, 5);
	free(buf);
	peerdelta_free(&pd);
}

static void delta_encoder_refuses_what_the_decoder_would(void **state)
{
	struct peer_delta e[] = { { PEER_ADD, make_peer(1, 1) }, { PEER_UPDATE, make_peer(1, 2) } };
	struct peer_delta bad_op = { (enum peer_op)3, make_peer(1, 1) };
	struct peer_delta no_id = { PEER_ADD, make_peer(0, 1) };
	uint8_t *buf = NULL;
	size_t len;

	assert_int_equal(peerdelta_encode(2, 2, e, 1, &buf, &len), -EINVAL);
	assert_int_equal(peerdelta_encode(3, 2, e, 1, &buf, &len), -EINVAL);
	assert_int_equal(peerdelta_encode(1, 2, e, 2, &buf, &len), -EINVAL);
	assert_int_equal(peerdelta_encode(1, 2, &bad_op, 1, &buf, &len), -EINVAL);
	assert_int_equal(peerdelta_encode(1, 2, &no_id, 1, &buf, &len), -EINVAL);
	assert_null(buf);
}

static void delta_truncated_at_every_byte_is_refused(void **state)
{
	struct peer_delta e[] = { { PEER_ADD, make_peer(1, 1) },
				  { PEER_REMOVE, { .node_id = 2 } } };
	struct diag d;
	size_t len;
	uint8_t *buf = encode_delta(1, 2, e, 2, &len);

	for (size_t n = 0; n < len; n++)
		assert_int_equal(decode_delta(buf, n, &d), -EBADMSG);
	assert_int_equal(decode_delta(buf, len, &d), 0);
	free(buf);
}

static void delta_with_a_trailing_byte_is_refused(void **state)
{
	struct peer_delta e = { PEER_ADD, make_peer(1, 1) };
	struct diag d = { { 0 } };
	size_t len;
	uint8_t *buf = encode_delta(1, 2, &e, 1, &len);
	uint8_t *longer = malloc(len + 1);

	assert_non_null(longer);
	memcpy(longer, buf, len);
	longer[len] = 0;
	assert_int_equal(decode_delta(longer, len + 1, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "1 trailing bytes"));
	free(longer);
	free(buf);
}

static void delta_with_an_unknown_op_is_refused(void **state)
{
	struct peer_delta e = { PEER_UPDATE, make_peer(1, 1) };
	size_t len;
	uint8_t *buf = encode_delta(1, 2, &e, 1, &len);

	for (unsigned int op = 3; op < 256; op++) {
		buf[D_FIRST] = (uint8_t)op;
		assert_int_equal(decode_delta(buf, len, NULL), -EBADMSG);
	}
	free(buf);
}

static void delta_with_bad_magic_or_version_is_refused(void **state)
{
	struct peer_delta e = { PEER_ADD, make_peer(1, 1) };
	struct diag d = { { 0 } };
	size_t len;
	uint8_t *buf = encode_delta(1, 2, &e, 1, &len);

	memcpy(buf, PEERSET_MAGIC, 4); /* a snapshot's magic is no delta's */
	assert_int_equal(decode_delta(buf, len, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "not a version 1 peer-set delta"));
	memcpy(buf, PEERDELTA_MAGIC, 4);
	buf[D_VERSION] = PEERSET_VERSION + 1;
	assert_int_equal(decode_delta(buf, len, &d), -EBADMSG);
	buf[D_VERSION] = 0;
	assert_int_equal(decode_delta(buf, len, &d), -EBADMSG);
	buf[D_VERSION] = PEERSET_VERSION;
	assert_int_equal(decode_delta(buf, len, &d), 0);
	free(buf);
}

static void delta_whose_generation_does_not_advance_is_refused(void **state)
{
	size_t len;
	uint8_t *buf = encode_delta(5, 6, NULL, 0, &len);
	struct diag d = { { 0 } };

	buf[D_TO + 7] = 5; /* to == from */
	assert_int_equal(decode_delta(buf, len, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "generation 5 does not follow 5"));
	buf[D_TO + 7] = 4; /* to < from */
	assert_int_equal(decode_delta(buf, len, &d), -EBADMSG);
	buf[D_TO + 7] = 6;
	assert_int_equal(decode_delta(buf, len, &d), 0);
	free(buf);
}

/* An add with a key (or a string) and nothing else, turned into a removal. */
static void removal_carrying_peer_data_is_refused(void **state)
{
	struct peer_delta key_only = { PEER_ADD, { .node_id = 4 } };
	struct peer_delta str_only = { PEER_ADD, { .node_id = 4, .pod_cidr = "x" } };
	struct diag d = { { 0 } };
	uint8_t *buf;
	size_t len;

	key_only.peer.wg_pubkey[31] = 1;
	buf = encode_delta(1, 2, &key_only, 1, &len);
	assert_int_equal(decode_delta(buf, len, &d), 0);
	buf[D_FIRST] = PEER_REMOVE;
	assert_int_equal(decode_delta(buf, len, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "removal of node 4 carries peer data"));
	free(buf);

	buf = encode_delta(1, 2, &str_only, 1, &len);
	assert_int_equal(decode_delta(buf, len, &d), 0);
	buf[D_FIRST] = PEER_REMOVE;
	assert_int_equal(decode_delta(buf, len, &d), -EBADMSG);
	free(buf);
}

static void delta_changing_one_node_twice_is_refused(void **state)
{
	struct peer_delta e[] = { { PEER_REMOVE, { .node_id = 5 } },
				  { PEER_REMOVE, { .node_id = 6 } } };
	struct diag d = { { 0 } };
	size_t len;
	uint8_t *buf = encode_delta(1, 2, e, 2, &len);

	assert_int_equal(len, D_FIRST + 2 * BARE_SIZE);
	buf[D_FIRST + BARE_SIZE + 8] = 5; /* low byte of the second id */
	assert_int_equal(decode_delta(buf, len, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "node 5 changed twice"));
	free(buf);
}

static void delta_count_beyond_its_bytes_is_refused(void **state)
{
	struct peer_delta e = { PEER_REMOVE, { .node_id = 5 } };
	size_t len;
	uint8_t *buf = encode_delta(1, 2, &e, 1, &len);

	buf[D_COUNT + 3] = 2;
	assert_int_equal(decode_delta(buf, len, NULL), -EBADMSG);
	memset(buf + D_COUNT, 0xff, 4);
	assert_int_equal(decode_delta(buf, len, NULL), -EBADMSG);
	free(buf);
}

static void delta_with_node_id_zero_or_negative_is_refused(void **state)
{
	struct peer_delta e = { PEER_REMOVE, { .node_id = 5 } };
	size_t len;
	uint8_t *buf = encode_delta(1, 2, &e, 1, &len);

	buf[D_FIRST + 8] = 0;
	assert_int_equal(decode_delta(buf, len, NULL), -EBADMSG);
	buf[D_FIRST + 1] = 0x80; /* above INT64_MAX */
	assert_int_equal(decode_delta(buf, len, NULL), -EBADMSG);
	free(buf);
}

static void apply_adds_peers_in_id_order(void **state)
{
	struct peer self = make_peer(10, 10), peers[] = { make_peer(2, 2), make_peer(20, 20) };
	struct peer_delta e[] = { { PEER_ADD, make_peer(30, 30) },
				  { PEER_ADD, make_peer(1, 1) },
				  { PEER_ADD, make_peer(5, 5) } };
	static const int64_t want[] = { 1, 2, 5, 20, 30 };
	struct peerset ps = { 0 };
	bool removed = true;

	view_of(&ps, 4, &self, peers, 2);
	assert_int_equal(apply(&ps, 4, 5, e, 3, &removed), 0);
	assert_false(removed);
	assert_int_equal(ps.generation, 5);
	assert_int_equal(ps.n_peers, 5);
	for (size_t i = 0; i < 5; i++) {
		struct peer p = make_peer(want[i], (unsigned int)want[i]);

		assert_peer_equal(&ps.peers[i], &p);
	}
	peerset_clear(&ps);
}

static void apply_replaces_an_updated_peer(void **state)
{
	struct peer self = make_peer(10, 10), peers[] = { make_peer(2, 2), make_peer(20, 20) };
	struct peer_delta e = { PEER_UPDATE, make_peer(20, 99) };
	struct peerset ps = { 0 };
	bool removed;

	view_of(&ps, 4, &self, peers, 2);
	assert_int_equal(apply(&ps, 4, 6, &e, 1, &removed), 0);
	assert_int_equal(ps.generation, 6);
	assert_int_equal(ps.n_peers, 2);
	assert_peer_equal(&ps.peers[0], &peers[0]);
	assert_peer_equal(&ps.peers[1], &e.peer);
	peerset_clear(&ps);
}

static void apply_deletes_a_removed_peer(void **state)
{
	struct peer self = make_peer(10, 10);
	struct peer peers[] = { make_peer(2, 2), make_peer(20, 20), make_peer(25, 25) };
	struct peer_delta e = { PEER_REMOVE, { .node_id = 20 } };
	struct peerset ps = { 0 };
	bool removed;

	view_of(&ps, 4, &self, peers, 3);
	assert_int_equal(apply(&ps, 4, 5, &e, 1, &removed), 0);
	assert_false(removed);
	assert_int_equal(ps.n_peers, 2);
	assert_peer_equal(&ps.peers[0], &peers[0]);
	assert_peer_equal(&ps.peers[1], &peers[2]);
	peerset_clear(&ps);
}

static void apply_removal_of_an_unknown_peer_is_a_no_op(void **state)
{
	struct peer self = make_peer(10, 10), peers[] = { make_peer(2, 2) };
	struct peer_delta e = { PEER_REMOVE, { .node_id = 3 } };
	struct peerset ps = { 0 }, before = { 0 };
	bool removed;

	view_of(&ps, 4, &self, peers, 1);
	view_of(&before, 4, &self, peers, 1);
	assert_int_equal(apply(&ps, 4, 5, &e, 1, &removed), 0);
	assert_int_equal(apply(&ps, 5, 6, &e, 1, &removed), 0);
	assert_int_equal(ps.generation, 6);
	assert_true(peerset_equal(&ps, &before));
	peerset_clear(&ps);
	peerset_clear(&before);
}

/* joind may coalesce an add and an update into either op: both mean "the peer is now this". */
static void apply_treats_add_and_update_as_upserts(void **state)
{
	struct peer self = make_peer(10, 10), peers[] = { make_peer(2, 2) };
	struct peer_delta e[] = { { PEER_ADD, make_peer(2, 77) },
				  { PEER_UPDATE, make_peer(3, 3) } };
	struct peerset ps = { 0 };
	bool removed;

	view_of(&ps, 4, &self, peers, 1);
	assert_int_equal(apply(&ps, 4, 5, e, 2, &removed), 0);
	assert_int_equal(ps.n_peers, 2);
	assert_peer_equal(&ps.peers[0], &e[0].peer);
	assert_peer_equal(&ps.peers[1], &e[1].peer);
	peerset_clear(&ps);
}

static void apply_of_a_change_to_self_updates_self(void **state)
{
	struct peer self = make_peer(10, 10), peers[] = { make_peer(2, 2) };
	struct peer_delta e = { PEER_UPDATE, make_peer(10, 11) };
	struct peerset ps = { 0 };
	bool removed = true;

	view_of(&ps, 4, &self, peers, 1);
	assert_int_equal(apply(&ps, 4, 5, &e, 1, &removed), 0);
	assert_false(removed);
	assert_peer_equal(&ps.self, &e.peer);
	assert_int_equal(ps.n_peers, 1); /* self never joins the peers */
	assert_peer_equal(&ps.peers[0], &peers[0]);
	peerset_clear(&ps);
}

static void apply_of_the_removal_of_self_reports_revocation(void **state)
{
	struct peer self = make_peer(10, 10), peers[] = { make_peer(2, 2) };
	struct peer_delta e[] = { { PEER_REMOVE, { .node_id = 10 } },
				  { PEER_ADD, make_peer(3, 3) } };
	struct peerset ps = { 0 };
	bool removed = false;

	view_of(&ps, 4, &self, peers, 1);
	assert_int_equal(apply(&ps, 4, 5, e, 2, &removed), 0);
	assert_true(removed);
	assert_peer_equal(&ps.self, &self);
	assert_int_equal(ps.generation, 5);
	assert_int_equal(ps.n_peers, 2);
	peerset_clear(&ps);
}

static void apply_from_another_generation_is_stale(void **state)
{
	struct peer self = make_peer(10, 10), peers[] = { make_peer(2, 2) };
	struct peer_delta e = { PEER_REMOVE, { .node_id = 2 } };
	struct peerset ps = { 0 }, before = { 0 };
	struct peerdelta pd = { .from = 3, .to = 5, .deltas = &e, .n = 1 };
	struct diag d = { { 0 } };
	bool removed;

	view_of(&ps, 4, &self, peers, 1);
	view_of(&before, 4, &self, peers, 1);
	assert_int_equal(peerset_apply(&ps, &pd, &removed, &d), -ESTALE);
	assert_non_null(strstr(d.msg, "from generation 3, but this view is at 4"));
	pd.from = 5;
	pd.to = 6;
	assert_int_equal(peerset_apply(&ps, &pd, &removed, &d), -ESTALE);
	assert_int_equal(ps.generation, 4);
	assert_true(peerset_equal(&ps, &before));
	peerset_clear(&ps);
	peerset_clear(&before);
}

/* A hand-built delta that the decoder would have refused changes nothing. */
static void apply_refuses_a_malformed_delta(void **state)
{
	struct peer self = make_peer(10, 10), peers[] = { make_peer(2, 2) };
	struct peer_delta twice[] = { { PEER_ADD, make_peer(3, 3) },
				      { PEER_REMOVE, { .node_id = 3 } } };
	struct peer_delta bad_op = { (enum peer_op)7, make_peer(3, 3) };
	struct peerdelta pd = { .from = 4, .to = 5, .deltas = twice, .n = 2 };
	struct peerset ps = { 0 }, before = { 0 };
	bool removed;

	view_of(&ps, 4, &self, peers, 1);
	view_of(&before, 4, &self, peers, 1);
	assert_int_equal(peerset_apply(&ps, &pd, &removed, NULL), -EINVAL);
	pd.deltas = &bad_op;
	pd.n = 1;
	assert_int_equal(peerset_apply(&ps, &pd, &removed, NULL), -EINVAL);
	pd.deltas = twice;
	pd.to = 4;
	assert_int_equal(peerset_apply(&ps, &pd, &removed, NULL), -EINVAL);
	assert_int_equal(ps.generation, 4);
	assert_true(peerset_equal(&ps, &before));
	peerset_clear(&ps);
	peerset_clear(&before);
}

static void equal_compares_every_field_of_every_peer(void **state)
{
	struct peer self = make_peer(10, 10), other = make_peer(11, 11);
	struct peer peers[] = { make_peer(2, 2), make_peer(3, 3) };
	struct peerset a = { 0 }, b = { 0 };

	view_of(&a, 1, &self, peers, 2);
	view_of(&b, 9, &other, peers, 2); /* generation and self are not compared */
	assert_true(peerset_equal(&a, &b));
	b.peers[1].wg_pubkey[31] ^= 1;
	assert_false(peerset_equal(&a, &b));
	b.peers[1] = a.peers[1];
	b.peers[1].overlay_v6[0] = 'x';
	assert_false(peerset_equal(&a, &b));
	b.peers[1] = a.peers[1];
	b.peers[1].pod_cidr[0] = '\0';
	assert_false(peerset_equal(&a, &b));
	b.peers[1] = a.peers[1];
	b.n_peers = 1;
	assert_false(peerset_equal(&a, &b));
	b.n_peers = 2;
	assert_true(peerset_equal(&a, &b));
	peerset_clear(&a);
	peerset_clear(&b);
}

/* The randomized comparison: a model (an array indexed by node id) against the codec path. */
#define MODEL_IDS 48
#define SELF_ID	  17

struct model {
	bool present[MODEL_IDS + 1];
	struct peer peer[MODEL_IDS + 1];
	struct peer self;
	bool self_removed;
};

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static void random_str(char *out, size_t size)
{
	size_t n = rnd((uint32_t)size);

	for (size_t i = 0; i < n; i++)
		out[i] = (char)(0x20 + rnd(0x5f));
	out[n] = '\0';
}

static struct peer random_peer(int64_t id)
{
	struct peer p = { .node_id = id };

	for (size_t i = 0; i < sizeof(p.wg_pubkey); i++)
		p.wg_pubkey[i] = (uint8_t)rnd(256);
	random_str(p.endpoints, rnd(4) ? 24 : sizeof(p.endpoints));
	random_str(p.overlay_v4, sizeof(p.overlay_v4));
	random_str(p.overlay_v6, sizeof(p.overlay_v6));
	random_str(p.pod_cidr, sizeof(p.pod_cidr));
	return p;
}

/* The model's peers as a view (ids ascending: already sorted). */
static void model_view(const struct model *m, struct peerset *out)
{
	out->n_peers = 0;
	out->peers = calloc(MODEL_IDS, sizeof(*out->peers));
	assert_non_null(out->peers);
	for (int64_t id = 1; id <= MODEL_IDS; id++)
		if (m->present[id])
			out->peers[out->n_peers++] = m->peer[id];
}

static void random_delta_sequences_match_a_model(void **state)
{
	for (uint64_t seed = 1; seed <= 40; seed++) {
		struct model m = { 0 };
		struct peer start[MODEL_IDS];
		struct peerset ps = { 0 };
		size_t n = 0;
		uint64_t gen;

		rng_state = seed * 0x9e3779b97f4a7c15ull;
		gen = rnd(1000);
		m.self = random_peer(SELF_ID);
		for (int64_t id = 1; id <= MODEL_IDS; id++)
			if (id != SELF_ID && rnd(2)) {
				m.present[id] = true;
				m.peer[id] = random_peer(id);
				start[n++] = m.peer[id];
			}
		/* The snapshot lists peers shuffled: decode must sort them. */
		for (size_t i = n; i > 1; i--) {
			size_t j = rnd((uint32_t)i);
			struct peer t = start[i - 1];

			start[i - 1] = start[j];
			start[j] = t;
		}
		view_of(&ps, gen, &m.self, start, n);

		for (int step = 0; step < 60; step++) {
			struct peer_delta e[MODEL_IDS];
			bool touched[MODEL_IDS + 1] = { false }, removed = false;
			struct peerset want = { 0 };
			size_t k = 0, count = rnd(8);
			uint64_t to = gen + 1 + rnd(3);

			while (k < count) {
				int64_t id = 1 + rnd(MODEL_IDS);
				struct peer_delta *x = &e[k];

				if (touched[id])
					continue;
				touched[id] = true;
				x->op = (enum peer_op)rnd(3);
				/* Removes of self are rare, so the rest of the run still has a
				 * self. */
				if (id == SELF_ID && x->op == PEER_REMOVE && rnd(4))
					x->op = PEER_UPDATE;
				x->peer = x->op == PEER_REMOVE ? (struct peer){ .node_id = id }
							       : random_peer(id);
				if (id == SELF_ID && x->op == PEER_REMOVE)
					m.self_removed = true;
				else if (id == SELF_ID)
					m.self = x->peer;
				else if (x->op == PEER_REMOVE)
					m.present[id] = false;
				else {
					m.present[id] = true;
					m.peer[id] = x->peer;
				}
				k++;
			}
			if (rnd(10) ==
			    0) /* a delta from the wrong generation is refused, harmlessly */
				assert_int_equal(apply(&ps, gen + 1, to + 1, e, k, &removed),
						 -ESTALE);
			assert_int_equal(apply(&ps, gen, to, e, k, &removed), 0);
			assert_int_equal(removed, touched[SELF_ID] && m.self_removed);
			m.self_removed = false;
			gen = to;

			model_view(&m, &want);
			assert_int_equal(ps.generation, gen);
			assert_true(peerset_equal(&ps, &want));
			assert_peer_equal(&ps.self, &m.self);
			for (size_t i = 1; i < ps.n_peers; i++)
				assert_true(ps.peers[i - 1].node_id < ps.peers[i].node_id);
			peerset_clear(&want);
		}
		peerset_clear(&ps);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(snapshot_round_trips),
		cmocka_unit_test(snapshot_with_no_peers_round_trips),
		cmocka_unit_test(snapshot_decode_sorts_peers_by_id),
		cmocka_unit_test(snapshot_with_a_duplicate_id_is_refused),
		cmocka_unit_test(snapshot_listing_self_as_a_peer_is_refused),
		cmocka_unit_test(snapshot_truncated_at_every_byte_is_refused),
		cmocka_unit_test(snapshot_peer_limit_is_enforced),
		cmocka_unit_test(delta_round_trips_in_wire_order),
		cmocka_unit_test(empty_delta_round_trips),
		cmocka_unit_test(delta_removal_is_written_as_a_bare_id),
		cmocka_unit_test(delta_encoder_refuses_what_the_decoder_would),
		cmocka_unit_test(delta_truncated_at_every_byte_is_refused),
		cmocka_unit_test(delta_with_a_trailing_byte_is_refused),
		cmocka_unit_test(delta_with_an_unknown_op_is_refused),
		cmocka_unit_test(delta_with_bad_magic_or_version_is_refused),
		cmocka_unit_test(delta_whose_generation_does_not_advance_is_refused),
		cmocka_unit_test(removal_carrying_peer_data_is_refused),
		cmocka_unit_test(delta_changing_one_node_twice_is_refused),
		cmocka_unit_test(delta_count_beyond_its_bytes_is_refused),
		cmocka_unit_test(delta_with_node_id_zero_or_negative_is_refused),
		cmocka_unit_test(apply_adds_peers_in_id_order),
		cmocka_unit_test(apply_replaces_an_updated_peer),
		cmocka_unit_test(apply_deletes_a_removed_peer),
		cmocka_unit_test(apply_removal_of_an_unknown_peer_is_a_no_op),
		cmocka_unit_test(apply_treats_add_and_update_as_upserts),
		cmocka_unit_test(apply_of_a_change_to_self_updates_self),
		cmocka_unit_test(apply_of_the_removal_of_self_reports_revocation),
		cmocka_unit_test(apply_from_another_generation_is_stale),
		cmocka_unit_test(apply_refuses_a_malformed_delta),
		cmocka_unit_test(equal_compares_every_field_of_every_peer),
		cmocka_unit_test(random_delta_sequences_match_a_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
