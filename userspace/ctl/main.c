// SPDX-License-Identifier: Apache-2.0
/* conclavectl: the operator's and the node's command line. Thin: parse, call the library. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/secret.h"
#include "conclave/util.h"
#include "ctl.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "attest", cmd_attest, "produce evidence from this node's TPM" },
	{ "make-credential", cmd_make_credential,
	  "verifier: wrap a credential for an evidence's EK and AK (activation challenge)" },
	{ "verify-evidence", cmd_verify_evidence, "verify evidence against a signed policy" },
	{ "policy", cmd_policy, "keygen | sign | from-evidence: manage measurement policies" },
	{ "measure", cmd_measure, "predict a node image's PCRs as measurements to sign" },
	{ "status", cmd_status, "datapath: attached programs, peers, counters per reason" },
	{ "monitor", cmd_monitor, "datapath: stream drop events as they happen" },
	{ "pods", cmd_pods, "datapath: pods on this node (conclave-cni) and their drops" },
	{ "init", cmd_init, "cluster: start a new cluster on a fresh join service" },
	{ "verify", cmd_verify, "cluster: attest the control plane and verify every member" },
	{ "cluster-status", cmd_cluster_status,
	  "cluster: the checks of verify, one line a member" },
	{ "recover", cmd_recover, "cluster: give a restarted join service its master secret back" },
	{ "revoke", cmd_revoke, "cluster: remove a member" },
	{ "replace-disk", cmd_replace_disk,
	  "cluster: let a member bind a new state disk at its next join" },
	{ "set-policy", cmd_set_policy, "cluster: replace the node policy" },
	{ "doctor", cmd_doctor, "node: check the kernel features a node needs, loading modules" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: conclavectl COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-17s %s\n", commands[i].name, commands[i].summary);
	fprintf(
	    f, "\n'conclavectl COMMAND --help' describes every option of a command.\n"
	       "Exit status: 0 success, 1 refused or failed, 2 usage error or unreadable input.\n");
}

int main(int argc, char **argv)
{
	/* tpm2-tss logs its own ERROR lines for conditions we handle and report with the decoded
	 * response code; keep them quiet unless the user asked for them. */
	setenv("TSS2_LOG", "all+none", 0);
	/* init, recover and set-policy hold the master secret or signing keys: no core dumps. */
	(void)secret_harden_process();
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "conclavectl: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
