// SPDX-License-Identifier: Apache-2.0
/* Secret buffers and the hardening of processes that hold them, checked from what the kernel
 * reports: the mapping's flags in /proc/self/smaps, PR_GET_DUMPABLE and RLIMIT_CORE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "conclave/secret.h"

/* The VmFlags line of the mapping that holds addr, or "" if none. */
static void vm_flags_of(const void *addr, char *out, size_t cap)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool inside = false;

	out[0] = '\0';
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' '))
			inside = (unsigned long)addr >= lo && (unsigned long)addr < hi;
		else if (inside && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, cap, "%s", line + 8);
			break;
		}
	}
	fclose(f);
}

static void secret_memory_is_locked_and_left_out_of_core_dumps(void **state)
{
	struct secret *s = secret_random(32);
	char flags[256];

	assert_non_null(s);
	vm_flags_of(s->data, flags, sizeof(flags));
	print_message("# VmFlags of a secret: %s", flags);
#if defined(__SANITIZE_ADDRESS__) || defined(__has_feature)
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
	/* AddressSanitizer intercepts mlock as a no-op: the lock is checked in the normal build. */
#define SECRET_TEST_ASAN 1
#endif
#endif
#ifndef SECRET_TEST_ASAN
	assert_non_null(strstr(flags, " lo")); /* mlock'ed: never swapped */
#endif
	assert_non_null(strstr(flags, " dd")); /* MADV_DONTDUMP */
	secret_free(s);
}

static void hardened_process_is_not_dumpable_and_dumps_no_core(void **state)
{
	struct rlimit r;

	assert_int_equal(secret_harden_process(), 0);
	assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	assert_int_equal(getrlimit(RLIMIT_CORE, &r), 0);
	assert_true(r.rlim_cur == 0 && r.rlim_max == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(secret_memory_is_locked_and_left_out_of_core_dumps),
		cmocka_unit_test(hardened_process_is_not_dumpable_and_dumps_no_core),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
