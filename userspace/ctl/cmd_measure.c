// SPDX-License-Identifier: Apache-2.0
/* measure: predict the PCRs a node image will produce, as measurements ready to sign. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conclave/eventlog.h"
#include "conclave/evidence.h"
#include "conclave/measure.h"
#include "conclave/util.h"
#include "ctl.h"

#define IMAGE_MAX      (512u << 20)
#define REFERENCE_NAME "ovmf-reference.bin"

static void measure_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conclavectl measure --out FILE [--reference-log FILE] IMAGE\n"
	    "Predict the SHA-256 PCRs 0-9 and 11-14 the Unified Kernel Image IMAGE produces when\n"
	    "OVMF boots it (QEMU -kernel), and write them as measurements JSON with the predicted\n"
	    "event sequence; review it, then sign it with 'conclavectl policy sign'.\n\n"
	    "  --out FILE            where to write the measurements ('-' for stdout)\n"
	    "  --reference-log FILE  event log (raw TCG2, or evidence that carries one) of a\n"
	    "                        reference boot of a UKI on the same OVMF build and QEMU\n"
	    "                        configuration; its firmware events give PCRs 0-3 and 5-8.\n"
	    "                        Default: data/%s next to the build, or\n"
	    "                        /usr/share/conclave/%s\n",
	    REFERENCE_NAME, REFERENCE_NAME);
}

/* The reference shipped with conclave: <exe dir>/../data or <exe dir>/../share/conclave.
 * out has PATH_MAX bytes. */
static int default_reference(char *out)
{
	static const char *const rel[] = { "../data/", "../share/conclave/" };
	char exe[PATH_MAX], path[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return -ENOENT;
	exe[n] = '\0';
	dirname(exe);
	for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
		snprintf(path, sizeof(path), "%s/%s%s", exe, rel[i], REFERENCE_NAME);
		if (realpath(path, out) && access(out, R_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

/* A raw log, or the log inside an evidence document (a reference node's attestation). */
static int load_reference(const char *path, uint8_t **buf, struct eventlog *log)
{
	struct diag d = { { 0 } };
	const uint8_t *p;
	size_t len, n;
	struct evidence ev;

	if (read_input("reference log", path, EVIDENCE_MAX_SIZE, buf, &len) < 0)
		return -EINVAL;
	p = *buf;
	n = len;
	if (len >= 4 && !memcmp(*buf, "CEVD", 4)) {
		if (evidence_decode(*buf, len, &ev, &d) < 0 || !ev.event_log.p) {
			fprintf(stderr, "conclavectl: reference %s: %s\n", path,
				d.msg[0] ? d.msg : "the evidence carries no event log");
			return -EINVAL;
		}
		p = ev.event_log.p;
		n = ev.event_log.len;
	}
	if (eventlog_parse(p, n, log, &d) < 0) {
		fprintf(stderr, "conclavectl: reference log %s: %s\n", path, d.msg);
		return -EINVAL;
	}
	return 0;
}

static void print_summary(const struct policy *p, const char *out, const char *ref)
{
	char hex[65];

	printf("predicted from the image and reference boot %s:\n", ref);
	for (int i = 0; i < POLICY_PCR_COUNT; i++) {
		if (!p->pcrs[i].set)
			continue;
		hex_encode(p->pcrs[i].expected, 32, hex);
		printf("  PCR %-2d %s\n", i, hex);
	}
	printf("wrote %s (%zu events); review it, then sign it: conclavectl policy sign --key KEY "
	       "--in %s --out POLICY\n",
	       out, p->n_reference, out);
}

int cmd_measure(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "reference-log", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *out = NULL, *ref_path = NULL;
	char def[PATH_MAX], *json = NULL;
	uint8_t *image = NULL, *ref_buf = NULL;
	struct eventlog ref = { 0 };
	struct policy p = { 0 };
	struct diag d = { { 0 } };
	size_t len;
	int c, ret = EXIT_USAGE;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'r': ref_path = optarg; break;
		case 'h': measure_usage(stdout); return EXIT_OK;
		default: measure_usage(stderr); return EXIT_USAGE;
		}
	}
	if (!out || optind != argc - 1) {
		measure_usage(stderr);
		return EXIT_USAGE;
	}
	if (!ref_path) {
		if (default_reference(def) < 0) {
			fprintf(stderr, "conclavectl: no default %s found; pass --reference-log\n",
				REFERENCE_NAME);
			return EXIT_USAGE;
		}
		ref_path = def;
	}
	if (load_reference(ref_path, &ref_buf, &ref) < 0)
		goto out;
	if (read_input("image", argv[optind], IMAGE_MAX, &image, &len) < 0)
		goto out;
	ret = EXIT_REFUSED;
	if (measure_predict(image, len, &ref, &p, &d) < 0) {
		fprintf(stderr, "conclavectl: measure %s: %s\n", argv[optind], d.msg);
		goto out;
	}
	if (policy_to_json(&p, &json) < 0) {
		fprintf(stderr, "conclavectl: cannot serialize the measurements\n");
		goto out;
	}
	if (write_output("measurements", out, json, strlen(json), 0644) < 0)
		goto out;
	if (strcmp(out, "-"))
		print_summary(&p, out, ref_path);
	ret = EXIT_OK;
out:
	policy_free(&p);
	eventlog_free(&ref);
	free(json);
	free(image);
	free(ref_buf);
	return ret;
}
