// SPDX-License-Identifier: Apache-2.0
/* Wire protocol frames: one TLV body format, one schema per message type. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/bytes.h"
#include "conclave/util.h"
#include "conclave/wire.h"

#define WIRE_FIELD_HDR 6 /* u16 tag + u32 length */

struct field_rule {
	const char *name;
	uint32_t min, max;
	uint8_t max_count; /* 1, or how often a repeatable field may appear */
	bool text;	   /* printable ASCII only: it ends up in logs */
};

static const struct field_rule rules[WT_MAX] = {
	[WT_PROTO_VERSION] = { "protocol version", 2, 2, 1, false },
	[WT_ROLE] = { "role", 1, 1, 1, false },
	[WT_CHALLENGE] = { "credential challenge", 1, 1024, 1, false },
	[WT_EVIDENCE] = { "evidence", 1, EVIDENCE_MAX_SIZE, 1, false },
	[WT_WG_PUBKEY] = { "WireGuard public key", 32, 32, 1, false },
	[WT_DISK_UUID] = { "disk UUID", 16, 16, 1, false },
	[WT_CODE] = { "code", 2, 2, 1, false },
	[WT_TEXT] = { "text", 0, WIRE_TEXT_MAX, 1, true },
	[WT_ENDPOINT] = { "endpoint", 1, 64, WIRE_MAX_ENDPOINTS, true },
	[WT_NODE_NAME] = { "node name", 1, 64, 1, true },
	[WT_KEY_MATERIAL] = { "key material", 1, 4096, 1, false },
	[WT_PEER_SET] = { "peer set", 1, 256u << 10, 1, false },
	[WT_CLUSTER_ID] = { "cluster identity", 32, 32, 1, false },
	[WT_FLAGS] = { "flags", 4, 4, 1, false },
	[WT_GENERATION] = { "generation", 8, 8, 1, false },
	[WT_OP] = { "operation", 2, 2, 1, false },
	[WT_NODE_ID] = { "node id", 8, 8, 1, false },
	[WT_POLICY] = { "policy", 1, 256u << 10, 1, false },
	[WT_SIGNATURE] = { "signature", 64, 64, 1, false },
	[WT_MEMBERS] = { "member list", 1, 256u << 10, 1, false },
	[WT_CA_CERT] = { "CA certificate", 1, 2048, 1, false },
	[WT_NODE_CERT] = { "node certificate", 1, 2048, 1, false },
};

/* Fixed-size integers: always written where allowed, so always required there. */
static bool is_scalar(unsigned int t)
{
	return t == WT_PROTO_VERSION || t == WT_ROLE || t == WT_CODE || t == WT_FLAGS ||
	       t == WT_GENERATION || t == WT_OP || t == WT_NODE_ID;
}

static bool role_known(uint8_t r)
{
	return r == 'N' || r == 'J' || r == 'O';
}

#define BIT(t) (1u << (t))

struct schema {
	const char *name;
	uint32_t allowed, required;
};

static const struct schema schemas[WIRE_TYPE_MAX] = {
	[WIRE_HELLO] = { "HELLO", BIT(WT_PROTO_VERSION) | BIT(WT_ROLE),
			 BIT(WT_PROTO_VERSION) | BIT(WT_ROLE) },
	[WIRE_CHALLENGE] = { "CHALLENGE", BIT(WT_CHALLENGE), BIT(WT_CHALLENGE) },
	[WIRE_EVIDENCE] = { "EVIDENCE",
			    BIT(WT_EVIDENCE) | BIT(WT_WG_PUBKEY) | BIT(WT_DISK_UUID) |
				BIT(WT_CLUSTER_ID),
			    BIT(WT_EVIDENCE) },
	[WIRE_VERDICT] = { "VERDICT", BIT(WT_CODE) | BIT(WT_TEXT), BIT(WT_CODE) },
	[WIRE_ERROR] = { "ERROR", BIT(WT_CODE) | BIT(WT_TEXT), BIT(WT_CODE) },
	[WIRE_JOIN_REQUEST] = { "JOIN_REQUEST",
				BIT(WT_ENDPOINT) | BIT(WT_NODE_NAME) | BIT(WT_FLAGS),
				BIT(WT_ENDPOINT) | BIT(WT_FLAGS) },
	[WIRE_JOIN_RESPONSE] = { "JOIN_RESPONSE",
				 BIT(WT_KEY_MATERIAL) | BIT(WT_PEER_SET) | BIT(WT_CA_CERT) |
				     BIT(WT_NODE_CERT),
				 BIT(WT_KEY_MATERIAL) | BIT(WT_PEER_SET) | BIT(WT_CA_CERT) |
				     BIT(WT_NODE_CERT) },
	[WIRE_PEER_UPDATE] = { "PEER_UPDATE", BIT(WT_GENERATION) | BIT(WT_PEER_SET),
			       BIT(WT_GENERATION) },
	[WIRE_ADMIN_REQUEST] = { "ADMIN_REQUEST",
				 BIT(WT_OP) | BIT(WT_NODE_ID) | BIT(WT_KEY_MATERIAL) |
				     BIT(WT_POLICY) | BIT(WT_SIGNATURE),
				 BIT(WT_OP) | BIT(WT_NODE_ID) },
	[WIRE_ADMIN_RESPONSE] = { "ADMIN_RESPONSE",
				  BIT(WT_CODE) | BIT(WT_GENERATION) | BIT(WT_TEXT) |
				      BIT(WT_MEMBERS) | BIT(WT_SIGNATURE) | BIT(WT_CA_CERT),
				  BIT(WT_CODE) | BIT(WT_GENERATION) },
};

static const char *const code_names[WIRE_CODE_MAX] = {
	[WIRE_OK] = "ok",
	[WIRE_REFUSED] = "refused",
	[WIRE_BAD_MESSAGE] = "bad message",
	[WIRE_UNSUPPORTED] = "unsupported",
	[WIRE_INTERNAL] = "internal error",
	[WIRE_NOT_READY] = "not initialised",
};

static bool type_known(uint16_t type)
{
	return type > 0 && type < WIRE_TYPE_MAX;
}

const char *wire_type_name(uint16_t type)
{
	return type_known(type) ? schemas[type].name : "unknown";
}

const char *wire_code_name(uint16_t code)
{
	return code < WIRE_CODE_MAX ? code_names[code] : "unknown";
}

/* The limit is exactly the largest valid body: every allowed field at its maximum, as often as
 * it may appear. Nothing valid is refused, nothing larger is ever read. */
size_t wire_body_max(uint16_t type)
{
	size_t max = 0;

	if (!type_known(type))
		return 0;
	for (unsigned int t = 1; t < WT_MAX; t++)
		if (schemas[type].allowed & BIT(t))
			max += (size_t)rules[t].max_count * (WIRE_FIELD_HDR + rules[t].max);
	return max;
}

size_t wire_frame_max(void)
{
	size_t max = 0;

	for (unsigned int t = 1; t < WIRE_TYPE_MAX; t++)
		if (wire_body_max((uint16_t)t) > max)
			max = wire_body_max((uint16_t)t);
	return WIRE_HEADER_SIZE + max;
}

int wire_decode_header(const uint8_t hdr[WIRE_HEADER_SIZE], uint16_t *type, uint32_t *body_len,
		       struct diag *d)
{
	struct reader r = reader_init(hdr, WIRE_HEADER_SIZE);
	const uint8_t *magic;
	uint16_t version;

	rd_bytes(&r, 4, &magic);
	rd_be16(&r, &version);
	rd_be16(&r, type);
	rd_be32(&r, body_len);
	if (memcmp(magic, WIRE_MAGIC, 4)) {
		diag_set(d, "not a conclave frame (bad magic)");
		return -EBADMSG;
	}
	if (version != WIRE_VERSION) {
		diag_set(d, "frame version %u is not supported (expected %u)", version,
			 WIRE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (!type_known(*type)) {
		diag_set(d, "unknown message type %u", *type);
		return -EBADMSG;
	}
	if (*body_len > wire_body_max(*type)) {
		diag_set(d, "%s of %u bytes exceeds the limit of %zu", schemas[*type].name,
			 *body_len, wire_body_max(*type));
		return -EMSGSIZE;
	}
	return 0;
}

static bool printable(struct blob b)
{
	for (size_t i = 0; i < b.len; i++)
		if (b.p[i] < 0x20 || b.p[i] > 0x7e)
			return false;
	return true;
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint64_t be_n(struct blob b)
{
	uint64_t v = 0;

	for (size_t i = 0; i < b.len; i++)
		v = v << 8 | b.p[i];
	return v;
}

/* Check one field's value and store it; the length is already within its rule. */
static int store_field(struct wire_msg *m, uint16_t tag, struct blob b, struct diag *d)
{
	if (rules[tag].text && !printable(b)) {
		diag_set(d, "not printable ASCII");
		return -EBADMSG;
	}
	switch (tag) {
	case WT_PROTO_VERSION:
		m->proto_version = be16(b.p);
		if (m->proto_version == 0) {
			diag_set(d, "version 0 does not exist");
			return -EBADMSG;
		}
		break;
	case WT_ROLE:
		m->role = b.p[0];
		if (!role_known(m->role)) {
			diag_set(d, "unknown role 0x%02x", m->role);
			return -EBADMSG;
		}
		break;
	case WT_CODE:
		m->code = be16(b.p);
		if (m->code >= WIRE_CODE_MAX) {
			diag_set(d, "unknown code %u", m->code);
			return -EBADMSG;
		}
		break;
	case WT_OP:
		m->op = be16(b.p);
		if (m->op == 0 || m->op >= ADMIN_OP_MAX) {
			diag_set(d, "unknown operation %u", m->op);
			return -EBADMSG;
		}
		break;
	case WT_NODE_ID:
		m->node_id = be_n(b);
		if (m->node_id > INT64_MAX) {
			diag_set(d, "node id out of range");
			return -EBADMSG;
		}
		break;
	case WT_FLAGS:
		m->flags = (uint32_t)be_n(b);
		if (m->flags & ~JOIN_SUBSCRIBE) {
			diag_set(d, "unknown flags 0x%x", m->flags);
			return -EBADMSG;
		}
		break;
	case WT_GENERATION: m->generation = be_n(b); break;
	case WT_CHALLENGE: m->challenge = b; break;
	case WT_EVIDENCE: m->evidence = b; break;
	case WT_WG_PUBKEY: m->wg_pubkey = b; break;
	case WT_DISK_UUID: m->disk_uuid = b; break;
	case WT_TEXT: m->text = b; break;
	case WT_ENDPOINT: m->endpoints[m->n_endpoints++] = b; break;
	case WT_NODE_NAME: m->node_name = b; break;
	case WT_KEY_MATERIAL: m->key_material = b; break;
	case WT_PEER_SET: m->peer_set = b; break;
	case WT_CLUSTER_ID: m->cluster_id = b; break;
	case WT_POLICY: m->policy = b; break;
	case WT_SIGNATURE: m->signature = b; break;
	case WT_MEMBERS: m->members = b; break;
	case WT_CA_CERT: m->ca_cert = b; break;
	case WT_NODE_CERT: m->node_cert = b; break;
	}
	return 0;
}

static int decode_field(struct reader *r, const struct schema *s, struct wire_msg *m,
			uint8_t seen[WT_MAX], struct diag *d)
{
	size_t off = r->off;
	uint16_t tag;
	uint32_t flen;
	struct blob b;
	int ret;

	if (rd_be16(r, &tag) < 0 || rd_be32(r, &flen) < 0) {
		diag_set(d, "offset %zu: truncated field header", off);
		return -EBADMSG;
	}
	if (tag == 0 || tag >= WT_MAX) {
		diag_set(d, "offset %zu: unknown field tag %u", off, tag);
		return -EBADMSG;
	}
	if (!(s->allowed & BIT(tag))) {
		diag_set(d, "offset %zu: %s does not belong in %s", off, rules[tag].name, s->name);
		return -EBADMSG;
	}
	if (seen[tag] == rules[tag].max_count) {
		diag_set(d, "offset %zu: %s appears more than %u time%s", off, rules[tag].name,
			 rules[tag].max_count, rules[tag].max_count == 1 ? "" : "s");
		return -EBADMSG;
	}
	if (flen < rules[tag].min || flen > rules[tag].max) {
		diag_set(d, "offset %zu: %s of %u bytes is outside %u..%u", off, rules[tag].name,
			 flen, rules[tag].min, rules[tag].max);
		return -EBADMSG;
	}
	if (rd_bytes(r, flen, &b.p) < 0) {
		diag_set(d, "offset %zu: %s truncated (need %u bytes, have %zu)", off,
			 rules[tag].name, flen, reader_left(r));
		return -EBADMSG;
	}
	b.len = flen;
	seen[tag]++;
	ret = store_field(m, tag, b, d);
	if (ret < 0)
		diag_prefix(d, "offset %zu: %s", off, rules[tag].name);
	return ret;
}

int wire_decode(const uint8_t *buf, size_t len, struct wire_msg *m, struct diag *d)
{
	uint8_t seen[WT_MAX] = { 0 };
	const struct schema *s;
	uint32_t body_len;
	struct reader r;
	int ret;

	memset(m, 0, sizeof(*m));
	if (len < WIRE_HEADER_SIZE) {
		diag_set(d, "truncated frame header (%zu of %d bytes)", len, WIRE_HEADER_SIZE);
		return -EBADMSG;
	}
	ret = wire_decode_header(buf, &m->type, &body_len, d);
	if (ret < 0)
		return ret;
	if (len - WIRE_HEADER_SIZE != body_len) {
		diag_set(d, "%s body is %zu bytes, its header says %u", wire_type_name(m->type),
			 len - WIRE_HEADER_SIZE, body_len);
		return -EBADMSG;
	}
	s = &schemas[m->type];
	r = reader_init(buf + WIRE_HEADER_SIZE, body_len);
	while (reader_left(&r)) {
		ret = decode_field(&r, s, m, seen, d);
		if (ret < 0) {
			diag_prefix(d, "%s", s->name);
			return ret;
		}
	}
	for (unsigned int t = 1; t < WT_MAX; t++)
		if ((s->required & BIT(t)) && !seen[t]) {
			diag_set(d, "%s lacks its %s", s->name, rules[t].name);
			return -EBADMSG;
		}
	return 0;
}

static int check_blob(const struct schema *s, uint16_t tag, struct blob b, size_t count,
		      struct diag *d)
{
	if (!b.p)
		return 0;
	if (!(s->allowed & BIT(tag))) {
		diag_set(d, "%s does not belong in %s", rules[tag].name, s->name);
		return -EINVAL;
	}
	if (b.len < rules[tag].min || b.len > rules[tag].max || count > rules[tag].max_count ||
	    (rules[tag].text && !printable(b))) {
		diag_set(d, "%s of %zu bytes does not fit its rule", rules[tag].name, b.len);
		return -EINVAL;
	}
	return 0;
}

static void put_field(struct writer *w, uint16_t tag, const void *p, size_t len)
{
	wr_be16(w, tag);
	wr_be32(w, (uint32_t)len);
	wr_bytes(w, p, len);
}

/* The blob fields of m in tag order (endpoints apart: they repeat). */
static void blob_fields(const struct wire_msg *m, struct blob out[WT_MAX])
{
	memset(out, 0, sizeof(struct blob) * WT_MAX);
	out[WT_CHALLENGE] = m->challenge;
	out[WT_EVIDENCE] = m->evidence;
	out[WT_WG_PUBKEY] = m->wg_pubkey;
	out[WT_DISK_UUID] = m->disk_uuid;
	out[WT_TEXT] = m->text;
	out[WT_NODE_NAME] = m->node_name;
	out[WT_KEY_MATERIAL] = m->key_material;
	out[WT_PEER_SET] = m->peer_set;
	out[WT_CLUSTER_ID] = m->cluster_id;
	out[WT_POLICY] = m->policy;
	out[WT_SIGNATURE] = m->signature;
	out[WT_MEMBERS] = m->members;
	out[WT_CA_CERT] = m->ca_cert;
	out[WT_NODE_CERT] = m->node_cert;
}

/* The value of a scalar field of m. */
static uint64_t scalar_of(const struct wire_msg *m, unsigned int t)
{
	switch (t) {
	case WT_PROTO_VERSION: return m->proto_version;
	case WT_ROLE: return m->role;
	case WT_CODE: return m->code;
	case WT_FLAGS: return m->flags;
	case WT_GENERATION: return m->generation;
	case WT_OP: return m->op;
	case WT_NODE_ID: return m->node_id;
	default: return 0;
	}
}

static int check_msg(const struct wire_msg *m, const struct blob fields[WT_MAX], struct diag *d)
{
	const struct schema *s = &schemas[m->type];
	int ret;

	for (unsigned int t = 1; t < WT_MAX; t++) {
		if (t == WT_ENDPOINT)
			continue;
		ret = check_blob(s, (uint16_t)t, fields[t], 1, d);
		if (ret < 0)
			return ret;
	}
	if (m->n_endpoints > WIRE_MAX_ENDPOINTS) {
		diag_set(d, "more than %d endpoints", WIRE_MAX_ENDPOINTS);
		return -EINVAL;
	}
	for (size_t i = 0; i < m->n_endpoints; i++) {
		ret = check_blob(s, WT_ENDPOINT, m->endpoints[i], m->n_endpoints, d);
		if (ret < 0)
			return ret;
	}
	if (((s->required & BIT(WT_ROLE)) && !role_known(m->role)) ||
	    ((s->required & BIT(WT_PROTO_VERSION)) && m->proto_version == 0) ||
	    ((s->required & BIT(WT_CODE)) && m->code >= WIRE_CODE_MAX) ||
	    ((s->required & BIT(WT_OP)) && (m->op == 0 || m->op >= ADMIN_OP_MAX)) ||
	    ((s->required & BIT(WT_NODE_ID)) && m->node_id > INT64_MAX) ||
	    ((s->required & BIT(WT_FLAGS)) && (m->flags & ~JOIN_SUBSCRIBE))) {
		diag_set(d, "%s with an invalid role, version, code, operation, node id or flags",
			 s->name);
		return -EINVAL;
	}
	for (unsigned int t = 1; t < WT_MAX; t++) {
		bool present =
		    is_scalar(t) || (t == WT_ENDPOINT ? m->n_endpoints > 0 : !!fields[t].p);

		if ((s->required & BIT(t)) && !present) {
			diag_set(d, "%s lacks its %s", s->name, rules[t].name);
			return -EINVAL;
		}
	}
	return 0;
}

/* Exact frame size of a checked message. */
static size_t frame_size(const struct wire_msg *m, const struct blob fields[WT_MAX])
{
	const struct schema *s = &schemas[m->type];
	size_t n = WIRE_HEADER_SIZE;

	for (unsigned int t = 1; t < WT_MAX; t++) {
		if (!(s->allowed & BIT(t)))
			continue;
		if (is_scalar(t))
			n += WIRE_FIELD_HDR + rules[t].max;
		else if (t == WT_ENDPOINT)
			for (size_t i = 0; i < m->n_endpoints; i++)
				n += WIRE_FIELD_HDR + m->endpoints[i].len;
		else if (fields[t].p)
			n += WIRE_FIELD_HDR + fields[t].len;
	}
	return n;
}

int wire_encode(const struct wire_msg *m, uint8_t **out, size_t *len, struct diag *d)
{
	struct writer w = { 0 };
	struct blob fields[WT_MAX];
	const struct schema *s;
	uint32_t body;
	uint8_t v[8];
	int ret;

	if (!type_known(m->type)) {
		diag_set(d, "unknown message type %u", m->type);
		return -EINVAL;
	}
	s = &schemas[m->type];
	blob_fields(m, fields);
	ret = check_msg(m, fields, d);
	if (ret < 0)
		return ret;
	/* Allocated once at its exact size: a frame may carry key material, and a growing
	 * buffer would leave copies of it behind in freed memory. */
	w.cap = frame_size(m, fields);
	w.p = malloc(w.cap);
	if (!w.p) {
		diag_set(d, "out of memory encoding %s", s->name);
		return -ENOMEM;
	}
	body = (uint32_t)(w.cap - WIRE_HEADER_SIZE);
	wr_bytes(&w, WIRE_MAGIC, 4);
	wr_be16(&w, WIRE_VERSION);
	wr_be16(&w, m->type);
	wr_be32(&w, body);
	for (unsigned int t = 1; t < WT_MAX; t++) {
		if (!(s->allowed & BIT(t)))
			continue;
		if (is_scalar(t)) {
			uint64_t x = scalar_of(m, t);

			for (uint32_t i = 0; i < rules[t].max; i++)
				v[i] = (uint8_t)(x >> 8 * (rules[t].max - 1 - i));
			put_field(&w, (uint16_t)t, v, rules[t].max);
		} else if (t == WT_ENDPOINT) {
			for (size_t i = 0; i < m->n_endpoints; i++)
				put_field(&w, (uint16_t)t, m->endpoints[i].p, m->endpoints[i].len);
		} else if (fields[t].p) {
			put_field(&w, (uint16_t)t, fields[t].p, fields[t].len);
		}
	}
	if (w.failed || w.len != w.cap) { /* cannot happen: frame_size counts what is written */
		explicit_bzero(w.p, w.cap);
		writer_free(&w);
		diag_set(d, "internal error: %s size miscounted", s->name);
		return -EFAULT;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

void wire_msg_free(struct wire_msg *m)
{
	if (!m || !m->owned)
		return;
	explicit_bzero(m->owned, m->owned_len);
	free(m->owned);
	m->owned = NULL;
	m->owned_len = 0;
}
