// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "swtpm_harness.h"

const char *test_path(const char *rel, char *buf, size_t len)
{
	const char *root = getenv("CONCLAVE_ROOT");

	snprintf(buf, len, "%s/%s", root ? root : ".", rel);
	return buf;
}

const char *build_path(const char *rel, char *buf, size_t len)
{
	const char *b = getenv("CONCLAVE_BUILD");

	snprintf(buf, len, "%s/%s", b ? b : "build", rel);
	return buf;
}

/* Run a shell command, capturing its first output line into out (if given). */
static int run(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t outlen, const char *fmt, ...)
{
	char cmd[4 * PATH_MAX];
	va_list ap;
	FILE *f;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	if (!f)
		return -errno;
	if (out) {
		if (!fgets(out, (int)outlen, f))
			out[0] = '\0';
		out[strcspn(out, "\n")] = '\0';
	}
	while (fgetc(f) != EOF)
		;
	st = pclose(f);
	return (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? 0 : -EIO;
}

static int start(struct swtpm *t)
{
	char tool[PATH_MAX];

	test_path("tests/tools/swtpm-env", tool, sizeof(tool));
	return run(t->tcti, sizeof(t->tcti), "'%s' start '%s'", tool, t->dir);
}

int swtpm_start(struct swtpm *t)
{
	const char *tmp = getenv("TMPDIR");

	memset(t, 0, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "%s/conclave-swtpm-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(t->dir))
		return -errno;
	snprintf(t->ca, sizeof(t->ca), "%s/ca/swtpm-localca-rootca-cert.pem", t->dir);
	snprintf(t->issuer, sizeof(t->issuer), "%s/ca/issuercert.pem", t->dir);
	return start(t);
}

int swtpm_stop(struct swtpm *t)
{
	char tool[PATH_MAX];

	test_path("tests/tools/swtpm-env", tool, sizeof(tool));
	return run(NULL, 0, "'%s' stop '%s'", tool, t->dir);
}

int swtpm_restart(struct swtpm *t)
{
	int ret = swtpm_stop(t);

	return ret < 0 ? ret : start(t);
}

int swtpm_power_loss(struct swtpm *t)
{
	char tool[PATH_MAX];
	int ret;

	test_path("tests/tools/swtpm-env", tool, sizeof(tool));
	ret = run(NULL, 0, "'%s' kill '%s'", tool, t->dir);
	return ret < 0 ? ret : start(t);
}

int swtpm_snapshot(struct swtpm *t, const char *name)
{
	return run(NULL, 0, "rm -rf '%s/snap-%s' && cp -a '%s/state' '%s/snap-%s'", t->dir, name,
		   t->dir, t->dir, name);
}

int swtpm_restore(struct swtpm *t, const char *name)
{
	return run(NULL, 0, "rm -rf '%s/state' && cp -a '%s/snap-%s' '%s/state'", t->dir, t->dir,
		   name, t->dir);
}

void swtpm_destroy(struct swtpm *t)
{
	if (!t->dir[0])
		return;
	swtpm_stop(t);
	run(NULL, 0, "rm -rf '%s'", t->dir);
	t->dir[0] = '\0';
}

int test_ms(int ms)
{
	const char *env = getenv("CONCLAVE_TIME_SCALE");
	long scale = env ? strtol(env, NULL, 10) : 1;

	return scale > 1 && scale <= 100 ? ms * (int)scale : ms;
}
