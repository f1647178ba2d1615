/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster CA and the cluster's identity (docs/kms.md, docs/joind.md).
 *
 * The CA's Ed25519 key is derived from the KMS (HKDF info "conclave/v1/ca/cluster"), so it exists
 * only inside an attested control plane that holds the master secret, survives a restart with
 * `conclavectl recover`, and is never stored. The cluster identity is SHA-256 of the CA's raw
 * 32-byte public key: joind binds it into its own quote, and nodes extend PCR 15 with it.
 *
 * The CA certificate is self-signed and deterministic (Ed25519 signatures are), so every
 * control plane holding the same master presents the same bytes. Node certificates certify a
 * node's WireGuard (X25519) public key: subject CN "node-<id>", SAN = its overlay addresses.
 *
 * The member list ("CMBL") is what `conclavectl verify` checks: signed by the CA key and bound to
 * the operator's TLS session (its exporter), so it can be neither forged nor replayed. */
#ifndef CONCLAVE_CLUSTERCA_H
#define CONCLAVE_CLUSTERCA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"
#include "conclave/kms.h"
#include "conclave/membership.h"

#define CLUSTER_ID_LEN	    32
#define CLUSTER_SIG_LEN	    64
#define CLUSTER_CERT_MAX    2048 /* DER of the CA or a node certificate, at most */
#define MEMBERLIST_MAGIC    "CMBL"
#define MEMBERLIST_VERSION  1
#define MEMBERLIST_MAX_SIZE (256u << 10)

struct cluster_ca;

/* Derive the CA (key and self-signed certificate) from the KMS. */
int cluster_ca_derive(const struct kms *k, struct cluster_ca **out, struct diag *d);
void cluster_ca_free(struct cluster_ca *ca);

/* SHA-256 of the CA's raw public key. */
void cluster_ca_id(const struct cluster_ca *ca, uint8_t id[CLUSTER_ID_LEN]);

/* The CA certificate (DER), owned by ca. */
void cluster_ca_cert(const struct cluster_ca *ca, const uint8_t **der, size_t *len);

/* Issue a certificate for a node's WireGuard key (malloc'ed DER): subject CN "node-<id>",
 * SAN IP = overlay_v4 and overlay_v6 (either may be ""), valid from an hour ago for
 * valid_days days (at most 36500), serial random. -EINVAL for a bad id, address or validity. */
int cluster_ca_issue_node(const struct cluster_ca *ca, int64_t node_id, const uint8_t wg_pubkey[32],
			  const char *overlay_v4, const char *overlay_v6, unsigned int valid_days,
			  uint8_t **der, size_t *len, struct diag *d);

/* Ed25519 signature by the CA key over msg. */
int cluster_ca_sign(const struct cluster_ca *ca, const uint8_t *msg, size_t len,
		    uint8_t sig[CLUSTER_SIG_LEN], struct diag *d);

/* Check a CA certificate received from a peer: DER parses, self-signed with Ed25519, is a CA,
 * and SHA-256 of its public key equals id (the identity the peer's quote bound).
 * -EBADMSG: not a certificate (or trailing bytes); -EPERM: refused. */
int cluster_ca_check(const uint8_t *der, size_t len, const uint8_t id[CLUSTER_ID_LEN],
		     struct diag *d);

/* Check a node certificate against a CA certificate (already checked): signature by the CA,
 * within its validity now, and certifying exactly wg_pubkey; fills the node id from its CN.
 * -EBADMSG: either does not parse; -EKEYEXPIRED: outside its validity; -EPERM: refused. */
int cluster_node_cert_check(const uint8_t *ca_der, size_t ca_len, const uint8_t *der, size_t len,
			    const uint8_t wg_pubkey[32], int64_t *node_id, struct diag *d);

/* Ed25519 verification of sig over msg with the public key of a CA certificate; -EPERM if the
 * signature does not verify, -EBADMSG if the certificate does not parse. */
int cluster_ca_verify_sig(const uint8_t *ca_der, size_t ca_len, const uint8_t *msg, size_t len,
			  const uint8_t sig[CLUSTER_SIG_LEN], struct diag *d);

/* One entry of the member list. */
struct member_entry {
	struct peer peer; /* id, WireGuard key, endpoints, addresses */
	uint8_t ek_id[MEMBERSHIP_EK_ID_LEN];
	bool active;	      /* false: revoked */
	bool policy_ok;	      /* its last attested PCRs match the current node policy */
	uint64_t joined_at;   /* unix seconds of the first join */
	uint64_t attested_at; /* unix seconds of the last successful attestation */
};

struct memberlist {
	uint8_t binding[32]; /* the exporter of the session it was made for */
	uint8_t cluster_id[CLUSTER_ID_LEN];
	uint64_t generation;
	struct member_entry *members; /* malloc'ed */
	size_t n;
};

/* Document (big-endian): "CMBL" | u8 version | binding[32] | cluster id[32] | u64 generation |
 *   u32 count | count x (u64 node id | u8 flags (1 active, 2 policy ok) | ek id[32] |
 *   wg key[32] | u64 joined | u64 attested | str endpoints | str v4 | str v6 | str pod)
 * str = u8 length | printable ASCII shorter than the struct peer field.
 * Encode refuses (-EINVAL) what decode would: node id < 1, strings not printable or too long;
 * -E2BIG over MEMBERLIST_MAX_SIZE. */
int memberlist_encode(const struct memberlist *l, uint8_t **out, size_t *len);

/* Strict decode (bad strings, counts, flags or trailing bytes are errors); out is overwritten
 * (zeroed on error, nothing to free); free with memberlist_free. */
int memberlist_decode(const uint8_t *buf, size_t len, struct memberlist *out, struct diag *d);
void memberlist_free(struct memberlist *l);

#endif
