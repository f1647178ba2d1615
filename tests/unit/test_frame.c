// SPDX-License-Identifier: Apache-2.0
/* Unit tests for the node channel's BEGIN/END base64 framing and the fw_cfg nonce. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conclave/frame.h"
#include "conclave/node.h"

static int decode(const char *text, size_t max, uint8_t **out, size_t *len, struct diag *d)
{
	return frame_decode(text, strlen(text), "EVIDENCE", max, out, len, d);
}

static void frames_round_trip_every_length(void **state)
{
	uint8_t data[200], *out;
	struct diag d = { { 0 } };
	char *text;
	size_t tlen, len;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	for (size_t n = 0; n <= sizeof(data); n++) {
		assert_int_equal(frame_encode("EVIDENCE", data, n, &text, &tlen), 0);
		assert_int_equal(strlen(text), tlen);
		assert_int_equal(frame_decode(text, tlen, "EVIDENCE", 4096, &out, &len, &d), 0);
		assert_int_equal(len, n);
		assert_memory_equal(out, data, n);
		free(out);
		free(text);
	}
}

static void encoded_lines_are_64_characters(void **state)
{
	uint8_t data[100] = { 0 };
	char *text;
	size_t tlen;

	assert_int_equal(frame_encode("CHALLENGE", data, sizeof(data), &text, &tlen), 0);
	assert_string_equal(text,
			    "BEGIN CHALLENGE\n"
			    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
			    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
			    "AAAAAA==\n"
			    "END CHALLENGE\n");
	free(text);
	assert_int_equal(frame_encode("bad label", data, 1, &text, &tlen), -EINVAL);
}

static void damaged_frames_are_refused_with_the_line(void **state)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "BEGIN CHALLENGE\nAAAA\nEND CHALLENGE\n", "line 1: expected the BEGIN line" },
		{ "BEGIN EVIDENCE\nAAAA\nEND CHALLENGE\n", "line 3: END line of another" },
		{ "BEGIN EVIDENCE\nAB==\nEND EVIDENCE\n", "line 2: not a base64 line" },
		{ "BEGIN EVIDENCE\nAAAA\n", "line 3: missing END line" },
		{ "BEGIN EVIDENCE\nAA*A\nEND EVIDENCE\n", "line 2: not a base64 line" },
		{ "BEGIN EVIDENCE\nAAA\nEND EVIDENCE\n", "line 2: not a base64 line" },
		{ "BEGIN EVIDENCE\nAA==\nAAAA\nEND EVIDENCE\n", "line 3: data after the last" },
		{ "BEGIN EVIDENCE\nAAAA\nAAAA\nEND EVIDENCE\n", "line 3: data after the last" },
		{ "BEGIN EVIDENCE\nA===\nEND EVIDENCE\n", "line 2: not a base64 line" },
		{ "BEGIN EVIDENCE\nAAAA\nEND EVIDENCE\nX", "line 4: bytes after the END line" },
		{ "BEGIN EVIDENCE\nAAAAAAAA\nEND EVIDENCE\n", "line 2: document larger" },
	};
	struct diag d = { { 0 } };
	uint8_t *out = NULL;
	size_t len;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d.msg[0] = '\0';
		assert_int_equal(decode(bad[i].text, 4, &out, &len, &d), -EBADMSG);
		if (strncmp(d.msg, bad[i].why, strlen(bad[i].why)))
			fail_msg("case %zu: got '%s', want '%s...'", i, d.msg, bad[i].why);
	}
}

static void nonce_from_fw_cfg_is_hex_with_optional_whitespace(void **state)
{
	uint8_t out[64];
	size_t len;

	assert_int_equal(node_parse_nonce((const uint8_t *)"00112233445566778899\n", 21, out, &len),
			 0);
	assert_int_equal(len, 10);
	assert_int_equal(out[9], 0x99);
	assert_int_equal(node_parse_nonce((const uint8_t *)"0011", 4, out, &len), -EINVAL);
	assert_int_equal(node_parse_nonce((const uint8_t *)"zz112233445566778899", 20, out, &len),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(frames_round_trip_every_length),
		cmocka_unit_test(encoded_lines_are_64_characters),
		cmocka_unit_test(damaged_frames_are_refused_with_the_line),
		cmocka_unit_test(nonce_from_fw_cfg_is_hex_with_optional_whitespace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
