// SPDX-License-Identifier: Apache-2.0
/* Unit tests for the measurement policy: strict parsing, serialization, keys, signed envelopes. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "conclave/policy.h"
#include "conclave/util.h"

#define H16	"0123456789abcdef"
#define HEX64	H16 H16 H16 H16
#define HEX64_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static const char minimal[] = "{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}";

static const char full[] = "{\n"
			   "  \"version\": 1,\n"
			   "  \"pcrs\": {\n"
			   "    \"7\": { \"expected\": \"" HEX64_B "\", \"warnOnly\": true },\n"
			   "    \"0\": { \"expected\": \"" HEX64 "\", \"warnOnly\": false },\n"
			   "    \"23\": { \"expected\": \"" HEX64 "\" }\n"
			   "  },\n"
			   "  \"reference\": [\n"
			   "    { \"pcr\": 4, \"type\": 2147483651, \"digest\": \"" HEX64 "\" },\n"
			   "    { \"pcr\": 0, \"type\": 4294967295, \"digest\": \"" HEX64_B "\" }\n"
			   "  ]\n"
			   "}\n";

#define assert_diag(d, sub)                                                                     \
	do {                                                                                    \
		if (!strstr((d)->msg, (sub)))                                                   \
			fail_msg("diagnostic \"%s\" does not mention \"%s\"", (d)->msg, (sub)); \
	} while (0)

/* Parse s and expect it refused with code and a message containing sub. */
static void expect_reject_len(const char *s, size_t len, int code, const char *sub)
{
	struct policy p;
	struct diag d = { "" };
	int ret = policy_parse(s, len, &p, &d);

	if (ret != code)
		fail_msg("expected %d, got %d (%s) for: %.200s", code, ret, d.msg, s);
	assert_diag(&d, sub);
	assert_null(p.reference);
	assert_int_equal(p.n_reference, 0);
}

static void expect_reject(const char *s, int code, const char *sub)
{
	expect_reject_len(s, strlen(s), code, sub);
}

/* Measurements with one PCR 4 entry whose body is given. */
static char *with_pcr(const char *key, const char *body)
{
	char *s;

	assert_true(asprintf(&s, "{\"version\":1,\"pcrs\":{\"%s\":%s}}", key, body) > 0);
	return s;
}

static void expect_pcr_reject(const char *key, const char *body, const char *sub)
{
	char *s = with_pcr(key, body);

	expect_reject(s, -EINVAL, sub);
	free(s);
}

static void parse_accepts_minimal_document(void **state)
{
	struct policy p;
	struct diag d = { "" };
	uint8_t want[32];
	size_t n;

	assert_int_equal(policy_parse(minimal, strlen(minimal), &p, &d), 0);
	assert_int_equal(p.version, 1);
	for (int i = 0; i < POLICY_PCR_COUNT; i++)
		assert_int_equal(p.pcrs[i].set, i == 4);
	assert_false(p.pcrs[4].warn_only);
	assert_int_equal(hex_decode(HEX64, want, sizeof(want), &n), 0);
	assert_memory_equal(p.pcrs[4].expected, want, 32);
	assert_int_equal(p.n_reference, 0);
	assert_null(p.reference);
	policy_free(&p);
}

static void parse_accepts_full_document(void **state)
{
	struct policy p;
	struct diag d = { "" };

	assert_int_equal(policy_parse(full, strlen(full), &p, &d), 0);
	assert_true(p.pcrs[0].set && p.pcrs[7].set && p.pcrs[23].set);
	assert_false(p.pcrs[4].set);
	assert_true(p.pcrs[7].warn_only);
	assert_false(p.pcrs[0].warn_only);
	assert_false(p.pcrs[23].warn_only);
	assert_int_equal(p.pcrs[7].expected[0], 0xbb);
	assert_int_equal(p.n_reference, 2);
	assert_int_equal(p.reference[0].pcr, 4);
	assert_int_equal(p.reference[0].type, 2147483651u);
	assert_int_equal(p.reference[0].digest[1], 0x23);
	assert_int_equal(p.reference[1].type, 4294967295u);
	assert_int_equal(p.reference[1].digest[31], 0xbb);
	policy_free(&p);
	assert_null(p.reference);
}

static void assert_policy_equal(const struct policy *a, const struct policy *b)
{
	assert_int_equal(a->version, b->version);
	for (int i = 0; i < POLICY_PCR_COUNT; i++) {
		assert_int_equal(a->pcrs[i].set, b->pcrs[i].set);
		assert_int_equal(a->pcrs[i].warn_only, b->pcrs[i].warn_only);
		assert_memory_equal(a->pcrs[i].expected, b->pcrs[i].expected, 32);
	}
	assert_int_equal(a->n_reference, b->n_reference);
	if (a->n_reference)
		assert_memory_equal(a->reference, b->reference,
				    a->n_reference * sizeof(*a->reference));
}

static void to_json_is_ordered_and_round_trips(void **state)
{
	struct policy p, q;
	struct diag d = { "" };
	char *json, *again;

	assert_int_equal(policy_parse(full, strlen(full), &p, &d), 0);
	assert_int_equal(policy_to_json(&p, &json), 0);
	/* PCRs come out ascending whatever order they went in. */
	assert_true(strstr(json, "\"0\":") < strstr(json, "\"7\":"));
	assert_true(strstr(json, "\"7\":") < strstr(json, "\"23\":"));
	assert_int_equal(policy_parse(json, strlen(json), &q, &d), 0);
	assert_policy_equal(&p, &q);
	assert_int_equal(policy_to_json(&q, &again), 0);
	assert_string_equal(json, again);
	free(json);
	free(again);
	policy_free(&p);
	policy_free(&q);
}

static void to_json_of_largest_reference_list_fits_the_limit(void **state)
{
	struct policy p = { .version = 1 }, q;
	struct diag d = { "" };
	char *json;

	p.pcrs[23].set = true;
	p.n_reference = POLICY_MAX_REFERENCE;
	p.reference = calloc(p.n_reference, sizeof(*p.reference));
	assert_non_null(p.reference);
	for (size_t i = 0; i < p.n_reference; i++) {
		p.reference[i].pcr = 23;
		p.reference[i].type = UINT32_MAX;
		memset(p.reference[i].digest, (int)i, 32);
	}
	assert_int_equal(policy_to_json(&p, &json), 0);
	assert_true(strlen(json) <= POLICY_MAX_SIZE);
	assert_int_equal(policy_parse(json, strlen(json), &q, &d), 0);
	assert_policy_equal(&p, &q);
	free(json);
	policy_free(&p);
	policy_free(&q);
}

static void to_json_refuses_a_policy_that_would_not_parse(void **state)
{
	struct policy p = { .version = 1 };
	char *json;

	assert_int_equal(policy_to_json(&p, &json), -EINVAL); /* no PCR */
	assert_null(json);
	p.pcrs[0].set = true;
	p.version = 2;
	assert_int_equal(policy_to_json(&p, &json), -EINVAL);
}

static void parse_rejects_unknown_top_level_key(void **state)
{
	expect_reject("{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}},\"foo\":1}",
		      -EINVAL, "foo: unknown key");
}

static void parse_rejects_unknown_key_in_a_pcr(void **state)
{
	expect_pcr_reject("4", "{\"expected\":\"" HEX64 "\",\"bar\":true}",
			  "pcrs.4.bar: unknown key (allowed: expected, warnOnly)");
}

static void parse_rejects_non_hex_expected(void **state)
{
	expect_pcr_reject("4", "{\"expected\":\"" H16 H16 H16 "0123456789abcdeg\"}",
			  "pcrs.4.expected: expected 64 hex characters");
}

static void parse_rejects_63_hex_characters(void **state)
{
	expect_pcr_reject("4", "{\"expected\":\"" H16 H16 H16 "0123456789abcde\"}",
			  "pcrs.4.expected: expected 64 hex characters");
}

static void parse_rejects_65_hex_characters(void **state)
{
	expect_pcr_reject("4", "{\"expected\":\"" HEX64 "0\"}",
			  "pcrs.4.expected: expected 64 hex characters");
}

static void parse_rejects_expected_hiding_an_escaped_nul(void **state)
{
	expect_pcr_reject("4", "{\"expected\":\"" H16 H16 H16 "0123456789abcd\\u0000\"}",
			  "pcrs.4.expected: expected 64 hex characters");
}

static void parse_rejects_pcr_24(void **state)
{
	expect_pcr_reject("24", "{\"expected\":\"" HEX64 "\"}", "pcrs.24: not a PCR index");
}

static void parse_rejects_pcr_with_leading_zero(void **state)
{
	expect_pcr_reject("04", "{\"expected\":\"" HEX64 "\"}", "pcrs.04: not a PCR index");
}

static void parse_rejects_negative_pcr(void **state)
{
	expect_pcr_reject("-1", "{\"expected\":\"" HEX64 "\"}", "pcrs.-1: not a PCR index");
}

static void parse_rejects_pcr_with_sign_or_space(void **state)
{
	expect_pcr_reject("+4", "{\"expected\":\"" HEX64 "\"}", "not a PCR index");
	expect_pcr_reject(" 4", "{\"expected\":\"" HEX64 "\"}", "not a PCR index");
	expect_pcr_reject("4 ", "{\"expected\":\"" HEX64 "\"}", "not a PCR index");
}

static void parse_rejects_non_object_pcrs(void **state)
{
	expect_reject("{\"version\":1,\"pcrs\":[]}", -EINVAL, "pcrs: expected object, found array");
	expect_reject("{\"version\":1,\"pcrs\":\"4\"}", -EINVAL,
		      "pcrs: expected object, found string");
}

static void parse_rejects_non_object_pcr_entry(void **state)
{
	expect_pcr_reject("4", "\"" HEX64 "\"", "pcrs.4: expected object, found string");
}

static void parse_rejects_empty_pcrs(void **state)
{
	expect_reject("{\"version\":1,\"pcrs\":{}}", -EINVAL, "pcrs: no PCRs listed");
}

static void parse_rejects_pcr_without_expected(void **state)
{
	expect_pcr_reject("4", "{\"warnOnly\":true}", "pcrs.4.expected: required key missing");
}

static void parse_rejects_non_boolean_warn_only(void **state)
{
	expect_pcr_reject("4", "{\"expected\":\"" HEX64 "\",\"warnOnly\":1}",
			  "pcrs.4.warnOnly: expected boolean, found integer");
}

static void parse_rejects_version_2(void **state)
{
	expect_reject("{\"version\":2,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}", -EINVAL,
		      "version: unsupported version 2");
}

static void parse_rejects_missing_version(void **state)
{
	expect_reject("{\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}", -EINVAL,
		      "version: required key missing");
}

static void parse_rejects_non_integer_version(void **state)
{
	expect_reject("{\"version\":\"1\",\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}", -EINVAL,
		      "version: expected integer, found string");
	expect_reject("{\"version\":1.0,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}", -EINVAL,
		      "version: expected integer, found non-integer number");
}

static void parse_rejects_trailing_garbage(void **state)
{
	char *s;

	assert_true(asprintf(&s, "%s x", minimal) > 0);
	expect_reject(s, -EBADMSG, "trailing data");
	free(s);
	assert_true(asprintf(&s, "%s{}", minimal) > 0);
	expect_reject(s, -EBADMSG, "trailing data");
	free(s);
}

static void parse_accepts_surrounding_whitespace(void **state)
{
	struct policy p;
	struct diag d = { "" };
	char *s;

	assert_true(asprintf(&s, " \n%s\r\n\t\n", minimal) > 0);
	assert_int_equal(policy_parse(s, strlen(s), &p, &d), 0);
	policy_free(&p);
	free(s);
}

static void parse_rejects_embedded_nul(void **state)
{
	char buf[sizeof(minimal) + 1];

	memcpy(buf, minimal, sizeof(minimal));
	buf[sizeof(minimal)] = 'x';
	/* The NUL terminator of minimal sits inside the length given. */
	expect_reject_len(buf, sizeof(buf), -EBADMSG, "NUL byte");
}

static void parse_rejects_invalid_utf8(void **state)
{
	expect_reject("{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"\xff\"}}}", -EBADMSG,
		      "invalid utf-8");
}

static void parse_rejects_oversized_document(void **state)
{
	size_t len = POLICY_MAX_SIZE + 1;
	char *big = malloc(len);

	assert_non_null(big);
	memset(big, ' ', len);
	memcpy(big, minimal, strlen(minimal));
	expect_reject_len(big, len, -EFBIG, "limit");
	/* The same document one byte shorter (trailing whitespace) is fine. */
	{
		struct policy p;
		struct diag d = { "" };

		assert_int_equal(policy_parse(big, len - 1, &p, &d), 0);
		policy_free(&p);
	}
	free(big);
}

static char *with_reference(size_t n)
{
	static const char ev[] = "{\"pcr\":4,\"type\":13,\"digest\":\"" HEX64 "\"}";
	static const char head[] =
	    "{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}},\"reference\":[";
	size_t cap = sizeof(head) + n * sizeof(ev) + 8;
	char *s = malloc(cap), *p = s;

	assert_non_null(s);
	p += sprintf(p, "%s", head);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s%s", i ? "," : "", ev);
	sprintf(p, "]}");
	return s;
}

static void parse_accepts_the_maximum_reference_events(void **state)
{
	char *s = with_reference(POLICY_MAX_REFERENCE);
	struct policy p;
	struct diag d = { "" };

	assert_int_equal(policy_parse(s, strlen(s), &p, &d), 0);
	assert_int_equal(p.n_reference, POLICY_MAX_REFERENCE);
	assert_int_equal(p.reference[POLICY_MAX_REFERENCE - 1].type, 13);
	policy_free(&p);
	free(s);
}

static void parse_rejects_too_many_reference_events(void **state)
{
	char *s = with_reference(POLICY_MAX_REFERENCE + 1);

	expect_reject(s, -EINVAL, "reference: more than 8192");
	free(s);
}

static void parse_rejects_reference_event_out_of_range(void **state)
{
	static const char head[] =
	    "{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}},\"reference\":[";
	static const struct {
		const char *ev, *msg;
	} cases[] = {
		{ "{\"pcr\":24,\"type\":1,\"digest\":\"" HEX64 "\"}",
		  "reference.0.pcr: expected an integer from 0 to 23" },
		{ "{\"pcr\":-1,\"type\":1,\"digest\":\"" HEX64 "\"}", "reference.0.pcr" },
		{ "{\"pcr\":1,\"type\":4294967296,\"digest\":\"" HEX64 "\"}",
		  "reference.0.type: expected an integer from 0 to 4294967295" },
		{ "{\"pcr\":1,\"type\":99999999999999999999999,\"digest\":\"" HEX64 "\"}",
		  "reference.0.type" },
		{ "{\"pcr\":1,\"type\":1,\"digest\":\"" HEX64 "00\"}", "reference.0.digest" },
		{ "{\"pcr\":1,\"type\":1}", "reference.0.digest: required key missing" },
		{ "{\"pcr\":1,\"type\":1,\"digest\":\"" HEX64 "\",\"x\":0}", "reference.0.x" },
		{ "7", "reference.0: expected object, found integer" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *s;

		assert_true(asprintf(&s, "%s%s]}", head, cases[i].ev) > 0);
		expect_reject(s, -EINVAL, cases[i].msg);
		free(s);
	}
}

static void parse_rejects_duplicate_top_level_key(void **state)
{
	expect_reject("{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}},\"version\":1}",
		      -EINVAL, "version: duplicate key");
}

static void parse_rejects_duplicate_pcr_even_when_escaped(void **state)
{
	expect_reject("{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64
		      "\"},\"\\u0034\":{\"expected\":\"" HEX64_B "\"}}}",
		      -EINVAL, "pcrs.4: duplicate key");
}

static void parse_rejects_duplicate_key_inside_a_pcr(void **state)
{
	expect_pcr_reject("4", "{\"expected\":\"" HEX64 "\",\"expected\":\"" HEX64_B "\"}",
			  "pcrs.4.expected: duplicate key");
}

static void parse_rejects_key_with_an_escaped_nul(void **state)
{
	/* json-c would truncate this key to "version". */
	expect_reject("{\"version\\u0000x\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}",
		      -EINVAL, "unknown key");
}

static void parse_rejects_what_json_c_tolerates(void **state)
{
	static const char *const docs[] = {
		"{'version':1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}",
		"{\"version\":NaN,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}",
		"{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"\x01" HEX64 "\"}}}",
		"/* c */{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}",
		"{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"},}}",
		"{\"version\":01,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}}",
		"{\"version\":1,\"pcrs\":{\"4\":{\"expected\":\"" HEX64 "\"}}",
		"[1]",
		"",
	};

	for (size_t i = 0; i < ARRAY_SIZE(docs); i++)
		expect_reject(docs[i], -EBADMSG, "invalid JSON");
}

static void parse_rejects_deep_nesting(void **state)
{
	/* 8 levels reach the schema check; 9 are refused by the syntax check. */
	expect_reject("{\"a\":[[[[[[[1]]]]]]]}", -EINVAL, "a: unknown key");
	expect_reject("{\"a\":[[[[[[[[1]]]]]]]]}", -EBADMSG, "nested too deeply");
}

static void parse_rejects_object_with_too_many_keys(void **state)
{
	char s[1024] = "{\"version\":1,\"pcrs\":{";

	for (int i = 0; i < 33; i++)
		snprintf(s + strlen(s), sizeof(s) - strlen(s), "%s\"k%d\":0", i ? "," : "", i);
	snprintf(s + strlen(s), sizeof(s) - strlen(s), "}}");
	expect_reject(s, -EINVAL, "pcrs: more than 32 keys");
}

/* A temporary directory; remove_dir deletes it with the (flat) files in it. */
static char *make_dir(void)
{
	char *dir = strdup("/tmp/conclave-policy-XXXXXX");

	assert_non_null(dir);
	assert_non_null(mkdtemp(dir));
	return dir;
}

static void remove_dir(char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	char path[512];

	assert_non_null(dp);
	while ((de = readdir(dp))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		assert_int_equal(unlink(path), 0);
	}
	closedir(dp);
	assert_int_equal(rmdir(dir), 0);
	free(dir);
}

static mode_t file_mode(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 0777;
}

static char *slurp(const char *path)
{
	uint8_t *buf;
	size_t len;

	assert_int_equal(read_file(path, 1 << 16, &buf, &len), 0);
	return (char *)buf;
}

static void keygen_writes_private_0600_and_public_0644(void **state)
{
	char *dir = make_dir(), prefix[256], key[300], pub[300], *s;
	struct diag d = { "" };
	mode_t old = umask(077);

	snprintf(prefix, sizeof(prefix), "%s/policy", dir);
	snprintf(key, sizeof(key), "%s.key", prefix);
	snprintf(pub, sizeof(pub), "%s.pub", prefix);
	assert_int_equal(policy_keygen(prefix, &d), 0);
	umask(old);
	assert_int_equal(file_mode(key), 0600);
	assert_int_equal(file_mode(pub), 0644);
	s = slurp(key);
	assert_non_null(strstr(s, "-----BEGIN PRIVATE KEY-----")); /* PKCS#8 */
	free(s);
	s = slurp(pub);
	assert_non_null(strstr(s, "-----BEGIN PUBLIC KEY-----")); /* SubjectPublicKeyInfo */
	free(s);
	remove_dir(dir);
}

static void keygen_refuses_to_overwrite_existing_files(void **state)
{
	char *dir = make_dir(), prefix[256], key[300], pub[300], *s;
	struct diag d = { "" };

	snprintf(prefix, sizeof(prefix), "%s/policy", dir);
	snprintf(key, sizeof(key), "%s.key", prefix);
	snprintf(pub, sizeof(pub), "%s.pub", prefix);

	assert_int_equal(write_file_atomic(key, "precious", 8, 0600), 0);
	assert_int_equal(policy_keygen(prefix, &d), -EEXIST);
	assert_diag(&d, key);
	assert_diag(&d, "refusing to overwrite");
	s = slurp(key);
	assert_string_equal(s, "precious");
	free(s);
	assert_int_equal(access(pub, F_OK), -1); /* nothing half-written */

	assert_int_equal(unlink(key), 0);
	assert_int_equal(write_file_atomic(pub, "mine", 4, 0644), 0);
	assert_int_equal(policy_keygen(prefix, &d), -EEXIST);
	assert_diag(&d, pub);
	assert_int_equal(access(key, F_OK), -1);
	s = slurp(pub);
	assert_string_equal(s, "mine");
	free(s);
	remove_dir(dir);
}

static void generated_keys_sign_and_verify(void **state)
{
	char *dir = make_dir(), prefix[256], path[300], *signed_doc;
	struct diag d = { "" };
	EVP_PKEY *priv, *pub;
	struct policy want, got;

	snprintf(prefix, sizeof(prefix), "%s/policy", dir);
	assert_int_equal(policy_keygen(prefix, &d), 0);
	snprintf(path, sizeof(path), "%s.key", prefix);
	assert_int_equal(policy_load_private(path, &priv, &d), 0);
	snprintf(path, sizeof(path), "%s.pub", prefix);
	assert_int_equal(policy_load_public(path, &pub, &d), 0);

	assert_int_equal(policy_sign(priv, full, strlen(full), &signed_doc, &d), 0);
	assert_int_equal(policy_verify(signed_doc, strlen(signed_doc), pub, &got, &d), 0);
	assert_int_equal(policy_parse(full, strlen(full), &want, &d), 0);
	assert_policy_equal(&want, &got);

	policy_free(&want);
	policy_free(&got);
	free(signed_doc);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	remove_dir(dir);
}

static EVP_PKEY *new_ed25519(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

	assert_non_null(k);
	return k;
}

static char *sign_full(EVP_PKEY *key)
{
	struct diag d = { "" };
	char *out;

	assert_int_equal(policy_sign(key, full, strlen(full), &out, &d), 0);
	return out;
}

static uint8_t *b64_decode(const char *s, size_t *n)
{
	size_t len = strlen(s);
	uint8_t *out = malloc(len / 4 * 3 + 1);

	assert_non_null(out);
	assert_int_equal(EVP_DecodeBlock(out, (const unsigned char *)s, (int)len), len / 4 * 3);
	*n = len / 4 * 3 - (len && s[len - 1] == '=') - (len > 1 && s[len - 2] == '=');
	return out;
}

static char *b64_encode(const uint8_t *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);

	assert_non_null(out);
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

struct parts {
	char key[65];
	uint8_t *payload;
	size_t payload_len;
	uint8_t *sig;
	size_t sig_len;
};

static void split_envelope(const char *doc, struct parts *p)
{
	struct json_object *o = json_tokener_parse(doc), *v;

	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "key", &v));
	snprintf(p->key, sizeof(p->key), "%s", json_object_get_string(v));
	assert_true(json_object_object_get_ex(o, "payload", &v));
	p->payload = b64_decode(json_object_get_string(v), &p->payload_len);
	assert_true(json_object_object_get_ex(o, "signature", &v));
	p->sig = b64_decode(json_object_get_string(v), &p->sig_len);
	json_object_put(o);
}

static char *join_envelope(const struct parts *p)
{
	char *payload = b64_encode(p->payload, p->payload_len),
	     *sig = b64_encode(p->sig, p->sig_len);
	char *doc;

	assert_true(asprintf(&doc,
			     "{\"conclave-policy\":1,\"key\":\"%s\",\"payload\":\"%s\","
			     "\"signature\":\"%s\"}",
			     p->key, payload, sig) > 0);
	free(payload);
	free(sig);
	return doc;
}

static void expect_verify_fails(const char *doc, EVP_PKEY *pub, int code, const char *sub)
{
	struct policy p;
	struct diag d = { "" };
	int ret = policy_verify(doc, strlen(doc), pub, &p, &d);

	if (ret != code)
		fail_msg("expected %d, got %d (%s)", code, ret, d.msg);
	assert_diag(&d, sub);
	assert_null(p.reference);
}

static void sign_then_verify_round_trips(void **state)
{
	EVP_PKEY *key = new_ed25519();
	char *doc = sign_full(key);
	struct policy p;
	struct diag d = { "" };
	struct parts parts;
	char *rejoined;

	assert_int_equal(policy_verify(doc, strlen(doc), key, &p, &d), 0);
	assert_int_equal(p.n_reference, 2);
	policy_free(&p);
	/* The payload is the exact bytes signed, and a compact envelope verifies too. */
	split_envelope(doc, &parts);
	assert_int_equal(parts.payload_len, strlen(full));
	assert_memory_equal(parts.payload, full, strlen(full));
	rejoined = join_envelope(&parts);
	assert_int_equal(policy_verify(rejoined, strlen(rejoined), key, &p, &d), 0);
	policy_free(&p);
	free(rejoined);
	free(parts.payload);
	free(parts.sig);
	free(doc);
	EVP_PKEY_free(key);
}

static void sign_refuses_invalid_measurements(void **state)
{
	EVP_PKEY *key = new_ed25519();
	struct diag d = { "" };
	char *out;

	assert_int_equal(policy_sign(key, "{\"version\":1}", 13, &out, &d), -EINVAL);
	assert_null(out);
	assert_diag(&d, "refusing to sign");
	assert_diag(&d, "pcrs: required key missing");
	EVP_PKEY_free(key);
}

static void verify_refuses_tampered_payload_byte(void **state)
{
	EVP_PKEY *key = new_ed25519();
	char *doc = sign_full(key), *bad, *hit;
	struct parts p;

	split_envelope(doc, &p);
	/* Change one expected digit: still a valid policy, just not the one signed. */
	hit = memmem(p.payload, p.payload_len, HEX64_B, 64);
	assert_non_null(hit);
	hit[10] = 'c';
	bad = join_envelope(&p);
	expect_verify_fails(bad, key, -EPERM,
			    "signature does not verify with the given policy key");
	free(bad);
	free(p.payload);
	free(p.sig);
	free(doc);
	EVP_PKEY_free(key);
}

static void verify_refuses_tampered_signature(void **state)
{
	EVP_PKEY *key = new_ed25519();
	char *doc = sign_full(key), *bad;
	struct parts p;

	split_envelope(doc, &p);
	assert_int_equal(p.sig_len, 64);
	p.sig[17] ^= 0x01;
	bad = join_envelope(&p);
	expect_verify_fails(bad, key, -EPERM,
			    "signature does not verify with the given policy key");
	free(bad);
	p.sig_len = 63;
	bad = join_envelope(&p);
	expect_verify_fails(bad, key, -EBADMSG, "64-byte Ed25519 signature");
	free(bad);
	free(p.payload);
	free(p.sig);
	free(doc);
	EVP_PKEY_free(key);
}

static void verify_refuses_policy_signed_by_another_key(void **state)
{
	EVP_PKEY *signer = new_ed25519(), *trusted = new_ed25519();
	char *doc = sign_full(signer), *other = sign_full(trusted), msg[300];
	struct parts ps, pt;

	split_envelope(doc, &ps);
	split_envelope(other, &pt);
	snprintf(msg, sizeof(msg), "policy signed by key %s, expected %s", ps.key, pt.key);
	expect_verify_fails(doc, trusted, -EPERM, msg);
	/* Relabelling the key id does not help: the signature still has to verify. */
	memcpy(ps.key, pt.key, sizeof(ps.key));
	free(doc);
	doc = join_envelope(&ps);
	expect_verify_fails(doc, trusted, -EPERM, "signature does not verify");
	free(ps.payload);
	free(ps.sig);
	free(pt.payload);
	free(pt.sig);
	free(doc);
	free(other);
	EVP_PKEY_free(signer);
	EVP_PKEY_free(trusted);
}

static void verify_refuses_unsigned_measurements(void **state)
{
	EVP_PKEY *key = new_ed25519();

	expect_verify_fails(full, key, -EPERM, "not a signed policy");
	expect_verify_fails(full, key, -EPERM, "unsigned measurements");
	expect_verify_fails("{}", key, -EPERM, "not a signed policy");
	expect_verify_fails("garbage", key, -EBADMSG, "not a signed policy");
	EVP_PKEY_free(key);
}

static void verify_refuses_envelope_with_extra_key(void **state)
{
	EVP_PKEY *key = new_ed25519();
	char *doc = sign_full(key), *bad, *end;

	end = strrchr(doc, '}');
	assert_non_null(end);
	*end = '\0';
	assert_true(asprintf(&bad, "%s, \"comment\": \"hi\"}", doc) > 0);
	expect_verify_fails(bad, key, -EBADMSG, "comment: unknown key");
	free(bad);
	free(doc);
	EVP_PKEY_free(key);
}

static void verify_refuses_unsupported_envelope_version(void **state)
{
	EVP_PKEY *key = new_ed25519();
	char *doc = sign_full(key), *one;

	one = strstr(doc, "\"conclave-policy\": 1");
	assert_non_null(one);
	one[strlen("\"conclave-policy\": ")] = '2';
	expect_verify_fails(doc, key, -EBADMSG, "conclave-policy: unsupported envelope version 2");
	free(doc);
	EVP_PKEY_free(key);
}

static void verify_refuses_non_canonical_base64(void **state)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	EVP_PKEY *key = new_ed25519();
	char *doc = sign_full(key), *bad, *sig, *payload;
	const char *x;
	struct parts p;

	split_envelope(doc, &p);
	payload = b64_encode(p.payload, p.payload_len);
	sig = b64_encode(p.sig, p.sig_len);
	/* A 64-byte signature ends in "X==", where X carries 4 unused bits: set one. */
	x = strchr(alphabet, sig[strlen(sig) - 3]);
	assert_non_null(x);
	sig[strlen(sig) - 3] = alphabet[(x - alphabet) ^ 1];
	assert_true(asprintf(&bad,
			     "{\"conclave-policy\":1,\"key\":\"%s\",\"payload\":\"%s\","
			     "\"signature\":\"%s\"}",
			     p.key, payload, sig) > 0);
	expect_verify_fails(bad, key, -EBADMSG, "signature: expected base64");
	free(bad);
	free(sig);
	sig = b64_encode(p.sig, p.sig_len);
	/* Whitespace that EVP_DecodeBlock would skip is refused. */
	assert_true(asprintf(&bad,
			     "{\"conclave-policy\":1,\"key\":\"%s\",\"payload\":\"%.8s\\n%s\","
			     "\"signature\":\"%s\"}",
			     p.key, payload, payload + 8, sig) > 0);
	expect_verify_fails(bad, key, -EBADMSG, "payload: invalid base64");
	free(bad);
	free(payload);
	free(sig);
	free(p.payload);
	free(p.sig);
	free(doc);
	EVP_PKEY_free(key);
}

static void write_pem_files(EVP_PKEY *k, const char *priv, const char *pub)
{
	FILE *f = fopen(priv, "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	assert_int_equal(chmod(priv, 0600), 0);
	f = fopen(pub, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PUBKEY(f, k), 1);
	fclose(f);
}

static void load_refuses_non_ed25519_keys(void **state)
{
	char *dir = make_dir(), priv[300], pub[300];
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), *k = (EVP_PKEY *)1;
	struct diag d = { "" };

	assert_non_null(ec);
	snprintf(priv, sizeof(priv), "%s/ec.key", dir);
	snprintf(pub, sizeof(pub), "%s/ec.pub", dir);
	write_pem_files(ec, priv, pub);

	assert_int_equal(policy_load_private(priv, &k, &d), -EINVAL);
	assert_null(k);
	assert_diag(&d, priv);
	assert_diag(&d, "not an Ed25519 key (found EC)");
	assert_int_equal(policy_load_public(pub, &k, &d), -EINVAL);
	assert_null(k);
	assert_diag(&d, pub);
	assert_diag(&d, "not an Ed25519 key (found EC)");
	EVP_PKEY_free(ec);
	remove_dir(dir);
}

static void load_refuses_wrong_or_missing_files(void **state)
{
	char *dir = make_dir(), priv[300], pub[300], junk[300];
	EVP_PKEY *ed = new_ed25519(), *k;
	struct diag d = { "" };

	snprintf(priv, sizeof(priv), "%s/ed.key", dir);
	snprintf(pub, sizeof(pub), "%s/ed.pub", dir);
	snprintf(junk, sizeof(junk), "%s/junk", dir);
	write_pem_files(ed, priv, pub);
	assert_int_equal(write_file_atomic(junk, "hello", 5, 0600), 0);

	assert_int_equal(policy_load_public(priv, &k, &d), -EINVAL);
	assert_diag(&d, "holds a private key");
	assert_int_equal(policy_load_private(pub, &k, &d), -EBADMSG);
	assert_diag(&d, "no unencrypted PEM private key found");
	assert_int_equal(policy_load_public(junk, &k, &d), -EBADMSG);
	assert_diag(&d, junk);
	assert_int_equal(policy_load_private(dir, &k, &d), -EINVAL);
	assert_diag(&d, "not a regular file");
	assert_int_equal(unlink(junk), 0);
	assert_int_equal(policy_load_private(junk, &k, &d), -ENOENT);
	assert_diag(&d, junk);
	assert_int_equal(policy_load_public(junk, &k, &d), -ENOENT);
	assert_diag(&d, junk);
	EVP_PKEY_free(ed);
	remove_dir(dir);
}

/* The full document's policy, and recorded PCRs that satisfy it: 0, 7 and 23 as expected, plus
 * PCR 5, which the policy does not name. */
static void full_policy_and_matching_pcrs(struct policy *p, uint32_t *mask, uint8_t pcrs[24][32])
{
	assert_int_equal(policy_parse(full, strlen(full), p, NULL), 0);
	memset(pcrs, 0, 24 * 32);
	*mask = 1u << 0 | 1u << 5 | 1u << 7 | 1u << 23;
	memcpy(pcrs[0], p->pcrs[0].expected, 32);
	memset(pcrs[5], 0x55, 32);
	memcpy(pcrs[7], p->pcrs[7].expected, 32);
	memcpy(pcrs[23], p->pcrs[23].expected, 32);
}

static void match_pcrs_accepts_values_equal_to_the_policy(void **state)
{
	uint8_t pcrs[24][32];
	struct policy p;
	char why[64] = "stale";
	uint32_t mask;

	full_policy_and_matching_pcrs(&p, &mask, pcrs);
	assert_true(policy_match_pcrs(&p, mask, pcrs, why, sizeof(why)));
	assert_string_equal(why, "");
	policy_free(&p);
}

static void match_pcrs_names_the_pcr_that_differs(void **state)
{
	uint8_t pcrs[24][32];
	struct policy p;
	char why[64], small[8];
	uint32_t mask;

	full_policy_and_matching_pcrs(&p, &mask, pcrs);
	pcrs[23][31] ^= 1;
	assert_false(policy_match_pcrs(&p, mask, pcrs, why, sizeof(why)));
	assert_string_equal(why, "PCR 23 differs from the policy");
	assert_false(policy_match_pcrs(&p, mask, pcrs, NULL, 0));
	assert_false(policy_match_pcrs(&p, mask, pcrs, small, sizeof(small)));
	assert_string_equal(small, "PCR 23 "); /* truncated, still terminated */
	policy_free(&p);
}

static void match_pcrs_names_a_policy_pcr_missing_from_the_mask(void **state)
{
	uint8_t pcrs[24][32];
	struct policy p;
	char why[64];
	uint32_t mask;

	full_policy_and_matching_pcrs(&p, &mask, pcrs);
	mask &= ~(1u << 0); /* the value is still in pcrs[0]: the mask decides */
	assert_false(policy_match_pcrs(&p, mask, pcrs, why, sizeof(why)));
	assert_string_equal(why, "PCR 0 was not attested");
	policy_free(&p);
}

static void match_pcrs_ignores_a_warn_only_mismatch(void **state)
{
	uint8_t pcrs[24][32];
	struct policy p;
	char why[64];
	uint32_t mask;

	full_policy_and_matching_pcrs(&p, &mask, pcrs);
	assert_true(p.pcrs[7].warn_only);
	pcrs[7][0] ^= 0xff;
	assert_true(policy_match_pcrs(&p, mask, pcrs, why, sizeof(why)));
	mask &= ~(1u << 7);
	assert_true(policy_match_pcrs(&p, mask, pcrs, why, sizeof(why)));
	policy_free(&p);
}

static void match_pcrs_of_an_empty_policy_accepts_anything(void **state)
{
	static const uint8_t pcrs[24][32];
	struct policy p = { 0 };
	char why[64];

	assert_true(policy_match_pcrs(&p, 0, pcrs, why, sizeof(why)));
	assert_true(policy_match_pcrs(&p, 0xffffff, pcrs, NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_accepts_minimal_document),
		cmocka_unit_test(parse_accepts_full_document),
		cmocka_unit_test(to_json_is_ordered_and_round_trips),
		cmocka_unit_test(to_json_of_largest_reference_list_fits_the_limit),
		cmocka_unit_test(to_json_refuses_a_policy_that_would_not_parse),
		cmocka_unit_test(parse_rejects_unknown_top_level_key),
		cmocka_unit_test(parse_rejects_unknown_key_in_a_pcr),
		cmocka_unit_test(parse_rejects_non_hex_expected),
		cmocka_unit_test(parse_rejects_63_hex_characters),
		cmocka_unit_test(parse_rejects_65_hex_characters),
		cmocka_unit_test(parse_rejects_expected_hiding_an_escaped_nul),
		cmocka_unit_test(parse_rejects_pcr_24),
		cmocka_unit_test(parse_rejects_pcr_with_leading_zero),
		cmocka_unit_test(parse_rejects_negative_pcr),
		cmocka_unit_test(parse_rejects_pcr_with_sign_or_space),
		cmocka_unit_test(parse_rejects_non_object_pcrs),
		cmocka_unit_test(parse_rejects_non_object_pcr_entry),
		cmocka_unit_test(parse_rejects_empty_pcrs),
		cmocka_unit_test(parse_rejects_pcr_without_expected),
		cmocka_unit_test(parse_rejects_non_boolean_warn_only),
		cmocka_unit_test(parse_rejects_version_2),
		cmocka_unit_test(parse_rejects_missing_version),
		cmocka_unit_test(parse_rejects_non_integer_version),
		cmocka_unit_test(parse_rejects_trailing_garbage),
		cmocka_unit_test(parse_accepts_surrounding_whitespace),
		cmocka_unit_test(parse_rejects_embedded_nul),
		cmocka_unit_test(parse_rejects_invalid_utf8),
		cmocka_unit_test(parse_rejects_oversized_document),
		cmocka_unit_test(parse_accepts_the_maximum_reference_events),
		cmocka_unit_test(parse_rejects_too_many_reference_events),
		cmocka_unit_test(parse_rejects_reference_event_out_of_range),
		cmocka_unit_test(parse_rejects_duplicate_top_level_key),
		cmocka_unit_test(parse_rejects_duplicate_pcr_even_when_escaped),
		cmocka_unit_test(parse_rejects_duplicate_key_inside_a_pcr),
		cmocka_unit_test(parse_rejects_key_with_an_escaped_nul),
		cmocka_unit_test(parse_rejects_what_json_c_tolerates),
		cmocka_unit_test(parse_rejects_deep_nesting),
		cmocka_unit_test(parse_rejects_object_with_too_many_keys),
		cmocka_unit_test(keygen_writes_private_0600_and_public_0644),
		cmocka_unit_test(keygen_refuses_to_overwrite_existing_files),
		cmocka_unit_test(generated_keys_sign_and_verify),
		cmocka_unit_test(sign_then_verify_round_trips),
		cmocka_unit_test(sign_refuses_invalid_measurements),
		cmocka_unit_test(verify_refuses_tampered_payload_byte),
		cmocka_unit_test(verify_refuses_tampered_signature),
		cmocka_unit_test(verify_refuses_policy_signed_by_another_key),
		cmocka_unit_test(verify_refuses_unsigned_measurements),
		cmocka_unit_test(verify_refuses_envelope_with_extra_key),
		cmocka_unit_test(verify_refuses_unsupported_envelope_version),
		cmocka_unit_test(verify_refuses_non_canonical_base64),
		cmocka_unit_test(load_refuses_non_ed25519_keys),
		cmocka_unit_test(load_refuses_wrong_or_missing_files),
		cmocka_unit_test(match_pcrs_accepts_values_equal_to_the_policy),
		cmocka_unit_test(match_pcrs_names_the_pcr_that_differs),
		cmocka_unit_test(match_pcrs_names_a_policy_pcr_missing_from_the_mask),
		cmocka_unit_test(match_pcrs_ignores_a_warn_only_mismatch),
		cmocka_unit_test(match_pcrs_of_an_empty_policy_accepts_anything),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
