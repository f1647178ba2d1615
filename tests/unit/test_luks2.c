// SPDX-License-Identifier: Apache-2.0
/* The state disk's header check (luks2.h) against a real header: tests/data/luks2/
 * state-header.bin is the first 32 KiB of a disk the disk module formatted inside a node VM
 * (dm-integrity cannot run on this host), token cluster 11..11, node 22..22. Each test tampers
 * with one parameter the way a host could (rewriting both copies and their checksums) and
 * expects a refusal that names it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conclave/luks2.h"
#include "conclave/util.h"
#include "swtpm_harness.h"

#define FIXTURE	     "tests/data/luks2/state-header.bin"
#define FIXTURE_UUID "c3c0149d83dd46549bd6cdee8c2aad17"

static uint8_t cluster[32], node[32];
static const struct luks2_expect ours = { cluster, node };

static uint8_t *load(void)
{
	char path[4096];
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(
	    read_file(test_path(FIXTURE, path, sizeof(path)), LUKS2_HEADER_BYTES, &buf, &len), 0);
	assert_int_equal(len, LUKS2_HEADER_BYTES);
	return buf;
}

/* Replace the first `from` in the metadata of both copies with `to`, and reseal both. */
static void edit(uint8_t *h, const char *from, const char *to)
{
	for (int copy = 0; copy < 2; copy++) {
		uint8_t *hdr = h + copy * LUKS2_HDR_SIZE;
		char *json = (char *)hdr + LUKS2_BIN_SIZE, out[LUKS2_JSON_SIZE];
		char *at = strstr(json, from);

		assert_non_null(at);
		snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - json), json, to,
			 at + strlen(from));
		memset(json, 0, LUKS2_JSON_SIZE);
		memcpy(json, out, strlen(out));
		luks2_header_seal(hdr);
	}
}

static int check(const uint8_t *h, size_t len, struct luks2_info *info, char *msg)
{
	struct diag d = { { 0 } };
	int ret = luks2_check(h, len, &ours, info, &d);

	snprintf(msg, 256, "%s", d.msg); /* every caller passes char[256] */
	return ret;
}

static void the_real_header_passes(void **state)
{
	uint8_t *h = load();
	struct luks2_info info;
	char msg[256], hex[33];

	assert_int_equal(check(h, LUKS2_HEADER_BYTES, &info, msg), 0);
	hex_encode(info.uuid, 16, hex);
	assert_string_equal(hex, FIXTURE_UUID);
	assert_true(info.has_token);
	assert_memory_equal(info.node_id, node, 32);
	free(h);
}

struct tamper {
	const char *from, *to, *why;
};

/* One parameter at a time, as a host rewriting the header would. */
static const struct tamper tampers[] = {
	{ "\"encryption\":\"aes-xts-plain64\",\"sector_size\"",
	  "\"encryption\":\"cipher_null-ecb\",\"sector_size\"", "encryption is not" },
	{ "\"encryption\":\"aes-xts-plain64\",\"sector_size\"",
	  "\"encryption\":\"aes-cbc-essiv:sha256\",\"sector_size\"", "encryption is not" },
	{ ",\"integrity\":{\"type\":\"hmac(sha256)\",\"journal_encryption\":\"none\","
	  "\"journal_integrity\":\"none\"}",
	  "", "no integrity protection" },
	{ "\"type\":\"hmac(sha256)\"", "\"type\":\"crc32c\"", "integrity is not" },
	{ "\"journal_integrity\":\"none\"", "\"journal_integrity\":\"none\",\"x\":1",
	  "unexpected field x" },
	{ "\"sector_size\":4096", "\"sector_size\":512", "sector size" },
	{ "\"offset\":\"1048576\"", "\"offset\":\"32768\"", "data does not start" },
	{ "\"size\":\"dynamic\"", "\"size\":\"4096\"", "size is not dynamic" },
	{ "\"iv_tweak\":\"0\"", "\"iv_tweak\":\"7\"", "IV tweak" },
	{ "\"iv_tweak\":\"0\"", "\"iv_tweak\":\"0\",\"flags\":[\"backup-x\"]", "unexpected flags" },
	{ "\"type\":\"crypt\"", "\"type\":\"linear\"", "not a crypt segment" },
	/* The keyslot: a null-cipher area would release a volume key the host chose. */
	{ "\"encryption\":\"aes-xts-plain64\",\"key_size\":64",
	  "\"encryption\":\"cipher_null-ecb\",\"key_size\":64", "area is not raw" },
	{ "\"key_size\":96", "\"key_size\":64", "keyslot 0: not a luks2 keyslot" },
	{ "\"stripes\":4000", "\"stripes\":1", "anti-forensic" },
	{ "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"Uzx",
	  "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":2000000000,\"salt\":\"Uzx",
	  "KDF is not" },
	{ "\"kdf\":{\"type\":\"pbkdf2\"", "\"kdf\":{\"type\":\"argon2id\"", "KDF is not" },
	{ "\"offset\":\"32768\"", "\"offset\":\"1048576\"", "area outside" },
	{ "\"keyslots\":{\"0\":", "\"keyslots\":{\"1\":{},\"0\":", "keyslots must hold exactly" },
	{ "\"tokens\":{\"0\":", "\"tokens\":{\"1\":{\"type\":\"x\",\"keyslots\":[]},\"0\":",
	  "tokens must hold exactly" },
	{ "\"type\":\"conclave-state\"", "\"type\":\"systemd-tpm2\"",
	  "not a conclave-state token" },
	{ "\"keyslots\":[],\"version\"", "\"keyslots\":[\"0\"],\"version\"",
	  "must name no keyslot" },
	{ "\"node\":\"2222", "\"node\":\"ZZ22", "not 64 lower-case hex" },
	{ "\"keyslots\":[\"0\"],\"segments\":[\"0\"]", "\"keyslots\":[\"1\"],\"segments\":[\"0\"]",
	  "does not bind exactly" },
	{ "\"digests\":{\"0\":{\"type\":\"pbkdf2\"", "\"digests\":{\"0\":{\"type\":\"argon2i\"",
	  "not a pbkdf2-sha256 digest" },
	{ "\"keyslots_size\":\"1015808\"", "\"keyslots_size\":\"16744448\"", "keyslot area size" },
	{ "\"keyslots_size\":\"1015808\"",
	  "\"keyslots_size\":\"1015808\",\"requirements\":{\"mandatory\":[\"online-reencrypt\"]}",
	  "unexpected field requirements" },
	{ "\"config\":{", "\"extra\":{},\"config\":{", "unexpected section extra" },
	{ "{\"keyslots\":", "[{\"keyslots\":", "not a JSON object" },
};

static void every_tampered_parameter_is_refused(void **state)
{
	for (size_t i = 0; i < sizeof(tampers) / sizeof(tampers[0]); i++) {
		uint8_t *h = load();
		struct luks2_info info;
		char msg[256];
		int ret;

		edit(h, tampers[i].from, tampers[i].to);
		ret = check(h, LUKS2_HEADER_BYTES, &info, msg);
		print_message("# %s -> %s\n", tampers[i].to, msg);
		assert_int_equal(ret, -EBADMSG);
		assert_non_null(strstr(msg, tampers[i].why));
		free(h);
	}
}

static void another_node_or_cluster_is_refused(void **state)
{
	uint8_t *h = load(), other[32];
	struct luks2_expect e = { cluster, other };
	struct luks2_info info;
	struct diag d = { { 0 } };

	memset(other, 0x33, sizeof(other));
	assert_int_equal(luks2_check(h, LUKS2_HEADER_BYTES, &e, &info, &d), -EPERM);
	assert_non_null(strstr(d.msg, "belongs to node 2222222222222222"));
	e = (struct luks2_expect){ other, node };
	assert_int_equal(luks2_check(h, LUKS2_HEADER_BYTES, &e, &info, &d), -EPERM);
	assert_non_null(strstr(d.msg, "belongs to cluster 1111111111111111"));
	/* Before the node knows its cluster: only what is known is checked. */
	e = (struct luks2_expect){ NULL, node };
	assert_int_equal(luks2_check(h, LUKS2_HEADER_BYTES, &e, &info, &d), 0);
	free(h);
}

static void a_header_without_our_token_is_an_unfinished_format(void **state)
{
	uint8_t *h = load();
	struct luks2_info info;
	char msg[256];

	edit(h,
	     "\"tokens\":{\"0\":{\"type\":\"conclave-state\",\"keyslots\":[],\"version\":1,"
	     "\"cluster\":\"1111111111111111111111111111111111111111111111111111111111111111\","
	     "\"node\":\"2222222222222222222222222222222222222222222222222222222222222222\"}}",
	     "\"tokens\":{}");
	assert_int_equal(check(h, LUKS2_HEADER_BYTES, &info, msg), 0);
	assert_false(info.has_token);
	free(h);
}

static void truncated_and_broken_headers_are_refused(void **state)
{
	static const size_t lens[] = { 1, 5, 6, 512, 4095, 4096, 16383, 16384, 32767 };
	uint8_t *h = load(), save;
	struct luks2_info info;
	char msg[256];

	assert_int_equal(check(h, 0, &info, msg), -ENOMSG);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		int ret = check(h, lens[i], &info, msg);

		assert_int_equal(ret, lens[i] < 6 ? -ENOMSG : -EBADMSG);
		if (lens[i] >= 6)
			assert_non_null(strstr(msg, "truncated"));
	}
	/* One metadata byte changed, checksum not updated. */
	h[LUKS2_BIN_SIZE + 10] ^= 1;
	assert_int_equal(check(h, LUKS2_HEADER_BYTES, &info, msg), -EBADMSG);
	assert_non_null(strstr(msg, "primary header: checksum mismatch"));
	h[LUKS2_BIN_SIZE + 10] ^= 1;
	/* The secondary copy alone rewritten (and resealed): the copies differ. */
	save = h[LUKS2_HDR_SIZE + LUKS2_BIN_SIZE + 3];
	h[LUKS2_HDR_SIZE + LUKS2_BIN_SIZE + 3] = ' ';
	luks2_header_seal(h + LUKS2_HDR_SIZE);
	assert_int_equal(check(h, LUKS2_HEADER_BYTES, &info, msg), -EBADMSG);
	assert_non_null(strstr(msg, "copies differ"));
	h[LUKS2_HDR_SIZE + LUKS2_BIN_SIZE + 3] = save;
	luks2_header_seal(h + LUKS2_HDR_SIZE);
	assert_int_equal(check(h, LUKS2_HEADER_BYTES, &info, msg), 0);
	/* A newer secondary (higher sequence id). */
	h[LUKS2_HDR_SIZE + 23]++;
	luks2_header_seal(h + LUKS2_HDR_SIZE);
	assert_int_equal(check(h, LUKS2_HEADER_BYTES, &info, msg), -EBADMSG);
	assert_non_null(strstr(msg, "copies differ"));
	free(h);
}

static void binary_fields_are_checked(void **state)
{
	static const struct {
		size_t off;
		uint8_t val;
		const char *why;
	} cases[] = {
		{ 7, 1, "version 1" },				 /* LUKS1-style version */
		{ 14, 0x80, "metadata size" },			 /* hdr_size 16384 -> 32768+ */
		{ 72, 'm', "checksum algorithm" },		 /* "sha256" -> "mha256" */
		{ 168, 'X', "not a canonical lower-case UUID" }, /* UUID text */
		{ 24, 'x', "label is not" },
	};
	struct luks2_info info;
	char msg[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *h = load();

		h[cases[i].off] = cases[i].val;
		h[LUKS2_HDR_SIZE + cases[i].off] = cases[i].val;
		luks2_header_seal(h);
		luks2_header_seal(h + LUKS2_HDR_SIZE);
		assert_int_equal(check(h, LUKS2_HEADER_BYTES, &info, msg), -EBADMSG);
		print_message("# byte %zu -> %s\n", cases[i].off, msg);
		assert_non_null(strstr(msg, cases[i].why));
		free(h);
	}
}

static void the_token_json_round_trips(void **state)
{
	uint8_t *h = load();
	char json[256], small[100], want[LUKS2_JSON_SIZE];
	struct luks2_info info;
	char msg[256];

	assert_int_equal(luks2_token_json(cluster, node, json, sizeof(json)), 0);
	assert_int_equal(luks2_token_json(cluster, node, small, sizeof(small)), -ENOSPC);
	/* What disk_format writes is what the real header holds. */
	snprintf(want, sizeof(want), "\"tokens\":{\"0\":%s}", json);
	assert_non_null(strstr((char *)h + LUKS2_BIN_SIZE, want));
	assert_int_equal(check(h, LUKS2_HEADER_BYTES, &info, msg), 0);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_real_header_passes),
		cmocka_unit_test(every_tampered_parameter_is_refused),
		cmocka_unit_test(another_node_or_cluster_is_refused),
		cmocka_unit_test(a_header_without_our_token_is_an_unfinished_format),
		cmocka_unit_test(truncated_and_broken_headers_are_refused),
		cmocka_unit_test(binary_fields_are_checked),
		cmocka_unit_test(the_token_json_round_trips),
	};

	memset(cluster, 0x11, sizeof(cluster));
	memset(node, 0x22, sizeof(node));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
