// SPDX-License-Identifier: Apache-2.0
/* The CLI verifier's node records: round trip, privacy of the files, corruption refused. */
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

#include "conclave/nodestore.h"
#include "conclave/util.h"

static char dir[64];

static int make_dir(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/conclave-nodestore-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static struct node_record sample(void)
{
	struct node_record n = { .known = true,
				 .ak_name_len = 34,
				 .clock = 123456789012ull,
				 .reset_count = 7,
				 .restart_count = 2 };

	memset(n.node_id, 0xab, 32);
	n.ak_name[0] = 0x00;
	n.ak_name[1] = 0x0b;
	memset(n.ak_name + 2, 0x5a, 32);
	return n;
}

static void record_round_trips_in_a_private_file(void **state)
{
	struct node_record n = sample(), back = { 0 };
	char path[256], hex[65];
	struct stat st;

	assert_int_equal(nodestore_save(dir, &n, NULL), 0);
	assert_int_equal(nodestore_load(dir, n.node_id, &back, NULL), 0);
	assert_true(back.known);
	assert_int_equal(back.ak_name_len, 34);
	assert_memory_equal(back.ak_name, n.ak_name, 34);
	assert_int_equal(back.clock, n.clock);
	assert_int_equal(back.reset_count, 7);
	assert_int_equal(back.restart_count, 2);
	hex_encode(n.node_id, 32, hex);
	snprintf(path, sizeof(path), "%s/%s.node", dir, hex);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void unknown_node_loads_as_unknown(void **state)
{
	struct node_record n = { 0 };
	uint8_t id[32] = { 1 };

	assert_int_equal(nodestore_load(dir, id, &n, NULL), 0);
	assert_false(n.known);
}

static void loading_into_the_record_that_holds_the_id_works(void **state)
{
	struct node_record n = sample(), into = { 0 };

	assert_int_equal(nodestore_save(dir, &n, NULL), 0);
	memcpy(into.node_id, n.node_id, 32);
	assert_int_equal(nodestore_load(dir, into.node_id, &into, NULL), 0);
	assert_true(into.known);
}

static void corrupt_record_is_refused_not_guessed(void **state)
{
	struct node_record n = sample(), back = { 0 };
	char path[256], hex[65];
	struct diag d;
	FILE *f;

	assert_int_equal(nodestore_save(dir, &n, NULL), 0);
	hex_encode(n.node_id, 32, hex);
	snprintf(path, sizeof(path), "%s/%s.node", dir, hex);
	f = fopen(path, "w");
	fputs("conclave-node-record 1\nnode zz\n", f);
	fclose(f);
	assert_int_equal(nodestore_load(dir, n.node_id, &back, &d), -EBADMSG);
	assert_false(back.known);
	assert_non_null(strstr(d.msg, "corrupt"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(record_round_trips_in_a_private_file),
		cmocka_unit_test(unknown_node_loads_as_unknown),
		cmocka_unit_test(loading_into_the_record_that_holds_the_id_works),
		cmocka_unit_test(corrupt_record_is_refused_not_guessed),
	};

	return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
