/* SPDX-License-Identifier: Apache-2.0 */
/* The node side of a join (docs/joind.md): attest the join service against the control-plane
 * policy, prove the node (its WireGuard key and disk UUID bound into the quote), ask to join,
 * and receive the disk key, the node's allocation and the current peer set.
 * One attempt per call; retrying with backoff is the caller's business. */
#ifndef CONCLAVE_JOINCLIENT_H
#define CONCLAVE_JOINCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "conclave/attest.h"
#include "conclave/diag.h"
#include "conclave/membership.h"
#include "conclave/policy.h"
#include "conclave/secret.h"
#include "conclave/wire.h"

#define PEERSET_MAGIC	"CPST"
#define PEERSET_VERSION 1

struct joinclient_config {
	const char *host; /* numeric IPv4 or IPv6 address of the join service */
	uint16_t port;
	int connect_timeout_ms;		/* TCP connect; 0 = ATLS_DEFAULT_TIMEOUT_MS */
	int timeout_ms;			/* per message (atls); 0 = ATLS_DEFAULT_TIMEOUT_MS */
	const struct policy *cp_policy; /* what the join service must have booted */
	X509_STORE *cp_ca;		/* EK roots for the join service's TPM */
	struct attest_opts attest;	/* our TPM, AK state, PCR mask, event log, EK chain */
	const uint8_t *wg_pubkey;	/* 32 bytes, bound into our quote */
	const uint8_t *disk_uuid;	/* 16 bytes, bound into our quote */
	const char *endpoints[WIRE_MAX_ENDPOINTS]; /* "host:port" of our WireGuard endpoint */
	size_t n_endpoints;
	const char *node_name; /* optional */
};

/* What a successful join hands the node. */
struct join_info {
	struct secret *disk_key; /* KMS_DISK_KEY_LEN bytes, locked */
	uint64_t generation;	 /* peer-set generation the peers are from */
	struct peer self;	 /* our node id and allocation */
	struct peer *peers;	 /* every other active member (malloc'ed) */
	size_t n_peers;
};

/* One join attempt. 0 on success; -EACCES when we refused the join service (nothing of ours
 * was sent) or it refused us (d says which and why); other -errno on transport errors. */
int joinclient_join(const struct joinclient_config *c, struct join_info *out, struct diag *d);

/* Wipe the key and free the peers; the struct may be reused. */
void join_info_clear(struct join_info *j);

/* The JOIN_RESPONSE peer-set document (big-endian):
 *   "CPST" | u8 version | u64 generation | self | u32 count | count x peer
 *   peer = u64 node id | wg key[32] | str endpoints | str overlay v4 | str overlay v6 | str pod
 *   str  = u8 length | printable ASCII (shorter than the struct peer field)
 * Encode (malloc'ed); the disk key is not part of it. */
int peerset_encode(uint64_t generation, const struct peer *self, const struct peer *peers, size_t n,
		   uint8_t **out, size_t *len);

/* Decode a peer-set document into out's generation, self and peers (strict: trailing bytes,
 * bad strings and counts are errors). */
int peerset_decode(const uint8_t *buf, size_t len, struct join_info *out, struct diag *d);

#endif
