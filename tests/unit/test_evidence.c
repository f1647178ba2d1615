// SPDX-License-Identifier: Apache-2.0
/* The evidence container: round trip, and every way untrusted bytes can be malformed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conclave/evidence.h"

static const uint8_t quote[] = "quote-bytes", sig[] = "sig", akpub[] = "ak-public", ek[] = "ek-der";

static void sample(struct evidence *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->quote = (struct blob){ quote, sizeof(quote) };
	ev->signature = (struct blob){ sig, sizeof(sig) };
	ev->ak_public = (struct blob){ akpub, sizeof(akpub) };
	ev->ek_cert = (struct blob){ ek, sizeof(ek) };
	ev->ek_chain[0] = (struct blob){ ek, 3 };
	ev->ek_chain[1] = (struct blob){ ek, 4 };
	ev->n_chain = 2;
	ev->pcr_mask = (1u << 0) | (1u << 7) | (1u << 23);
	ev->pcrs[0][0] = 0xaa;
	ev->pcrs[7][31] = 0xbb;
	ev->pcrs[23][5] = 0xcc;
}

static uint8_t *encode(size_t *len)
{
	struct evidence ev;
	uint8_t *buf;

	sample(&ev);
	assert_int_equal(evidence_encode(&ev, &buf, len), 0);
	return buf;
}

static void evidence_round_trips(void **state)
{
	struct evidence ev;
	size_t len;
	uint8_t *buf = encode(&len);

	assert_int_equal(evidence_decode(buf, len, &ev, NULL), 0);
	assert_memory_equal(ev.quote.p, quote, sizeof(quote));
	assert_int_equal(ev.n_chain, 2);
	assert_int_equal(ev.ek_chain[1].len, 4);
	assert_int_equal(ev.pcr_mask, (1u << 0) | (1u << 7) | (1u << 23));
	assert_int_equal(ev.pcrs[7][31], 0xbb);
	assert_int_equal(ev.pcrs[23][5], 0xcc);
	assert_null(ev.event_log.p);
	free(buf);
}

static void every_truncation_is_refused_with_an_offset(void **state)
{
	struct evidence ev;
	struct diag d;
	size_t len;
	uint8_t *buf = encode(&len);

	for (size_t cut = 0; cut < len; cut++) {
		assert_int_equal(evidence_decode(buf, cut, &ev, &d), -EBADMSG);
		if (cut >= 8)
			assert_non_null(strstr(d.msg, "offset "));
	}
	free(buf);
}

static void trailing_bytes_are_refused(void **state)
{
	struct evidence ev;
	struct diag d;
	size_t len;
	uint8_t *buf = encode(&len), *longer = calloc(1, len + 1);

	memcpy(longer, buf, len);
	assert_int_equal(evidence_decode(longer, len + 1, &ev, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "trailing"));
	free(longer);
	free(buf);
}

static void bad_magic_and_future_version_are_refused(void **state)
{
	struct evidence ev;
	struct challenge ch;
	struct diag d;
	size_t len;
	uint8_t *buf = encode(&len);

	/* An evidence document is not a challenge. */
	assert_int_equal(challenge_decode(buf, len, &ch, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "magic"));
	buf[5] = 2;
	assert_int_equal(evidence_decode(buf, len, &ev, &d), -ENOTSUP);
	assert_non_null(strstr(d.msg, "version 2"));
	free(buf);
}

/* Hand-built documents: header, then fields. */
static size_t doc(uint8_t *out, uint16_t count, const uint8_t *fields, size_t flen)
{
	memcpy(out, "CEVD\0\1", 6);
	out[6] = (uint8_t)(count >> 8);
	out[7] = (uint8_t)count;
	memcpy(out + 8, fields, flen);
	return 8 + flen;
}

static void unknown_tag_is_refused(void **state)
{
	const uint8_t f[] = { 0, 99, 0, 0, 0, 1, 0x42 };
	uint8_t buf[64];
	struct evidence ev;
	struct diag d;

	assert_int_equal(evidence_decode(buf, doc(buf, 1, f, sizeof(f)), &ev, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "unknown field tag 99"));
}

static void repeated_field_is_refused(void **state)
{
	const uint8_t f[] = { 0, 1, 0, 0, 0, 1, 0x42, 0, 1, 0, 0, 0, 1, 0x43 };
	uint8_t buf[64];
	struct evidence ev;
	struct diag d;

	assert_int_equal(evidence_decode(buf, doc(buf, 2, f, sizeof(f)), &ev, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "quote appears twice"));
}

static void oversized_field_is_refused_before_reading_it(void **state)
{
	const uint8_t f[] = { 0, 1, 0xff, 0xff, 0xff, 0xff };
	uint8_t buf[64];
	struct evidence ev;
	struct diag d;

	assert_int_equal(evidence_decode(buf, doc(buf, 1, f, sizeof(f)), &ev, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "exceeds the limit"));
}

static void missing_required_field_is_refused(void **state)
{
	const uint8_t f[] = { 0, 1, 0, 0, 0, 1, 0x42 };
	uint8_t buf[64];
	struct evidence ev;
	struct diag d;

	assert_int_equal(evidence_decode(buf, doc(buf, 1, f, sizeof(f)), &ev, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "lacks its signature"));
}

static void pcr_field_must_match_its_mask(void **state)
{
	/* mask says PCR 0 and 1, but only one value follows */
	uint8_t f[6 + 4 + 32] = { 0, 6, 0, 0, 0, 36, 0, 0, 0, 3 };
	uint8_t buf[128];
	struct evidence ev;
	struct diag d;

	assert_int_equal(evidence_decode(buf, doc(buf, 1, f, sizeof(f)), &ev, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "PCR 1 missing"));
}

static void oversized_document_is_refused(void **state)
{
	struct evidence ev;
	struct diag d;
	uint8_t b[8] = { 0 };

	assert_int_equal(evidence_decode(b, EVIDENCE_MAX_SIZE + 1, &ev, &d), -EFBIG);
}

static void challenge_round_trips(void **state)
{
	struct challenge ch = { { quote, 5 }, { sig, 2 }, { akpub, 9 } }, out;
	uint8_t *buf;
	size_t len;

	assert_int_equal(challenge_encode(&ch, &buf, &len), 0);
	assert_int_equal(challenge_decode(buf, len, &out, NULL), 0);
	assert_int_equal(out.ak_name.len, 9);
	assert_memory_equal(out.id_object.p, quote, 5);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(evidence_round_trips),
		cmocka_unit_test(every_truncation_is_refused_with_an_offset),
		cmocka_unit_test(trailing_bytes_are_refused),
		cmocka_unit_test(bad_magic_and_future_version_are_refused),
		cmocka_unit_test(unknown_tag_is_refused),
		cmocka_unit_test(repeated_field_is_refused),
		cmocka_unit_test(oversized_field_is_refused_before_reading_it),
		cmocka_unit_test(missing_required_field_is_refused),
		cmocka_unit_test(pcr_field_must_match_its_mask),
		cmocka_unit_test(oversized_document_is_refused),
		cmocka_unit_test(challenge_round_trips),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
