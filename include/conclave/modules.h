/* SPDX-License-Identifier: Apache-2.0 */
/* Kernel modules through libkmod: is a module built in or loaded, and if not, load it with its
 * dependencies from a module directory (by default the running kernel's,
 * /lib/modules/$(uname -r), whose modules.dep etc. depmod wrote). Named modules.h, not kmod.h,
 * so that it never reads as libkmod's own header. */
#ifndef CONCLAVE_MODULES_H
#define CONCLAVE_MODULES_H

#include <stdbool.h>
#include <stddef.h>

#include "conclave/diag.h"

enum module_state {
	MODULE_ABSENT,	/* neither built in nor loaded */
	MODULE_BUILTIN, /* built into the kernel */
	MODULE_LIVE,	/* loaded and initialised */
	MODULE_COMING,	/* being loaded */
	MODULE_GOING,	/* being unloaded */
};

struct modules; /* a libkmod context on one module directory */

/* Open dir (NULL: /lib/modules/$(uname -r)). A missing directory is not an error here: lookups
 * then fail with a diag that names it. */
int modules_open(struct modules **m, const char *dir, struct diag *d);

void modules_close(struct modules *m);

/* The module directory m reads, e.g. "/lib/modules/6.1.0-56-amd64". */
const char *modules_dir(const struct modules *m);

/* Whether the running kernel can load modules at all (CONFIG_MODULES: /proc/modules exists). */
bool modules_loadable(void);

/* The state of module name ('-' and '_' are the same) in the running kernel. */
int modules_state(struct modules *m, const char *name, enum module_state *st);

/* "absent", "built in", "loaded", "loading", "unloading". */
const char *module_state_name(enum module_state st);

/* The file of module name (absolute path) into path; "" for a built-in module. -ENOENT, with a
 * diag naming modules.dep, if the directory has neither. */
int modules_find(struct modules *m, const char *name, char *path, size_t size, struct diag *d);

/* Make name usable: 0 if it is built in or loaded, else insert it and its dependencies (never
 * running modprobe.d install commands). *inserted (may be NULL) counts the modules inserted.
 * m may be NULL: the running kernel's directory, opened for this call. */
int modules_ensure(struct modules *m, const char *name, unsigned int *inserted, struct diag *d);

#endif
