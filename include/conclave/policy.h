/* SPDX-License-Identifier: Apache-2.0 */
/* Measurement policy: which PCR values a node must show, signed with Ed25519 by the image builder.
 *
 * Measurements JSON (what the operator writes or `policy from-evidence` produces):
 *   { "version": 1,
 *     "pcrs": { "4": { "expected": "<64 hex>", "warnOnly": false }, ... },
 *     "reference": [ { "pcr": 4, "type": 2147483651, "digest": "<64 hex>" }, ... ] }
 * "reference" (optional) is the SHA-256 event sequence of a trusted boot, used only to explain a
 * mismatch (first differing event), never to accept one.
 *
 * Signed policy (what verifiers load): a JSON envelope
 *   { "conclave-policy": 1, "key": "<hex SHA-256 of the raw Ed25519 public key>",
 *     "payload": "<base64 of the measurements JSON bytes>", "signature": "<base64 Ed25519>" }
 * The signature covers the exact payload bytes; the payload is parsed only after it verified. */
#ifndef CONCLAVE_POLICY_H
#define CONCLAVE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "conclave/diag.h"

#define POLICY_PCR_COUNT     24
#define POLICY_MAX_SIZE	     (1u << 20)
#define POLICY_MAX_REFERENCE 8192

struct policy_pcr {
	bool set;
	bool warn_only;
	uint8_t expected[32]; /* SHA-256 bank */
};

struct policy_ref_event {
	uint32_t pcr;
	uint32_t type;
	uint8_t digest[32];
};

struct policy {
	uint32_t version;
	struct policy_pcr pcrs[POLICY_PCR_COUNT];
	size_t n_reference;
	struct policy_ref_event *reference;
};

/* Parse measurements JSON (untrusted until signed; strict: unknown keys, bad hex, PCR >= 24,
 * duplicate PCRs and oversized input are errors). */
int policy_parse(const char *json, size_t len, struct policy *out, struct diag *d);

/* Serialize to measurements JSON (malloc'ed, NUL-terminated). */
int policy_to_json(const struct policy *p, char **json);

void policy_free(struct policy *p);

/* Generate an Ed25519 key pair; write PREFIX.key (private PEM, 0600, never overwrites) and
 * PREFIX.pub (public PEM). */
int policy_keygen(const char *prefix, struct diag *d);

/* Load a PEM private key / public key (Ed25519 only). */
int policy_load_private(const char *path, EVP_PKEY **key, struct diag *d);
int policy_load_public(const char *path, EVP_PKEY **key, struct diag *d);

/* Sign measurements JSON (validated with policy_parse first) into a signed envelope. */
int policy_sign(EVP_PKEY *key, const char *json, size_t len, char **signed_out, struct diag *d);

/* Verify a signed envelope against pub and parse its payload. Refuses an unsigned document, a
 * signature by another key, or a payload that does not parse. */
int policy_verify(const char *signed_doc, size_t len, EVP_PKEY *pub, struct policy *out,
		  struct diag *d);

/* Whether recorded PCR values (SHA-256 bank, mask = which of pcrs[] are set) satisfy the policy:
 * every policy PCR that is not warnOnly must be present and equal. On a mismatch, why names the
 * first offending PCR ("PCR 4 differs", "PCR 7 not recorded"). */
bool policy_match_pcrs(const struct policy *p, uint32_t mask, const uint8_t pcrs[24][32], char *why,
		       size_t why_len);

#endif
