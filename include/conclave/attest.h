/* SPDX-License-Identifier: Apache-2.0 */
/* Producing evidence on a node, and the credential-activation round trip around it. */
#ifndef CONCLAVE_ATTEST_H
#define CONCLAVE_ATTEST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "conclave/diag.h"
#include "conclave/evidence.h"
#include "conclave/secret.h"
#include "conclave/verify.h"

#define DEFAULT_EVENTLOG "/sys/kernel/security/tpm0/binary_bios_measurements"

struct attest_opts {
	const char *tcti;     /* "device:/dev/tpmrm0", "swtpm:path=..." */
	const char *ak_state; /* directory recording the node's AK */
	const uint8_t *qdata; /* qualifying data, <= 64 bytes */
	size_t qlen;
	uint32_t pcr_mask;	  /* SHA-256 PCRs to quote */
	const char *event_log;	  /* path; NULL = none */
	const char *ek_chain;	  /* PEM file of intermediates to include; NULL = none */
	const uint8_t *challenge; /* encoded challenge to answer (activation); NULL = none */
	size_t challenge_len;
	/* Held for the whole TPM session when several threads share one TPM without a resource
	 * manager (swtpm): concurrent sessions would exhaust its object slots. NULL = none. */
	pthread_mutex_t *tpm_lock;
	/* The AK record lives in memory (no state disk yet): a key at the AK handle without a
	 * record is a previous boot's, replaced by a new AK (tpm_ak_forget_unrecorded). */
	bool ak_per_boot;
	/* A prover kept open across proofs (attest_ctx_new); its TPM, AK, EK chain and event log
	 * stand for the fields above, and it serializes its own proofs. NULL = open the TPM for
	 * this proof only. */
	struct attest_ctx *ctx;
};

struct attest_ctx;

/* On the node: open the TPM, ensure the AK, answer the challenge if any, quote, and encode
 * the evidence document into *out (malloc'ed). */
int attest_produce(const struct attest_opts *o, uint8_t **out, size_t *len, struct diag *d);

/* A prover for many proofs (the join service's): keeps o's TPM open (opened at the first proof),
 * its EK certificate, AK and EK chain, and the event log while the quoted PCRs stand still; a TPM
 * failure drops all of it and the next proof starts afresh. Every proof still quotes anew. */
int attest_ctx_new(const struct attest_opts *o, struct attest_ctx **out, struct diag *d);
void attest_ctx_free(struct attest_ctx *c);

/* This node's hardware identity: SHA-256 of its TPM's EK certificate (evidence_node_id), read
 * from the TPM at tcti. */
int attest_node_id(const char *tcti, uint8_t id[32], struct diag *d);

/* On the verifier: check the EK chain and the AK template of ev, then wrap a fresh random
 * credential for (EK, AK name). *cred (the secret in locked memory, and the AK it is for) is
 * what the node must prove it opened; *out is the encoded challenge for the node. */
int attest_make_challenge(const struct evidence *ev, X509_STORE *ca, uint8_t **out, size_t *len,
			  struct credential *cred, struct diag *d);

#endif
