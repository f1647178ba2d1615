/* SPDX-License-Identifier: Apache-2.0 */
/* The verifier: decides whether evidence proves that a genuine TPM, holding an activated AK,
 * quoted the expected PCR values over the expected qualifying data, freshly. Every check runs
 * that can, and the verdict names each one that failed. */
#ifndef CONCLAVE_VERIFY_H
#define CONCLAVE_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "conclave/evidence.h"
#include "conclave/policy.h"
#include "conclave/secret.h"
#include "conclave/tpmobj.h"

enum verify_check {
	CHECK_FORMAT,	   /* evidence, quote and signature structures parse */
	CHECK_EK_CERT,	   /* EK certificate chains to a configured manufacturer root */
	CHECK_AK_TEMPLATE, /* restricted|sign|fixedTPM|fixedParent|sensitiveDataOrigin, fixed scheme
			    */
	CHECK_AK_ACTIVATION, /* AK proven to live beside the EK (credential activation) */
	CHECK_QUOTE_TYPE,    /* magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE */
	CHECK_SIGNATURE,     /* signature by the AK over the exact quote bytes, AK's scheme only */
	CHECK_NONCE,	     /* qualifying data equals the expected value */
	CHECK_PCR_SELECTION, /* the quote covers (at least) the policy's PCRs, SHA-256 bank only */
	CHECK_PCR_DIGEST,    /* the reported PCR values hash to the quoted digest */
	CHECK_CLOCK_SAFE,    /* clockInfo.safe */
	CHECK_COUNTERS,	     /* resetCount / restartCount / clock never go backwards */
	CHECK_EVENT_LOG,     /* the event log replays to the quoted PCRs */
	CHECK_POLICY,	     /* every policy PCR has its expected value */
	CHECK_COUNT,
};

enum check_status { CHECK_NOT_RUN, CHECK_PASS, CHECK_WARN, CHECK_FAIL };

struct check_result {
	enum check_status status;
	char msg[256];
};

struct pcr_report {
	bool in_policy, warn_only, match;
	uint8_t expected[32], actual[32];
	/* On a mismatch with a reference in the policy: the first differing event of the log. */
	long first_diff_event; /* index into the log, -1 if none found */
	size_t first_diff_offset;
	uint32_t first_diff_type;
};

struct verdict {
	bool ok; /* no check failed */
	struct check_result checks[CHECK_COUNT];
	struct pcr_report pcrs[24];
	uint8_t node_id[32]; /* SHA-256 of the EK certificate: the node's hardware identity */
	uint8_t ak_name[TPMOBJ_NAME_MAX];
	size_t ak_name_len;
	uint64_t clock;
	uint32_t reset_count, restart_count;
	/* When ok: the quoted SHA-256 PCR values (pcr_mask selects), e.g. for re-checking a
	 * member against a reloaded policy. */
	uint32_t pcr_mask;
	uint8_t pcr_values[24][32];
};

/* What a verifier remembers about one node between attestations. */
struct node_record {
	bool known; /* AK activated and recorded */
	uint8_t node_id[32];
	uint8_t ak_name[TPMOBJ_NAME_MAX];
	size_t ak_name_len;
	uint64_t clock;
	uint32_t reset_count, restart_count;
	EVP_PKEY *ak_key; /* cache, owned; built on first use */
};

/* A credential the verifier wrapped with MakeCredential, and the AK it was wrapped for: a proof
 * made with the credential counts only for that AK (whoever opened the credential could
 * otherwise attach a proof to a quote by any other key). */
struct credential {
	struct secret *secret;
	uint8_t ak_name[TPMOBJ_NAME_MAX];
	size_t ak_name_len;
};

/* Wipe and free the secret; the struct may be reused. */
void credential_clear(struct credential *c);

struct verify_params {
	const struct policy *policy;
	X509_STORE *ca;	      /* EK manufacturer roots */
	const uint8_t *qdata; /* expected qualifying data */
	size_t qlen;
	const struct credential *credential; /* first contact: what MakeCredential wrapped */
	struct node_record *node; /* in: what we know (may be NULL); out: updated on success */
};

/* Run every check on ev. Returns 0 and fills v (v->ok tells the outcome); <0 only on
 * internal errors (out of memory). On success with params->node, the record is updated. */
int verify_evidence(const struct evidence *ev, const struct verify_params *p, struct verdict *v);

/* Name of a check for humans and JSON ("nonce", "signature", ...). */
const char *verify_check_name(enum verify_check c);

/* proof = HMAC-SHA256(credential, "conclave/v1/activation" || ak_name || qdata): the node shows
 * it could open the credential without revealing it, bound to this quote's qualifying data. */
int activation_proof(const uint8_t *credential, size_t cred_len, const uint8_t *ak_name,
		     size_t name_len, const uint8_t *qdata, size_t qlen, uint8_t proof[32]);

/* Qualifying data for a standalone (file-based) attestation: SHA-256 of a domain label and the
 * verifier's nonce, so a quote made for the CLI can never be taken for a channel-bound one. */
void nonce_qualifying_data(const uint8_t *nonce, size_t len, uint8_t qdata[32]);

/* Load a PEM bundle of trust anchors; at least one certificate. */
int ca_store_load(const char *path, X509_STORE **store, struct diag *d);

/* Verify an EK certificate against the store, with untrusted intermediates from the evidence. */
int ekcert_verify(X509_STORE *store, const struct blob *cert, const struct blob *chain,
		  size_t n_chain, X509 **out, struct diag *d);

/* The node's hardware identity: SHA-256 of its EK certificate (what node records are keyed by). */
void evidence_node_id(const struct evidence *ev, uint8_t id[32]);

void node_record_clear(struct node_record *n);

/* PCRs the UEFI event log accounts for (0-9, 11-14): the default quote selection.
 * 10 is IMA's, 15-23 belong to the running system. */
#define LOG_COVERED_PCRS 0x7bffu

#endif
