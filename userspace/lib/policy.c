// SPDX-License-Identifier: Apache-2.0
/* Measurement policy: strict measurements JSON, Ed25519 policy keys, signed envelopes. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "conclave/log.h"
#include "conclave/policy.h"
#include "conclave/secret.h"
#include "conclave/util.h"

#define SCAN_MAX_DEPTH	 8  /* the schemas nest 3 deep */
#define SCAN_MAX_KEYS	 32 /* the largest schema object is "pcrs" with 24 */
#define SCAN_MAX_KEY_LEN 31 /* every schema key is shorter */
#define SCAN_MAX_ELEMS	 POLICY_MAX_REFERENCE
#define PATH_LEN	 160
#define KEY_ID_LEN	 64 /* hex SHA-256 */
#define ED25519_RAW_LEN	 32
#define ED25519_SIG_LEN	 64
#define KEY_FILE_MAX	 (16 * 1024)
#define B64_LEN(n)	 (4 * (((n) + 2) / 3))
#define ENVELOPE_MAX	 (B64_LEN(POLICY_MAX_SIZE) + 4096)

/*
 * Strict JSON check. json-c's JSON_TOKENER_STRICT still accepts single-quoted strings, NaN, raw
 * control characters in strings, keeps the last of duplicate keys silently and truncates a key
 * at an escaped NUL ("version\u0000x" becomes "version"). A policy must mean the same thing to
 * every reader, so this RFC 8259 checker runs over the exact bytes first and also requires keys
 * to be unique, short printable ASCII (every key the schemas allow is), so json-c's view of the
 * keys is exactly ours. json-c then builds the tree and validates UTF-8.
 */
struct scan {
	const char *start, *p, *end;
	unsigned int depth;
	struct diag *d;
};

static const char *shown(const char *path)
{
	return *path ? path : "(document)";
}

static void path_join(char *out, const char *path, const char *key)
{
	snprintf(out, PATH_LEN, "%s%s%s", path, *path ? "." : "", key);
}

static void path_index(char *out, const char *path, size_t i)
{
	snprintf(out, PATH_LEN, "%s%s%zu", path, *path ? "." : "", i);
}

static int scan_fail(struct scan *s, const char *path, const char *what)
{
	diag_set(s->d, "%s: invalid JSON at byte %zu: %s", shown(path), (size_t)(s->p - s->start),
		 what);
	return -EBADMSG;
}

static void scan_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool scan_peek(struct scan *s, char c)
{
	return s->p < s->end && *s->p == c;
}

/* Consume one escape sequence at s->p (a backslash); *cp gets the code unit it stands for. */
static int scan_escape(struct scan *s, const char *path, unsigned int *cp)
{
	static const char simple[] = "\"\\/bfnrt";
	static const char decoded[] = "\"\\/\b\f\n\r\t";
	const char *hit;

	if (s->end - s->p < 2)
		return scan_fail(s, path, "unterminated string");
	hit = memchr(simple, s->p[1], sizeof(simple) - 1);
	if (hit) {
		*cp = (unsigned char)decoded[hit - simple];
		s->p += 2;
		return 0;
	}
	if (s->p[1] != 'u')
		return scan_fail(s, path, "invalid escape in string");
	if (s->end - s->p < 6)
		return scan_fail(s, path, "unterminated string");
	*cp = 0;
	for (int i = 2; i < 6; i++) {
		int v = hex_digit(s->p[i]);

		if (v < 0)
			return scan_fail(s, path, "invalid \\u escape in string");
		*cp = *cp << 4 | (unsigned int)v;
	}
	s->p += 6;
	return 0;
}

/* Consume a string at s->p (a quote). With key, store its decoded value there if it is plain
 * (1..SCAN_MAX_KEY_LEN printable ASCII characters) and refuse it otherwise. */
static int scan_string(struct scan *s, const char *path, char *key)
{
	bool plain = true;
	size_t n = 0;

	s->p++;
	for (;;) {
		unsigned int c;
		int ret;

		if (s->p >= s->end)
			return scan_fail(s, path, "unterminated string");
		c = (unsigned char)*s->p;
		if (c == '"')
			break;
		if (c < 0x20)
			return scan_fail(s, path, "raw control character in string");
		if (c == '\\') {
			ret = scan_escape(s, path, &c);
			if (ret < 0)
				return ret;
		} else {
			s->p++;
		}
		if (c < 0x20 || c > 0x7e || n >= SCAN_MAX_KEY_LEN)
			plain = false;
		else if (key)
			key[n++] = (char)c;
	}
	s->p++;
	if (key && (!plain || n == 0)) {
		diag_set(s->d, "%s: unknown key at byte %zu (not a short printable ASCII name)",
			 shown(path), (size_t)(s->p - s->start));
		return -EINVAL;
	}
	if (key)
		key[n] = '\0';
	return 0;
}

static bool scan_digits(struct scan *s)
{
	const char *begin = s->p;

	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > begin;
}

static int scan_number(struct scan *s, const char *path)
{
	if (scan_peek(s, '-'))
		s->p++;
	if (scan_peek(s, '0'))
		s->p++;
	else if (!scan_digits(s))
		return scan_fail(s, path, "invalid number");
	if (scan_peek(s, '.')) {
		s->p++;
		if (!scan_digits(s))
			return scan_fail(s, path, "invalid number");
	}
	if (scan_peek(s, 'e') || scan_peek(s, 'E')) {
		s->p++;
		if (scan_peek(s, '+') || scan_peek(s, '-'))
			s->p++;
		if (!scan_digits(s))
			return scan_fail(s, path, "invalid number");
	}
	return 0;
}

static int scan_literal(struct scan *s, const char *path, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n))
		return scan_fail(s, path, "unexpected character");
	s->p += n;
	return 0;
}

static int scan_value(struct scan *s, const char *path);

static int scan_object(struct scan *s, const char *path)
{
	char keys[SCAN_MAX_KEYS][SCAN_MAX_KEY_LEN + 1], child[PATH_LEN];
	size_t n = 0;
	int ret;

	if (++s->depth > SCAN_MAX_DEPTH)
		return scan_fail(s, path, "nested too deeply");
	s->p++;
	scan_ws(s);
	while (!scan_peek(s, '}')) {
		if (n && !scan_peek(s, ','))
			return scan_fail(s, path, "expected ',' or '}'");
		if (n) {
			s->p++;
			scan_ws(s);
		}
		if (!scan_peek(s, '"'))
			return scan_fail(s, path, "expected a \"key\"");
		if (n == SCAN_MAX_KEYS) {
			diag_set(s->d, "%s: more than %d keys", shown(path), SCAN_MAX_KEYS);
			return -EINVAL;
		}
		ret = scan_string(s, path, keys[n]);
		if (ret < 0)
			return ret;
		path_join(child, path, keys[n]);
		for (size_t i = 0; i < n; i++) {
			if (!strcmp(keys[i], keys[n])) {
				diag_set(s->d, "%s: duplicate key", child);
				return -EINVAL;
			}
		}
		n++;
		scan_ws(s);
		if (!scan_peek(s, ':'))
			return scan_fail(s, child, "expected ':'");
		s->p++;
		scan_ws(s);
		ret = scan_value(s, child);
		if (ret < 0)
			return ret;
		scan_ws(s);
	}
	s->p++;
	s->depth--;
	return 0;
}

static int scan_array(struct scan *s, const char *path)
{
	char child[PATH_LEN];
	size_t n = 0;
	int ret;

	if (++s->depth > SCAN_MAX_DEPTH)
		return scan_fail(s, path, "nested too deeply");
	s->p++;
	scan_ws(s);
	while (!scan_peek(s, ']')) {
		if (n && !scan_peek(s, ','))
			return scan_fail(s, path, "expected ',' or ']'");
		if (n) {
			s->p++;
			scan_ws(s);
		}
		if (n == SCAN_MAX_ELEMS) {
			diag_set(s->d, "%s: more than %d elements", shown(path), SCAN_MAX_ELEMS);
			return -EINVAL;
		}
		path_index(child, path, n++);
		ret = scan_value(s, child);
		if (ret < 0)
			return ret;
		scan_ws(s);
	}
	s->p++;
	s->depth--;
	return 0;
}

static int scan_value(struct scan *s, const char *path)
{
	if (s->p >= s->end)
		return scan_fail(s, path, "unexpected end of input");
	switch (*s->p) {
	case '{': return scan_object(s, path);
	case '[': return scan_array(s, path);
	case '"': return scan_string(s, path, NULL);
	case 't': return scan_literal(s, path, "true");
	case 'f': return scan_literal(s, path, "false");
	case 'n': return scan_literal(s, path, "null");
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return scan_number(s, path);
		return scan_fail(s, path, "unexpected character");
	}
}

/* Check buf (at most max bytes) with the strict scanner, then let json-c build the object. */
static int json_load(const char *buf, size_t len, size_t max, struct json_object **out,
		     struct diag *d)
{
	struct scan s = { .start = buf, .p = buf, .end = buf + len, .d = d };
	struct json_tokener *tok;
	struct json_object *o;
	int ret;

	*out = NULL;
	if (len > max) {
		diag_set(d, "document is %zu bytes, the limit is %zu", len, max);
		return -EFBIG;
	}
	if (memchr(buf, '\0', len)) {
		diag_set(d, "document contains a NUL byte");
		return -EBADMSG;
	}
	scan_ws(&s);
	if (!scan_peek(&s, '{'))
		return scan_fail(&s, "", "expected a JSON object");
	ret = scan_object(&s, "");
	if (ret < 0)
		return ret;
	scan_ws(&s);
	if (s.p != s.end)
		return scan_fail(&s, "", "trailing data after the JSON object");

	tok = json_tokener_new_ex(SCAN_MAX_DEPTH + 2);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, buf, (int)len);
	if (!o || json_tokener_get_parse_end(tok) != len ||
	    !json_object_is_type(o, json_type_object)) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		diag_set(d, "invalid JSON at byte %zu: %s", json_tokener_get_parse_end(tok),
			 e == json_tokener_success ? "not a single object"
						   : json_tokener_error_desc(e));
		json_object_put(o);
		json_tokener_free(tok);
		return -EBADMSG;
	}
	json_tokener_free(tok);
	*out = o;
	return 0;
}

static const char *type_name(enum json_type t)
{
	switch (t) {
	case json_type_null: return "null";
	case json_type_boolean: return "boolean";
	case json_type_double: return "non-integer number";
	case json_type_int: return "integer";
	case json_type_object: return "object";
	case json_type_array: return "array";
	case json_type_string: return "string";
	}
	return "unknown";
}

static int expect_type(struct json_object *v, const char *path, enum json_type t, struct diag *d)
{
	if (json_object_is_type(v, t))
		return 0;
	diag_set(d, "%s: expected %s, found %s", shown(path), type_name(t),
		 type_name(json_object_get_type(v)));
	return -EINVAL;
}

/* Every key of object o must be listed in allowed (NULL-terminated). */
static int check_keys(struct json_object *o, const char *path, const char *const *allowed,
		      struct diag *d)
{
	char p[PATH_LEN], list[128] = "";
	size_t i;

	json_object_object_foreach(o, key, val)
	{
		(void)val;
		for (i = 0; allowed[i] && strcmp(allowed[i], key); i++)
			;
		if (allowed[i])
			continue;
		for (i = 0; allowed[i]; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 i ? ", " : "", allowed[i]);
		path_join(p, path, key);
		diag_set(d, "%s: unknown key (allowed: %s)", p, list);
		return -EINVAL;
	}
	return 0;
}

/* Fetch o[key] of type t into *v; a missing optional key leaves *v NULL. */
static int member(struct json_object *o, const char *path, const char *key, enum json_type t,
		  bool required, struct json_object **v, struct diag *d)
{
	char p[PATH_LEN];

	path_join(p, path, key);
	*v = NULL;
	if (!json_object_object_get_ex(o, key, v)) {
		if (!required)
			return 0;
		diag_set(d, "%s: required key missing", p);
		return -EINVAL;
	}
	return expect_type(*v, p, t, d);
}

static int uint_member(struct json_object *o, const char *path, const char *key, uint32_t max,
		       uint32_t *out, struct diag *d)
{
	struct json_object *v;
	char p[PATH_LEN];
	int64_t x;
	int ret;

	ret = member(o, path, key, json_type_int, true, &v, d);
	if (ret < 0)
		return ret;
	/* json-c saturates out-of-range integers, which then fail this check too. */
	x = json_object_get_int64(v);
	if (x < 0 || (uint64_t)x > max) {
		path_join(p, path, key);
		diag_set(d, "%s: expected an integer from 0 to %" PRIu32, p, max);
		return -EINVAL;
	}
	*out = (uint32_t)x;
	return 0;
}

static int hex32_member(struct json_object *o, const char *path, const char *key, uint8_t out[32],
			struct diag *d)
{
	struct json_object *v;
	char p[PATH_LEN];
	size_t n;
	int ret;

	ret = member(o, path, key, json_type_string, true, &v, d);
	if (ret < 0)
		return ret;
	/* hex_decode stops at an escaped NUL, so a 64-byte string hiding one fails the length. */
	if (json_object_get_string_len(v) != 64 ||
	    hex_decode(json_object_get_string(v), out, 32, &n) < 0 || n != 32) {
		path_join(p, path, key);
		diag_set(d, "%s: expected 64 hex characters", p);
		return -EINVAL;
	}
	return 0;
}

/* Canonical decimal "0".."23": no sign, space or leading zero, so each PCR has one spelling. */
static int parse_pcr_index(const char *key, uint32_t *idx)
{
	size_t n = strlen(key);
	uint32_t v = 0;

	if (n < 1 || n > 2 || (n == 2 && key[0] == '0'))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (key[i] < '0' || key[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint32_t)(key[i] - '0');
	}
	if (v >= POLICY_PCR_COUNT)
		return -EINVAL;
	*idx = v;
	return 0;
}

static const char *const top_keys[] = { "version", "pcrs", "reference", NULL };
static const char *const pcr_keys[] = { "expected", "warnOnly", NULL };
static const char *const ref_keys[] = { "pcr", "type", "digest", NULL };

static int parse_pcr(const char *key, struct json_object *v, struct policy *p, struct diag *d)
{
	struct json_object *warn = NULL;
	char path[PATH_LEN];
	uint32_t idx;
	int ret;

	path_join(path, "pcrs", key);
	if (parse_pcr_index(key, &idx) < 0) {
		diag_set(d, "%s: not a PCR index (expected \"0\" to \"23\" without leading zeros)",
			 path);
		return -EINVAL;
	}
	if (p->pcrs[idx].set) {
		diag_set(d, "%s: duplicate PCR", path);
		return -EINVAL;
	}
	ret = expect_type(v, path, json_type_object, d);
	if (ret == 0)
		ret = check_keys(v, path, pcr_keys, d);
	if (ret == 0)
		ret = hex32_member(v, path, "expected", p->pcrs[idx].expected, d);
	if (ret == 0)
		ret = member(v, path, "warnOnly", json_type_boolean, false, &warn, d);
	if (ret < 0)
		return ret;
	p->pcrs[idx].warn_only = warn && json_object_get_boolean(warn);
	p->pcrs[idx].set = true;
	return 0;
}

static int parse_pcrs(struct json_object *pcrs, struct policy *p, struct diag *d)
{
	int ret;

	if (json_object_object_length(pcrs) == 0) {
		diag_set(d, "pcrs: no PCRs listed; a policy must pin at least one");
		return -EINVAL;
	}
	json_object_object_foreach(pcrs, key, val)
	{
		ret = parse_pcr(key, val, p, d);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int parse_ref_event(struct json_object *e, const char *path, struct policy_ref_event *ev,
			   struct diag *d)
{
	int ret;

	ret = expect_type(e, path, json_type_object, d);
	if (ret == 0)
		ret = check_keys(e, path, ref_keys, d);
	if (ret == 0)
		ret = uint_member(e, path, "pcr", POLICY_PCR_COUNT - 1, &ev->pcr, d);
	if (ret == 0)
		ret = uint_member(e, path, "type", UINT32_MAX, &ev->type, d);
	if (ret == 0)
		ret = hex32_member(e, path, "digest", ev->digest, d);
	return ret;
}

static int parse_reference(struct json_object *arr, struct policy *p, struct diag *d)
{
	size_t n = json_object_array_length(arr);
	char path[PATH_LEN];
	int ret;

	if (n > POLICY_MAX_REFERENCE) {
		diag_set(d, "reference: %zu events, at most %d", n, POLICY_MAX_REFERENCE);
		return -EINVAL;
	}
	if (n == 0)
		return 0;
	p->reference = calloc(n, sizeof(*p->reference));
	if (!p->reference)
		return -ENOMEM;
	p->n_reference = n;
	for (size_t i = 0; i < n; i++) {
		path_index(path, "reference", i);
		ret = parse_ref_event(json_object_array_get_idx(arr, i), path, &p->reference[i], d);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int parse_root(struct json_object *root, struct policy *p, struct diag *d)
{
	struct json_object *v = NULL;
	int ret;

	ret = check_keys(root, "", top_keys, d);
	if (ret == 0)
		ret = member(root, "", "version", json_type_int, true, &v, d);
	if (ret < 0)
		return ret;
	if (json_object_get_int64(v) != 1) {
		diag_set(d, "version: unsupported version %" PRId64 " (this build reads version 1)",
			 json_object_get_int64(v));
		return -EINVAL;
	}
	p->version = 1;
	ret = member(root, "", "pcrs", json_type_object, true, &v, d);
	if (ret == 0)
		ret = parse_pcrs(v, p, d);
	if (ret == 0)
		ret = member(root, "", "reference", json_type_array, false, &v, d);
	if (ret == 0 && v)
		ret = parse_reference(v, p, d);
	return ret;
}

int policy_parse(const char *json, size_t len, struct policy *out, struct diag *d)
{
	struct json_object *root;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = json_load(json, len, POLICY_MAX_SIZE, &root, d);
	if (ret < 0)
		return ret;
	ret = parse_root(root, out, d);
	json_object_put(root);
	if (ret < 0) {
		policy_free(out);
		memset(out, 0, sizeof(*out));
	}
	return ret;
}

/* What policy_parse would accept, so that to_json output always parses back. */
static bool policy_valid(const struct policy *p)
{
	bool any = false;

	if (p->version != 1 || p->n_reference > POLICY_MAX_REFERENCE ||
	    (p->n_reference && !p->reference))
		return false;
	for (size_t i = 0; i < POLICY_PCR_COUNT; i++)
		any |= p->pcrs[i].set;
	for (size_t i = 0; i < p->n_reference; i++)
		if (p->reference[i].pcr >= POLICY_PCR_COUNT)
			return false;
	return any;
}

int policy_to_json(const struct policy *p, char **json)
{
	char hex[65], *buf = NULL;
	bool first = true;
	size_t size = 0;
	FILE *f;
	int bad;

	*json = NULL;
	if (!policy_valid(p))
		return -EINVAL;
	f = open_memstream(&buf, &size);
	if (!f)
		return -errno;
	fprintf(f, "{\n  \"version\": %" PRIu32 ",\n  \"pcrs\": {", p->version);
	for (size_t i = 0; i < POLICY_PCR_COUNT; i++) {
		if (!p->pcrs[i].set)
			continue;
		hex_encode(p->pcrs[i].expected, 32, hex);
		fprintf(f, "%s\n    \"%zu\": { \"expected\": \"%s\", \"warnOnly\": %s }",
			first ? "" : ",", i, hex, p->pcrs[i].warn_only ? "true" : "false");
		first = false;
	}
	fprintf(f, "\n  }");
	if (p->n_reference) {
		fprintf(f, ",\n  \"reference\": [");
		for (size_t i = 0; i < p->n_reference; i++) {
			const struct policy_ref_event *ev = &p->reference[i];

			hex_encode(ev->digest, 32, hex);
			fprintf(f,
				"%s\n    { \"pcr\": %" PRIu32 ", \"type\": %" PRIu32
				", \"digest\": \"%s\" }",
				i ? "," : "", ev->pcr, ev->type, hex);
		}
		fprintf(f, "\n  ]");
	}
	fprintf(f, "\n}\n");
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		free(buf);
		return -ENOMEM;
	}
	*json = buf;
	return 0;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	free(p->reference);
	p->reference = NULL;
	p->n_reference = 0;
}

bool policy_match_pcrs(const struct policy *p, uint32_t mask, const uint8_t pcrs[24][32], char *why,
		       size_t why_len)
{
	for (unsigned int i = 0; i < POLICY_PCR_COUNT; i++) {
		const struct policy_pcr *want = &p->pcrs[i];
		const char *what;

		if (!want->set || want->warn_only)
			continue;
		if (!(mask & (1u << i)))
			what = "was not attested";
		else if (memcmp(want->expected, pcrs[i], sizeof(want->expected)) != 0)
			what = "differs from the policy";
		else
			continue;
		if (why && why_len)
			snprintf(why, why_len, "PCR %u %s", i, what);
		return false;
	}
	if (why && why_len)
		why[0] = '\0';
	return true;
}

static bool is_ed25519(EVP_PKEY *key)
{
	return key && EVP_PKEY_is_a(key, "ED25519");
}

/* The key id: lowercase hex SHA-256 of the raw 32-byte Ed25519 public key. */
static int key_id(EVP_PKEY *key, char out[KEY_ID_LEN + 1])
{
	uint8_t raw[ED25519_RAW_LEN], md[32];
	size_t n = sizeof(raw);
	unsigned int md_len;

	if (EVP_PKEY_get_raw_public_key(key, raw, &n) != 1 || n != sizeof(raw) ||
	    EVP_Digest(raw, n, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != sizeof(md)) {
		ERR_clear_error();
		return -EIO;
	}
	hex_encode(md, sizeof(md), out);
	return 0;
}

static char *b64_encode(const uint8_t *in, size_t len)
{
	char *out = malloc(B64_LEN(len) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* Decode canonical padded base64 only (EVP_DecodeBlock alone skips whitespace, counts padding
 * as output and ignores non-zero trailing bits). At most max decoded bytes. */
static int b64_decode(const char *in, size_t len, size_t max, uint8_t **out, size_t *out_len)
{
	size_t pad, n;
	uint8_t *buf;
	char *check;
	int ret = 0;

	if (len > B64_LEN(max))
		return -EFBIG;
	if (len == 0 || len % 4)
		return -EBADMSG;
	pad = in[len - 1] == '=' ? (in[len - 2] == '=' ? 2 : 1) : 0;
	for (size_t i = 0; i < len - pad; i++)
		if (!b64_char(in[i]))
			return -EBADMSG;
	n = len / 4 * 3 - pad;
	if (n > max)
		return -EFBIG;
	buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	if (EVP_DecodeBlock(buf, (const unsigned char *)in, (int)len) != (int)(len / 4 * 3))
		ret = -EBADMSG;
	check = ret ? NULL : b64_encode(buf, n);
	if (!ret && !check)
		ret = -ENOMEM;
	else if (!ret && memcmp(check, in, len))
		ret = -EBADMSG;
	free(check);
	if (ret < 0) {
		free(buf);
		return ret;
	}
	*out = buf;
	*out_len = n;
	return 0;
}

int policy_sign(EVP_PKEY *key, const char *json, size_t len, char **signed_out, struct diag *d)
{
	char id[KEY_ID_LEN + 1], *payload = NULL, *sig_b64 = NULL;
	uint8_t sig[ED25519_SIG_LEN];
	size_t sig_len = sizeof(sig);
	EVP_MD_CTX *ctx = NULL;
	struct policy p;
	int ret;

	*signed_out = NULL;
	if (!is_ed25519(key)) {
		diag_set(d, "policy signing key is not an Ed25519 key");
		return -EINVAL;
	}
	ret = policy_parse(json, len, &p, d);
	if (ret < 0) {
		diag_prefix(d, "refusing to sign invalid measurements");
		return ret;
	}
	policy_free(&p);
	ret = key_id(key, id);
	if (ret < 0) {
		diag_set(d, "cannot read the public half of the policy signing key");
		return ret;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
	    EVP_DigestSign(ctx, sig, &sig_len, (const uint8_t *)json, len) != 1 ||
	    sig_len != sizeof(sig)) {
		diag_set(d, "Ed25519 signing failed (is the key a private key?)");
		ret = -EIO;
		goto out;
	}
	payload = b64_encode((const uint8_t *)json, len);
	sig_b64 = b64_encode(sig, sig_len);
	if (!payload || !sig_b64 ||
	    asprintf(signed_out,
		     "{\n  \"conclave-policy\": 1,\n  \"key\": \"%s\",\n  \"payload\": \"%s\",\n"
		     "  \"signature\": \"%s\"\n}\n",
		     id, payload, sig_b64) < 0) {
		*signed_out = NULL;
		ret = -ENOMEM;
	}
out:
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	free(payload);
	free(sig_b64);
	return ret;
}

struct envelope {
	const char *key;
	const char *payload;
	size_t payload_len;
	const char *sig;
	size_t sig_len;
};

static const char *const envelope_keys[] = { "conclave-policy", "key", "payload", "signature",
					     NULL };

/* Refuse a document without an envelope, saying what it looks like. */
static int refuse_unsigned(struct json_object *root, struct diag *d)
{
	if (json_object_object_get_ex(root, "pcrs", NULL) ||
	    json_object_object_get_ex(root, "version", NULL))
		diag_set(d, "not a signed policy: this is unsigned measurements JSON; sign it "
			    "first with 'conclavectl policy sign'");
	else
		diag_set(d, "not a signed policy: no \"conclave-policy\" envelope");
	return -EPERM;
}

static bool lower_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int parse_envelope(struct json_object *root, struct envelope *e, struct diag *d)
{
	struct json_object *v = NULL;
	int ret;

	ret = check_keys(root, "", envelope_keys, d);
	if (ret == 0)
		ret = member(root, "", "conclave-policy", json_type_int, true, &v, d);
	if (ret < 0)
		return -EBADMSG;
	if (json_object_get_int64(v) != 1) {
		diag_set(d,
			 "conclave-policy: unsupported envelope version %" PRId64
			 " (this build reads 1)",
			 json_object_get_int64(v));
		return -EBADMSG;
	}
	if (member(root, "", "key", json_type_string, true, &v, d) < 0)
		return -EBADMSG;
	e->key = json_object_get_string(v);
	if (json_object_get_string_len(v) != KEY_ID_LEN || !lower_hex(e->key, KEY_ID_LEN)) {
		diag_set(d, "key: expected 64 lowercase hex characters (SHA-256 of the policy "
			    "public key)");
		return -EBADMSG;
	}
	if (member(root, "", "payload", json_type_string, true, &v, d) < 0)
		return -EBADMSG;
	e->payload = json_object_get_string(v);
	e->payload_len = (size_t)json_object_get_string_len(v);
	if (member(root, "", "signature", json_type_string, true, &v, d) < 0)
		return -EBADMSG;
	e->sig = json_object_get_string(v);
	e->sig_len = (size_t)json_object_get_string_len(v);
	return 0;
}

static int ed25519_verify(EVP_PKEY *pub, const uint8_t *sig, const uint8_t *msg, size_t len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;

	ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1 &&
	     EVP_DigestVerify(ctx, sig, ED25519_SIG_LEN, msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok ? 0 : -EPERM;
}

/* Check the envelope's key id and signature; *payload gets the verified bytes. */
static int verify_envelope(const struct envelope *e, EVP_PKEY *pub, uint8_t **payload, size_t *len,
			   struct diag *d)
{
	char want[KEY_ID_LEN + 1];
	uint8_t *sig = NULL;
	size_t sig_len;
	int ret;

	ret = key_id(pub, want);
	if (ret < 0) {
		diag_set(d, "cannot read the policy public key");
		return ret;
	}
	if (strcmp(e->key, want)) {
		diag_set(d, "policy signed by key %s, expected %s", e->key, want);
		return -EPERM;
	}
	ret = b64_decode(e->sig, e->sig_len, ED25519_SIG_LEN, &sig, &sig_len);
	if (ret == -ENOMEM)
		return ret;
	if (ret < 0 || sig_len != ED25519_SIG_LEN) {
		free(sig);
		diag_set(d, "signature: expected base64 of a 64-byte Ed25519 signature");
		return -EBADMSG;
	}
	ret = b64_decode(e->payload, e->payload_len, POLICY_MAX_SIZE, payload, len);
	if (ret < 0) {
		free(sig);
		if (ret == -EFBIG)
			diag_set(d, "payload: larger than %u bytes", POLICY_MAX_SIZE);
		else if (ret == -EBADMSG)
			diag_set(d, "payload: invalid base64");
		return ret;
	}
	ret = ed25519_verify(pub, sig, *payload, *len);
	free(sig);
	if (ret < 0) {
		diag_set(d, "signature does not verify with the given policy key");
		free(*payload);
		*payload = NULL;
	}
	return ret;
}

int policy_verify(const char *signed_doc, size_t len, EVP_PKEY *pub, struct policy *out,
		  struct diag *d)
{
	struct json_object *root;
	struct envelope e = { 0 };
	uint8_t *payload = NULL;
	size_t payload_len = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!is_ed25519(pub)) {
		diag_set(d, "policy verification key is not an Ed25519 key");
		return -EINVAL;
	}
	ret = json_load(signed_doc, len, ENVELOPE_MAX, &root, d);
	if (ret < 0) {
		diag_prefix(d, "not a signed policy");
		return ret;
	}
	if (!json_object_object_get_ex(root, "conclave-policy", NULL))
		ret = refuse_unsigned(root, d);
	if (ret == 0)
		ret = parse_envelope(root, &e, d);
	if (ret == 0)
		ret = verify_envelope(&e, pub, &payload, &payload_len, d);
	json_object_put(root);
	if (ret < 0)
		return ret;
	/* Only bytes that verified are ever parsed. */
	ret = policy_parse((const char *)payload, payload_len, out, d);
	if (ret < 0)
		diag_prefix(d, "signed policy payload");
	free(payload);
	return ret;
}

/* Write key as PEM (PKCS#8 private or SubjectPublicKeyInfo) to a new file; the serialized private
 * key is wiped from memory afterwards. */
static int write_pem(const char *path, EVP_PKEY *key, bool private, struct diag *d)
{
	BIO *bio = BIO_new(private ? BIO_s_secmem() : BIO_s_mem());
	char *data = NULL;
	long n = 0;
	int ok, ret;

	if (!bio)
		return -ENOMEM;
	ok = private ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
		     : PEM_write_bio_PUBKEY(bio, key);
	if (ok == 1)
		n = BIO_get_mem_data(bio, &data);
	if (ok != 1 || n <= 0 || !data) {
		diag_set(d, "cannot serialize the %s key for %s", private ? "private" : "public",
			 path);
		ret = -EIO;
	} else {
		ret = write_file_new(path, data, (size_t)n, private ? 0600 : 0644);
		if (ret == -EEXIST)
			diag_set(d, "%s already exists; refusing to overwrite a policy key", path);
		else if (ret < 0)
			diag_set(d, "cannot write %s: %s", path, strerror(-ret));
	}
	if (n > 0 && data)
		OPENSSL_cleanse(data, (size_t)n);
	BIO_free(bio);
	ERR_clear_error();
	return ret;
}

int policy_keygen(const char *prefix, struct diag *d)
{
	char key_path[PATH_MAX], pub_path[PATH_MAX];
	const char *paths[] = { key_path, pub_path };
	EVP_PKEY *key;
	struct stat st;
	int ret;

	if (snprintf(key_path, sizeof(key_path), "%s.key", prefix) >= (int)sizeof(key_path) ||
	    snprintf(pub_path, sizeof(pub_path), "%s.pub", prefix) >= (int)sizeof(pub_path)) {
		diag_set(d, "key path prefix too long");
		return -ENAMETOOLONG;
	}
	/* Checked up front so neither file is written when either exists; O_EXCL still decides. */
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		if (lstat(paths[i], &st) == 0) {
			diag_set(d,
				 "%s already exists; refusing to overwrite a policy key (move it "
				 "away or choose another prefix)",
				 paths[i]);
			return -EEXIST;
		}
	}
	key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!key) {
		ERR_clear_error();
		diag_set(d, "Ed25519 key generation failed");
		return -EIO;
	}
	ret = write_pem(key_path, key, true, d);
	if (ret == 0) {
		ret = write_pem(pub_path, key, false, d);
		if (ret < 0)
			unlink(key_path);
	}
	EVP_PKEY_free(key);
	return ret;
}

static int require_ed25519(EVP_PKEY *key, const char *path, struct diag *d)
{
	const char *type = EVP_PKEY_get0_type_name(key);

	if (is_ed25519(key))
		return 0;
	diag_set(d, "%s: not an Ed25519 key (found %s); policy keys are Ed25519", path,
		 type ? type : "an unknown key type");
	return -EINVAL;
}

/* Never prompt on a terminal: encrypted policy keys are not supported. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* -errno of the failed call, or fallback if it did not set one. */
static int neg_errno(int fallback)
{
	int e = errno;

	return e > 0 ? -e : fallback;
}

/* Read a private key file into locked memory, so no copy of the key lingers in the heap. */
static int read_secret_file(const char *path, struct secret **out, size_t *len, mode_t *mode,
			    struct diag *d)
{
	struct secret *s = NULL;
	struct stat st;
	size_t n = 0;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = neg_errno(-EIO);
		diag_set(d, "cannot read policy private key %s: %s", path, strerror(-ret));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX) {
		diag_set(d, "%s: not a regular file of at most %d bytes", path, KEY_FILE_MAX);
		ret = -EINVAL;
		goto out;
	}
	*mode = st.st_mode;
	s = secret_new((size_t)st.st_size + 1);
	if (!s) {
		ret = neg_errno(-ENOMEM);
		diag_set(d, "cannot allocate locked memory for %s: %s", path, strerror(-ret));
		goto out;
	}
	while (n < (size_t)st.st_size) {
		ssize_t r = read(fd, s->data + n, (size_t)st.st_size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = neg_errno(-EIO);
			diag_set(d, "cannot read policy private key %s: %s", path, strerror(-ret));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
out:
	if (fd >= 0)
		close(fd);
	if (ret == 0 && s) {
		*out = s;
		*len = n;
		return 0;
	}
	secret_free(s);
	return ret < 0 ? ret : -EIO;
}

int policy_load_private(const char *path, EVP_PKEY **key, struct diag *d)
{
	struct secret *s;
	EVP_PKEY *k = NULL;
	mode_t mode = 0;
	size_t n;
	BIO *bio;
	int ret;

	*key = NULL;
	ret = read_secret_file(path, &s, &n, &mode, d);
	if (ret < 0)
		return ret;
	bio = BIO_new_mem_buf(s->data, (int)n);
	if (bio)
		k = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	secret_free(s);
	ERR_clear_error();
	if (!k) {
		diag_set(d, "%s: no unencrypted PEM private key found", path);
		return -EBADMSG;
	}
	ret = require_ed25519(k, path, d);
	if (ret < 0) {
		EVP_PKEY_free(k);
		return ret;
	}
	if (mode & 077)
		log_warn("%s: private key is accessible to group or others (mode %03o); "
			 "chmod 600 it",
			 path, (unsigned int)(mode & 0777));
	*key = k;
	return 0;
}

int policy_load_public(const char *path, EVP_PKEY **key, struct diag *d)
{
	EVP_PKEY *k = NULL;
	uint8_t *buf;
	bool private;
	size_t n;
	BIO *bio;
	int ret;

	*key = NULL;
	ret = read_file(path, KEY_FILE_MAX, &buf, &n);
	if (ret < 0) {
		diag_set(d, "cannot read policy public key %s: %s", path, strerror(-ret));
		return ret;
	}
	bio = BIO_new_mem_buf(buf, (int)n);
	if (bio)
		k = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	ERR_clear_error();
	private = strstr((const char *)buf, "PRIVATE KEY") != NULL;
	/* Wiped in case a private key was passed by mistake. */
	OPENSSL_cleanse(buf, n);
	free(buf);
	if (!k && private) {
		diag_set(d, "%s holds a private key; give the public key (the .pub file)", path);
		return -EINVAL;
	}
	if (!k) {
		diag_set(d, "%s: no PEM public key found", path);
		return -EBADMSG;
	}
	ret = require_ed25519(k, path, d);
	if (ret < 0) {
		EVP_PKEY_free(k);
		return ret;
	}
	*key = k;
	return 0;
}
