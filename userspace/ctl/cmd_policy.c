// SPDX-License-Identifier: Apache-2.0
/* policy keygen | sign | from-evidence */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/evidence.h"
#include "conclave/eventlog.h"
#include "conclave/policy.h"
#include "ctl.h"

static void policy_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conclavectl policy keygen --out PREFIX\n"
	    "       conclavectl policy sign --key FILE --in JSON --out FILE\n"
	    "       conclavectl policy from-evidence [--out FILE] EVIDENCE\n\n"
	    "keygen         create an Ed25519 policy-signing key: PREFIX.key (private, 0600) and\n"
	    "               PREFIX.pub (public); never overwrites existing files\n"
	    "sign           check a measurements JSON and sign it: --key the private key,\n"
	    "               --in the measurements file, --out the signed policy\n"
	    "from-evidence  write a measurements JSON (to --out or stdout) with every PCR value "
	    "the\n"
	    "               evidence reports and its event log as the reference boot; use it only\n"
	    "               on evidence from a node you trust, then review and sign it\n");
}

static int keygen(int argc, char **argv)
{
	static const struct option opts[] = { { "out", required_argument, NULL, 'o' },
					      { "help", no_argument, NULL, 'h' },
					      { 0 } };
	const char *prefix = NULL;
	struct diag d = { { 0 } };
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'o')
			prefix = optarg;
		else {
			policy_usage(c == 'h' ? stdout : stderr);
			return c == 'h' ? EXIT_OK : EXIT_USAGE;
		}
	}
	if (!prefix || optind != argc) {
		policy_usage(stderr);
		return EXIT_USAGE;
	}
	if (policy_keygen(prefix, &d) < 0) {
		fprintf(stderr, "conclavectl: policy keygen: %s\n", d.msg);
		return EXIT_REFUSED;
	}
	printf("wrote %s.key (keep it offline) and %s.pub\n", prefix, prefix);
	return EXIT_OK;
}

static int sign(int argc, char **argv)
{
	static const struct option opts[] = { { "key", required_argument, NULL, 'k' },
					      { "in", required_argument, NULL, 'i' },
					      { "out", required_argument, NULL, 'o' },
					      { "help", no_argument, NULL, 'h' },
					      { 0 } };
	const char *key_path = NULL, *in = NULL, *out = NULL;
	struct diag d = { { 0 } };
	EVP_PKEY *key = NULL;
	uint8_t *json = NULL;
	char *signed_doc = NULL;
	size_t len;
	int c, ret = EXIT_USAGE;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key_path = optarg; break;
		case 'i': in = optarg; break;
		case 'o': out = optarg; break;
		default:
			policy_usage(c == 'h' ? stdout : stderr);
			return c == 'h' ? EXIT_OK : EXIT_USAGE;
		}
	}
	if (!key_path || !in || !out || optind != argc) {
		policy_usage(stderr);
		return EXIT_USAGE;
	}
	if (read_input("measurements", in, POLICY_MAX_SIZE, &json, &len) < 0)
		return EXIT_USAGE;
	if (policy_load_private(key_path, &key, &d) < 0) {
		fprintf(stderr, "conclavectl: %s\n", d.msg);
		goto out;
	}
	ret = EXIT_REFUSED;
	if (policy_sign(key, (const char *)json, len, &signed_doc, &d) < 0) {
		fprintf(stderr, "conclavectl: policy sign: %s\n", d.msg);
		goto out;
	}
	if (write_output("signed policy", out, signed_doc, strlen(signed_doc), 0644) == 0)
		ret = EXIT_OK;
out:
	EVP_PKEY_free(key);
	free(signed_doc);
	free(json);
	return ret;
}

/* The trusted boot's SHA-256 events, as the reference that explains future mismatches. */
static int reference_from_log(const struct evidence *ev, struct policy *p, struct diag *d)
{
	struct eventlog log;
	int ret;

	if (!ev->event_log.p)
		return 0;
	ret = eventlog_parse(ev->event_log.p, ev->event_log.len, &log, d);
	if (ret < 0)
		return ret;
	p->reference = calloc(log.n_events ? log.n_events : 1, sizeof(*p->reference));
	if (!p->reference) {
		eventlog_free(&log);
		return -ENOMEM;
	}
	for (size_t i = 0; i < log.n_events; i++) {
		const struct eventlog_digest *dg =
		    eventlog_event_digest(&log.events[i], TPM_ALG_SHA256);

		if (log.events[i].type == EV_NO_ACTION || !dg ||
		    p->n_reference == POLICY_MAX_REFERENCE)
			continue;
		p->reference[p->n_reference].pcr = log.events[i].pcr;
		p->reference[p->n_reference].type = log.events[i].type;
		memcpy(p->reference[p->n_reference].digest, dg->bytes, 32);
		p->n_reference++;
	}
	eventlog_free(&log);
	return 0;
}

static int from_evidence(int argc, char **argv)
{
	static const struct option opts[] = { { "out", required_argument, NULL, 'o' },
					      { "help", no_argument, NULL, 'h' },
					      { 0 } };
	const char *out = "-";
	struct policy p = { .version = 1 };
	struct diag d = { { 0 } };
	struct evidence ev;
	uint8_t *buf = NULL;
	char *json = NULL;
	size_t len;
	int c, ret = EXIT_USAGE;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'o')
			out = optarg;
		else {
			policy_usage(c == 'h' ? stdout : stderr);
			return c == 'h' ? EXIT_OK : EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		policy_usage(stderr);
		return EXIT_USAGE;
	}
	if (read_input("evidence", argv[optind], EVIDENCE_MAX_SIZE, &buf, &len) < 0)
		return EXIT_USAGE;
	ret = EXIT_REFUSED;
	if (evidence_decode(buf, len, &ev, &d) < 0 || reference_from_log(&ev, &p, &d) < 0) {
		fprintf(stderr, "conclavectl: evidence %s: %s\n", argv[optind], d.msg);
		goto out;
	}
	for (unsigned int i = 0; i < POLICY_PCR_COUNT; i++)
		if (ev.pcr_mask & (1u << i)) {
			p.pcrs[i].set = true;
			memcpy(p.pcrs[i].expected, ev.pcrs[i], 32);
		}
	if (policy_to_json(&p, &json) < 0) {
		fprintf(stderr, "conclavectl: cannot serialize the policy\n");
		goto out;
	}
	if (write_output("measurements", out, json, strlen(json), 0644) == 0)
		ret = EXIT_OK;
out:
	policy_free(&p);
	free(json);
	free(buf);
	return ret;
}

int cmd_policy(int argc, char **argv)
{
	if (argc < 2) {
		policy_usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "keygen"))
		return keygen(argc - 1, argv + 1);
	if (!strcmp(argv[1], "sign"))
		return sign(argc - 1, argv + 1);
	if (!strcmp(argv[1], "from-evidence"))
		return from_evidence(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		policy_usage(stdout);
		return EXIT_OK;
	}
	fprintf(stderr, "conclavectl: unknown policy command '%s'\n", argv[1]);
	policy_usage(stderr);
	return EXIT_USAGE;
}
