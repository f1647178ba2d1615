// SPDX-License-Identifier: Apache-2.0
/* Unit tests for the kernel-feature table, the device-mapper target list parser, and module
 * lookup through libkmod in a module directory (Debian's, when installed). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <linux/dm-ioctl.h>

#include "conclave/features.h"
#include "conclave/modules.h"
#include "conclave/util.h"

static void every_feature_is_named_explained_and_probed(void **state)
{
	static const char *const expected[] = { "wireguard", "dm-crypt", "dm-integrity", "tpm",
						"bpf",	     "tc-bpf",	 "btf" };

	assert_int_equal(features_count, ARRAY_SIZE(expected));
	for (size_t i = 0; i < features_count; i++) {
		const struct feature *f = &features[i];

		assert_string_equal(f->name, expected[i]);
		assert_ptr_equal(feature_find(f->name), f);
		assert_non_null(f->purpose);
		assert_true(strncmp(f->config, "CONFIG_", 7) == 0);
		assert_non_null(f->probe);
		for (size_t j = 0; f->modules[j]; j++) /* module names, not file names */
			assert_null(strchr(f->modules[j], '-'));
	}
	assert_null(feature_find("wireguard "));
	assert_null(feature_find("dm_crypt"));
	assert_null(feature_find(""));
}

/* Append one dm_target_versions entry at *off, 8-byte aligned as the kernel lays them out;
 * returns the entry's offset. */
static size_t put_target(uint8_t *buf, size_t *off, const char *name, uint32_t a, uint32_t b,
			 uint32_t c)
{
	struct dm_target_versions tv = { .next = 0, .version = { a, b, c } };
	size_t at = *off;

	memcpy(buf + at, &tv, sizeof(tv));
	memcpy(buf + at + sizeof(tv), name, strlen(name) + 1);
	*off = (at + sizeof(tv) + strlen(name) + 1 + 7) & ~(size_t)7;
	return at;
}

static void set_next(uint8_t *buf, size_t at, uint32_t next)
{
	memcpy(buf + at + offsetof(struct dm_target_versions, next), &next, sizeof(next));
}

static size_t three_targets(uint8_t *buf)
{
	size_t off = 0, a, b, c;

	memset(buf, 0, 256);
	a = put_target(buf, &off, "linear", 1, 4, 0);
	b = put_target(buf, &off, "integrity", 1, 10, 0);
	c = put_target(buf, &off, "crypt", 1, 24, 0);
	set_next(buf, a, (uint32_t)(b - a));
	set_next(buf, b, (uint32_t)(c - b));
	return off;
}

static void dm_target_list_finds_each_target_and_its_version(void **state)
{
	uint8_t buf[256];
	size_t len = three_targets(buf);
	unsigned int v[3];

	assert_int_equal(dm_versions_find(buf, len, "crypt", v), 0);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], 24);
	assert_int_equal(dm_versions_find(buf, len, "integrity", v), 0);
	assert_int_equal(v[1], 10);
	assert_int_equal(dm_versions_find(buf, len, "linear", v), 0);
	assert_int_equal(dm_versions_find(buf, len, "verity", v), -ENOENT);
	assert_int_equal(dm_versions_find(buf, len, "cryp", v), -ENOENT);
	assert_int_equal(dm_versions_find(buf, 0, "crypt", v), -ENOENT);
}

static void dm_target_list_refuses_malformed_lists(void **state)
{
	uint8_t buf[256];
	size_t len = three_targets(buf);
	unsigned int v[3];

	/* cut inside the last name: no NUL inside the buffer */
	assert_int_equal(dm_versions_find(buf, len - 6, "crypt", v), -EBADMSG);
	/* cut inside a header */
	assert_int_equal(dm_versions_find(buf, 10, "crypt", v), -EBADMSG);
	/* next past the end */
	set_next(buf, 0, 4096);
	assert_int_equal(dm_versions_find(buf, len, "crypt", v), -EBADMSG);
	/* next inside the entry's own name: no progress guarantee */
	set_next(buf, 0, 8);
	assert_int_equal(dm_versions_find(buf, len, "crypt", v), -EBADMSG);
	/* the first entry still matches before the bad link is followed */
	assert_int_equal(dm_versions_find(buf, len, "linear", v), 0);
}

static void a_missing_module_directory_is_named(void **state)
{
	struct diag d = { { 0 } };
	struct modules *m;
	char path[PATH_MAX];

	assert_int_equal(modules_open(&m, "/nonexistent/modules/9.9", &d), 0);
	assert_string_equal(modules_dir(m), "/nonexistent/modules/9.9");
	assert_int_equal(modules_find(m, "wireguard", path, sizeof(path), &d), -ENOENT);
	assert_non_null(strstr(d.msg, "wireguard"));
	assert_non_null(strstr(d.msg, "/nonexistent/modules/9.9"));
	modules_close(m);
}

static void a_name_that_is_no_module_is_absent(void **state)
{
	enum module_state st = MODULE_LIVE;
	struct diag d = { { 0 } };
	struct modules *m;

	assert_int_equal(modules_open(&m, NULL, &d), 0);
	assert_int_equal(modules_state(m, "conclave_no_such_module", &st), 0);
	assert_int_equal(st, MODULE_ABSENT);
	assert_string_equal(module_state_name(st), "absent");
	modules_close(m);
}

/* A Debian kernel's module directory with wireguard, when one is installed. */
static int debian_module_dir(char *dir, size_t size)
{
	char probe[PATH_MAX];
	struct dirent *e;
	DIR *dp = opendir("/lib/modules");
	int ret = -ENOENT;

	if (!dp)
		return ret;
	while (ret < 0 && (e = readdir(dp))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(probe, sizeof(probe), "/lib/modules/%s/kernel/drivers/net/wireguard",
			 e->d_name);
		if (access(probe, F_OK) != 0)
			continue;
		snprintf(probe, sizeof(probe), "/lib/modules/%s/modules.dep.bin", e->d_name);
		if (access(probe, R_OK) == 0) {
			snprintf(dir, size, "/lib/modules/%s", e->d_name);
			ret = 0;
		}
	}
	closedir(dp);
	return ret;
}

static void modules_are_found_through_modules_dep(void **state)
{
	struct diag d = { { 0 } };
	char dir[PATH_MAX], path[PATH_MAX];
	struct modules *m;
	size_t n;

	if (debian_module_dir(dir, sizeof(dir)) < 0)
		skip(); /* linux-image-amd64 not installed */
	assert_int_equal(modules_open(&m, dir, &d), 0);
	assert_int_equal(modules_find(m, "wireguard", path, sizeof(path), &d), 0);
	n = strlen(path);
	assert_true(n > 13 && !strcmp(path + n - 13, "/wireguard.ko"));
	assert_true(strncmp(path, dir, strlen(dir)) == 0);
	/* '-' and '_' name the same module; the file keeps its '-' */
	assert_int_equal(modules_find(m, "dm-crypt", path, sizeof(path), &d), 0);
	assert_non_null(strstr(path, "/dm-crypt.ko"));
	/* built in (modules.builtin): found, no file */
	assert_int_equal(modules_find(m, "tpm_crb", path, sizeof(path), &d), 0);
	assert_string_equal(path, "");
	assert_int_equal(modules_find(m, "conclave_no_such_module", path, sizeof(path), &d),
			 -ENOENT);
	assert_non_null(strstr(d.msg, "not found in"));
	assert_non_null(strstr(d.msg, "modules.dep"));
	modules_close(m);
}

static void a_kernel_without_module_support_refuses_to_load(void **state)
{
	struct diag d = { { 0 } };

	if (modules_loadable())
		skip(); /* this kernel could load it: nothing to test without changing the host */
	assert_int_equal(modules_ensure(NULL, "conclave_no_such_module", NULL, &d), -EOPNOTSUPP);
	assert_non_null(strstr(d.msg, "cannot load modules"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_feature_is_named_explained_and_probed),
		cmocka_unit_test(dm_target_list_finds_each_target_and_its_version),
		cmocka_unit_test(dm_target_list_refuses_malformed_lists),
		cmocka_unit_test(a_missing_module_directory_is_named),
		cmocka_unit_test(a_name_that_is_no_module_is_absent),
		cmocka_unit_test(modules_are_found_through_modules_dep),
		cmocka_unit_test(a_kernel_without_module_support_refuses_to_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
