// SPDX-License-Identifier: Apache-2.0
/* Kernel modules through libkmod: state, lookup in modules.dep, insertion with dependencies.
 * libkmod's own log lines are kept (the last error) instead of going to stderr, so every
 * failure reaches the caller as one diag. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <syslog.h>
#include <unistd.h>

#include <libkmod.h>

#include "conclave/modules.h"

struct modules {
	struct kmod_ctx *ctx;
	char dir[PATH_MAX];
	char log[256]; /* libkmod's last error line */
};

static void keep_log(void *data, int priority, const char *file, int line, const char *fn,
		     const char *format, va_list args) __attribute__((format(printf, 6, 0)));
static void keep_log(void *data, int priority, const char *file, int line, const char *fn,
		     const char *format, va_list args)
{
	struct modules *m = data;
	size_t n;

	vsnprintf(m->log, sizeof(m->log), format, args);
	n = strlen(m->log);
	while (n > 0 && m->log[n - 1] == '\n')
		m->log[--n] = '\0';
}

int modules_open(struct modules **out, const char *dir, struct diag *d)
{
	struct modules *m = calloc(1, sizeof(*m));
	struct utsname u;
	int n;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	if (dir) {
		n = snprintf(m->dir, sizeof(m->dir), "%s", dir);
	} else {
		uname(&u);
		n = snprintf(m->dir, sizeof(m->dir), "/lib/modules/%s", u.release);
	}
	if (n < 0 || (size_t)n >= sizeof(m->dir)) {
		diag_set(d, "module directory name too long");
		free(m);
		return -ENAMETOOLONG;
	}
	m->ctx = kmod_new(m->dir, NULL);
	if (!m->ctx) {
		diag_set(d, "libkmod: cannot open a context on %s", m->dir);
		free(m);
		return -ENOMEM;
	}
	kmod_set_log_priority(m->ctx, LOG_ERR);
	kmod_set_log_fn(m->ctx, keep_log, m);
	*out = m;
	return 0;
}

void modules_close(struct modules *m)
{
	if (!m)
		return;
	kmod_unref(m->ctx);
	free(m);
}

const char *modules_dir(const struct modules *m)
{
	return m->dir;
}

bool modules_loadable(void)
{
	return access("/proc/modules", F_OK) == 0;
}

const char *module_state_name(enum module_state st)
{
	switch (st) {
	case MODULE_ABSENT: return "absent";
	case MODULE_BUILTIN: return "built in";
	case MODULE_LIVE: return "loaded";
	case MODULE_COMING: return "loading";
	case MODULE_GOING: return "unloading";
	}
	return "unknown";
}

int modules_state(struct modules *m, const char *name, enum module_state *st)
{
	struct kmod_module *mod;
	int r;

	r = kmod_module_new_from_name(m->ctx, name, &mod);
	if (r < 0)
		return r;
	r = kmod_module_get_initstate(mod);
	kmod_module_unref(mod);
	switch (r) {
	case KMOD_MODULE_BUILTIN: *st = MODULE_BUILTIN; return 0;
	case KMOD_MODULE_LIVE: *st = MODULE_LIVE; return 0;
	case KMOD_MODULE_GOING: *st = MODULE_GOING; return 0;
	case KMOD_MODULE_COMING:
		/* libkmod says "coming" for a /sys/module directory without initstate. A kernel
		 * that cannot load modules has those only for built-in code with parameters. */
		*st = modules_loadable() ? MODULE_COMING : MODULE_BUILTIN;
		return 0;
	case -ENOENT: *st = MODULE_ABSENT; return 0;
	default: return r < 0 ? r : -EINVAL;
	}
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The module (not an alias target) named name in m's directory, or -ENOENT with a diag. */
static int lookup(struct modules *m, const char *name, struct kmod_module **mod, struct diag *d)
{
	struct kmod_list *list = NULL;
	char dep[PATH_MAX + 16];
	int r;

	if (!is_dir(m->dir)) {
		diag_set(d, "module %s: no module directory %s%s", name, m->dir,
			 modules_loadable() ? "" : " (this kernel cannot load modules)");
		return -ENOENT;
	}
	m->log[0] = '\0';
	r = kmod_module_new_from_lookup(m->ctx, name, &list);
	if (r < 0) {
		diag_set(d, "module %s: lookup in %s failed: %s%s%s", name, m->dir, strerror(-r),
			 m->log[0] ? ": " : "", m->log);
		return r;
	}
	if (!list) {
		snprintf(dep, sizeof(dep), "%s/modules.dep", m->dir);
		if (access(dep, F_OK) != 0)
			diag_set(d, "module %s: %s has no modules.dep (depmod was not run there)",
				 name, m->dir);
		else
			diag_set(d, "module %s not found in %s", name, dep);
		return -ENOENT;
	}
	*mod = kmod_module_get_module(list);
	kmod_module_unref_list(list);
	return 0;
}

int modules_find(struct modules *m, const char *name, char *path, size_t size, struct diag *d)
{
	struct kmod_module *mod;
	const char *p;
	int r;

	r = lookup(m, name, &mod, d);
	if (r < 0)
		return r;
	p = kmod_module_get_path(mod);
	if (snprintf(path, size, "%s", p ? p : "") >= (int)size)
		r = -ENAMETOOLONG;
	kmod_module_unref(mod);
	return r;
}

/* print_action has no user data: what the probe tried, per thread. */
static __thread char tried[64];
static __thread unsigned int tried_count;

static void note_action(struct kmod_module *mod, bool install, const char *options)
{
	snprintf(tried, sizeof(tried), "%s", kmod_module_get_name(mod));
	tried_count++;
}

static const char *insert_hint(int err)
{
	switch (err) {
	case -EPERM: return " (needs CAP_SYS_MODULE; or module loading is disabled or locked down)";
	case -ENOEXEC: return " (not a module for this kernel)";
	case -ENODEV: return " (no such device here)";
	case -EKEYREJECTED: return " (signature rejected)";
	default: return "";
	}
}

int modules_ensure(struct modules *m, const char *name, unsigned int *inserted, struct diag *d)
{
	struct kmod_module *mod;
	enum module_state st;
	struct utsname u;
	int r;

	if (inserted)
		*inserted = 0;
	if (!m) {
		r = modules_open(&m, NULL, d);
		if (r < 0)
			return r;
		r = modules_ensure(m, name, inserted, d);
		modules_close(m);
		return r;
	}
	r = modules_state(m, name, &st);
	if (r < 0) {
		diag_set(d, "module %s: cannot read its state: %s", name, strerror(-r));
		return r;
	}
	if (st == MODULE_BUILTIN || st == MODULE_LIVE || st == MODULE_COMING)
		return 0;
	if (st == MODULE_GOING) {
		diag_set(d, "module %s is being unloaded", name);
		return -EBUSY;
	}
	if (!modules_loadable()) {
		uname(&u);
		diag_set(d,
			 "module %s is not built into kernel %s, which cannot load modules "
			 "(no /proc/modules)",
			 name, u.release);
		return -EOPNOTSUPP;
	}
	r = lookup(m, name, &mod, d);
	if (r < 0)
		return r;
	tried[0] = '\0';
	tried_count = 0;
	m->log[0] = '\0';
	r = kmod_module_probe_insert_module(mod, KMOD_PROBE_IGNORE_COMMAND, NULL, NULL, NULL,
					    note_action);
	kmod_module_unref(mod);
	if (inserted)
		*inserted = tried_count;
	if (r > 0)
		r = -EPERM; /* stopped by a flag we do not pass: never expected */
	if (r < 0) {
		diag_set(d, "module %s: inserting %s from %s failed: %s%s%s%s", name,
			 tried[0] ? tried : name, m->dir, strerror(-r), insert_hint(r),
			 m->log[0] ? "; libkmod: " : "", m->log);
		if (inserted && tried_count > 0)
			*inserted = tried_count - 1;
		return r;
	}
	return 0;
}
