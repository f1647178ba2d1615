/* SPDX-License-Identifier: Apache-2.0 */
/* Attested TLS: TLS 1.3 whose peers are trusted because a TPM quote binds this very session,
 * not because of a certificate (see docs/atls.md).
 *
 * Channel binding: the quote's qualifying data is
 *   SHA-256(TLS exporter("EXPORTER-conclave-attestation", no context, 32 bytes) ||
 *           role || key (32) || disk UUID (16, zeros for the join service))
 * where key is a node's WireGuard public key, or the join service's cluster identity (zeros
 * before it has a master secret), so a quote proves the prover's TPM saw this session's keys
 * and the keys it names.
 *
 * Order: the join service proves first; a node proves only to a join service it accepted.
 * Every read and write has a deadline for the whole message (not per system call), so a silent
 * or dribbling peer cannot hold a worker. The session makes its fd non-blocking; the caller owns
 * the fd and must ignore SIGPIPE (a peer may close while we write). */
#ifndef CONCLAVE_ATLS_H
#define CONCLAVE_ATLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "conclave/attest.h"
#include "conclave/diag.h"
#include "conclave/verify.h"
#include "conclave/wire.h"

#define ATLS_EXPORTER_LABEL	"EXPORTER-conclave-attestation"
#define ATLS_EXPORTER_LEN	32
#define ATLS_DEFAULT_TIMEOUT_MS 10000

enum atls_role {
	ATLS_ROLE_ANY = 0,	  /* peer_role of a join service: a node or an operator */
	ATLS_ROLE_NODE = 'N',	  /* a node joining the cluster */
	ATLS_ROLE_JOIND = 'J',	  /* the join service on the control plane */
	ATLS_ROLE_OPERATOR = 'O', /* conclavectl: verifies the join service, never attests */
};

struct atls_ctx;
struct atls_session;

struct atls_opts {
	enum atls_role role;	  /* ours */
	enum atls_role peer_role; /* the only role we talk to */
	int timeout_ms;		  /* deadline per message and for the handshake; 0 = default */
};

/* A TLS 1.3-only context with a fresh P-256 key and self-signed certificate. */
int atls_ctx_new(bool server, struct atls_ctx **out, struct diag *d);
void atls_ctx_free(struct atls_ctx *c);

/* Handshake on fd (the server side requires a client certificate too) and exchange HELLO;
 * on success *out is a session whose peer speaks our protocol in the expected role. */
int atls_server_accept(struct atls_ctx *c, int fd, const struct atls_opts *o,
		       struct atls_session **out, struct diag *d);
int atls_client_connect(struct atls_ctx *c, int fd, const struct atls_opts *o,
			struct atls_session **out, struct diag *d);

/* Close the TLS layer (best effort, bounded) and wipe the session; the fd stays open. */
void atls_close(struct atls_session *s);

/* Send one message within the deadline. */
int atls_send(struct atls_session *s, const struct wire_msg *m, struct diag *d);

/* Receive one message within the deadline; the frame is checked against its type's limit from
 * the header, before the body is read. Free with wire_msg_free. -ECONNRESET if the peer closed. */
int atls_recv(struct atls_session *s, struct wire_msg *m, struct diag *d);

/* Tell the peer why we stop (best effort): an ERROR, or a VERDICT for WIRE_REFUSED. */
void atls_send_error(struct atls_session *s, uint16_t code, const char *text);

/* The qualifying data formula above, from exporter bytes. wg_pubkey / disk_uuid NULL = zeros. */
void atls_binding(const uint8_t exporter[ATLS_EXPORTER_LEN], uint8_t role, const uint8_t *wg_pubkey,
		  const uint8_t *disk_uuid, uint8_t qdata[32]);

/* The same for this session's exporter. */
void atls_session_binding(const struct atls_session *s, uint8_t role, const uint8_t *wg_pubkey,
			  const uint8_t *disk_uuid, uint8_t qdata[32]);

/* Attest ourselves: send evidence (quoted over this session's binding with our role), answer a
 * credential challenge if the verifier sends one, and read its VERDICT. 0 when accepted;
 * -EACCES when refused (d says why), other -errno on transport/TPM errors. base supplies the
 * TPM, AK state, PCRs, log and chain; its qdata and challenge are ignored. key is the node's
 * WireGuard public key (required for a node) or the join service's cluster identity (NULL
 * before init); disk_uuid is the node's (NULL for the join service). */
int atls_prove(struct atls_session *s, const struct attest_opts *base, const uint8_t *key,
	       const uint8_t *disk_uuid, struct diag *d);

struct atls_verifier {
	const struct policy *policy; /* what the peer must have booted */
	X509_STORE *ca;		     /* EK manufacturer roots */
	/* What we know about the node with this id: NULL or an unknown record = first contact
	 * (credential activation round trip). A record returned is updated on success. */
	struct node_record *(*find_node)(void *arg, const uint8_t node_id[32]);
	void *arg;
};

struct atls_peer {
	bool accepted;
	uint8_t role;
	bool has_wg_pubkey, has_disk_uuid, has_cluster_id;
	uint8_t wg_pubkey[32]; /* attested: inside the quote's qualifying data */
	uint8_t disk_uuid[16];
	uint8_t cluster_id[32]; /* the join service's, attested the same way */
	uint8_t node_id[32];
	bool first_contact;
	struct verdict verdict;
};

/* Verify the peer: receive its evidence, challenge it on first contact, run every check against
 * this session's binding, and send the VERDICT. 0 when accepted; -EACCES when refused (peer
 * and d name the failed checks); other -errno on transport errors. */
int atls_verify_peer(struct atls_session *s, const struct atls_verifier *v, struct atls_peer *peer,
		     struct diag *d);

/* The peer's role (resolved from its HELLO when we accepted ATLS_ROLE_ANY). */
uint8_t atls_peer_role(const struct atls_session *s);

/* This session's exporter bytes (ATLS_EXPORTER_LEN): what operator signatures and the signed
 * member list bind to. */
const uint8_t *atls_exporter(const struct atls_session *s);

/* Change the per-message deadline (e.g. short for pushes to held sessions). */
void atls_set_timeout(struct atls_session *s, int timeout_ms);

/* The session's fd, for poll() over many held sessions. */
int atls_fd(const struct atls_session *s);

/* Wait until a message may be read: 1 readable (or closed), 0 after timeout_ms, -errno. */
int atls_wait_readable(struct atls_session *s, int timeout_ms);

/* Re-attestation on an established session (a node's held session): send EVIDENCE bound to this
 * session and key, and return; the VERDICT arrives later, possibly after other messages. The
 * verifier must know the node (no challenge). */
int atls_send_evidence(struct atls_session *s, const struct attest_opts *base, const uint8_t *key,
		       const uint8_t *disk_uuid, struct diag *d);

/* atls_verify_peer for an EVIDENCE message already received (m stays the caller's). */
int atls_verify_evidence_msg(struct atls_session *s, const struct atls_verifier *v,
			     struct wire_msg *m, struct atls_peer *peer, struct diag *d);

/* Whether we accepted the peer's attestation / the peer accepted ours, in this session. */
bool atls_peer_accepted_us(const struct atls_session *s);
bool atls_we_accepted_peer(const struct atls_session *s);

#endif
