// SPDX-License-Identifier: Apache-2.0
/* Unit tests for the TCG2 event log: golden OVMF+swtpm logs replay to the PCRs the TPM quoted,
 * and crafted or damaged logs are refused with an offset. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "conclave/bytes.h"
#include "conclave/eventlog.h"
#include "conclave/util.h"
#include "swtpm_harness.h"

#define SHA256_LEN 32
#define HEADER_LEN 65 /* legacy record (32) + Spec ID event with one algorithm (33) */

/* Offsets inside the golden logs: both start with the same header and first event. */
#define FIRST_EVENT	    HEADER_LEN
#define FIRST_COUNT	    (FIRST_EVENT + 8)
#define FIRST_ALG	    (FIRST_EVENT + 12)
#define FIRST_SIZE	    (FIRST_ALG + 2 + SHA256_LEN)
#define SPEC_ID_SIG	    32
#define SPEC_ID_SHA256_SIZE 62

struct golden {
	uint8_t *buf;
	size_t len;
	uint8_t pcrs[PCR_COUNT][SHA256_LEN]; /* as read from the TPM */
};

static void load_golden(const char *name, struct golden *g)
{
	char rel[128], path[4096], line[256];
	FILE *f;

	snprintf(rel, sizeof(rel), "tests/data/eventlogs/eventlog-%s.bin", name);
	assert_int_equal(
	    read_file(test_path(rel, path, sizeof(path)), EVENTLOG_MAX_SIZE, &g->buf, &g->len), 0);
	snprintf(rel, sizeof(rel), "tests/data/eventlogs/pcrs-%s.txt", name);
	f = fopen(test_path(rel, path, sizeof(path)), "r");
	assert_non_null(f);
	for (int n = 0; n < PCR_COUNT; n++) {
		char hex[2 * SHA256_LEN + 1];
		unsigned int idx;
		size_t len;

		assert_non_null(fgets(line, sizeof(line), f));
		assert_int_equal(sscanf(line, "PCR%u %64s", &idx, hex), 2);
		assert_int_equal(idx, n);
		assert_int_equal(hex_decode(hex, g->pcrs[n], SHA256_LEN, &len), 0);
		assert_int_equal(len, SHA256_LEN);
	}
	fclose(f);
}

/* A heap copy of exactly len bytes, so ASan sees any read past the end. */
static uint8_t *dup_bytes(const uint8_t *p, size_t len)
{
	uint8_t *q = malloc(len ? len : 1);

	assert_non_null(q);
	if (len)
		memcpy(q, p, len);
	return q;
}

static int parse_copy(const uint8_t *p, size_t len, struct diag *d)
{
	uint8_t *copy = dup_bytes(p, len);
	struct eventlog log;
	int ret;

	ret = eventlog_parse(copy, len, &log, d);
	eventlog_free(&log);
	free(copy);
	return ret;
}

/* Parsing fails with ret and a message "offset N: ..." that contains what. */
static void expect_refusal(const uint8_t *p, size_t len, int ret, const char *what)
{
	struct diag d = { 0 };

	assert_int_equal(parse_copy(p, len, &d), ret);
	if (strncmp(d.msg, "offset ", 7) != 0 || !strstr(d.msg, what))
		fail_msg("message \"%s\" lacks \"offset \" or \"%s\"", d.msg, what);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void wr_le32(struct writer *w, uint32_t v)
{
	uint8_t b[4];

	put32(b, v);
	wr_bytes(w, b, 4);
}

static void wr_le16(struct writer *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	wr_bytes(w, b, 2);
}

/* A legacy record carrying a Spec ID event for the given algorithm table. */
static void put_spec_id(struct writer *w, const uint16_t *algs, const uint16_t *sizes, uint32_t n)
{
	static const uint8_t zero[20];

	wr_le32(w, 0);
	wr_le32(w, EV_NO_ACTION);
	wr_bytes(w, zero, sizeof(zero));
	wr_le32(w, 16 + 4 + 4 + 4 + 4 * n + 1);
	wr_bytes(w, "Spec ID Event03", 16);
	wr_le32(w, 0);			    /* platform class */
	wr_bytes(w, "\x00\x02\x00\x02", 4); /* version 2.0, errata 0, uintn 2 */
	wr_le32(w, n);
	for (uint32_t i = 0; i < n; i++) {
		wr_le16(w, algs[i]);
		wr_le16(w, sizes[i]);
	}
	wr_bytes(w, "", 1); /* no vendor info */
}

/* A TCG_PCR_EVENT2 with digests for algs[0..n), taken from digests[i] (sizes[i] bytes). */
static void put_event(struct writer *w, uint32_t pcr, uint32_t type, const uint16_t *algs,
		      const uint16_t *sizes, uint32_t n,
		      const uint8_t (*digests)[EVENTLOG_MAX_DIGEST], const void *data, uint32_t len)
{
	wr_le32(w, pcr);
	wr_le32(w, type);
	wr_le32(w, n);
	for (uint32_t i = 0; i < n; i++) {
		wr_le16(w, algs[i]);
		wr_bytes(w, digests[i], sizes[i]);
	}
	wr_le32(w, len);
	wr_bytes(w, data, len);
}

static void put_startup_locality(struct writer *w, uint8_t locality)
{
	static const uint16_t alg = TPM_ALG_SHA256, size = SHA256_LEN;
	static const uint8_t zero[1][EVENTLOG_MAX_DIGEST];
	uint8_t data[17] = "StartupLocality";

	data[16] = locality;
	put_event(w, 0, EV_NO_ACTION, &alg, &size, 1, zero, data, sizeof(data));
}

static void check_replay_matches(const char *name)
{
	uint8_t pcrs[PCR_COUNT][EVENTLOG_MAX_DIGEST], zero[SHA256_LEN] = { 0 };
	static const int quoted[] = { 0, 1, 2, 3, 4, 5, 6, 7, 9, 11 };
	static const int untouched[] = { 8, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23 };
	struct eventlog log;
	struct golden g;
	struct diag d = { 0 };
	size_t size;

	load_golden(name, &g);
	assert_int_equal(eventlog_parse(g.buf, g.len, &log, &d), 0);
	assert_int_equal(eventlog_replay(&log, TPM_ALG_SHA256, pcrs, &size), 0);
	assert_int_equal(size, SHA256_LEN);
	for (size_t i = 0; i < ARRAY_SIZE(quoted); i++)
		assert_memory_equal(pcrs[quoted[i]], g.pcrs[quoted[i]], SHA256_LEN);
	for (size_t i = 0; i < ARRAY_SIZE(untouched); i++)
		assert_memory_equal(pcrs[untouched[i]], zero, SHA256_LEN);
	eventlog_free(&log);
	free(g.buf);
}

static void replay_of_direct_boot_log_matches_the_quoted_pcrs(void **state)
{
	check_replay_matches("direct");
}

static void replay_of_uki_log_matches_the_quoted_pcrs(void **state)
{
	check_replay_matches("uki");
}

static void golden_logs_have_a_sane_shape(void **state)
{
	static const char *const names[] = { "direct", "uki" };

	for (size_t n = 0; n < ARRAY_SIZE(names); n++) {
		int separators[PCR_COUNT] = { 0 };
		struct eventlog log;
		struct golden g;

		load_golden(names[n], &g);
		assert_int_equal(eventlog_parse(g.buf, g.len, &log, NULL), 0);
		assert_int_equal(log.n_algs, 1);
		assert_int_equal(log.algs[0], TPM_ALG_SHA256);
		assert_int_equal(log.alg_sizes[0], SHA256_LEN);
		assert_int_equal(log.startup_locality, 0);
		assert_in_range(log.n_events, 20, 200);
		assert_int_equal(log.events[0].offset, FIRST_EVENT);
		assert_int_equal(log.events[0].pcr, 0);
		assert_string_equal(eventlog_type_name(log.events[0].type), "EV_S_CRTM_VERSION");
		for (size_t i = 0; i < log.n_events; i++) {
			const struct eventlog_event *ev = &log.events[i];

			assert_non_null(eventlog_type_name(ev->type));
			assert_int_equal(ev->n_digests, 1);
			assert_non_null(eventlog_event_digest(ev, TPM_ALG_SHA256));
			assert_null(eventlog_event_digest(ev, TPM_ALG_SHA1));
			assert_true(ev->data >= g.buf && ev->data + ev->data_len <= g.buf + g.len);
			if (ev->type == EV_SEPARATOR)
				separators[ev->pcr]++;
		}
		for (int pcr = 0; pcr < 8; pcr++)
			assert_int_equal(separators[pcr], 1);
		eventlog_free(&log);
		free(g.buf);
	}
}

static void sha256_of(const uint8_t *a, const uint8_t *b, uint8_t *out)
{
	uint8_t cat[2 * SHA256_LEN];

	memcpy(cat, a, SHA256_LEN);
	memcpy(cat + SHA256_LEN, b, SHA256_LEN);
	assert_true(EVP_Digest(cat, sizeof(cat), out, NULL, EVP_sha256(), NULL));
}

static void startup_locality_3_is_the_last_byte_of_pcr0s_initial_value(void **state)
{
	uint8_t pcrs[PCR_COUNT][EVENTLOG_MAX_DIGEST], want[SHA256_LEN] = { 0 };
	struct writer w = { 0 };
	struct eventlog orig, log;
	struct golden g;
	size_t size;

	load_golden("direct", &g);
	assert_int_equal(eventlog_parse(g.buf, g.len, &orig, NULL), 0);
	wr_bytes(&w, g.buf, FIRST_EVENT);
	put_startup_locality(&w, 3);
	wr_bytes(&w, g.buf + FIRST_EVENT, g.len - FIRST_EVENT);
	assert_false(w.failed);

	assert_int_equal(eventlog_parse(w.p, w.len, &log, NULL), 0);
	assert_int_equal(log.startup_locality, 3);
	assert_int_equal(log.n_events, orig.n_events + 1);
	assert_int_equal(eventlog_replay(&log, TPM_ALG_SHA256, pcrs, &size), 0);

	want[SHA256_LEN - 1] = 3;
	for (size_t i = 0; i < orig.n_events; i++)
		if (orig.events[i].pcr == 0 && orig.events[i].type != EV_NO_ACTION)
			sha256_of(want, orig.events[i].digests[0].bytes, want);
	assert_memory_equal(pcrs[0], want, SHA256_LEN);
	assert_memory_not_equal(pcrs[0], g.pcrs[0], SHA256_LEN);
	for (int pcr = 1; pcr < 8; pcr++)
		assert_memory_equal(pcrs[pcr], g.pcrs[pcr], SHA256_LEN);

	eventlog_free(&log);
	eventlog_free(&orig);
	writer_free(&w);
	free(g.buf);
}

static void startup_locality_after_a_pcr0_extend_is_refused(void **state)
{
	struct writer w = { 0 };
	struct eventlog orig;
	struct golden g;
	char want[64];

	load_golden("direct", &g);
	assert_int_equal(eventlog_parse(g.buf, g.len, &orig, NULL), 0);
	wr_bytes(&w, g.buf, orig.events[1].offset); /* header and the first PCR 0 extend */
	put_startup_locality(&w, 3);
	wr_bytes(&w, g.buf + orig.events[1].offset, g.len - orig.events[1].offset);
	snprintf(want, sizeof(want), "offset %zu: StartupLocality", orig.events[1].offset);
	expect_refusal(w.p, w.len, -EBADMSG, want);
	eventlog_free(&orig);
	writer_free(&w);
	free(g.buf);
}

/* A cut on a record boundary is a shorter valid log; any other cut is a truncation at or
 * before the cut, inside the record the cut falls in. */
static void check_every_cut(const char *name)
{
	struct eventlog orig;
	struct golden g;
	size_t rec = 0;

	load_golden(name, &g);
	assert_int_equal(eventlog_parse(g.buf, g.len, &orig, NULL), 0);
	for (size_t cut = 0; cut < g.len; cut++) {
		uint8_t *copy = dup_bytes(g.buf, cut);
		struct diag d = { 0 };
		struct eventlog log;
		size_t at, start;
		int ret;

		while (rec < orig.n_events && orig.events[rec].offset < cut)
			rec++;
		ret = eventlog_parse(copy, cut, &log, &d);
		if (rec < orig.n_events && orig.events[rec].offset == cut) {
			assert_int_equal(ret, 0);
			assert_int_equal(log.n_events, rec);
		} else {
			assert_int_equal(ret, -EBADMSG);
			assert_int_equal(sscanf(d.msg, "offset %zu: truncated", &at), 1);
			assert_non_null(strstr(d.msg, "truncated"));
			start = rec ? orig.events[rec - 1].offset : 0;
			assert_in_range(at, start, cut);
		}
		eventlog_free(&log);
		free(copy);
	}
	eventlog_free(&orig);
	free(g.buf);
}

static void a_cut_log_is_a_shorter_log_on_record_boundaries_and_truncated_elsewhere(void **state)
{
	check_every_cut("direct");
	check_every_cut("uki");
}

static void flipping_one_digest_byte_changes_exactly_that_pcr(void **state)
{
	uint8_t want[PCR_COUNT][EVENTLOG_MAX_DIGEST], got[PCR_COUNT][EVENTLOG_MAX_DIGEST];
	struct eventlog orig;
	struct golden g;
	size_t size;

	load_golden("uki", &g);
	assert_int_equal(eventlog_parse(g.buf, g.len, &orig, NULL), 0);
	assert_int_equal(eventlog_replay(&orig, TPM_ALG_SHA256, want, &size), 0);
	for (size_t i = 0; i < orig.n_events; i++) {
		const struct eventlog_event *ev = &orig.events[i];
		uint8_t *copy = dup_bytes(g.buf, g.len);
		struct eventlog log;

		copy[ev->offset + 12 + 2 + i % SHA256_LEN] ^= 0x01;
		assert_int_equal(eventlog_parse(copy, g.len, &log, NULL), 0);
		assert_int_equal(eventlog_replay(&log, TPM_ALG_SHA256, got, &size), 0);
		for (uint32_t pcr = 0; pcr < PCR_COUNT; pcr++) {
			bool changed = memcmp(got[pcr], want[pcr], SHA256_LEN) != 0;

			assert_int_equal(changed, pcr == ev->pcr && ev->type != EV_NO_ACTION);
		}
		eventlog_free(&log);
		free(copy);
	}
	eventlog_free(&orig);
	free(g.buf);
}

static void oversized_log_is_refused(void **state)
{
	uint8_t *big = calloc(1, EVENTLOG_MAX_SIZE + 1);
	struct eventlog log;
	struct diag d = { 0 };
	struct golden g;

	assert_non_null(big);
	load_golden("direct", &g);
	memcpy(big, g.buf, g.len);
	assert_int_equal(eventlog_parse(big, EVENTLOG_MAX_SIZE + 1, &log, &d), -EFBIG);
	assert_string_equal(d.msg,
			    "offset 1048576: log of 1048577 bytes exceeds the limit of 1048576");
	free(big);
	free(g.buf);
}

static void empty_log_is_truncated(void **state)
{
	expect_refusal(NULL, 0, -EBADMSG, "offset 0: truncated");
}

/* Apply one edit to a copy of the direct log and expect a refusal. */
static void expect_edit_refused(size_t at, const void *bytes, size_t n, int ret, const char *what)
{
	struct golden g;

	load_golden("direct", &g);
	memcpy(g.buf + at, bytes, n);
	expect_refusal(g.buf, g.len, ret, what);
	free(g.buf);
}

static void digest_algorithm_outside_the_spec_id_table_is_not_supported(void **state)
{
	expect_edit_refused(FIRST_ALG, "\x12\x00", 2, -ENOTSUP,
			    "offset 77: unknown algorithm 0x0012");
}

static void wrong_spec_id_signature_is_refused(void **state)
{
	expect_edit_refused(SPEC_ID_SIG, "Spec ID Event02", 16, -EBADMSG,
			    "offset 32: Spec ID signature");
}

static void event_size_of_0xffffffff_is_refused(void **state)
{
	expect_edit_refused(FIRST_SIZE, "\xff\xff\xff\xff", 4, -EFBIG,
			    "offset 111: event data of 4294967295 bytes");
}

static void pcr_index_24_is_refused(void **state)
{
	expect_edit_refused(FIRST_EVENT, "\x18\x00\x00\x00", 4, -EBADMSG,
			    "offset 65: PCR index 24");
}

static void digest_count_different_from_the_spec_id_table_is_refused(void **state)
{
	expect_edit_refused(FIRST_COUNT, "\x02\x00\x00\x00", 4, -EBADMSG,
			    "offset 73: event carries 2 digests, the Spec ID table lists 1");
}

static void spec_id_table_with_a_wrong_sha256_size_is_inconsistent(void **state)
{
	expect_edit_refused(SPEC_ID_SHA256_SIZE, "\x14\x00", 2, -EBADMSG,
			    "offset 60: Spec ID table gives algorithm 0x000b 20 bytes");
}

static void spec_id_event_with_bytes_left_over_is_inconsistent(void **state)
{
	struct writer w = { 0 };
	uint8_t size[4];
	struct golden g;

	load_golden("direct", &g);
	wr_bytes(&w, g.buf, HEADER_LEN);
	wr_bytes(&w, "", 1);
	wr_bytes(&w, g.buf + HEADER_LEN, g.len - HEADER_LEN);
	put32(size, HEADER_LEN - 32 + 1);
	memcpy(w.p + 28, size, 4);
	expect_refusal(w.p, w.len, -EBADMSG, "offset 65: 1 bytes left over");
	writer_free(&w);
	free(g.buf);
}

static void legacy_sha1_log_without_spec_id_is_refused(void **state)
{
	expect_edit_refused(4, "\x08\x00\x00\x00", 4, -EBADMSG,
			    "offset 0: first record is not a Spec ID event");
}

static void duplicate_algorithm_in_one_event_is_refused(void **state)
{
	static const uint16_t table[] = { TPM_ALG_SHA1, TPM_ALG_SHA256 };
	static const uint16_t sizes[] = { 20, 32 };
	static const uint16_t twice[] = { TPM_ALG_SHA256, TPM_ALG_SHA256 };
	static const uint16_t twice_sizes[] = { 32, 32 };
	uint8_t digests[2][EVENTLOG_MAX_DIGEST] = { { 1 }, { 2 } };
	struct writer w = { 0 };
	size_t at;
	char want[64];

	put_spec_id(&w, table, sizes, 2);
	at = w.len;
	put_event(&w, 4, EV_SEPARATOR, twice, twice_sizes, 2,
		  (const uint8_t(*)[EVENTLOG_MAX_DIGEST])digests, "\0\0\0\0", 4);
	snprintf(want, sizeof(want), "offset %zu: algorithm 0x000b appears twice", at + 12 + 34);
	expect_refusal(w.p, w.len, -EBADMSG, want);
	writer_free(&w);
}

static void duplicate_algorithm_in_the_spec_id_table_is_refused(void **state)
{
	static const uint16_t table[] = { TPM_ALG_SHA256, TPM_ALG_SHA256 };
	static const uint16_t sizes[] = { 32, 32 };
	struct writer w = { 0 };

	put_spec_id(&w, table, sizes, 2);
	expect_refusal(w.p, w.len, -EBADMSG, "offset 64: algorithm 0x000b listed twice");
	writer_free(&w);
}

/* The direct log rewritten with a SHA-1 bank next to SHA-256 (SHA-1 digests are made up). */
static void two_bank_log(struct writer *w, const struct eventlog *orig)
{
	static const uint16_t algs[] = { TPM_ALG_SHA1, TPM_ALG_SHA256 };
	static const uint16_t sizes[] = { 20, 32 };

	put_spec_id(w, algs, sizes, 2);
	for (size_t i = 0; i < orig->n_events; i++) {
		const struct eventlog_event *ev = &orig->events[i];
		uint8_t digests[2][EVENTLOG_MAX_DIGEST] = { { 0 } };

		memcpy(digests[0], ev->digests[0].bytes, 20);
		digests[0][0] ^= 0x5a;
		memcpy(digests[1], ev->digests[0].bytes, SHA256_LEN);
		put_event(w, ev->pcr, ev->type, algs, sizes, 2,
			  (const uint8_t(*)[EVENTLOG_MAX_DIGEST])digests, ev->data, ev->data_len);
	}
}

static void each_bank_replays_on_its_own(void **state)
{
	uint8_t pcrs[PCR_COUNT][EVENTLOG_MAX_DIGEST], zero[20] = { 0 };
	struct writer w = { 0 };
	struct eventlog orig, log;
	struct golden g;
	size_t size;

	load_golden("direct", &g);
	assert_int_equal(eventlog_parse(g.buf, g.len, &orig, NULL), 0);
	two_bank_log(&w, &orig);
	assert_int_equal(eventlog_parse(w.p, w.len, &log, NULL), 0);
	assert_int_equal(log.n_algs, 2);
	assert_int_equal(log.n_events, orig.n_events);

	assert_int_equal(eventlog_replay(&log, TPM_ALG_SHA256, pcrs, &size), 0);
	assert_int_equal(size, SHA256_LEN);
	for (int pcr = 0; pcr < 8; pcr++)
		assert_memory_equal(pcrs[pcr], g.pcrs[pcr], SHA256_LEN);
	assert_int_equal(eventlog_replay(&log, TPM_ALG_SHA1, pcrs, &size), 0);
	assert_int_equal(size, 20);
	assert_memory_not_equal(pcrs[4], zero, 20);
	assert_memory_equal(pcrs[8], zero, 20);
	assert_int_equal(eventlog_replay(&log, TPM_ALG_SHA384, pcrs, &size), -ENOENT);

	eventlog_free(&log);
	eventlog_free(&orig);
	writer_free(&w);
	free(g.buf);
}

static void event_missing_a_bank_of_the_table_is_refused(void **state)
{
	static const uint16_t table[] = { TPM_ALG_SHA1, TPM_ALG_SHA256 };
	static const uint16_t sizes[] = { 20, 32 };
	static const uint8_t digest[1][EVENTLOG_MAX_DIGEST];
	struct writer w = { 0 };
	char want[64];
	size_t at;

	put_spec_id(&w, table, sizes, 2);
	at = w.len;
	put_event(&w, 4, EV_SEPARATOR, table + 1, sizes + 1, 1, digest, "\0\0\0\0", 4);
	snprintf(want, sizeof(want), "offset %zu: event carries 1 digests", at + 8);
	expect_refusal(w.p, w.len, -EBADMSG, want);
	writer_free(&w);
}

static void more_than_the_event_limit_is_refused(void **state)
{
	static const uint16_t alg = TPM_ALG_SHA1, size = 20;
	static const uint8_t digest[1][EVENTLOG_MAX_DIGEST];
	struct writer w = { 0 };
	struct eventlog log;
	size_t last = 0;

	put_spec_id(&w, &alg, &size, 1);
	for (int i = 0; i <= EVENTLOG_MAX_EVENTS; i++) {
		last = w.len;
		put_event(&w, 7, EV_EVENT_TAG, &alg, &size, 1, digest, NULL, 0);
	}
	assert_false(w.failed);
	assert_int_equal(eventlog_parse(w.p, last, &log, NULL), 0);
	assert_int_equal(log.n_events, EVENTLOG_MAX_EVENTS);
	eventlog_free(&log);
	expect_refusal(w.p, w.len, -EFBIG, "more than 8192 events");
	writer_free(&w);
}

/* Reference digests of every extending event on pcr, in order; returns how many. */
static size_t reference_of(const struct eventlog *log, uint32_t pcr,
			   uint8_t ref[][EVENTLOG_MAX_DIGEST], size_t max, size_t *last)
{
	size_t n = 0;

	*last = 0;
	for (size_t i = 0; i < log->n_events; i++) {
		const struct eventlog_event *ev = &log->events[i];

		if (ev->pcr != pcr || ev->type == EV_NO_ACTION)
			continue;
		assert_true(n < max);
		memcpy(ref[n++], eventlog_event_digest(ev, TPM_ALG_SHA256)->bytes, SHA256_LEN);
		*last = i;
	}
	return n;
}

static void first_difference_finds_a_flipped_event(void **state)
{
	uint8_t ref[64][EVENTLOG_MAX_DIGEST];
	struct eventlog log;
	struct golden g;
	size_t n, last, at;
	long second = -1;

	load_golden("uki", &g);
	assert_int_equal(eventlog_parse(g.buf, g.len, &log, NULL), 0);
	n = reference_of(&log, 4, ref, ARRAY_SIZE(ref), &last);
	assert_true(n >= 3);
	assert_int_equal(eventlog_first_difference(&log, 4, TPM_ALG_SHA256,
						   (const uint8_t(*)[EVENTLOG_MAX_DIGEST])ref, n,
						   &at),
			 -1);
	assert_int_equal(at, n);

	for (size_t i = 0, seen = 0; i < log.n_events && second < 0; i++)
		if (log.events[i].pcr == 4 && log.events[i].type != EV_NO_ACTION && seen++ == 1)
			second = (long)i;
	ref[1][7] ^= 0x80;
	assert_int_equal(eventlog_first_difference(&log, 4, TPM_ALG_SHA256,
						   (const uint8_t(*)[EVENTLOG_MAX_DIGEST])ref, n,
						   &at),
			 second);
	assert_int_equal(at, 1);
	eventlog_free(&log);
	free(g.buf);
}

static void first_difference_reports_an_extra_and_a_missing_event(void **state)
{
	uint8_t ref[64][EVENTLOG_MAX_DIGEST];
	struct eventlog log;
	struct golden g;
	size_t n, last, at;

	load_golden("uki", &g);
	assert_int_equal(eventlog_parse(g.buf, g.len, &log, NULL), 0);
	n = reference_of(&log, 4, ref, ARRAY_SIZE(ref) - 1, &last);

	/* The log has one more event than the reference: that event is the difference. */
	assert_int_equal(eventlog_first_difference(&log, 4, TPM_ALG_SHA256,
						   (const uint8_t(*)[EVENTLOG_MAX_DIGEST])ref,
						   n - 1, &at),
			 (long)last);
	assert_int_equal(at, n - 1);

	/* The reference expects one more than the log has. */
	memset(ref[n], 0xab, SHA256_LEN);
	assert_int_equal(eventlog_first_difference(&log, 4, TPM_ALG_SHA256,
						   (const uint8_t(*)[EVENTLOG_MAX_DIGEST])ref,
						   n + 1, &at),
			 -2);
	assert_int_equal(at, n);

	/* No events on the PCR and an empty reference are the same. */
	assert_int_equal(eventlog_first_difference(&log, 12, TPM_ALG_SHA256, NULL, 0, &at), -1);
	eventlog_free(&log);
	free(g.buf);
}

static void event_types_have_their_pfp_names(void **state)
{
	assert_string_equal(eventlog_type_name(0), "EV_PREBOOT_CERT");
	assert_string_equal(eventlog_type_name(EV_SEPARATOR), "EV_SEPARATOR");
	assert_string_equal(eventlog_type_name(0x12), "EV_OMIT_BOOT_DEVICE_EVENTS");
	assert_string_equal(eventlog_type_name(0x80000001), "EV_EFI_VARIABLE_DRIVER_CONFIG");
	assert_string_equal(eventlog_type_name(0x80000010), "EV_EFI_HCRTM_EVENT");
	assert_string_equal(eventlog_type_name(0x800000e2), "EV_EFI_SPDM_FIRMWARE_CONFIG");
	assert_null(eventlog_type_name(2));
	assert_null(eventlog_type_name(0x13));
	assert_null(eventlog_type_name(0x80000000));
	assert_null(eventlog_type_name(0x8000000d));
	assert_null(eventlog_type_name(0x800000e3));
	assert_null(eventlog_type_name(0xffffffff));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(replay_of_direct_boot_log_matches_the_quoted_pcrs),
		cmocka_unit_test(replay_of_uki_log_matches_the_quoted_pcrs),
		cmocka_unit_test(golden_logs_have_a_sane_shape),
		cmocka_unit_test(startup_locality_3_is_the_last_byte_of_pcr0s_initial_value),
		cmocka_unit_test(startup_locality_after_a_pcr0_extend_is_refused),
		cmocka_unit_test(
		    a_cut_log_is_a_shorter_log_on_record_boundaries_and_truncated_elsewhere),
		cmocka_unit_test(flipping_one_digest_byte_changes_exactly_that_pcr),
		cmocka_unit_test(oversized_log_is_refused),
		cmocka_unit_test(empty_log_is_truncated),
		cmocka_unit_test(digest_algorithm_outside_the_spec_id_table_is_not_supported),
		cmocka_unit_test(wrong_spec_id_signature_is_refused),
		cmocka_unit_test(event_size_of_0xffffffff_is_refused),
		cmocka_unit_test(pcr_index_24_is_refused),
		cmocka_unit_test(digest_count_different_from_the_spec_id_table_is_refused),
		cmocka_unit_test(spec_id_table_with_a_wrong_sha256_size_is_inconsistent),
		cmocka_unit_test(spec_id_event_with_bytes_left_over_is_inconsistent),
		cmocka_unit_test(legacy_sha1_log_without_spec_id_is_refused),
		cmocka_unit_test(duplicate_algorithm_in_one_event_is_refused),
		cmocka_unit_test(duplicate_algorithm_in_the_spec_id_table_is_refused),
		cmocka_unit_test(each_bank_replays_on_its_own),
		cmocka_unit_test(event_missing_a_bank_of_the_table_is_refused),
		cmocka_unit_test(more_than_the_event_limit_is_refused),
		cmocka_unit_test(first_difference_finds_a_flipped_event),
		cmocka_unit_test(first_difference_reports_an_extra_and_a_missing_event),
		cmocka_unit_test(event_types_have_their_pfp_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
