// SPDX-License-Identifier: Apache-2.0
/* conclave-cni: the chained CNI plugin. The container runtime runs it with CNI_* variables and
 * the network configuration on stdin; it prints the result or the CNI error object on stdout
 * (docs/cni.md). Everything but reading stdin and printing is in cniplugin.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conclave/cniplugin.h"

static const char *env(const char *name)
{
	return getenv(name);
}

/* All of stdin, at most CNI_MAX_INPUT bytes (+1 so that a longer input is seen as such). */
static char *read_stdin(size_t *len, struct cni_error *err)
{
	size_t cap = CNI_MAX_INPUT + 1;
	char *buf = malloc(cap);
	ssize_t r;

	*len = 0;
	if (!buf) {
		cni_fail(err, CNI_ERR_IO, "out of memory");
		return NULL;
	}
	while (*len < cap && (r = read(STDIN_FILENO, buf + *len, cap - *len)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cni_fail(err, CNI_ERR_IO, "cannot read the configuration from stdin: %s",
				 strerror(errno));
			free(buf);
			return NULL;
		}
		*len += (size_t)r;
	}
	return buf;
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "conclave-cni: a chained CNI plugin (CNI 0.4.0, 1.0.0, 1.1.0). Container runtimes run\n"
	    "it from a conflist after the plugin that creates the pod's veth (bridge, ptp): it\n"
	    "registers the pod with the conclave datapath and attaches the per-pod eBPF program\n"
	    "to the pod's host-side veth. Configuration: {\"type\": \"conclave-cni\", "
	    "\"pinRoot\":\n"
	    "\"/sys/fs/bpf/conclave\"}. See docs/cni.md.\n");
}

int main(int argc, char **argv)
{
	struct cni_error err = { 0 };
	struct cni_env e;
	char version[16] = "", *in = NULL, *out = NULL;
	size_t len = 0;

	if (argc > 1 || (!getenv("CNI_COMMAND") && isatty(STDIN_FILENO))) {
		usage();
		return argc > 1 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? 2 : 0;
	}
	if (cni_env_parse(&e, env, &err) == 0 && (in = read_stdin(&len, &err)))
		cni_plugin_run(&e, in, len, &out, version, &err);
	free(in);
	if (err.code) {
		out = cni_error_text(version, &err);
		printf("%s\n", out ? out : "{\"code\": 5, \"msg\": \"out of memory\"}");
		free(out);
		return 1;
	}
	if (out)
		printf("%s\n", out);
	free(out);
	return fflush(stdout) == 0 ? 0 : 1;
}
