// SPDX-License-Identifier: Apache-2.0
/* The KMS: HKDF wiring against RFC 5869, the exact info strings, separation of keys by
 * purpose, id, node and disk, and the recovery file (private, never overwritten, checked). */
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

#include "conclave/kms.h"
#include "conclave/util.h"

static char dir[64];

static int make_dir(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/conclave-kms-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static void unhex(const char *hex, uint8_t *out, size_t want)
{
	size_t n;

	assert_int_equal(hex_decode(hex, out, want, &n), 0);
	assert_int_equal(n, want);
}

static void fill(uint8_t *b, size_t n, uint8_t from)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(from + i);
}

/* A KMS with master = 00..1f and salt = 20..3f. */
static struct kms *fixed_kms(void)
{
	struct secret *master = secret_new(KMS_MASTER_LEN), *salt = secret_new(KMS_SALT_LEN);
	struct kms *k = NULL;

	assert_non_null(master);
	assert_non_null(salt);
	fill(master->data, KMS_MASTER_LEN, 0);
	fill(salt->data, KMS_SALT_LEN, 0x20);
	assert_int_equal(kms_from_secret(master, salt, &k, NULL), 0);
	secret_free(master);
	secret_free(salt);
	return k;
}

static void hkdf_matches_rfc5869_case_1(void **state)
{
	uint8_t ikm[22], salt[13], info[10], okm[42], want[42];

	memset(ikm, 0x0b, sizeof(ikm));
	fill(salt, sizeof(salt), 0x00);
	fill(info, sizeof(info), 0xf0);
	unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b8871858"
	      "65",
	      want, sizeof(want));
	assert_int_equal(
	    kms_hkdf(ikm, sizeof(ikm), salt, sizeof(salt), info, sizeof(info), okm, sizeof(okm)),
	    0);
	assert_memory_equal(okm, want, sizeof(want));
}

static void hkdf_matches_rfc5869_case_2_long_inputs(void **state)
{
	uint8_t ikm[80], salt[80], info[80], okm[82], want[82];

	fill(ikm, sizeof(ikm), 0x00);
	fill(salt, sizeof(salt), 0x60);
	fill(info, sizeof(info), 0xb0);
	unhex("b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac78272"
	      "71cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f"
	      "1d87",
	      want, sizeof(want));
	assert_int_equal(
	    kms_hkdf(ikm, sizeof(ikm), salt, sizeof(salt), info, sizeof(info), okm, sizeof(okm)),
	    0);
	assert_memory_equal(okm, want, sizeof(want));
}

static void hkdf_matches_rfc5869_case_3_empty_salt_and_info(void **state)
{
	uint8_t ikm[22], okm[42], want[42];

	memset(ikm, 0x0b, sizeof(ikm));
	unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a"
	      "96c8",
	      want, sizeof(want));
	assert_int_equal(
	    kms_hkdf(ikm, sizeof(ikm), NULL, 0, (const uint8_t *)"", 0, okm, sizeof(okm)), 0);
	assert_memory_equal(okm, want, sizeof(want));
}

/* The documented scheme, computed by hand: HKDF(master, salt, info) with the exact string. */
static void expect_info(struct kms *k, const struct secret *key, const char *info)
{
	uint8_t master[KMS_MASTER_LEN], salt[KMS_SALT_LEN], want[KMS_KEY_MAX];

	fill(master, sizeof(master), 0);
	fill(salt, sizeof(salt), 0x20);
	assert_int_equal(kms_hkdf(master, sizeof(master), salt, sizeof(salt), (const uint8_t *)info,
				  strlen(info), want, key->len),
			 0);
	assert_memory_equal(key->data, want, key->len);
}

static void derive_uses_the_documented_info_string(void **state)
{
	struct kms *k = fixed_kms();
	struct secret *key = NULL;

	assert_int_equal(kms_derive(k, "wireguard-psk", "cluster", 32, &key, NULL), 0);
	assert_int_equal(key->len, 32);
	expect_info(k, key, "conclave/v1/wireguard-psk/cluster");
	secret_free(key);
	kms_free(k);
}

static void derive_is_deterministic_and_separated_by_purpose_and_id(void **state)
{
	struct kms *k = fixed_kms(), *k2 = fixed_kms();
	struct secret *a = NULL, *b = NULL, *c = NULL, *e = NULL;

	assert_int_equal(kms_derive(k, "ca", "cluster", 32, &a, NULL), 0);
	assert_int_equal(kms_derive(k2, "ca", "cluster", 32, &b, NULL), 0);
	assert_memory_equal(a->data, b->data, 32);
	assert_int_equal(kms_derive(k, "cb", "cluster", 32, &c, NULL), 0);
	assert_int_equal(kms_derive(k, "ca", "clusteR", 32, &e, NULL), 0);
	assert_memory_not_equal(a->data, c->data, 32);
	assert_memory_not_equal(a->data, e->data, 32);
	secret_free(a);
	secret_free(b);
	secret_free(c);
	secret_free(e);
	kms_free(k);
	kms_free(k2);
}

static void derive_refuses_bad_labels_and_lengths(void **state)
{
	struct kms *k = fixed_kms();
	struct secret *key = NULL;
	struct diag d = { { 0 } };
	char long_id[KMS_LABEL_MAX + 2];

	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	assert_int_equal(kms_derive(k, "disk", "a/b", 32, &key, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "key id"));
	assert_int_equal(kms_derive(k, "", "x", 32, &key, &d), -EINVAL);
	assert_int_equal(kms_derive(k, "a b", "x", 32, &key, &d), -EINVAL);
	assert_int_equal(kms_derive(k, "p", "caf\xc3\xa9", 32, &key, &d), -EINVAL);
	assert_int_equal(kms_derive(k, "p", "x\n", 32, &key, &d), -EINVAL);
	assert_int_equal(kms_derive(k, "p", long_id, 32, &key, &d), -EINVAL);
	long_id[KMS_LABEL_MAX] = '\0'; /* exactly the maximum is fine */
	assert_int_equal(kms_derive(k, "p", long_id, 32, &key, &d), 0);
	secret_free(key);
	assert_int_equal(kms_derive(k, "p", "x", 0, &key, &d), -EINVAL);
	assert_int_equal(kms_derive(k, "p", "x", KMS_KEY_MAX + 1, &key, &d), -EINVAL);
	kms_free(k);
}

static void disk_key_binds_node_and_uuid_in_its_info_string(void **state)
{
	struct kms *k = fixed_kms();
	uint8_t node[KMS_NODE_ID_LEN], uuid[KMS_UUID_LEN];
	struct secret *key = NULL;

	memset(node, 0xab, sizeof(node));
	fill(uuid, sizeof(uuid), 0xa0);
	assert_int_equal(kms_disk_key(k, node, uuid, &key, NULL), 0);
	assert_int_equal(key->len, KMS_DISK_KEY_LEN);
	expect_info(k, key,
		    "conclave/v1/disk/abababababababababababababababababababababababababababababab"
		    "abab/a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf");
	secret_free(key);
	kms_free(k);
}

static void disk_keys_differ_per_node_and_per_disk(void **state)
{
	struct kms *k = fixed_kms();
	uint8_t n1[KMS_NODE_ID_LEN], n2[KMS_NODE_ID_LEN], u1[KMS_UUID_LEN], u2[KMS_UUID_LEN];
	struct secret *a = NULL, *b = NULL, *c = NULL, *again = NULL;

	memset(n1, 1, sizeof(n1));
	memset(n2, 2, sizeof(n2));
	memset(u1, 0x11, sizeof(u1));
	memset(u2, 0x22, sizeof(u2));
	assert_int_equal(kms_disk_key(k, n1, u1, &a, NULL), 0);
	assert_int_equal(kms_disk_key(k, n2, u1, &b, NULL), 0); /* same disk, other node */
	assert_int_equal(kms_disk_key(k, n1, u2, &c, NULL), 0); /* same node, other disk */
	assert_int_equal(kms_disk_key(k, n1, u1, &again, NULL), 0);
	assert_memory_not_equal(a->data, b->data, KMS_DISK_KEY_LEN);
	assert_memory_not_equal(a->data, c->data, KMS_DISK_KEY_LEN);
	assert_memory_equal(a->data, again->data, KMS_DISK_KEY_LEN);
	secret_free(a);
	secret_free(b);
	secret_free(c);
	secret_free(again);
	kms_free(k);
}

static void from_secret_refuses_wrong_lengths(void **state)
{
	struct secret *short_master = secret_new(16), *salt = secret_new(KMS_SALT_LEN);
	struct secret *master = secret_new(KMS_MASTER_LEN), *long_salt = secret_new(64);
	struct kms *k = NULL;
	struct diag d = { { 0 } };

	assert_int_equal(kms_from_secret(short_master, salt, &k, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "master"));
	assert_int_equal(kms_from_secret(master, long_salt, &k, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "salt"));
	assert_int_equal(kms_from_secret(NULL, salt, &k, &d), -EINVAL);
	assert_null(k);
	secret_free(short_master);
	secret_free(salt);
	secret_free(master);
	secret_free(long_salt);
}

static void random_clusters_derive_different_keys(void **state)
{
	struct kms *a = NULL, *b = NULL;
	struct secret *ka = NULL, *kb = NULL;

	assert_int_equal(kms_new_random(&a, NULL), 0);
	assert_int_equal(kms_new_random(&b, NULL), 0);
	assert_int_equal(kms_derive(a, "p", "x", 32, &ka, NULL), 0);
	assert_int_equal(kms_derive(b, "p", "x", 32, &kb, NULL), 0);
	assert_memory_not_equal(ka->data, kb->data, 32);
	secret_free(ka);
	secret_free(kb);
	kms_free(a);
	kms_free(b);
	kms_free(NULL);
}

static void same_key(struct kms *a, struct kms *b)
{
	struct secret *ka = NULL, *kb = NULL;

	assert_int_equal(kms_derive(a, "p", "x", 32, &ka, NULL), 0);
	assert_int_equal(kms_derive(b, "p", "x", 32, &kb, NULL), 0);
	assert_memory_equal(ka->data, kb->data, 32);
	secret_free(ka);
	secret_free(kb);
}

static void recovery_file_round_trips_privately(void **state)
{
	struct kms *k = NULL, *back = NULL;
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/recovery", dir);
	assert_int_equal(kms_new_random(&k, NULL), 0);
	assert_int_equal(kms_recovery_write(k, path, NULL), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, KMS_RECOVERY_FILE_LEN);
	assert_int_equal(kms_recovery_read(path, &back, NULL), 0);
	same_key(k, back);
	kms_free(k);
	kms_free(back);
}

static void recovery_file_is_never_overwritten(void **state)
{
	struct kms *k = NULL, *back = NULL, *other = NULL;
	struct diag d = { { 0 } };
	char path[128];

	snprintf(path, sizeof(path), "%s/recovery-once", dir);
	assert_int_equal(kms_new_random(&k, NULL), 0);
	assert_int_equal(kms_new_random(&other, NULL), 0);
	assert_int_equal(kms_recovery_write(k, path, NULL), 0);
	assert_int_equal(kms_recovery_write(other, path, &d), -EEXIST);
	assert_non_null(strstr(d.msg, "never overwritten"));
	assert_int_equal(kms_recovery_read(path, &back, NULL), 0);
	same_key(k, back); /* still the first cluster's */
	kms_free(k);
	kms_free(other);
	kms_free(back);
}

static void recovery_file_readable_by_others_is_refused(void **state)
{
	struct kms *k = NULL, *back = NULL;
	struct diag d = { { 0 } };
	char path[128];

	snprintf(path, sizeof(path), "%s/recovery-open", dir);
	assert_int_equal(kms_new_random(&k, NULL), 0);
	assert_int_equal(kms_recovery_write(k, path, NULL), 0);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(kms_recovery_read(path, &back, &d), -EACCES);
	assert_null(back);
	assert_non_null(strstr(d.msg, "chmod 600"));
	kms_free(k);
}

static int write_variant(const char *name, const uint8_t *buf, size_t len, char *path)
{
	snprintf(path, 128, "%s/%s", dir, name);
	return write_file_new(path, buf, len, 0600);
}

static void recovery_file_refuses_corruption(void **state)
{
	uint8_t *good, bad[KMS_RECOVERY_FILE_LEN + 1];
	struct kms *k = NULL, *back = NULL;
	struct diag d = { { 0 } };
	char path[128];
	size_t len;

	snprintf(path, sizeof(path), "%s/recovery-src", dir);
	assert_int_equal(kms_new_random(&k, NULL), 0);
	assert_int_equal(kms_recovery_write(k, path, NULL), 0);
	assert_int_equal(read_file(path, 4096, &good, &len), 0);

	/* One hex digit of the master changed: the check value catches it. */
	memcpy(bad, good, len);
	bad[30] = bad[30] == '0' ? '1' : '0';
	assert_int_equal(write_variant("flipped", bad, len, path), 0);
	assert_int_equal(kms_recovery_read(path, &back, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "check value"));

	memcpy(bad, good, len); /* uppercase hex is not the format */
	bad[30] = 'G';
	assert_int_equal(write_variant("nonhex", bad, len, path), 0);
	assert_int_equal(kms_recovery_read(path, &back, &d), -EBADMSG);

	assert_int_equal(write_variant("truncated", good, len - 1, path), 0);
	assert_int_equal(kms_recovery_read(path, &back, &d), -EBADMSG);

	memcpy(bad, good, len);
	bad[len] = '\n';
	assert_int_equal(write_variant("longer", bad, len + 1, path), 0);
	assert_int_equal(kms_recovery_read(path, &back, &d), -EBADMSG);

	memcpy(bad, good, len);
	bad[0] = 'C';
	assert_int_equal(write_variant("header", bad, len, path), 0);
	assert_int_equal(kms_recovery_read(path, &back, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "not a conclave recovery file"));

	assert_int_equal(kms_recovery_read("/nonexistent/recovery", &back, &d), -ENOENT);
	assert_null(back);
	explicit_bzero(good, len);
	free(good);
	kms_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hkdf_matches_rfc5869_case_1),
		cmocka_unit_test(hkdf_matches_rfc5869_case_2_long_inputs),
		cmocka_unit_test(hkdf_matches_rfc5869_case_3_empty_salt_and_info),
		cmocka_unit_test(derive_uses_the_documented_info_string),
		cmocka_unit_test(derive_is_deterministic_and_separated_by_purpose_and_id),
		cmocka_unit_test(derive_refuses_bad_labels_and_lengths),
		cmocka_unit_test(disk_key_binds_node_and_uuid_in_its_info_string),
		cmocka_unit_test(disk_keys_differ_per_node_and_per_disk),
		cmocka_unit_test(from_secret_refuses_wrong_lengths),
		cmocka_unit_test(random_clusters_derive_different_keys),
		cmocka_unit_test(recovery_file_round_trips_privately),
		cmocka_unit_test(recovery_file_is_never_overwritten),
		cmocka_unit_test(recovery_file_readable_by_others_is_refused),
		cmocka_unit_test(recovery_file_refuses_corruption),
	};

	return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
