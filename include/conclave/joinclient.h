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
#include "conclave/clusterca.h"
#include "conclave/diag.h"
#include "conclave/membership.h"
#include "conclave/peerset.h"
#include "conclave/policy.h"
#include "conclave/secret.h"
#include "conclave/wire.h"

/* What a node quotes: the boot (PCRs the event log covers) and PCR 15, where the agent records
 * the cluster it joined since boot; the join service refuses a quote without it. */
#define NODE_QUOTE_PCRS (LOG_COVERED_PCRS | 1u << 15)

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
	/* The cluster this node belongs to (e.g. pinned in its image), or NULL: any cluster whose
	 * join service attests and binds its identity. */
	const uint8_t *expect_cluster;
};

/* What a successful join hands the node. */
struct join_info {
	struct secret *disk_key;	    /* KMS_DISK_KEY_LEN bytes, locked */
	struct peerset view;		    /* our allocation and every other active member */
	uint8_t cluster_id[CLUSTER_ID_LEN]; /* what the join service's quote bound */
	uint8_t *ca_cert, *node_cert;	    /* DER (malloc'ed), both checked */
	size_t ca_len, node_cert_len;
};

/* One join attempt. 0 on success; -EACCES when we refused the join service (nothing of ours
 * was sent) or it refused us (d says which and why); -EAGAIN when it has no master secret yet;
 * other -errno on transport errors. */
int joinclient_join(const struct joinclient_config *c, struct join_info *out, struct diag *d);

/* An agent's session: the join, then peer-set updates on the same attested channel. */
struct joinclient_session;

/* Join (as joinclient_join) and keep the session subscribed to peer-set updates. */
int joinclient_subscribe(const struct joinclient_config *c, struct join_info *out,
			 struct joinclient_session **sess, struct diag *d);

#define JOINCLIENT_REATTESTED 2

/* Wait up to timeout_ms for one update and apply it to view: 1 when the view changed, 0 on a
 * heartbeat or timeout, JOINCLIENT_REATTESTED when the join service accepted our
 * re-attestation, -EACCES when this node was revoked (or its re-attestation refused), -ECONNRESET
 * when the join service closed the session, -ESTALE when an update does not follow our generation,
 * -EPROTO (or another -errno) on a bad update: in every error case, reconnect and rejoin (a
 * snapshot). */
int joinclient_next(struct joinclient_session *sess, struct peerset *view, int timeout_ms,
		    struct diag *d);

/* Re-attest on the held session, binding wg_pubkey (a new key at rotation) and c's disk UUID;
 * the answer arrives through joinclient_next. */
int joinclient_reattest(struct joinclient_session *sess, const struct joinclient_config *c,
			const uint8_t wg_pubkey[32], struct diag *d);

/* The session's fd, for poll(); joinclient_next still decides whether a message is complete. */
int joinclient_fd(const struct joinclient_session *sess);

/* When the join service last sent anything (an update, a verdict or a heartbeat), in
 * CLOCK_MONOTONIC milliseconds (mono_ms): a session silent for several heartbeat intervals is
 * presumed lost (a partition gives no other sign). */
uint64_t joinclient_heard_ms(const struct joinclient_session *sess);
void joinclient_close(struct joinclient_session *sess);

/* Wipe the key and free the peers; the struct may be reused. */
void join_info_clear(struct join_info *j);

#endif
