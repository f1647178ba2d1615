/* SPDX-License-Identifier: Apache-2.0 */
/* What a node needs from its kernel, one feature at a time: what it is for, the modules that
 * provide it, and a check that it works here (not merely that a module is loaded). One table,
 * used by `conclavectl doctor` and by the agent before it relies on a feature. */
#ifndef CONCLAVE_FEATURES_H
#define CONCLAVE_FEATURES_H

#include <stdbool.h>
#include <stddef.h>

#include "conclave/modules.h"

#define FEATURE_MAX_MODULES 2

/* feature_check flags: without FEATURE_ENSURE nothing is loaded or mounted. */
enum { FEATURE_ENSURE = 1 };

struct feature_result {
	bool ok;
	char detail[512]; /* what was found, or what is missing and why */
	char remedy[256]; /* what to do about it; empty when ok */
};

struct feature {
	const char *name;    /* "wireguard" */
	const char *purpose; /* what conclave uses it for */
	const char *config;  /* the kernel option(s) that provide it */
	/* Modules that provide it (NULL-terminated): all of them, or one if any_module. */
	const char *modules[FEATURE_MAX_MODULES + 1];
	bool any_module;
	/* Whether it works here; fills r->detail, and r->remedy when it does not. */
	int (*probe)(const struct feature *f, unsigned int flags, struct feature_result *r);
	const char *probe_arg; /* e.g. the device-mapper target name */
};

extern const struct feature features[];
extern const size_t features_count;

/* The feature called name, or NULL. */
const struct feature *feature_find(const char *name);

/* Check f (loading its modules first with FEATURE_ENSURE). m: module directory (NULL: the
 * running kernel's). 0 if it works, else -errno; r says why either way. */
int feature_check(struct modules *m, const struct feature *f, unsigned int flags,
		  struct feature_result *r);

/* Find target in the data of a DM_LIST_VERSIONS reply (the bytes after struct dm_ioctl):
 * 0 and its version, -ENOENT if absent, -EBADMSG if the list is malformed. */
int dm_versions_find(const void *data, size_t len, const char *target, unsigned int version[3]);

#endif
