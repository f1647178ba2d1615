// SPDX-License-Identifier: Apache-2.0
/* Wire protocol frames: round trips of every message type, every limit, truncation at every
 * byte, the schema of every type, the range of every scalar, and each way a frame can be
 * malformed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conclave/wire.h"

/* A hand-built frame, so tests can say things the encoder refuses to. */
struct raw {
	uint8_t buf[4096];
	size_t len;
};

static void raw_start(struct raw *r, uint16_t version, uint16_t type)
{
	memcpy(r->buf, WIRE_MAGIC, 4);
	r->buf[4] = (uint8_t)(version >> 8);
	r->buf[5] = (uint8_t)version;
	r->buf[6] = (uint8_t)(type >> 8);
	r->buf[7] = (uint8_t)type;
	r->len = WIRE_HEADER_SIZE;
}

static void raw_field(struct raw *r, uint16_t tag, const void *p, uint32_t len)
{
	uint8_t *o = r->buf + r->len;

	assert_true(r->len + 6 + len <= sizeof(r->buf));
	o[0] = (uint8_t)(tag >> 8);
	o[1] = (uint8_t)tag;
	o[2] = (uint8_t)(len >> 24);
	o[3] = (uint8_t)(len >> 16);
	o[4] = (uint8_t)(len >> 8);
	o[5] = (uint8_t)len;
	memcpy(o + 6, p, len);
	r->len += 6 + len;
}

/* Patch the body length to what was written. */
static void raw_end(struct raw *r)
{
	uint32_t body = (uint32_t)(r->len - WIRE_HEADER_SIZE);

	r->buf[8] = (uint8_t)(body >> 24);
	r->buf[9] = (uint8_t)(body >> 16);
	r->buf[10] = (uint8_t)(body >> 8);
	r->buf[11] = (uint8_t)body;
}

static void raw_hello(struct raw *r, uint16_t version)
{
	static const uint8_t v1[2] = { 0, 1 };

	raw_start(r, version, WIRE_HELLO);
	raw_field(r, WT_PROTO_VERSION, v1, 2);
	raw_field(r, WT_ROLE, "N", 1);
	raw_end(r);
}

static int decode_raw(const struct raw *r, struct wire_msg *m, struct diag *d)
{
	return wire_decode(r->buf, r->len, m, d);
}

static uint8_t *encode_ok(const struct wire_msg *m, size_t *len)
{
	struct diag d = { { 0 } };
	uint8_t *buf = NULL;

	if (wire_encode(m, &buf, len, &d) < 0)
		fail_msg("encode %s: %s", wire_type_name(m->type), d.msg);
	return buf;
}

static void assert_blob(struct blob got, struct blob want)
{
	assert_int_equal(got.len, want.len);
	if (want.len)
		assert_memory_equal(got.p, want.p, want.len);
}

#define TAG(t) (1u << (t))

/* The protocol as this test reads it from wire.h: what each type may and must carry. */
static const struct {
	uint32_t allowed, required;
} schema[WIRE_TYPE_MAX] = {
	[WIRE_HELLO] = { TAG(WT_PROTO_VERSION) | TAG(WT_ROLE),
			 TAG(WT_PROTO_VERSION) | TAG(WT_ROLE) },
	[WIRE_CHALLENGE] = { TAG(WT_CHALLENGE), TAG(WT_CHALLENGE) },
	[WIRE_EVIDENCE] = { TAG(WT_EVIDENCE) | TAG(WT_WG_PUBKEY) | TAG(WT_DISK_UUID) |
				TAG(WT_CLUSTER_ID),
			    TAG(WT_EVIDENCE) },
	[WIRE_VERDICT] = { TAG(WT_CODE) | TAG(WT_TEXT), TAG(WT_CODE) },
	[WIRE_ERROR] = { TAG(WT_CODE) | TAG(WT_TEXT), TAG(WT_CODE) },
	[WIRE_JOIN_REQUEST] = { TAG(WT_ENDPOINT) | TAG(WT_NODE_NAME) | TAG(WT_FLAGS),
				TAG(WT_ENDPOINT) | TAG(WT_FLAGS) },
	[WIRE_JOIN_RESPONSE] = { TAG(WT_KEY_MATERIAL) | TAG(WT_PEER_SET) | TAG(WT_CA_CERT) |
				     TAG(WT_NODE_CERT),
				 TAG(WT_KEY_MATERIAL) | TAG(WT_PEER_SET) | TAG(WT_CA_CERT) |
				     TAG(WT_NODE_CERT) },
	[WIRE_PEER_UPDATE] = { TAG(WT_GENERATION) | TAG(WT_PEER_SET), TAG(WT_GENERATION) },
	[WIRE_ADMIN_REQUEST] = { TAG(WT_OP) | TAG(WT_NODE_ID) | TAG(WT_KEY_MATERIAL) |
				     TAG(WT_POLICY) | TAG(WT_SIGNATURE),
				 TAG(WT_OP) | TAG(WT_NODE_ID) },
	[WIRE_ADMIN_RESPONSE] = { TAG(WT_CODE) | TAG(WT_GENERATION) | TAG(WT_TEXT) |
				      TAG(WT_MEMBERS) | TAG(WT_SIGNATURE) | TAG(WT_CA_CERT),
				  TAG(WT_CODE) | TAG(WT_GENERATION) },
};

/* Every field's length range and how often it may appear; scalars have one fixed length. */
static const struct {
	uint32_t min, max;
	uint8_t count;
	bool scalar;
} field[WT_MAX] = {
	[WT_PROTO_VERSION] = { 2, 2, 1, true },
	[WT_ROLE] = { 1, 1, 1, true },
	[WT_CHALLENGE] = { 1, 1024, 1, false },
	[WT_EVIDENCE] = { 1, EVIDENCE_MAX_SIZE, 1, false },
	[WT_WG_PUBKEY] = { 32, 32, 1, false },
	[WT_DISK_UUID] = { 16, 16, 1, false },
	[WT_CODE] = { 2, 2, 1, true },
	[WT_TEXT] = { 0, WIRE_TEXT_MAX, 1, false },
	[WT_ENDPOINT] = { 1, 64, WIRE_MAX_ENDPOINTS, false },
	[WT_NODE_NAME] = { 1, 64, 1, false },
	[WT_KEY_MATERIAL] = { 1, 4096, 1, false },
	[WT_PEER_SET] = { 1, 256u << 10, 1, false },
	[WT_CLUSTER_ID] = { 32, 32, 1, false },
	[WT_FLAGS] = { 4, 4, 1, true },
	[WT_GENERATION] = { 8, 8, 1, true },
	[WT_OP] = { 2, 2, 1, true },
	[WT_NODE_ID] = { 8, 8, 1, true },
	[WT_POLICY] = { 1, 256u << 10, 1, false },
	[WT_SIGNATURE] = { 64, 64, 1, false },
	[WT_MEMBERS] = { 1, 256u << 10, 1, false },
	[WT_CA_CERT] = { 1, 2048, 1, false },
	[WT_NODE_CERT] = { 1, 2048, 1, false },
};

/* The blob field of m a tag names (the first endpoint for WT_ENDPOINT); NULL for scalars. */
static struct blob *blob_of(struct wire_msg *m, uint16_t tag)
{
	switch (tag) {
	case WT_CHALLENGE: return &m->challenge;
	case WT_EVIDENCE: return &m->evidence;
	case WT_WG_PUBKEY: return &m->wg_pubkey;
	case WT_DISK_UUID: return &m->disk_uuid;
	case WT_TEXT: return &m->text;
	case WT_ENDPOINT: return &m->endpoints[0];
	case WT_NODE_NAME: return &m->node_name;
	case WT_KEY_MATERIAL: return &m->key_material;
	case WT_PEER_SET: return &m->peer_set;
	case WT_CLUSTER_ID: return &m->cluster_id;
	case WT_POLICY: return &m->policy;
	case WT_SIGNATURE: return &m->signature;
	case WT_MEMBERS: return &m->members;
	case WT_CA_CERT: return &m->ca_cert;
	case WT_NODE_CERT: return &m->node_cert;
	default: return NULL;
	}
}

/* Overwrite the value of every field with this tag in an encoded frame (big-endian). */
static void patch_scalar(uint8_t *buf, size_t len, uint16_t tag, uint64_t v)
{
	bool found = false;

	for (size_t off = WIRE_HEADER_SIZE; off + 6 <= len;) {
		uint16_t t = (uint16_t)(buf[off] << 8 | buf[off + 1]);
		uint32_t n = (uint32_t)buf[off + 2] << 24 | (uint32_t)buf[off + 3] << 16 |
			     (uint32_t)buf[off + 4] << 8 | buf[off + 5];

		assert_true(off + 6 + n <= len);
		if (t == tag) {
			for (uint32_t i = 0; i < n; i++)
				buf[off + 6 + i] = (uint8_t)(v >> 8 * (n - 1 - i));
			found = true;
		}
		off += 6 + n;
	}
	assert_true(found);
}

/* Copy an encoded frame into r without any field of this tag; the header says the new size. */
static void drop_field(struct raw *r, const uint8_t *buf, size_t len, uint16_t tag)
{
	assert_true(len <= sizeof(r->buf));
	memcpy(r->buf, buf, WIRE_HEADER_SIZE);
	r->len = WIRE_HEADER_SIZE;
	for (size_t off = WIRE_HEADER_SIZE; off + 6 <= len;) {
		uint16_t t = (uint16_t)(buf[off] << 8 | buf[off + 1]);
		uint32_t n = (uint32_t)buf[off + 2] << 24 | (uint32_t)buf[off + 3] << 16 |
			     (uint32_t)buf[off + 4] << 8 | buf[off + 5];

		if (t != tag)
			raw_field(r, t, buf + off + 6, n);
		off += 6 + n;
	}
	raw_end(r);
}

static const uint8_t wg[32] = { 1,  2,	3,  4,	5,  6,	7,  8,	9,  10, 11, 12, 13, 14, 15, 16,
				17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
static const uint8_t uuid[16] = { 0xa1, 0xa2, 0xa3, 0xa4, 0xb1, 0xb2, 0xc1, 0xc2,
				  0xd1, 0xd2, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6 };
static const uint8_t cluster[32] = { 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
				     0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
				     0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7,
				     0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf };
static const uint8_t sig[64] = { 0x5a, [31] = 0x5b, [63] = 0x5c };

/* One valid message of every type, every field its type allows set. */
static struct wire_msg sample(uint16_t type)
{
	static const uint8_t ev[] = "CEVD-stand-in";
	static const uint8_t ch[] = "CCHL-stand-in";
	static const uint8_t key[48] = { 0x42 };
	static const uint8_t peers[300] = { 7 };
	static const uint8_t ca[] = "\x30\x82\x01\x0a CA certificate stand-in";
	static const uint8_t crt[] = "\x30\x82\x01\x0b node certificate stand-in";
	static const uint8_t pol[] = "CPOL signed policy stand-in";
	static const uint8_t mbl[] = "CMBL member list stand-in";
	struct wire_msg m = { .type = type };

	switch (type) {
	case WIRE_HELLO:
		m.proto_version = 1;
		m.role = 'J';
		break;
	case WIRE_CHALLENGE: m.challenge = (struct blob){ ch, sizeof(ch) }; break;
	case WIRE_EVIDENCE:
		m.evidence = (struct blob){ ev, sizeof(ev) };
		m.wg_pubkey = (struct blob){ wg, 32 };
		m.disk_uuid = (struct blob){ uuid, 16 };
		m.cluster_id = (struct blob){ cluster, 32 };
		break;
	case WIRE_VERDICT:
	case WIRE_ERROR:
		m.code = type == WIRE_VERDICT ? WIRE_REFUSED : WIRE_BAD_MESSAGE;
		m.text = (struct blob){ (const uint8_t *)"nonce: mismatch", 15 };
		break;
	case WIRE_JOIN_REQUEST:
		m.flags = JOIN_SUBSCRIBE;
		m.node_name = (struct blob){ (const uint8_t *)"worker-1", 8 };
		for (int i = 0; i < WIRE_MAX_ENDPOINTS; i++)
			m.endpoints[i] = (struct blob){ (const uint8_t *)"10.0.0.1:51820", 14 };
		m.n_endpoints = WIRE_MAX_ENDPOINTS;
		break;
	case WIRE_JOIN_RESPONSE:
		m.key_material = (struct blob){ key, sizeof(key) };
		m.peer_set = (struct blob){ peers, sizeof(peers) };
		m.ca_cert = (struct blob){ ca, sizeof(ca) };
		m.node_cert = (struct blob){ crt, sizeof(crt) };
		break;
	case WIRE_PEER_UPDATE:
		m.generation = 0x0102030405060708ull; /* every byte distinct: byte order shows */
		m.peer_set = (struct blob){ peers, sizeof(peers) };
		break;
	case WIRE_ADMIN_REQUEST:
		m.op = ADMIN_POLICY;
		m.node_id = 0x7f00000000000042ull;
		m.key_material = (struct blob){ key, sizeof(key) };
		m.policy = (struct blob){ pol, sizeof(pol) };
		m.signature = (struct blob){ sig, 64 };
		break;
	case WIRE_ADMIN_RESPONSE:
		m.code = WIRE_NOT_READY;
		m.generation = 0xfedcba9876543210ull;
		m.text = (struct blob){ (const uint8_t *)"run conclavectl init", 20 };
		m.members = (struct blob){ mbl, sizeof(mbl) };
		m.signature = (struct blob){ sig, 64 };
		m.ca_cert = (struct blob){ ca, sizeof(ca) };
		break;
	}
	return m;
}

static void assert_same_msg(const struct wire_msg *a, const struct wire_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->proto_version, b->proto_version);
	assert_int_equal(a->role, b->role);
	assert_int_equal(a->code, b->code);
	assert_int_equal(a->flags, b->flags);
	assert_true(a->generation == b->generation);
	assert_int_equal(a->op, b->op);
	assert_true(a->node_id == b->node_id);
	assert_blob(a->challenge, b->challenge);
	assert_blob(a->evidence, b->evidence);
	assert_blob(a->wg_pubkey, b->wg_pubkey);
	assert_blob(a->disk_uuid, b->disk_uuid);
	assert_blob(a->text, b->text);
	assert_blob(a->node_name, b->node_name);
	assert_blob(a->key_material, b->key_material);
	assert_blob(a->peer_set, b->peer_set);
	assert_blob(a->cluster_id, b->cluster_id);
	assert_blob(a->policy, b->policy);
	assert_blob(a->signature, b->signature);
	assert_blob(a->members, b->members);
	assert_blob(a->ca_cert, b->ca_cert);
	assert_blob(a->node_cert, b->node_cert);
	assert_int_equal(a->n_endpoints, b->n_endpoints);
	for (size_t i = 0; i < a->n_endpoints; i++)
		assert_blob(a->endpoints[i], b->endpoints[i]);
}

/* Every type, each with every field it allows: the new scalars survive with all 64 bits. */
static void every_message_type_round_trips(void **state)
{
	for (unsigned int t = 1; t < WIRE_TYPE_MAX; t++) {
		struct wire_msg m = sample((uint16_t)t), back;
		struct diag d = { { 0 } };
		size_t len;
		uint8_t *buf;

		for (unsigned int tag = 1; tag < WT_MAX; tag++)
			if ((schema[t].allowed & TAG(tag)) && !field[tag].scalar)
				assert_non_null(blob_of(&m, tag)->p);
		buf = encode_ok(&m, &len);

		if (wire_decode(buf, len, &back, &d) < 0)
			fail_msg("%s: %s", wire_type_name(t), d.msg);
		assert_same_msg(&m, &back);
		assert_true(len <= WIRE_HEADER_SIZE + wire_body_max(t));
		free(buf);
	}
}

static void empty_text_round_trips(void **state)
{
	struct wire_msg m = { .type = WIRE_VERDICT, .code = WIRE_OK }, back;
	size_t len;
	uint8_t *buf;

	m.text = (struct blob){ (const uint8_t *)"", 0 };
	buf = encode_ok(&m, &len);
	assert_int_equal(wire_decode(buf, len, &back, NULL), 0);
	assert_non_null(back.text.p);
	assert_int_equal(back.text.len, 0);
	free(buf);
}

static void fields_in_any_order_are_accepted(void **state)
{
	static const uint8_t v1[2] = { 0, 1 };
	struct wire_msg m;
	struct raw r;

	raw_start(&r, WIRE_VERSION, WIRE_HELLO);
	raw_field(&r, WT_ROLE, "J", 1);
	raw_field(&r, WT_PROTO_VERSION, v1, 2);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, NULL), 0);
	assert_int_equal(m.role, 'J');
	assert_int_equal(m.proto_version, 1);
}

/* For each field of each type that allows it: its largest valid length is accepted, one more
 * byte (or one fewer than its minimum) is refused by the encoder and by the decoder. Scalars
 * have one fixed length the encoder cannot get wrong, so for them only the decoder is asked. */
static void every_field_limit_is_enforced(void **state)
{
	uint8_t *big = malloc(EVIDENCE_MAX_SIZE + 1);
	bool covered[WT_MAX] = { false };

	assert_non_null(big);
	memset(big, 'a', EVIDENCE_MAX_SIZE + 1);
	for (unsigned int type = 1; type < WIRE_TYPE_MAX; type++) {
		for (unsigned int tag = 1; tag < WT_MAX; tag++) {
			uint32_t lens[3] = { field[tag].max, field[tag].max + 1,
					     field[tag].min - 1 };

			if (!(schema[type].allowed & TAG(tag)))
				continue;
			covered[tag] = true;
			for (int k = 0; k < (field[tag].min ? 3 : 2); k++) {
				struct wire_msg m = sample(type), back;
				struct blob b = { big, lens[k] };
				struct diag d = { { 0 } };
				uint8_t *buf;
				size_t len;
				int ret;

				if (!field[tag].scalar) {
					*blob_of(&m, tag) = b;
					ret = wire_encode(&m, &buf, &len, &d);
					if (k == 0) {
						assert_int_equal(ret, 0);
						if (wire_decode(buf, len, &back, &d) < 0)
							fail_msg("%s with the longest %u: %s",
								 wire_type_name(type), tag, d.msg);
						free(buf);
						continue;
					}
					assert_int_equal(ret, -EINVAL);
				} else if (k == 0) {
					continue; /* the round trip covers the one valid length */
				}
				/* The decoder sees the same field built by hand. */
				{
					size_t cap = WIRE_HEADER_SIZE + 6 + (size_t)lens[k];
					uint8_t *raw = malloc(cap);
					uint32_t body = (uint32_t)(cap - WIRE_HEADER_SIZE);

					memcpy(raw, WIRE_MAGIC, 4);
					raw[4] = 0;
					raw[5] = WIRE_VERSION;
					raw[6] = (uint8_t)(type >> 8);
					raw[7] = (uint8_t)type;
					raw[8] = (uint8_t)(body >> 24);
					raw[9] = (uint8_t)(body >> 16);
					raw[10] = (uint8_t)(body >> 8);
					raw[11] = (uint8_t)body;
					raw[12] = 0;
					raw[13] = (uint8_t)tag;
					raw[14] = (uint8_t)(lens[k] >> 24);
					raw[15] = (uint8_t)(lens[k] >> 16);
					raw[16] = (uint8_t)(lens[k] >> 8);
					raw[17] = (uint8_t)lens[k];
					memcpy(raw + 18, big, lens[k]);
					assert_int_not_equal(wire_decode(raw, cap, &back, &d), 0);
					/* A lone over-long field may already break the type's body
					 * limit, which the header check catches first. */
					if (!strstr(d.msg, "outside") &&
					    !strstr(d.msg, "exceeds the limit"))
						fail_msg("%s, tag %u of %u bytes: %s",
							 wire_type_name(type), tag, lens[k], d.msg);
					free(raw);
				}
			}
		}
	}
	/* No tag is left out: each belongs to some type. */
	for (unsigned int tag = 1; tag < WT_MAX; tag++)
		assert_true(covered[tag]);
	free(big);
}

/* The limit is exactly the largest valid body: every allowed field at its longest, as often as
 * it may appear, encodes to wire_body_max bytes and decodes. */
static void body_limit_is_the_largest_valid_body(void **state)
{
	uint8_t *big = malloc(EVIDENCE_MAX_SIZE);
	size_t frame_max = 0;

	assert_non_null(big);
	memset(big, 'a', EVIDENCE_MAX_SIZE);
	for (unsigned int type = 1; type < WIRE_TYPE_MAX; type++) {
		struct wire_msg m = sample(type), back;
		size_t len, want = 0;
		uint8_t *buf;

		for (unsigned int tag = 1; tag < WT_MAX; tag++) {
			if (!(schema[type].allowed & TAG(tag)))
				continue;
			want += (size_t)field[tag].count * (6 + field[tag].max);
			if (tag == WT_ENDPOINT) {
				for (int i = 0; i < WIRE_MAX_ENDPOINTS; i++)
					m.endpoints[i] = (struct blob){ big, field[tag].max };
				m.n_endpoints = WIRE_MAX_ENDPOINTS;
			} else if (!field[tag].scalar) {
				*blob_of(&m, tag) = (struct blob){ big, field[tag].max };
			}
		}
		assert_int_equal(wire_body_max(type), want);
		buf = encode_ok(&m, &len);
		assert_int_equal(len, WIRE_HEADER_SIZE + wire_body_max(type));
		assert_int_equal(wire_decode(buf, len, &back, NULL), 0);
		free(buf);
		if (len > frame_max)
			frame_max = len;
	}
	assert_int_equal(wire_frame_max(), frame_max);
	free(big);
}

static void body_limit_is_checked_from_the_header_alone(void **state)
{
	for (unsigned int t = 1; t < WIRE_TYPE_MAX; t++) {
		uint8_t hdr[WIRE_HEADER_SIZE] = { 'C', 'N', 'C', 'L', 0, WIRE_VERSION, 0 };
		size_t max = wire_body_max(t);
		struct diag d = { { 0 } };
		uint16_t type;
		uint32_t body;

		hdr[7] = (uint8_t)t;
		for (int over = 0; over <= 1; over++) {
			uint32_t n = (uint32_t)max + (uint32_t)over;

			hdr[8] = (uint8_t)(n >> 24);
			hdr[9] = (uint8_t)(n >> 16);
			hdr[10] = (uint8_t)(n >> 8);
			hdr[11] = (uint8_t)n;
			assert_int_equal(wire_decode_header(hdr, &type, &body, &d),
					 over ? -EMSGSIZE : 0);
		}
		assert_non_null(strstr(d.msg, "exceeds the limit"));
	}
	/* A hostile 4 GiB claim is refused as well. */
	{
		uint8_t hdr[WIRE_HEADER_SIZE] = { 'C',	'N',	      'C',  'L',
						  0,	WIRE_VERSION, 0,    WIRE_EVIDENCE,
						  0xff, 0xff,	      0xff, 0xff };
		uint16_t type;
		uint32_t body;

		assert_int_equal(wire_decode_header(hdr, &type, &body, NULL), -EMSGSIZE);
	}
	assert_int_equal(wire_frame_max(), WIRE_HEADER_SIZE + wire_body_max(WIRE_EVIDENCE));
	assert_true(wire_body_max(WIRE_HELLO) < 64);
	assert_int_equal(wire_body_max(0), 0);
	assert_int_equal(wire_body_max(WIRE_TYPE_MAX), 0);
}

static void truncation_at_every_byte_is_refused(void **state)
{
	for (unsigned int t = 1; t < WIRE_TYPE_MAX; t++) {
		struct wire_msg m = sample((uint16_t)t), back;
		size_t len;
		uint8_t *buf = encode_ok(&m, &len);

		for (size_t n = 0; n < len; n++) {
			/* Exactly n bytes, so ASan catches any read beyond them. */
			uint8_t *cut = malloc(n ? n : 1);

			memcpy(cut, buf, n);
			if (wire_decode(cut, n, &back, NULL) == 0)
				fail_msg("%s truncated to %zu bytes decoded", wire_type_name(t), n);
			free(cut);
		}
		free(buf);
	}
}

/* A prefix whose header claims exactly the bytes present: the field parser must notice a cut
 * inside a field; at field boundaries only a frame holding every required field is valid. */
static void truncated_body_with_a_matching_header_is_refused(void **state)
{
	struct wire_msg m = sample(WIRE_HELLO), back;
	size_t len;
	uint8_t *buf = encode_ok(&m, &len);
	struct diag d;

	for (size_t n = WIRE_HEADER_SIZE; n < len; n++) {
		uint8_t *cut = malloc(n);
		uint32_t body = (uint32_t)(n - WIRE_HEADER_SIZE);

		memcpy(cut, buf, n);
		cut[8] = (uint8_t)(body >> 24);
		cut[9] = (uint8_t)(body >> 16);
		cut[10] = (uint8_t)(body >> 8);
		cut[11] = (uint8_t)body;
		assert_int_equal(wire_decode(cut, n, &back, &d), -EBADMSG);
		assert_true(strstr(d.msg, "truncated") || strstr(d.msg, "lacks"));
		free(cut);
	}
	free(buf);
}

static void trailing_bytes_are_refused(void **state)
{
	struct wire_msg m = sample(WIRE_HELLO), back;
	struct diag d;
	size_t len;
	uint8_t *buf = encode_ok(&m, &len), *more = malloc(len + 1);

	memcpy(more, buf, len);
	more[len] = 0;
	assert_int_equal(wire_decode(more, len + 1, &back, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "header says"));
	free(more);
	free(buf);
}

static void unknown_tag_is_refused(void **state)
{
	static const uint16_t tags[] = { 0, WT_MAX, 0xffff };

	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		struct wire_msg m;
		struct diag d;
		struct raw r;

		raw_start(&r, WIRE_VERSION, WIRE_ERROR);
		raw_field(&r, WT_CODE, "\0\1", 2);
		raw_field(&r, tags[i], "x", 1);
		raw_end(&r);
		assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
		assert_non_null(strstr(d.msg, "unknown field tag"));
	}
}

static void field_of_another_type_is_refused(void **state)
{
	struct wire_msg m = sample(WIRE_HELLO);
	struct diag d;
	uint8_t *buf;
	size_t len;
	struct raw r;

	/* Body limits are exact, so the foreign field goes where there is room for it. */
	raw_start(&r, WIRE_VERSION, WIRE_JOIN_REQUEST);
	raw_field(&r, WT_ENDPOINT, "10.0.0.1:51820", 14);
	raw_field(&r, WT_KEY_MATERIAL, "k", 1);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "does not belong in JOIN_REQUEST"));
	raw_start(&r, WIRE_VERSION, WIRE_HELLO);
	raw_field(&r, WT_PROTO_VERSION, "\0\1", 2);
	raw_field(&r, WT_ROLE, "N", 1);
	raw_field(&r, WT_CODE, "\0\0", 2);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EMSGSIZE);
	/* The encoder will not write one either. */
	m = sample(WIRE_HELLO);
	m.key_material = (struct blob){ (const uint8_t *)"k", 1 };
	assert_int_equal(wire_encode(&m, &buf, &len, &d), -EINVAL);
}

static void duplicate_field_is_refused(void **state)
{
	struct wire_msg m;
	struct diag d;
	struct raw r;

	raw_start(&r, WIRE_VERSION, WIRE_VERDICT);
	raw_field(&r, WT_CODE, "\0\0", 2);
	raw_field(&r, WT_CODE, "\0\1", 2);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "code appears more than 1 time"));
	/* In HELLO a second role does not even fit the exact body limit. */
	raw_start(&r, WIRE_VERSION, WIRE_HELLO);
	raw_field(&r, WT_PROTO_VERSION, "\0\1", 2);
	raw_field(&r, WT_ROLE, "N", 1);
	raw_field(&r, WT_ROLE, "J", 1);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EMSGSIZE);
}

static void repeatable_field_has_a_count_limit(void **state)
{
	struct wire_msg m;
	struct diag d;
	struct raw r;

	raw_start(&r, WIRE_VERSION, WIRE_JOIN_REQUEST);
	raw_field(&r, WT_FLAGS, "\0\0\0\0", 4);
	for (int i = 0; i < WIRE_MAX_ENDPOINTS; i++)
		raw_field(&r, WT_ENDPOINT, "10.0.0.1:51820", 14);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), 0);
	assert_int_equal(m.n_endpoints, WIRE_MAX_ENDPOINTS);
	raw_field(&r, WT_ENDPOINT, "10.0.0.1:51820", 14);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "endpoint appears more than 4 times"));
}

static void missing_required_field_is_refused(void **state)
{
	struct wire_msg m = { .type = WIRE_EVIDENCE };
	struct diag d;
	uint8_t *buf;
	size_t len;
	struct raw r;

	raw_start(&r, WIRE_VERSION, WIRE_EVIDENCE);
	raw_field(&r, WT_WG_PUBKEY, wg, 32);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "EVIDENCE lacks its evidence"));
	m = (struct wire_msg){ .type = WIRE_EVIDENCE };
	assert_int_equal(wire_encode(&m, &buf, &len, &d), -EINVAL);
	m = (struct wire_msg){ .type = WIRE_JOIN_REQUEST };
	assert_int_equal(wire_encode(&m, &buf, &len, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "lacks its endpoint"));
}

/* A JOIN_RESPONSE hands a node everything it needs to take part: the key material, the peer
 * set, the cluster CA and its own certificate. Without any one of them it is not sent, and not
 * taken. */
static void join_response_without_any_of_its_four_fields_is_refused(void **state)
{
	static const struct {
		uint16_t tag;
		const char *name;
	} req[] = {
		{ WT_KEY_MATERIAL, "key material" },
		{ WT_PEER_SET, "peer set" },
		{ WT_CA_CERT, "CA certificate" },
		{ WT_NODE_CERT, "node certificate" },
	};
	struct wire_msg full = sample(WIRE_JOIN_RESPONSE);
	size_t len;
	uint8_t *buf = encode_ok(&full, &len);

	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++) {
		struct wire_msg m = sample(WIRE_JOIN_RESPONSE), back;
		char want[64];
		struct diag d;
		uint8_t *out;
		size_t n;
		struct raw r;

		snprintf(want, sizeof(want), "JOIN_RESPONSE lacks its %s", req[i].name);
		*blob_of(&m, req[i].tag) = (struct blob){ 0 };
		assert_int_equal(wire_encode(&m, &out, &n, &d), -EINVAL);
		assert_non_null(strstr(d.msg, want));
		drop_field(&r, buf, len, req[i].tag);
		assert_int_equal(decode_raw(&r, &back, &d), -EBADMSG);
		assert_non_null(strstr(d.msg, want));
	}
	free(buf);
}

/* Generally: a valid frame of each type minus any one field its type requires (scalars
 * included) does not decode; minus a required blob, the encoder will not write it. */
static void every_required_field_is_required(void **state)
{
	for (unsigned int type = 1; type < WIRE_TYPE_MAX; type++) {
		struct wire_msg full = sample(type);
		size_t len;
		uint8_t *buf = encode_ok(&full, &len);

		for (unsigned int tag = 1; tag < WT_MAX; tag++) {
			struct wire_msg m = sample(type), back;
			struct diag d;
			uint8_t *out;
			size_t n;
			struct raw r;

			if (!(schema[type].required & TAG(tag)))
				continue;
			drop_field(&r, buf, len, tag);
			assert_int_equal(decode_raw(&r, &back, &d), -EBADMSG);
			assert_non_null(strstr(d.msg, "lacks its"));
			if (field[tag].scalar)
				continue;
			if (tag == WT_ENDPOINT)
				m.n_endpoints = 0;
			else
				*blob_of(&m, tag) = (struct blob){ 0 };
			assert_int_equal(wire_encode(&m, &out, &n, &d), -EINVAL);
			assert_non_null(strstr(d.msg, "lacks its"));
		}
		/* Fields a type allows but does not require may be left out. */
		{
			struct wire_msg m = sample(type), back;
			struct diag d = { { 0 } };
			uint8_t *out;
			size_t n;

			for (unsigned int tag = 1; tag < WT_MAX; tag++)
				if ((schema[type].allowed & ~schema[type].required & TAG(tag)) &&
				    !field[tag].scalar)
					*blob_of(&m, tag) = (struct blob){ 0 };
			if (wire_encode(&m, &out, &n, &d) < 0)
				fail_msg("%s with only its required fields: %s",
					 wire_type_name(type), d.msg);
			assert_int_equal(wire_decode(out, n, &back, &d), 0);
			assert_same_msg(&m, &back);
			free(out);
		}
		free(buf);
	}
}

/* A JOIN_REQUEST from before flags existed (endpoints and name only) is refused. */
static void join_request_without_flags_is_refused(void **state)
{
	struct wire_msg m;
	struct diag d;
	struct raw r;

	raw_start(&r, WIRE_VERSION, WIRE_JOIN_REQUEST);
	raw_field(&r, WT_ENDPOINT, "10.0.0.1:51820", 14);
	raw_field(&r, WT_NODE_NAME, "worker-1", 8);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "JOIN_REQUEST lacks its flags"));
	raw_field(&r, WT_FLAGS, "\0\0\0\0", 4);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), 0);
	assert_int_equal(m.flags, 0);
}

/* A node's EVIDENCE names no cluster; the join service's binds its cluster identity. */
static void evidence_cluster_id_is_optional(void **state)
{
	struct wire_msg m = sample(WIRE_EVIDENCE), back;
	size_t len;
	uint8_t *buf;

	m.cluster_id = (struct blob){ 0 };
	buf = encode_ok(&m, &len);
	assert_int_equal(wire_decode(buf, len, &back, NULL), 0);
	assert_null(back.cluster_id.p);
	free(buf);
	m = sample(WIRE_EVIDENCE);
	buf = encode_ok(&m, &len);
	assert_int_equal(wire_decode(buf, len, &back, NULL), 0);
	assert_blob(back.cluster_id, (struct blob){ cluster, 32 });
	free(buf);
}

/* Any blob field a type does not allow is refused: the encoder will not write it, the decoder
 * will not take it (or its frame is already over the type's body limit). */
static void every_foreign_field_is_refused(void **state)
{
	static uint8_t filler[64];

	memset(filler, 'a', sizeof(filler));
	for (unsigned int type = 1; type < WIRE_TYPE_MAX; type++) {
		for (unsigned int tag = 1; tag < WT_MAX; tag++) {
			uint32_t n = field[tag].min ? field[tag].min : 1;
			struct wire_msg m = sample(type), back;
			struct diag d = { { 0 } };
			uint8_t *out;
			size_t len;
			struct raw r;
			int ret;

			if (schema[type].allowed & TAG(tag))
				continue;
			assert_true(n <= sizeof(filler));
			raw_start(&r, WIRE_VERSION, type);
			raw_field(&r, tag, filler, n);
			raw_end(&r);
			ret = decode_raw(&r, &back, &d);
			if (ret != -EMSGSIZE) {
				assert_int_equal(ret, -EBADMSG);
				assert_non_null(strstr(d.msg, "does not belong in"));
			}
			if (field[tag].scalar)
				continue;
			if (tag == WT_ENDPOINT) {
				m.endpoints[0] = (struct blob){ filler, n };
				m.n_endpoints = 1;
			} else {
				*blob_of(&m, tag) = (struct blob){ filler, n };
			}
			assert_int_equal(wire_encode(&m, &out, &len, &d), -EINVAL);
			assert_non_null(strstr(d.msg, "does not belong in"));
		}
	}
}

/* Encode m with one scalar at v, and decode a valid frame of m's type patched to carry v:
 * both accept it or both refuse it. */
static void check_scalar(uint16_t type, uint16_t tag, uint64_t v, bool valid, const char *why)
{
	struct wire_msg m = sample(type), back;
	struct diag d = { { 0 } };
	uint8_t *buf;
	size_t len;

	switch (tag) {
	case WT_ROLE: m.role = (uint8_t)v; break;
	case WT_CODE: m.code = (uint16_t)v; break;
	case WT_FLAGS: m.flags = (uint32_t)v; break;
	case WT_GENERATION: m.generation = v; break;
	case WT_OP: m.op = (uint16_t)v; break;
	case WT_NODE_ID: m.node_id = v; break;
	default: fail();
	}
	if (valid) {
		buf = encode_ok(&m, &len);
		if (wire_decode(buf, len, &back, &d) < 0)
			fail_msg("%s, tag %u = %llu: %s", wire_type_name(type), tag,
				 (unsigned long long)v, d.msg);
		assert_same_msg(&m, &back);
		free(buf);
		return;
	}
	if (wire_encode(&m, &buf, &len, &d) != -EINVAL)
		fail_msg("%s, tag %u = %llu encoded", wire_type_name(type), tag,
			 (unsigned long long)v);
	m = sample(type);
	buf = encode_ok(&m, &len);
	patch_scalar(buf, len, tag, v);
	assert_int_equal(wire_decode(buf, len, &back, &d), -EBADMSG);
	if (!strstr(d.msg, why))
		fail_msg("%s, tag %u = %llu: \"%s\" does not say \"%s\"", wire_type_name(type), tag,
			 (unsigned long long)v, d.msg, why);
	free(buf);
}

static void unknown_admin_op_is_refused(void **state)
{
	for (uint64_t op = 1; op < ADMIN_OP_MAX; op++)
		check_scalar(WIRE_ADMIN_REQUEST, WT_OP, op, true, NULL);
	check_scalar(WIRE_ADMIN_REQUEST, WT_OP, 0, false, "unknown operation 0");
	check_scalar(WIRE_ADMIN_REQUEST, WT_OP, ADMIN_OP_MAX, false, "unknown operation");
	check_scalar(WIRE_ADMIN_REQUEST, WT_OP, 0xffff, false, "unknown operation 65535");
}

/* Node ids are SQLite rowids: signed 64-bit. */
static void node_id_beyond_int64_max_is_refused(void **state)
{
	check_scalar(WIRE_ADMIN_REQUEST, WT_NODE_ID, 0, true, NULL);
	check_scalar(WIRE_ADMIN_REQUEST, WT_NODE_ID, INT64_MAX, true, NULL);
	check_scalar(WIRE_ADMIN_REQUEST, WT_NODE_ID, (uint64_t)INT64_MAX + 1, false,
		     "node id out of range");
	check_scalar(WIRE_ADMIN_REQUEST, WT_NODE_ID, UINT64_MAX, false, "node id out of range");
}

static void unknown_join_flags_are_refused(void **state)
{
	check_scalar(WIRE_JOIN_REQUEST, WT_FLAGS, 0, true, NULL);
	check_scalar(WIRE_JOIN_REQUEST, WT_FLAGS, JOIN_SUBSCRIBE, true, NULL);
	check_scalar(WIRE_JOIN_REQUEST, WT_FLAGS, 0x2, false, "unknown flags 0x2");
	check_scalar(WIRE_JOIN_REQUEST, WT_FLAGS, JOIN_SUBSCRIBE | 0x80000000u, false,
		     "unknown flags 0x80000001");
	check_scalar(WIRE_JOIN_REQUEST, WT_FLAGS, 0xffffffffu, false, "unknown flags");
}

static void operator_role_is_accepted_and_unknown_roles_refused(void **state)
{
	check_scalar(WIRE_HELLO, WT_ROLE, 'N', true, NULL);
	check_scalar(WIRE_HELLO, WT_ROLE, 'J', true, NULL);
	check_scalar(WIRE_HELLO, WT_ROLE, 'O', true, NULL);
	check_scalar(WIRE_HELLO, WT_ROLE, 'X', false, "unknown role 0x58");
	check_scalar(WIRE_HELLO, WT_ROLE, 'o', false, "unknown role 0x6f");
	check_scalar(WIRE_HELLO, WT_ROLE, 0, false, "unknown role 0x00");
}

/* In every type that carries a code: the last one is accepted, one past it is not. */
static void code_beyond_the_last_is_refused(void **state)
{
	static const uint16_t types[] = { WIRE_VERDICT, WIRE_ERROR, WIRE_ADMIN_RESPONSE };

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		assert_true(schema[types[i]].required & TAG(WT_CODE));
		check_scalar(types[i], WT_CODE, WIRE_OK, true, NULL);
		check_scalar(types[i], WT_CODE, WIRE_NOT_READY, true, NULL);
		check_scalar(types[i], WT_CODE, WIRE_CODE_MAX, false, "unknown code");
		check_scalar(types[i], WT_CODE, 0xffff, false, "unknown code 65535");
	}
}

/* A generation is any 64-bit count, in both types that carry one. */
static void generation_takes_every_64_bit_value(void **state)
{
	static const uint64_t values[] = { 0, 1, 0x8000000000000000ull, UINT64_MAX };

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		check_scalar(WIRE_PEER_UPDATE, WT_GENERATION, values[i], true, NULL);
		check_scalar(WIRE_ADMIN_RESPONSE, WT_GENERATION, values[i], true, NULL);
	}
}

/* The exact bytes: scalars big-endian at their fixed width, fields in tag order. A frame built
 * by hand decodes to the values it spells, and the encoder writes the same bytes back. */
static void new_scalars_are_big_endian_on_the_wire(void **state)
{
	static const uint8_t op[2] = { 0, ADMIN_REVOKE };
	static const uint8_t id[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
	static const uint8_t gen[8] = { 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8 };
	static const uint8_t flags[4] = { 0, 0, 0, JOIN_SUBSCRIBE };
	struct wire_msg m;
	uint8_t *buf;
	size_t len;
	struct raw r;

	raw_start(&r, WIRE_VERSION, WIRE_ADMIN_REQUEST);
	raw_field(&r, WT_OP, op, 2);
	raw_field(&r, WT_NODE_ID, id, 8);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, NULL), 0);
	assert_int_equal(m.op, ADMIN_REVOKE);
	assert_true(m.node_id == 0x0102030405060708ull);
	buf = encode_ok(&m, &len);
	assert_int_equal(len, r.len);
	assert_memory_equal(buf, r.buf, len);
	free(buf);

	raw_start(&r, WIRE_VERSION, WIRE_ADMIN_RESPONSE);
	raw_field(&r, WT_CODE, "\0\5", 2);
	raw_field(&r, WT_GENERATION, gen, 8);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, NULL), 0);
	assert_int_equal(m.code, WIRE_NOT_READY);
	assert_true(m.generation == 0xf1f2f3f4f5f6f7f8ull);
	buf = encode_ok(&m, &len);
	assert_int_equal(len, r.len);
	assert_memory_equal(buf, r.buf, len);
	free(buf);

	raw_start(&r, WIRE_VERSION, WIRE_JOIN_REQUEST);
	raw_field(&r, WT_ENDPOINT, "10.0.0.1:51820", 14);
	raw_field(&r, WT_FLAGS, flags, 4);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, NULL), 0);
	assert_int_equal(m.flags, JOIN_SUBSCRIBE);
	buf = encode_ok(&m, &len);
	assert_int_equal(len, r.len);
	assert_memory_equal(buf, r.buf, len);
	free(buf);
}

/* A PEER_UPDATE without a peer set is a heartbeat: the generation alone. */
static void peer_update_heartbeat_round_trips(void **state)
{
	struct wire_msg m = { .type = WIRE_PEER_UPDATE, .generation = 7 }, back;
	size_t len;
	uint8_t *buf = encode_ok(&m, &len);

	assert_int_equal(len, WIRE_HEADER_SIZE + 6 + 8);
	assert_int_equal(wire_decode(buf, len, &back, NULL), 0);
	assert_null(back.peer_set.p);
	assert_true(back.generation == 7);
	free(buf);
}

static void wrong_frame_version_is_refused(void **state)
{
	struct wire_msg m;
	struct diag d;
	struct raw r;

	raw_hello(&r, WIRE_VERSION);
	assert_int_equal(decode_raw(&r, &m, &d), 0);
	raw_hello(&r, WIRE_VERSION + 1);
	assert_int_equal(decode_raw(&r, &m, &d), -EPROTONOSUPPORT);
	assert_non_null(strstr(d.msg, "frame version 2"));
	raw_hello(&r, 0);
	assert_int_equal(decode_raw(&r, &m, &d), -EPROTONOSUPPORT);
}

static void bad_magic_and_unknown_types_are_refused(void **state)
{
	struct wire_msg m;
	struct diag d;
	struct raw r;

	raw_hello(&r, WIRE_VERSION);
	r.buf[0] = 'X';
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "bad magic"));
	for (unsigned int t = 0; t <= WIRE_TYPE_MAX; t += WIRE_TYPE_MAX) {
		raw_start(&r, WIRE_VERSION, (uint16_t)t);
		raw_end(&r);
		assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
		assert_non_null(strstr(d.msg, "unknown message type"));
	}
}

static void bad_scalar_values_are_refused(void **state)
{
	struct wire_msg m = sample(WIRE_HELLO);
	struct diag d;
	uint8_t *buf;
	size_t len;
	struct raw r;

	raw_start(&r, WIRE_VERSION, WIRE_HELLO);
	raw_field(&r, WT_PROTO_VERSION, "\0\1", 2);
	raw_field(&r, WT_ROLE, "X", 1);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "unknown role"));
	raw_start(&r, WIRE_VERSION, WIRE_HELLO);
	raw_field(&r, WT_PROTO_VERSION, "\0\0", 2);
	raw_field(&r, WT_ROLE, "N", 1);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	raw_start(&r, WIRE_VERSION, WIRE_VERDICT);
	raw_field(&r, WT_CODE, "\0\xff", 2);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "unknown code"));
	m = sample(WIRE_HELLO);
	m.role = 'x';
	assert_int_equal(wire_encode(&m, &buf, &len, &d), -EINVAL);
	m = sample(WIRE_VERDICT);
	m.code = WIRE_CODE_MAX;
	assert_int_equal(wire_encode(&m, &buf, &len, &d), -EINVAL);
}

/* Text ends up in logs: control characters and escape sequences never decode. */
static void non_printable_text_is_refused(void **state)
{
	struct wire_msg m = sample(WIRE_ERROR);
	struct diag d;
	uint8_t *buf;
	size_t len;
	struct raw r;

	raw_start(&r, WIRE_VERSION, WIRE_ERROR);
	raw_field(&r, WT_CODE, "\0\2", 2);
	raw_field(&r, WT_TEXT, "ok\x1b[2J", 6);
	raw_end(&r);
	assert_int_equal(decode_raw(&r, &m, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "not printable"));
	m = sample(WIRE_ERROR);
	m.text = (struct blob){ (const uint8_t *)"line\nbreak", 10 };
	assert_int_equal(wire_encode(&m, &buf, &len, &d), -EINVAL);
}

static void received_buffer_is_released(void **state)
{
	struct wire_msg m = sample(WIRE_JOIN_RESPONSE), back;
	size_t len;
	uint8_t *buf = encode_ok(&m, &len);

	assert_int_equal(wire_decode(buf, len, &back, NULL), 0);
	back.owned = buf;
	back.owned_len = len;
	wire_msg_free(&back);
	assert_null(back.owned);
	wire_msg_free(&back);
	wire_msg_free(NULL);
}

static void names_cover_every_type_and_code(void **state)
{
	for (unsigned int t = 1; t < WIRE_TYPE_MAX; t++) {
		assert_string_not_equal(wire_type_name(t), "unknown");
		for (unsigned int u = 1; u < t; u++)
			assert_string_not_equal(wire_type_name(t), wire_type_name(u));
	}
	for (unsigned int c = 0; c < WIRE_CODE_MAX; c++) {
		assert_string_not_equal(wire_code_name(c), "unknown");
		for (unsigned int u = 0; u < c; u++)
			assert_string_not_equal(wire_code_name(c), wire_code_name(u));
	}
	assert_string_equal(wire_type_name(WIRE_PEER_UPDATE), "PEER_UPDATE");
	assert_string_equal(wire_type_name(WIRE_ADMIN_REQUEST), "ADMIN_REQUEST");
	assert_string_equal(wire_type_name(WIRE_ADMIN_RESPONSE), "ADMIN_RESPONSE");
	assert_string_equal(wire_code_name(WIRE_NOT_READY), "not initialised");
	assert_string_equal(wire_type_name(0), "unknown");
	assert_string_equal(wire_type_name(WIRE_TYPE_MAX), "unknown");
	assert_string_equal(wire_code_name(WIRE_CODE_MAX), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_message_type_round_trips),
		cmocka_unit_test(empty_text_round_trips),
		cmocka_unit_test(fields_in_any_order_are_accepted),
		cmocka_unit_test(every_field_limit_is_enforced),
		cmocka_unit_test(body_limit_is_the_largest_valid_body),
		cmocka_unit_test(body_limit_is_checked_from_the_header_alone),
		cmocka_unit_test(truncation_at_every_byte_is_refused),
		cmocka_unit_test(truncated_body_with_a_matching_header_is_refused),
		cmocka_unit_test(trailing_bytes_are_refused),
		cmocka_unit_test(unknown_tag_is_refused),
		cmocka_unit_test(field_of_another_type_is_refused),
		cmocka_unit_test(duplicate_field_is_refused),
		cmocka_unit_test(repeatable_field_has_a_count_limit),
		cmocka_unit_test(missing_required_field_is_refused),
		cmocka_unit_test(join_response_without_any_of_its_four_fields_is_refused),
		cmocka_unit_test(every_required_field_is_required),
		cmocka_unit_test(join_request_without_flags_is_refused),
		cmocka_unit_test(evidence_cluster_id_is_optional),
		cmocka_unit_test(every_foreign_field_is_refused),
		cmocka_unit_test(unknown_admin_op_is_refused),
		cmocka_unit_test(node_id_beyond_int64_max_is_refused),
		cmocka_unit_test(unknown_join_flags_are_refused),
		cmocka_unit_test(operator_role_is_accepted_and_unknown_roles_refused),
		cmocka_unit_test(code_beyond_the_last_is_refused),
		cmocka_unit_test(generation_takes_every_64_bit_value),
		cmocka_unit_test(new_scalars_are_big_endian_on_the_wire),
		cmocka_unit_test(peer_update_heartbeat_round_trips),
		cmocka_unit_test(wrong_frame_version_is_refused),
		cmocka_unit_test(bad_magic_and_unknown_types_are_refused),
		cmocka_unit_test(bad_scalar_values_are_refused),
		cmocka_unit_test(non_printable_text_is_refused),
		cmocka_unit_test(received_buffer_is_released),
		cmocka_unit_test(names_cover_every_type_and_code),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
