// SPDX-License-Identifier: Apache-2.0
/* The LUKS2 header of a state disk, checked against the one layout we write (luks2.h). The
 * on-disk format is the LUKS2 specification's: a 4096-byte big-endian binary header followed by
 * a NUL-terminated JSON area, twice. Anything not exactly ours is refused with the reason. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>
#include <openssl/sha.h>

#include "conclave/luks2.h"
#include "conclave/util.h"

/* Binary header fields (LUKS2 on-disk format, section 2). */
#define OFF_MAGIC    0
#define OFF_VERSION  6
#define OFF_HDR_SIZE 8
#define OFF_SEQID    16
#define OFF_LABEL    24
#define OFF_CSUM_ALG 72
#define OFF_UUID     168
#define OFF_HDR_OFF  256
#define OFF_CSUM     448
#define LEN_LABEL    48
#define LEN_CSUM_ALG 32
#define LEN_UUID     40
#define LEN_CSUM     64
#define MAGIC_LEN    6

static const uint8_t magic_primary[MAGIC_LEN] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };
static const uint8_t magic_secondary[MAGIC_LEN] = { 'S', 'K', 'U', 'L', 0xba, 0xbe };

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void header_digest(const uint8_t *hdr, uint8_t out[SHA256_DIGEST_LENGTH])
{
	uint8_t copy[LUKS2_HDR_SIZE];

	/* The checksum covers the whole metadata copy with its own field zeroed. */
	memcpy(copy, hdr, sizeof(copy));
	memset(copy + OFF_CSUM, 0, LEN_CSUM);
	SHA256(copy, sizeof(copy), out);
}

void luks2_header_seal(uint8_t *hdr)
{
	uint8_t sum[SHA256_DIGEST_LENGTH];

	header_digest(hdr, sum);
	memset(hdr + OFF_CSUM, 0, LEN_CSUM);
	memcpy(hdr + OFF_CSUM, sum, sizeof(sum));
}

/* A NUL-padded text field equal to want. */
static bool field_is(const uint8_t *p, size_t cap, const char *want)
{
	size_t n = strlen(want);

	if (n >= cap || memcmp(p, want, n) != 0)
		return false;
	for (size_t i = n; i < cap; i++)
		if (p[i])
			return false;
	return true;
}

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" in lower case (what libcryptsetup writes; the disk
 * key's derivation uses this canonical form). */
static int parse_uuid(const uint8_t *p, struct luks2_info *out)
{
	if (!memchr(p, 0, LEN_UUID) || !field_is(p, LEN_UUID, (const char *)p) ||
	    uuid_parse((const char *)p, out->uuid) < 0)
		return -EBADMSG;
	memcpy(out->uuid_text, p, 37);
	return 0;
}

/* One binary header at hdr (LUKS2_HDR_SIZE bytes): its own fields and checksum. */
static int check_binary(const uint8_t *hdr, bool secondary, struct diag *d)
{
	const char *which = secondary ? "secondary" : "primary";
	uint8_t sum[SHA256_DIGEST_LENGTH];
	uint64_t size = be64(hdr + OFF_HDR_SIZE), off = be64(hdr + OFF_HDR_OFF);
	unsigned int version = (unsigned int)hdr[OFF_VERSION] << 8 | hdr[OFF_VERSION + 1];

	if (memcmp(hdr, secondary ? magic_secondary : magic_primary, MAGIC_LEN) != 0) {
		diag_set(d, "LUKS2 %s header: bad magic", which);
		return -EBADMSG;
	}
	if (version != 2) {
		diag_set(d, "LUKS2 %s header: version %u, want 2", which, version);
		return -EBADMSG;
	}
	if (size != LUKS2_HDR_SIZE) {
		diag_set(d, "LUKS2 %s header: metadata size %" PRIu64 ", want %u", which, size,
			 LUKS2_HDR_SIZE);
		return -EBADMSG;
	}
	if (off != (secondary ? LUKS2_HDR_SIZE : 0)) {
		diag_set(d, "LUKS2 %s header: says it is at offset %" PRIu64, which, off);
		return -EBADMSG;
	}
	if (!field_is(hdr + OFF_CSUM_ALG, LEN_CSUM_ALG, "sha256")) {
		diag_set(d, "LUKS2 %s header: checksum algorithm is not sha256", which);
		return -EBADMSG;
	}
	header_digest(hdr, sum);
	if (memcmp(sum, hdr + OFF_CSUM, sizeof(sum)) != 0 ||
	    !field_is(hdr + OFF_CSUM + sizeof(sum), LEN_CSUM - sizeof(sum), "")) {
		diag_set(d, "LUKS2 %s header: checksum mismatch", which);
		return -EBADMSG;
	}
	return 0;
}

int luks2_check(const uint8_t *buf, size_t len, const struct luks2_expect *e,
		struct luks2_info *out, struct diag *d)
{
	const uint8_t *pri = buf, *sec = buf + LUKS2_HDR_SIZE;
	const uint8_t *json = pri + LUKS2_BIN_SIZE, *nul;
	int ret;

	memset(out, 0, sizeof(*out));
	if (len < MAGIC_LEN || memcmp(buf, magic_primary, MAGIC_LEN) != 0) {
		diag_set(d, "no LUKS2 header");
		return -ENOMSG;
	}
	if (len < LUKS2_HEADER_BYTES) {
		diag_set(d, "LUKS2 header truncated: %zu of %u bytes", len, LUKS2_HEADER_BYTES);
		return -EBADMSG;
	}
	ret = check_binary(pri, false, d);
	if (ret == 0)
		ret = check_binary(sec, true, d);
	if (ret < 0)
		return ret;
	/* libcryptsetup takes the copy with the higher seqid, or the one that is intact: the two
	 * must be one header, or what we check is not what it opens. */
	if (be64(pri + OFF_SEQID) != be64(sec + OFF_SEQID) ||
	    memcmp(pri + OFF_UUID, sec + OFF_UUID, LEN_UUID) != 0 ||
	    memcmp(pri + OFF_LABEL, sec + OFF_LABEL, LEN_LABEL) != 0 ||
	    memcmp(json, sec + LUKS2_BIN_SIZE, LUKS2_JSON_SIZE) != 0) {
		diag_set(d, "LUKS2 header copies differ (sequence %" PRIu64 " and %" PRIu64 ")",
			 be64(pri + OFF_SEQID), be64(sec + OFF_SEQID));
		return -EBADMSG;
	}
	if (!field_is(pri + OFF_LABEL, LEN_LABEL, LUKS2_LABEL)) {
		diag_set(d, "LUKS2 header: label is not %s", LUKS2_LABEL);
		return -EBADMSG;
	}
	if (parse_uuid(pri + OFF_UUID, out) < 0) {
		diag_set(d, "LUKS2 header: UUID is not a canonical lower-case UUID");
		return -EBADMSG;
	}
	out->seqid = be64(pri + OFF_SEQID);
	nul = memchr(json, 0, LUKS2_JSON_SIZE);
	if (!nul) {
		diag_set(d, "LUKS2 header: metadata not terminated");
		return -EBADMSG;
	}
	return luks2_check_json((const char *)json, (size_t)(nul - json), e, out, d);
}

/* ---- the metadata ------------------------------------------------------------------------- */

/* Every key of o is one of the NULL-terminated list. */
static bool keys_only(struct json_object *o, const char *const *allowed, const char **extra)
{
	json_object_object_foreach(o, key, val)
	{
		size_t i = 0;

		(void)val;
		while (allowed[i] && strcmp(allowed[i], key))
			i++;
		if (!allowed[i]) {
			*extra = key;
			return false;
		}
	}
	return true;
}

static struct json_object *member(struct json_object *o, const char *key, enum json_type t)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, t) ? v : NULL;
}

static bool str_is(struct json_object *o, const char *key, const char *want)
{
	struct json_object *v = member(o, key, json_type_string);

	return v && !strcmp(json_object_get_string(v), want);
}

static bool int_is(struct json_object *o, const char *key, int64_t want)
{
	struct json_object *v = member(o, key, json_type_int);

	return v && json_object_get_int64(v) == want;
}

static bool int_in(struct json_object *o, const char *key, int64_t lo, int64_t hi)
{
	struct json_object *v = member(o, key, json_type_int);

	return v && json_object_get_int64(v) >= lo && json_object_get_int64(v) <= hi;
}

/* A LUKS2 "uint64 as decimal string" (sizes and offsets). */
static bool u64_str(struct json_object *o, const char *key, uint64_t *out)
{
	struct json_object *v = member(o, key, json_type_string);
	const char *s = v ? json_object_get_string(v) : NULL;
	char *end;

	if (!s || *s < '0' || *s > '9' || strlen(s) > 20)
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

/* ["0"] exactly. */
static bool refs_zero(struct json_object *o, const char *key)
{
	struct json_object *a = member(o, key, json_type_array), *v;

	if (!a || json_object_array_length(a) != 1)
		return false;
	v = json_object_array_get_idx(a, 0);
	return json_object_is_type(v, json_type_string) && !strcmp(json_object_get_string(v), "0");
}

/* The section is an object holding exactly one entry, "0" (or none, if may_be_empty). */
static struct json_object *only_entry(struct json_object *top, const char *section,
				      bool may_be_empty, struct diag *d)
{
	struct json_object *s = member(top, section, json_type_object), *v;

	if (!s) {
		diag_set(d, "LUKS2 metadata: no %s object", section);
		return NULL;
	}
	if (may_be_empty && json_object_object_length(s) == 0)
		return s; /* the section itself: "nothing there" */
	if (json_object_object_length(s) != 1 || !(v = member(s, "0", json_type_object))) {
		diag_set(d, "LUKS2 metadata: %s must hold exactly entry 0, holds %d", section,
			 json_object_object_length(s));
		return NULL;
	}
	return v;
}

#define BAD(...)                                   \
	do {                                       \
		diag_set(d, "LUKS2 " __VA_ARGS__); \
		return -EBADMSG;                   \
	} while (0)

static int check_segment(struct json_object *s, struct diag *d)
{
	static const char *const keys[] = { "type",	 "offset",     "size",
					    "iv_tweak",	 "encryption", "sector_size",
					    "integrity", "flags",      NULL };
	static const char *const ikeys[] = { "type", "journal_encryption", "journal_integrity",
					     NULL };
	struct json_object *integ = member(s, "integrity", json_type_object), *flags;
	const char *extra = NULL;
	uint64_t off;

	if (!keys_only(s, keys, &extra))
		BAD("segment 0: unexpected field %s", extra);
	if (!str_is(s, "type", "crypt"))
		BAD("segment 0: not a crypt segment");
	if (!str_is(s, "encryption", LUKS2_ENCRYPTION))
		BAD("segment 0: encryption is not %s", LUKS2_ENCRYPTION);
	if (!int_is(s, "sector_size", LUKS2_SECTOR_SIZE))
		BAD("segment 0: sector size is not %u", LUKS2_SECTOR_SIZE);
	if (!u64_str(s, "offset", &off) || off != LUKS2_DATA_OFFSET)
		BAD("segment 0: data does not start at %u", LUKS2_DATA_OFFSET);
	if (!str_is(s, "size", "dynamic"))
		BAD("segment 0: size is not dynamic");
	if (!str_is(s, "iv_tweak", "0"))
		BAD("segment 0: IV tweak is not 0");
	if (!integ)
		BAD("segment 0: no integrity protection");
	if (!keys_only(integ, ikeys, &extra))
		BAD("segment 0 integrity: unexpected field %s", extra);
	if (!str_is(integ, "type", LUKS2_INTEGRITY))
		BAD("segment 0: integrity is not %s", LUKS2_INTEGRITY);
	if (!str_is(integ, "journal_encryption", "none") ||
	    !str_is(integ, "journal_integrity", "none"))
		BAD("segment 0: unexpected integrity journal protection");
	flags = member(s, "flags", json_type_array);
	if (json_object_object_get_ex(s, "flags", NULL) &&
	    (!flags || json_object_array_length(flags) != 0))
		BAD("segment 0: unexpected flags");
	return 0;
}

static int check_keyslot(struct json_object *k, struct diag *d)
{
	static const char *const keys[] = { "type", "key_size", "af", "area", "kdf", NULL };
	static const char *const af_keys[] = { "type", "stripes", "hash", NULL };
	static const char *const area_keys[] = { "type",       "offset",   "size",
						 "encryption", "key_size", NULL };
	static const char *const kdf_keys[] = { "type", "hash", "iterations", "salt", NULL };
	struct json_object *af = member(k, "af", json_type_object);
	struct json_object *area = member(k, "area", json_type_object);
	struct json_object *kdf = member(k, "kdf", json_type_object);
	const char *extra = NULL;
	uint64_t off, size;

	if (!keys_only(k, keys, &extra))
		BAD("keyslot 0: unexpected field %s", extra);
	if (!str_is(k, "type", "luks2") || !int_is(k, "key_size", LUKS2_VOLUME_KEY_LEN))
		BAD("keyslot 0: not a luks2 keyslot of a %u-byte key", LUKS2_VOLUME_KEY_LEN);
	if (!af || !keys_only(af, af_keys, &extra) || !str_is(af, "type", "luks1") ||
	    !int_is(af, "stripes", LUKS2_AF_STRIPES) || !str_is(af, "hash", "sha256"))
		BAD("keyslot 0: anti-forensic splitter is not luks1/%u/sha256", LUKS2_AF_STRIPES);
	/* The keyslot's own encryption matters as much as the data's: a cipher_null area would
	 * hand out a volume key the host chose. */
	if (!area || !keys_only(area, area_keys, &extra) || !str_is(area, "type", "raw") ||
	    !str_is(area, "encryption", LUKS2_ENCRYPTION) ||
	    !int_is(area, "key_size", LUKS2_XTS_KEY_LEN))
		BAD("keyslot 0: area is not raw %s with a %u-byte key", LUKS2_ENCRYPTION,
		    LUKS2_XTS_KEY_LEN);
	if (!u64_str(area, "offset", &off) || !u64_str(area, "size", &size) ||
	    off < LUKS2_HEADER_BYTES || off % LUKS2_SECTOR_SIZE || size > LUKS2_KEYSLOTS_SIZE ||
	    off + size > LUKS2_DATA_OFFSET ||
	    size < (uint64_t)LUKS2_VOLUME_KEY_LEN * LUKS2_AF_STRIPES)
		BAD("keyslot 0: area outside the keyslot region or too small");
	if (!kdf || !keys_only(kdf, kdf_keys, &extra) || !str_is(kdf, "type", "pbkdf2") ||
	    !str_is(kdf, "hash", "sha256") ||
	    !int_in(kdf, "iterations", LUKS2_PBKDF_ITER, LUKS2_PBKDF_ITER_MAX) ||
	    !member(kdf, "salt", json_type_string))
		BAD("keyslot 0: KDF is not pbkdf2-sha256 with %u..%u iterations", LUKS2_PBKDF_ITER,
		    LUKS2_PBKDF_ITER_MAX);
	return 0;
}

static int check_digest(struct json_object *g, struct diag *d)
{
	static const char *const keys[] = { "type",	  "keyslots", "segments", "hash",
					    "iterations", "salt",     "digest",	  NULL };
	const char *extra = NULL;

	if (!keys_only(g, keys, &extra))
		BAD("digest 0: unexpected field %s", extra);
	if (!str_is(g, "type", "pbkdf2") || !str_is(g, "hash", "sha256") ||
	    !int_in(g, "iterations", LUKS2_PBKDF_ITER, LUKS2_PBKDF_ITER_MAX) ||
	    !member(g, "salt", json_type_string) || !member(g, "digest", json_type_string))
		BAD("digest 0: not a pbkdf2-sha256 digest");
	if (!refs_zero(g, "keyslots") || !refs_zero(g, "segments"))
		BAD("digest 0: does not bind exactly keyslot 0 and segment 0");
	return 0;
}

static bool hex32(struct json_object *o, const char *key, uint8_t out[32])
{
	struct json_object *v = member(o, key, json_type_string);
	const char *s = v ? json_object_get_string(v) : NULL;
	size_t len = 0;

	if (!s || strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return hex_decode(s, out, 32, &len) == 0 && len == 32;
}

static int check_token(struct json_object *tokens, struct json_object *t,
		       const struct luks2_expect *e, struct luks2_info *out, struct diag *d)
{
	static const char *const keys[] = {
		"type", "keyslots", "version", "cluster", "node", NULL
	};
	struct json_object *ks = member(t, "keyslots", json_type_array);
	const char *extra = NULL;
	char want[65], have[65];

	if (t == tokens)
		return 0; /* no token: a format that was interrupted before its last step */
	if (!keys_only(t, keys, &extra))
		BAD("token 0: unexpected field %s", extra);
	if (!str_is(t, "type", LUKS2_TOKEN_TYPE) || !int_is(t, "version", LUKS2_TOKEN_VERSION))
		BAD("token 0: not a %s token, version %d", LUKS2_TOKEN_TYPE, LUKS2_TOKEN_VERSION);
	if (!ks || json_object_array_length(ks) != 0)
		BAD("token 0: must name no keyslot");
	if (!hex32(t, "cluster", out->cluster_id) || !hex32(t, "node", out->node_id))
		BAD("token 0: cluster or node is not 64 lower-case hex digits");
	out->has_token = 1;
	if (e && e->node_id && memcmp(e->node_id, out->node_id, 32) != 0) {
		hex_encode(out->node_id, 32, have);
		hex_encode(e->node_id, 32, want);
		diag_set(d, "state disk belongs to node %.16s..., this node is %.16s...", have,
			 want);
		return -EPERM;
	}
	if (e && e->cluster_id && memcmp(e->cluster_id, out->cluster_id, 32) != 0) {
		hex_encode(out->cluster_id, 32, have);
		hex_encode(e->cluster_id, 32, want);
		diag_set(d, "state disk belongs to cluster %.16s..., this is cluster %.16s...",
			 have, want);
		return -EPERM;
	}
	return 0;
}

static int check_config(struct json_object *c, struct diag *d)
{
	static const char *const keys[] = { "json_size", "keyslots_size", "flags", NULL };
	struct json_object *flags = member(c, "flags", json_type_array);
	const char *extra = NULL;
	uint64_t json, slots;

	/* "requirements" (e.g. an unfinished re-encryption) is refused here too. */
	if (!keys_only(c, keys, &extra))
		BAD("config: unexpected field %s", extra);
	if (!u64_str(c, "json_size", &json) || json != LUKS2_JSON_SIZE ||
	    !u64_str(c, "keyslots_size", &slots) || slots != LUKS2_KEYSLOTS_SIZE)
		BAD("config: metadata or keyslot area size is not %u/%u", LUKS2_JSON_SIZE,
		    LUKS2_KEYSLOTS_SIZE);
	if (json_object_object_get_ex(c, "flags", NULL) &&
	    (!flags || json_object_array_length(flags) != 0))
		BAD("config: unexpected flags");
	return 0;
}

int luks2_check_json(const char *text, size_t len, const struct luks2_expect *e,
		     struct luks2_info *out, struct diag *d)
{
	static const char *const keys[] = { "keyslots", "tokens", "segments",
					    "digests",	"config", NULL };
	struct json_tokener *tok = json_tokener_new_ex(16);
	struct json_object *top = NULL, *seg, *slot, *dig, *tokens, *tok0, *cfg;
	const char *extra = NULL;
	int ret = -EBADMSG;

	out->has_token = 0;
	if (!tok) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	if (len > 0 && len <= LUKS2_JSON_SIZE && !memchr(text, 0, len)) {
		top = json_tokener_parse_ex(tok, text, (int)len);
		if (top && json_tokener_get_parse_end(tok) != len) {
			json_object_put(top);
			top = NULL;
		}
	}
	json_tokener_free(tok);
	if (!top || !json_object_is_type(top, json_type_object)) {
		diag_set(d, "LUKS2 metadata is not a JSON object of at most %u bytes",
			 LUKS2_JSON_SIZE);
		goto out;
	}
	if (!keys_only(top, keys, &extra)) {
		diag_set(d, "LUKS2 metadata: unexpected section %s", extra);
		goto out;
	}
	if (!(seg = only_entry(top, "segments", false, d)) ||
	    !(slot = only_entry(top, "keyslots", false, d)) ||
	    !(dig = only_entry(top, "digests", false, d)) ||
	    !(tok0 = only_entry(top, "tokens", true, d)))
		goto out;
	tokens = member(top, "tokens", json_type_object);
	cfg = member(top, "config", json_type_object);
	if (!cfg) {
		diag_set(d, "LUKS2 metadata: no config object");
		goto out;
	}
	ret = check_segment(seg, d);
	if (ret == 0)
		ret = check_keyslot(slot, d);
	if (ret == 0)
		ret = check_digest(dig, d);
	if (ret == 0)
		ret = check_config(cfg, d);
	if (ret == 0)
		ret = check_token(tokens, tok0, e, out, d);
out:
	json_object_put(top);
	return ret;
}

int luks2_token_json(const uint8_t cluster_id[32], const uint8_t node_id[32], char *out, size_t cap)
{
	char c[65], n[65];
	int len;

	hex_encode(cluster_id, 32, c);
	hex_encode(node_id, 32, n);
	len = snprintf(out, cap,
		       "{\"type\":\"%s\",\"keyslots\":[],\"version\":%d,\"cluster\":\"%s\","
		       "\"node\":\"%s\"}",
		       LUKS2_TOKEN_TYPE, LUKS2_TOKEN_VERSION, c, n);
	return len < 0 || (size_t)len >= cap ? -ENOSPC : 0;
}
