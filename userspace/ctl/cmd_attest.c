// SPDX-License-Identifier: Apache-2.0
/* attest (node side) and make-credential (verifier side). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conclave/attest.h"
#include "conclave/evidence.h"
#include "conclave/verify.h"
#include "ctl.h"

static void attest_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conclavectl attest --tcti TCTI --nonce HEX --out FILE [options]\n"
	    "Produce evidence: a TPM quote over this node's PCRs bound to the verifier's nonce,\n"
	    "with the AK public area, EK certificate (and chain), PCR values and event log.\n\n"
	    "  --tcti TCTI        TPM transport: device:/dev/tpmrm0 (nodes), swtpm:path=SOCK "
	    "(tests)\n"
	    "  --nonce HEX        verifier's fresh nonce, 8-64 bytes; the quote's qualifying data "
	    "is\n"
	    "                     SHA-256(\"conclave/v1/standalone-attestation\\0\" || nonce)\n"
	    "  --out FILE         where to write the evidence ('-' for stdout)\n"
	    "  --ak-state DIR     where the AK is recorded (default /var/lib/conclave/ak); the AK "
	    "is\n"
	    "                     created under the EK on first use and persisted in the TPM\n"
	    "  --pcrs LIST        SHA-256 PCRs to quote, e.g. 0-9,11-14 (the default)\n"
	    "  --eventlog FILE    UEFI event log to include (default %s if present)\n"
	    "  --no-eventlog      include no event log\n"
	    "  --ek-chain FILE    PEM intermediates between the EK certificate and its root\n"
	    "  --activate FILE    answer a credential challenge from 'make-credential' and put "
	    "the\n"
	    "                     proof in the evidence (first contact with a verifier)\n",
	    DEFAULT_EVENTLOG);
}

int cmd_attest(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tcti", required_argument, NULL, 't' },
		{ "nonce", required_argument, NULL, 'n' },
		{ "out", required_argument, NULL, 'o' },
		{ "ak-state", required_argument, NULL, 'a' },
		{ "pcrs", required_argument, NULL, 'p' },
		{ "eventlog", required_argument, NULL, 'e' },
		{ "no-eventlog", no_argument, NULL, 'E' },
		{ "ek-chain", required_argument, NULL, 'c' },
		{ "activate", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct attest_opts o = { .ak_state = "/var/lib/conclave/ak", .pcr_mask = LOG_COVERED_PCRS };
	const char *nonce_hex = NULL, *out = NULL, *activate = NULL;
	uint8_t nonce[64], qdata[32], *chal = NULL, *ev = NULL;
	size_t nonce_len, ev_len;
	bool no_log = false;
	struct diag d = { { 0 } };
	int c, ret = EXIT_USAGE;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't': o.tcti = optarg; break;
		case 'n': nonce_hex = optarg; break;
		case 'o': out = optarg; break;
		case 'a': o.ak_state = optarg; break;
		case 'p':
			if (parse_pcr_list(optarg, &o.pcr_mask) < 0) {
				fprintf(stderr, "conclavectl: bad --pcrs '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'e': o.event_log = optarg; break;
		case 'E': no_log = true; break;
		case 'c': o.ek_chain = optarg; break;
		case 'A': activate = optarg; break;
		case 'h': attest_usage(stdout); return EXIT_OK;
		default: attest_usage(stderr); return EXIT_USAGE;
		}
	}
	if (!o.tcti || !nonce_hex || !out || optind != argc) {
		attest_usage(stderr);
		return EXIT_USAGE;
	}
	if (parse_nonce(nonce_hex, nonce, &nonce_len) < 0)
		return EXIT_USAGE;
	nonce_qualifying_data(nonce, nonce_len, qdata);
	o.qdata = qdata;
	o.qlen = sizeof(qdata);
	if (no_log)
		o.event_log = NULL;
	else if (!o.event_log && access(DEFAULT_EVENTLOG, R_OK) == 0)
		o.event_log = DEFAULT_EVENTLOG;
	if (activate &&
	    read_input("challenge", activate, EVIDENCE_MAX_SIZE, &chal, &o.challenge_len) < 0)
		return EXIT_USAGE;
	o.challenge = chal;
	if (attest_produce(&o, &ev, &ev_len, &d) < 0) {
		fprintf(stderr, "conclavectl: attest: %s\n", d.msg);
		ret = EXIT_REFUSED;
	} else {
		ret = write_output("evidence", out, ev, ev_len, 0644) < 0 ? EXIT_REFUSED : EXIT_OK;
	}
	free(chal);
	free(ev);
	return ret;
}

static void make_credential_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conclavectl make-credential --ca FILE --out CHALLENGE --secret-out FILE "
	    "EVIDENCE\n"
	    "Verifier side of credential activation: check the evidence's EK certificate chain "
	    "and\n"
	    "AK template, then wrap a fresh random credential (TPM2_MakeCredential, in software)\n"
	    "that only the TPM holding that EK can open, and only for that AK.\n\n"
	    "  --ca FILE          PEM bundle of EK manufacturer roots\n"
	    "  --out FILE         challenge for the node ('conclavectl attest --activate FILE')\n"
	    "  --secret-out FILE  the credential and the AK name it is for, kept by the verifier\n"
	    "                     (written 0600; give it to 'verify-evidence --credential' and\n"
	    "                     delete it afterwards)\n");
}

int cmd_make_credential(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "secret-out", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *ca_path = NULL, *out = NULL, *secret_out = NULL;
	struct credential cred = { 0 };
	struct secret *file = NULL;
	X509_STORE *ca = NULL;
	struct evidence ev;
	struct diag d = { { 0 } };
	uint8_t *buf = NULL, *chal = NULL;
	size_t len, chal_len;
	int c, ret = EXIT_USAGE;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': ca_path = optarg; break;
		case 'o': out = optarg; break;
		case 's': secret_out = optarg; break;
		case 'h': make_credential_usage(stdout); return EXIT_OK;
		default: make_credential_usage(stderr); return EXIT_USAGE;
		}
	}
	if (!ca_path || !out || !secret_out || optind != argc - 1) {
		make_credential_usage(stderr);
		return EXIT_USAGE;
	}
	if (read_input("evidence", argv[optind], EVIDENCE_MAX_SIZE, &buf, &len) < 0)
		return EXIT_USAGE;
	if (evidence_decode(buf, len, &ev, &d) < 0) {
		fprintf(stderr, "conclavectl: evidence %s: %s\n", argv[optind], d.msg);
		goto out;
	}
	if (ca_store_load(ca_path, &ca, &d) < 0) {
		fprintf(stderr, "conclavectl: %s\n", d.msg);
		goto out;
	}
	ret = EXIT_REFUSED;
	if (attest_make_challenge(&ev, ca, &chal, &chal_len, &cred, &d) < 0) {
		fprintf(stderr, "conclavectl: make-credential refused: %s\n", d.msg);
		goto out;
	}
	/* The file: credential || AK name, assembled in locked memory. */
	file = secret_new(cred.secret->len + cred.ak_name_len);
	if (!file)
		goto out;
	memcpy(file->data, cred.secret->data, cred.secret->len);
	memcpy(file->data + cred.secret->len, cred.ak_name, cred.ak_name_len);
	if (write_output("credential", secret_out, file->data, file->len, 0600) == 0 &&
	    write_output("challenge", out, chal, chal_len, 0644) == 0)
		ret = EXIT_OK;
out:
	secret_free(file);
	credential_clear(&cred);
	X509_STORE_free(ca);
	free(chal);
	free(buf);
	return ret;
}
