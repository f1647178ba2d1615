// SPDX-License-Identifier: Apache-2.0
/* Unit tests for the shared helpers: bounded readers, writers, hex, secrets, atomic files. */
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

#include "conclave/bytes.h"
#include "conclave/secret.h"
#include "conclave/util.h"

static void reader_refuses_to_read_past_the_end(void **state)
{
	const uint8_t buf[] = { 0x12, 0x34, 0x56 };
	struct reader r = reader_init(buf, sizeof(buf));
	uint16_t v16;
	uint32_t v32;

	assert_int_equal(rd_be16(&r, &v16), 0);
	assert_int_equal(v16, 0x1234);
	assert_int_equal(rd_le32(&r, &v32), -EBADMSG);
	assert_int_equal(r.off, 2); /* a failed read consumes nothing */
	assert_int_equal(reader_left(&r), 1);
}

static void reader_decodes_both_byte_orders(void **state)
{
	const uint8_t buf[] = { 0x01, 0x02, 0x03, 0x04, 0x01, 0x02, 0x03, 0x04 };
	struct reader r = reader_init(buf, sizeof(buf));
	uint32_t le, be;

	assert_int_equal(rd_le32(&r, &le), 0);
	assert_int_equal(rd_be32(&r, &be), 0);
	assert_int_equal(le, 0x04030201);
	assert_int_equal(be, 0x01020304);
}

static void writer_grows_and_encodes_big_endian(void **state)
{
	struct writer w = { 0 };

	for (int i = 0; i < 1000; i++)
		assert_int_equal(wr_be32(&w, (uint32_t)i), 0);
	assert_int_equal(w.len, 4000);
	assert_int_equal(w.p[4 * 999 + 2], 0x03);
	assert_int_equal(w.p[4 * 999 + 3], 0xe7);
	writer_free(&w);
}

static void hex_round_trips_and_rejects_garbage(void **state)
{
	const uint8_t in[] = { 0x00, 0xab, 0xff };
	uint8_t out[3];
	char hex[7];
	size_t n;

	hex_encode(in, sizeof(in), hex);
	assert_string_equal(hex, "00abff");
	assert_int_equal(hex_decode("00ABff", out, sizeof(out), &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(in, out, 3);
	assert_int_equal(hex_decode("0g", out, sizeof(out), &n), -EINVAL);
	assert_int_equal(hex_decode("abc", out, sizeof(out), &n), -EINVAL);
	assert_int_equal(hex_decode("00112233", out, sizeof(out), &n), -E2BIG);
}

static void secret_is_random_and_usable(void **state)
{
	struct secret *a = secret_random(32), *b = secret_random(32);

	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(a->len, 32);
	assert_memory_not_equal(a->data, b->data, 32);
	secret_free(a);
	secret_free(b);
	secret_free(NULL);
}

static void atomic_write_sets_exact_mode(void **state)
{
	char dir[] = "/tmp/conclave-util-XXXXXX", path[64];
	uint8_t *buf;
	size_t len;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	umask(0);
	assert_int_equal(write_file_atomic(path, "hello", 5, 0600), 0);
	umask(022);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(read_file(path, 4, &buf, &len), -EFBIG);
	assert_int_equal(read_file(path, 5, &buf, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "hello", 5);
	free(buf);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reader_refuses_to_read_past_the_end),
		cmocka_unit_test(reader_decodes_both_byte_orders),
		cmocka_unit_test(writer_grows_and_encodes_big_endian),
		cmocka_unit_test(hex_round_trips_and_rejects_garbage),
		cmocka_unit_test(secret_is_random_and_usable),
		cmocka_unit_test(atomic_write_sets_exact_mode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
