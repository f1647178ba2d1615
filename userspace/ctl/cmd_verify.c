// SPDX-License-Identifier: Apache-2.0
/* verify-evidence: the verdict as a table for people or JSON for machines. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "conclave/eventlog.h"
#include "conclave/nodestore.h"
#include "conclave/secret.h"
#include "conclave/util.h"
#include "conclave/verify.h"
#include "ctl.h"

static void verify_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conclavectl verify-evidence --policy FILE --policy-pubkey FILE --ca FILE\n"
	    "                                   --nonce HEX [options] EVIDENCE\n"
	    "Verify evidence: EK chain, AK template and activation, quote signature, nonce, PCR\n"
	    "digest, clock and counters, event-log replay, and every PCR of the signed policy.\n\n"
	    "  --policy FILE         signed policy ('conclavectl policy sign')\n"
	    "  --policy-pubkey FILE  Ed25519 public key (PEM) the policy must be signed with\n"
	    "  --ca FILE             PEM bundle of EK manufacturer roots\n"
	    "  --nonce HEX           the nonce given to 'conclavectl attest'\n"
	    "  --credential FILE     first contact: the credential from 'make-credential\n"
	    "                        --secret-out'; the evidence must prove it opened it\n"
	    "  --state DIR           remember nodes here (AK, TPM counters): later evidence from "
	    "a\n"
	    "                        known node needs no credential, and counters may not go back\n"
	    "  --json                print the verdict as JSON\n\n"
	    "Exit status: 0 the evidence passes, 1 it is refused (each failed check is named),\n"
	    "2 usage error or unreadable input.\n");
}

static const char *status_name(enum check_status s)
{
	static const char *const names[] = { "not-run", "pass", "warn", "FAIL" };

	return names[s];
}

static void print_table(const struct verdict *v)
{
	char exp[65], act[65], id[65];

	printf("%-16s %-6s %s\n", "CHECK", "RESULT", "DETAIL");
	for (int c = 0; c < CHECK_COUNT; c++)
		printf("%-16s %-6s %s\n", verify_check_name(c), status_name(v->checks[c].status),
		       v->checks[c].msg);
	printf("\n%-4s %-16s %-16s %s\n", "PCR", "EXPECTED", "ACTUAL", "RESULT");
	for (int i = 0; i < 24; i++) {
		const struct pcr_report *r = &v->pcrs[i];

		if (!r->in_policy)
			continue;
		hex_encode(r->expected, 32, exp);
		hex_encode(r->actual, 32, act);
		printf("%-4d %.16s %.16s %s", i, exp, act,
		       r->match	      ? "match"
		       : r->warn_only ? "differs (warn only)"
				      : "MISMATCH");
		if (!r->match && r->first_diff_event >= 0) {
			const char *t = eventlog_type_name(r->first_diff_type);

			printf(": first differing event #%ld at offset %zu (%s)",
			       r->first_diff_event, r->first_diff_offset, t ? t : "unknown type");
		}
		printf("\n");
	}
	hex_encode(v->node_id, 32, id);
	if (v->ok) {
		printf("\nverdict: PASS (node %s)\n", id);
		return;
	}
	printf("\nverdict: REFUSED; failed checks:");
	for (int c = 0; c < CHECK_COUNT; c++)
		if (v->checks[c].status == CHECK_FAIL)
			printf(" %s", verify_check_name(c));
	printf("\n");
}

static json_object *hex_json(const uint8_t *b, size_t len)
{
	char hex[2 * 64 + 5];

	hex_encode(b, len, hex);
	return json_object_new_string(hex);
}

static void print_json(const struct verdict *v)
{
	json_object *root = json_object_new_object(), *checks = json_object_new_array();
	json_object *pcrs = json_object_new_array(), *counters = json_object_new_object();

	json_object_object_add(root, "ok", json_object_new_boolean(v->ok));
	json_object_object_add(root, "nodeId", hex_json(v->node_id, 32));
	json_object_object_add(root, "akName", hex_json(v->ak_name, v->ak_name_len));
	for (int c = 0; c < CHECK_COUNT; c++) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(verify_check_name(c)));
		json_object_object_add(
		    o, "status",
		    json_object_new_string(v->checks[c].status == CHECK_FAIL
					       ? "fail"
					       : status_name(v->checks[c].status)));
		json_object_object_add(o, "detail", json_object_new_string(v->checks[c].msg));
		json_object_array_add(checks, o);
	}
	for (int i = 0; i < 24; i++) {
		const struct pcr_report *r = &v->pcrs[i];
		json_object *o;

		if (!r->in_policy)
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "pcr", json_object_new_int(i));
		json_object_object_add(o, "expected", hex_json(r->expected, 32));
		json_object_object_add(o, "actual", hex_json(r->actual, 32));
		json_object_object_add(o, "match", json_object_new_boolean(r->match));
		json_object_object_add(o, "warnOnly", json_object_new_boolean(r->warn_only));
		if (!r->match && r->first_diff_event >= 0) {
			json_object *fd = json_object_new_object();
			const char *t = eventlog_type_name(r->first_diff_type);

			json_object_object_add(fd, "event",
					       json_object_new_int64(r->first_diff_event));
			json_object_object_add(
			    fd, "offset", json_object_new_int64((int64_t)r->first_diff_offset));
			json_object_object_add(fd, "type",
					       json_object_new_string(t ? t : "unknown"));
			json_object_object_add(o, "firstDifference", fd);
		}
		json_object_array_add(pcrs, o);
	}
	json_object_object_add(counters, "clock", json_object_new_int64((int64_t)v->clock));
	json_object_object_add(counters, "resetCount", json_object_new_int64(v->reset_count));
	json_object_object_add(counters, "restartCount", json_object_new_int64(v->restart_count));
	json_object_object_add(root, "checks", checks);
	json_object_object_add(root, "pcrs", pcrs);
	json_object_object_add(root, "counters", counters);
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	json_object_put(root);
}

/* A policy that cannot be trusted refuses the evidence; say so in the same shape. */
static int refuse_policy(bool json, const char *why)
{
	if (json) {
		json_object *root = json_object_new_object(), *checks = json_object_new_array();
		json_object *c = json_object_new_object();

		json_object_object_add(c, "name", json_object_new_string("policy-signature"));
		json_object_object_add(c, "status", json_object_new_string("fail"));
		json_object_object_add(c, "detail", json_object_new_string(why));
		json_object_array_add(checks, c);
		json_object_object_add(root, "ok", json_object_new_boolean(false));
		json_object_object_add(root, "checks", checks);
		printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
		json_object_put(root);
	} else {
		printf("%-16s %-6s %s\n\nverdict: REFUSED; failed checks: policy-signature\n",
		       "policy-signature", "FAIL", why);
	}
	fprintf(stderr, "conclavectl: policy refused: %s\n", why);
	return EXIT_REFUSED;
}

/* The file make-credential wrote: a 32-byte credential, then the name of the AK it is for. */
static int load_credential(const char *path, struct credential *c)
{
	uint8_t *buf;
	size_t len, name_len;
	int ret = -1;

	if (read_input("credential", path, 32 + TPMOBJ_NAME_MAX, &buf, &len) < 0)
		return -1;
	name_len = len > 32 ? len - 32 : 0;
	if (name_len < 3 || name_len > TPMOBJ_NAME_MAX) {
		fprintf(stderr, "conclavectl: %s is not a credential file from make-credential\n",
			path);
	} else if ((c->secret = secret_new(32))) {
		memcpy(c->secret->data, buf, 32);
		memcpy(c->ak_name, buf + 32, name_len);
		c->ak_name_len = name_len;
		ret = 0;
	}
	explicit_bzero(buf, len);
	free(buf);
	return ret;
}

struct verify_args {
	const char *policy, *pubkey, *ca, *nonce, *credential, *state, *evidence;
	bool json;
};

static int run_verify(const struct verify_args *a)
{
	uint8_t nonce[64], qdata[32], *pol_buf = NULL, *ev_buf = NULL;
	size_t nonce_len, pol_len, ev_len;
	struct policy pol = { 0 };
	struct node_record node = { 0 };
	struct credential cred = { 0 };
	struct verify_params p = { 0 };
	struct evidence ev;
	struct verdict v;
	X509_STORE *ca = NULL;
	EVP_PKEY *pub = NULL;
	struct diag d = { { 0 } };
	int ret = EXIT_USAGE;

	if (parse_nonce(a->nonce, nonce, &nonce_len) < 0 ||
	    read_input("policy", a->policy, POLICY_MAX_SIZE, &pol_buf, &pol_len) < 0 ||
	    read_input("evidence", a->evidence, EVIDENCE_MAX_SIZE, &ev_buf, &ev_len) < 0)
		goto out;
	if (policy_load_public(a->pubkey, &pub, &d) < 0 || ca_store_load(a->ca, &ca, &d) < 0) {
		fprintf(stderr, "conclavectl: %s\n", d.msg);
		goto out;
	}
	if (a->credential && load_credential(a->credential, &cred) < 0)
		goto out;
	if (policy_verify((const char *)pol_buf, pol_len, pub, &pol, &d) < 0) {
		ret = refuse_policy(a->json, d.msg);
		goto out;
	}
	ret = EXIT_REFUSED;
	if (evidence_decode(ev_buf, ev_len, &ev, &d) < 0) {
		memset(&v, 0, sizeof(v));
		v.checks[CHECK_FORMAT] = (struct check_result){ CHECK_FAIL, "" };
		snprintf(v.checks[CHECK_FORMAT].msg, sizeof(v.checks[CHECK_FORMAT].msg), "%s",
			 d.msg);
		for (int c = 1; c < CHECK_COUNT; c++)
			v.checks[c] = (struct check_result){ CHECK_FAIL, "not run: format failed" };
		a->json ? print_json(&v) : print_table(&v);
		goto out;
	}
	nonce_qualifying_data(nonce, nonce_len, qdata);
	p = (struct verify_params){
		.policy = &pol, .ca = ca, .qdata = qdata, .qlen = sizeof(qdata)
	};
	if (cred.secret)
		p.credential = &cred;
	if (a->state) {
		evidence_node_id(&ev, node.node_id);
		if (nodestore_load(a->state, node.node_id, &node, &d) < 0) {
			fprintf(stderr, "conclavectl: %s\n", d.msg);
			goto out;
		}
		p.node = &node;
	}
	if (verify_evidence(&ev, &p, &v) < 0) {
		fprintf(stderr, "conclavectl: out of memory\n");
		goto out;
	}
	a->json ? print_json(&v) : print_table(&v);
	if (v.ok && a->state && nodestore_save(a->state, &node, &d) < 0) {
		fprintf(stderr, "conclavectl: %s\n", d.msg);
		goto out;
	}
	ret = v.ok ? EXIT_OK : EXIT_REFUSED;
out:
	node_record_clear(&node);
	credential_clear(&cred);
	policy_free(&pol);
	EVP_PKEY_free(pub);
	X509_STORE_free(ca);
	free(pol_buf);
	free(ev_buf);
	return ret;
}

int cmd_verify_evidence(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy", required_argument, NULL, 'p' },
		{ "policy-pubkey", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'c' },
		{ "nonce", required_argument, NULL, 'n' },
		{ "credential", required_argument, NULL, 'C' },
		{ "state", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct verify_args a = { 0 };
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': a.policy = optarg; break;
		case 'k': a.pubkey = optarg; break;
		case 'c': a.ca = optarg; break;
		case 'n': a.nonce = optarg; break;
		case 'C': a.credential = optarg; break;
		case 's': a.state = optarg; break;
		case 'j': a.json = true; break;
		case 'h': verify_usage(stdout); return EXIT_OK;
		default: verify_usage(stderr); return EXIT_USAGE;
		}
	}
	if (!a.policy || !a.pubkey || !a.ca || !a.nonce || optind != argc - 1) {
		verify_usage(stderr);
		return EXIT_USAGE;
	}
	a.evidence = argv[optind];
	return run_verify(&a);
}
