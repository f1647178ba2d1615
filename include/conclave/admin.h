/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's side of the join service (docs/joind.md, "Operator requests"): attest the
 * join service against the control-plane policy (always with credential activation), pin its
 * EK and cluster identity when the operator knows them, send one request, and check what comes
 * back: the CA certificate must carry the identity the quote bound, and the member list must be
 * signed by that CA for this very session.
 *
 * Requests that change the cluster (init, recover, revoke, policy) carry an Ed25519 signature by
 * the operator's key over admin_request_digest: bound to the session's exporter, so a recorded
 * request cannot be replayed on another connection. */
#ifndef CONCLAVE_ADMIN_H
#define CONCLAVE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "conclave/clusterca.h"
#include "conclave/diag.h"
#include "conclave/policy.h"
#include "conclave/secret.h"
#include "conclave/verify.h"
#include "conclave/wire.h"

#define ADMIN_SIG_LABEL "conclave/v1/admin"

struct admin_config {
	const char *host; /* numeric address of the join service */
	uint16_t port;
	int timeout_ms;			/* per message; 0 = default */
	const struct policy *cp_policy; /* what the join service must have booted */
	X509_STORE *cp_ca;		/* EK roots for its TPM */
	EVP_PKEY *operator_key;		/* Ed25519 private key; needed for changing requests */
	const uint8_t *expect_ek;	/* 32 bytes: the control plane's EK identity, or NULL */
	const uint8_t *expect_cluster;	/* 32 bytes: the cluster identity, or NULL */
};

struct admin_request {
	uint16_t op; /* enum admin_op */
	int64_t node_id;
	const struct secret *key_material; /* INIT, RECOVER: master || salt */
	const uint8_t *policy;		   /* POLICY: signed envelope */
	size_t policy_len;
};

struct admin_result {
	/* The join service's attestation. */
	struct verdict verdict;
	uint8_t ek_id[32];
	bool has_cluster_id;
	uint8_t cluster_id[CLUSTER_ID_LEN];
	/* Its answer. answered: the join service answered the request (even if admin_call then
	 * fails, e.g. in the check after init: the secret may have been taken). */
	bool answered;
	uint16_t code; /* enum wire_code; meaningful only if answered */
	char text[WIRE_TEXT_MAX + 1];
	uint64_t generation;
	uint8_t *ca_cert; /* malloc'ed DER, checked against cluster_id */
	size_t ca_len;
	bool has_members; /* members verified: CA signature, this session, this cluster */
	struct memberlist members;
};

/* One request (init and recover are followed by a status request on a new session to the same
 * EK, whose quote binds the new cluster identity, pinned to expect_cluster if set: out describes
 * that one; the first session pins only the EK). 0 when the join service attested,
 * answered, and everything it sent verified (out->code may still say it refused the request);
 * -EACCES when it failed attestation or a pin, or its answer did not verify (d says which); other
 * -errno on transport errors. */
int admin_call(const struct admin_config *c, const struct admin_request *r,
	       struct admin_result *out, struct diag *d);

void admin_result_clear(struct admin_result *r);

/* SHA-256("conclave/v1/admin" || exporter || u16 op || u64 node id ||
 *         SHA-256(key material) || SHA-256(policy)), empty fields hashed as empty. */
void admin_request_digest(const uint8_t exporter[32], uint16_t op, uint64_t node_id,
			  const uint8_t *key, size_t key_len, const uint8_t *policy,
			  size_t policy_len, uint8_t out[32]);

/* Verify an operator signature over the digest with an Ed25519 public key. */
bool admin_signature_ok(EVP_PKEY *pub, const uint8_t digest[32], const uint8_t *sig, size_t len);

#endif
