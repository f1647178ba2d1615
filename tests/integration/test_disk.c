// SPDX-License-Identifier: Apache-2.0
/* The disk module against files, with the real libcryptsetup (this host has no device-mapper, so
 * nothing can be opened here: tests/e2e/test_disk.sh opens disks in node VMs). What is tested:
 * probing blank, foreign, tampered and real state disks; a header real libcryptsetup writes
 * without integrity is refused; unlock on a host without device-mapper fails with a clear error
 * and leaves the file as it was. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <libcryptsetup.h>
#include <openssl/sha.h>

#include "conclave/disk.h"
#include "conclave/util.h"
#include "swtpm_harness.h"

#define FIXTURE	  "tests/data/luks2/state-header.bin"
#define DISK_SIZE (8u * 1024u * 1024u)

static char dir[] = "/tmp/conclave-disk-test-XXXXXX";
static uint8_t cluster[32], node[32];

static void make_file(const char *path, const uint8_t *head, size_t head_len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
	if (head_len)
		assert_int_equal(pwrite(fd, head, head_len, 0), (ssize_t)head_len);
	close(fd);
}

static void file_digest(const char *path, uint8_t out[32])
{
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(read_file(path, DISK_SIZE, &buf, &len), 0);
	SHA256(buf, len, out);
	free(buf);
}

static void path_in(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

static void a_blank_disk_gets_a_fresh_random_uuid(void **state)
{
	struct disk_config c = { .node_id = node };
	struct disk_probe p1, p2;
	struct diag d = { { 0 } };
	char path[256];

	path_in(path, sizeof(path), "blank.img");
	make_file(path, NULL, 0);
	c.dev = path;
	assert_int_equal(disk_probe(&c, &p1, &d), 0);
	assert_int_equal(p1.state, DISK_BLANK);
	assert_int_equal(p1.uuid[6] >> 4, 4); /* version 4 */
	assert_int_equal(disk_probe(&c, &p2, &d), 0);
	assert_memory_not_equal(p1.uuid, p2.uuid, 16);
}

static void foreign_data_is_never_taken_for_blank(void **state)
{
	struct disk_config c = { .node_id = node };
	struct disk_probe p;
	struct diag d = { { 0 } };
	uint8_t junk[512], before[32], after[32];
	char path[256];

	memset(junk, 0, sizeof(junk));
	memcpy(junk + 1024 % sizeof(junk), "some file system", 16);
	path_in(path, sizeof(path), "foreign.img");
	make_file(path, junk, sizeof(junk));
	c.dev = path;
	file_digest(path, before);
	assert_int_equal(disk_probe(&c, &p, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "not a conclave state disk: not formatting it"));
	file_digest(path, after);
	assert_memory_equal(before, after, 32);
}

static void the_real_state_disk_is_ready_and_belongs_to_its_node(void **state)
{
	struct disk_config c = { .node_id = node, .cluster_id = cluster };
	struct disk_probe p;
	struct diag d = { { 0 } };
	char fixture[4096], path[256], hex[33];
	uint8_t *hdr = NULL, other[32];
	size_t len = 0;

	assert_int_equal(
	    read_file(test_path(FIXTURE, fixture, sizeof(fixture)), LUKS2_HEADER_BYTES, &hdr, &len),
	    0);
	path_in(path, sizeof(path), "state.img");
	make_file(path, hdr, len);
	free(hdr);
	c.dev = path;
	assert_int_equal(disk_probe(&c, &p, &d), 0);
	assert_int_equal(p.state, DISK_READY);
	hex_encode(p.uuid, 16, hex);
	assert_string_equal(hex, "c3c0149d83dd46549bd6cdee8c2aad17");
	/* Moved to another node: refused before anything asks for a key. */
	memset(other, 0x44, sizeof(other));
	c.node_id = other;
	assert_int_equal(disk_probe(&c, &p, &d), -EPERM);
	assert_non_null(strstr(d.msg, "belongs to node"));
}

static void unlock_without_device_mapper_fails_and_changes_nothing(void **state)
{
	struct disk_config c = { .node_id = node, .cluster_id = cluster };
	struct disk_probe p;
	struct diag d = { { 0 } };
	struct secret *key = secret_random(DISK_KEY_LEN), *short_key = secret_random(16);
	char path[256], mnt[256];
	uint8_t before[32], after[32];

	if (system("grep -q device-mapper /proc/misc") == 0)
		skip(); /* a host with device-mapper: the VM tier tests the real thing */
	path_in(path, sizeof(path), "state.img");
	path_in(mnt, sizeof(mnt), "mnt");
	c.dev = path;
	c.mountpoint = mnt;
	c.name = "conclave-test-state";
	assert_int_equal(disk_probe(&c, &p, &d), 0);
	file_digest(path, before);
	assert_int_equal(disk_unlock(&c, &p, short_key, &d), -EINVAL);
	assert_true(disk_unlock(&c, &p, key, &d) < 0);
	print_message("# unlock on this host: %s\n", d.msg);
	assert_true(d.msg[0] != '\0');
	file_digest(path, after);
	assert_memory_equal(before, after, 32);
	assert_int_equal(access(mnt, F_OK), -1); /* nothing mounted, nothing created */
	secret_free(key);
	secret_free(short_key);
}

/* A header as real libcryptsetup writes it with our layout and label, but without integrity:
 * the downgrade a host could hand a node. */
static void a_real_header_without_integrity_is_refused(void **state)
{
	struct crypt_pbkdf_type pbkdf = { .type = CRYPT_KDF_PBKDF2,
					  .hash = "sha256",
					  .iterations = 1000,
					  .flags = CRYPT_PBKDF_NO_BENCHMARK };
	struct crypt_params_luks2 params = { .pbkdf = &pbkdf,
					     .sector_size = LUKS2_SECTOR_SIZE,
					     .label = LUKS2_LABEL };
	struct disk_config c = { .node_id = node };
	struct crypt_device *cd = NULL;
	struct disk_probe p;
	struct diag d = { { 0 } };
	char path[256], token[256];
	uint8_t vk[64];

	memset(vk, 7, sizeof(vk));
	path_in(path, sizeof(path), "nointegrity.img");
	make_file(path, NULL, 0);
	assert_int_equal(crypt_init(&cd, path), 0);
	assert_int_equal(crypt_set_metadata_size(cd, LUKS2_HDR_SIZE, LUKS2_KEYSLOTS_SIZE), 0);
	assert_int_equal(crypt_set_data_offset(cd, LUKS2_DATA_OFFSET / 512), 0);
	assert_int_equal(crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", NULL, (const char *)vk,
				      sizeof(vk), &params),
			 0);
	assert_int_equal(
	    crypt_keyslot_add_by_volume_key(cd, 0, (const char *)vk, sizeof(vk), "passphrase", 10),
	    0);
	assert_int_equal(luks2_token_json(cluster, node, token, sizeof(token)), 0);
	assert_int_equal(crypt_token_json_set(cd, 0, token), 0);
	crypt_free(cd);
	c.dev = path;
	assert_int_equal(disk_probe(&c, &p, &d), -EBADMSG);
	print_message("# %s\n", d.msg);
	assert_non_null(strstr(d.msg, "no integrity protection"));
}

static void no_device_has_an_unknown_serial(void **state)
{
	char dev[64];

	assert_int_equal(disk_find_by_serial("conclave-no-such-serial", dev, sizeof(dev)), -ENOENT);
}

static int setup(void **state)
{
	assert_non_null(mkdtemp(dir));
	memset(cluster, 0x11, sizeof(cluster));
	memset(node, 0x22, sizeof(node));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_blank_disk_gets_a_fresh_random_uuid),
		cmocka_unit_test(foreign_data_is_never_taken_for_blank),
		cmocka_unit_test(the_real_state_disk_is_ready_and_belongs_to_its_node),
		cmocka_unit_test(unlock_without_device_mapper_fails_and_changes_nothing),
		cmocka_unit_test(a_real_header_without_integrity_is_refused),
		cmocka_unit_test(no_device_has_an_unknown_serial),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
