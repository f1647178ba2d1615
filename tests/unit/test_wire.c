// SPDX-License-Identifier: Apache-2.0
/* Wire protocol frames: round trips of every message type, every limit, truncation at every
 * byte, and each way a frame can be malformed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

static const uint8_t wg[32] = { 1,  2,	3,  4,	5,  6,	7,  8,	9,  10, 11, 12, 13, 14, 15, 16,
				17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
static const uint8_t uuid[16] = { 0xa1, 0xa2, 0xa3, 0xa4, 0xb1, 0xb2, 0xc1, 0xc2,
				  0xd1, 0xd2, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6 };

/* One valid message of every type. */
static struct wire_msg sample(uint16_t type)
{
	static const uint8_t ev[] = "CEVD-stand-in";
	static const uint8_t ch[] = "CCHL-stand-in";
	static const uint8_t key[48] = { 0x42 };
	static const uint8_t peers[300] = { 7 };
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
		break;
	case WIRE_VERDICT:
	case WIRE_ERROR:
		m.code = type == WIRE_VERDICT ? WIRE_REFUSED : WIRE_BAD_MESSAGE;
		m.text = (struct blob){ (const uint8_t *)"nonce: mismatch", 15 };
		break;
	case WIRE_JOIN_REQUEST:
		m.node_name = (struct blob){ (const uint8_t *)"worker-1", 8 };
		for (int i = 0; i < WIRE_MAX_ENDPOINTS; i++)
			m.endpoints[i] = (struct blob){ (const uint8_t *)"10.0.0.1:51820", 14 };
		m.n_endpoints = WIRE_MAX_ENDPOINTS;
		break;
	case WIRE_JOIN_RESPONSE:
		m.key_material = (struct blob){ key, sizeof(key) };
		m.peer_set = (struct blob){ peers, sizeof(peers) };
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
	assert_blob(a->challenge, b->challenge);
	assert_blob(a->evidence, b->evidence);
	assert_blob(a->wg_pubkey, b->wg_pubkey);
	assert_blob(a->disk_uuid, b->disk_uuid);
	assert_blob(a->text, b->text);
	assert_blob(a->node_name, b->node_name);
	assert_blob(a->key_material, b->key_material);
	assert_blob(a->peer_set, b->peer_set);
	assert_int_equal(a->n_endpoints, b->n_endpoints);
	for (size_t i = 0; i < a->n_endpoints; i++)
		assert_blob(a->endpoints[i], b->endpoints[i]);
}

static void every_message_type_round_trips(void **state)
{
	for (unsigned int t = 1; t < WIRE_TYPE_MAX; t++) {
		struct wire_msg m = sample((uint16_t)t), back;
		struct diag d = { { 0 } };
		size_t len;
		uint8_t *buf = encode_ok(&m, &len);

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

/* For each field: its largest valid length is accepted, one more byte (or one fewer than its
 * minimum) is refused by the encoder and by the decoder. */
static void every_field_limit_is_enforced(void **state)
{
	static const struct {
		uint16_t type, tag;
		uint32_t min, max;
	} limits[] = {
		{ WIRE_CHALLENGE, WT_CHALLENGE, 1, 1024 },
		{ WIRE_EVIDENCE, WT_EVIDENCE, 1, EVIDENCE_MAX_SIZE },
		{ WIRE_EVIDENCE, WT_WG_PUBKEY, 32, 32 },
		{ WIRE_EVIDENCE, WT_DISK_UUID, 16, 16 },
		{ WIRE_VERDICT, WT_TEXT, 0, WIRE_TEXT_MAX },
		{ WIRE_JOIN_REQUEST, WT_ENDPOINT, 1, 64 },
		{ WIRE_JOIN_REQUEST, WT_NODE_NAME, 1, 64 },
		{ WIRE_JOIN_RESPONSE, WT_KEY_MATERIAL, 1, 4096 },
		{ WIRE_JOIN_RESPONSE, WT_PEER_SET, 1, 256u << 10 },
	};
	uint8_t *big = malloc(EVIDENCE_MAX_SIZE + 1);

	assert_non_null(big);
	memset(big, 'a', EVIDENCE_MAX_SIZE + 1);
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		uint32_t lens[3] = { limits[i].max, limits[i].max + 1, limits[i].min - 1 };

		for (int k = 0; k < (limits[i].min ? 3 : 2); k++) {
			struct wire_msg m = sample(limits[i].type), back;
			struct blob b = { big, lens[k] };
			struct diag d = { { 0 } };
			uint8_t *buf;
			size_t len;
			int ret;

			switch (limits[i].tag) {
			case WT_CHALLENGE: m.challenge = b; break;
			case WT_EVIDENCE: m.evidence = b; break;
			case WT_WG_PUBKEY: m.wg_pubkey = b; break;
			case WT_DISK_UUID: m.disk_uuid = b; break;
			case WT_TEXT: m.text = b; break;
			case WT_ENDPOINT: m.endpoints[0] = b; break;
			case WT_NODE_NAME: m.node_name = b; break;
			case WT_KEY_MATERIAL: m.key_material = b; break;
			case WT_PEER_SET: m.peer_set = b; break;
			}
			ret = wire_encode(&m, &buf, &len, &d);
			if (k == 0) {
				assert_int_equal(ret, 0);
				assert_int_equal(wire_decode(buf, len, &back, &d), 0);
				free(buf);
				continue;
			}
			assert_int_equal(ret, -EINVAL);
			/* The decoder sees the same field built by hand. */
			{
				size_t cap = WIRE_HEADER_SIZE + 6 + (size_t)lens[k];
				uint8_t *raw = malloc(cap);
				uint32_t body = (uint32_t)(cap - WIRE_HEADER_SIZE);

				memcpy(raw, WIRE_MAGIC, 4);
				raw[4] = 0;
				raw[5] = WIRE_VERSION;
				raw[6] = (uint8_t)(limits[i].type >> 8);
				raw[7] = (uint8_t)limits[i].type;
				raw[8] = (uint8_t)(body >> 24);
				raw[9] = (uint8_t)(body >> 16);
				raw[10] = (uint8_t)(body >> 8);
				raw[11] = (uint8_t)body;
				raw[12] = 0;
				raw[13] = (uint8_t)limits[i].tag;
				raw[14] = (uint8_t)(lens[k] >> 24);
				raw[15] = (uint8_t)(lens[k] >> 16);
				raw[16] = (uint8_t)(lens[k] >> 8);
				raw[17] = (uint8_t)lens[k];
				memcpy(raw + 18, big, lens[k]);
				assert_int_not_equal(wire_decode(raw, cap, &back, &d), 0);
				/* A lone over-long field may already break the type's body
				 * limit, which the header check catches first. */
				assert_true(strstr(d.msg, "outside") ||
					    strstr(d.msg, "exceeds the limit"));
				free(raw);
			}
		}
	}
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
	for (unsigned int t = 1; t < WIRE_TYPE_MAX; t++)
		assert_string_not_equal(wire_type_name(t), "unknown");
	for (unsigned int c = 0; c < WIRE_CODE_MAX; c++)
		assert_string_not_equal(wire_code_name(c), "unknown");
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
		cmocka_unit_test(body_limit_is_checked_from_the_header_alone),
		cmocka_unit_test(truncation_at_every_byte_is_refused),
		cmocka_unit_test(truncated_body_with_a_matching_header_is_refused),
		cmocka_unit_test(trailing_bytes_are_refused),
		cmocka_unit_test(unknown_tag_is_refused),
		cmocka_unit_test(field_of_another_type_is_refused),
		cmocka_unit_test(duplicate_field_is_refused),
		cmocka_unit_test(repeatable_field_has_a_count_limit),
		cmocka_unit_test(missing_required_field_is_refused),
		cmocka_unit_test(wrong_frame_version_is_refused),
		cmocka_unit_test(bad_magic_and_unknown_types_are_refused),
		cmocka_unit_test(bad_scalar_values_are_refused),
		cmocka_unit_test(non_printable_text_is_refused),
		cmocka_unit_test(received_buffer_is_released),
		cmocka_unit_test(names_cover_every_type_and_code),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
