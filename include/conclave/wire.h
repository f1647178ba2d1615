/* SPDX-License-Identifier: Apache-2.0 */
/* The attested-TLS wire protocol: versioned, length-prefixed frames of typed TLV fields.
 *
 * Frame (integers big-endian):
 *   magic[4] "CNCL" | u16 frame version (1) | u16 type | u32 body length |
 *   body = fields { u16 tag | u32 length | bytes[length] }, in any order
 * Every type has a body limit that a receiver checks from the header alone, before it reads or
 * allocates the body. Every field has a length range; unknown tags, fields not allowed in the
 * type, repeated fields (except the few marked repeatable), missing required fields, text that
 * is not printable ASCII and trailing bytes are errors. Decoded blobs point into the input. */
#ifndef CONCLAVE_WIRE_H
#define CONCLAVE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"
#include "conclave/evidence.h"

#define WIRE_MAGIC	   "CNCL"
#define WIRE_VERSION	   1 /* frame layout */
#define WIRE_PROTO_VERSION 1 /* message sequence, announced in HELLO */
#define WIRE_HEADER_SIZE   12
#define WIRE_MAX_ENDPOINTS 4
#define WIRE_TEXT_MAX	   512

enum wire_type {
	WIRE_HELLO = 1,		  /* version, role: first message of each side */
	WIRE_CHALLENGE = 2,	  /* verifier -> prover: MakeCredential challenge (first contact) */
	WIRE_EVIDENCE = 3,	  /* prover -> verifier: evidence and the binding's inputs */
	WIRE_VERDICT = 4,	  /* verifier -> prover: code (0 = accepted) and reason */
	WIRE_ERROR = 5,		  /* either side, then close: protocol error code and reason */
	WIRE_JOIN_REQUEST = 6,	  /* node -> joind, only after mutual attestation */
	WIRE_JOIN_RESPONSE = 7,	  /* joind -> node: key material, only to an attested node */
	WIRE_PEER_UPDATE = 8,	  /* joind -> subscribed node: peer-set delta or snapshot; none =
				     heartbeat */
	WIRE_ADMIN_REQUEST = 9,	  /* operator -> joind, after joind proved itself */
	WIRE_ADMIN_RESPONSE = 10, /* joind -> operator */
	WIRE_TYPE_MAX,
};

enum wire_tag {
	WT_PROTO_VERSION = 1, /* u16 */
	WT_ROLE = 2,	      /* u8: 'N' node, 'J' join service, 'O' operator */
	WT_CHALLENGE = 3,     /* encoded "CCHL" challenge document */
	WT_EVIDENCE = 4,      /* encoded "CEVD" evidence document */
	WT_WG_PUBKEY = 5,     /* 32 bytes: the prover's WireGuard public key */
	WT_DISK_UUID = 6,     /* 16 bytes: the prover's state-disk UUID */
	WT_CODE = 7,	      /* u16: enum wire_code */
	WT_TEXT = 8,	      /* printable ASCII reason for humans */
	WT_ENDPOINT = 9,   /* printable "host:port" of the node's WireGuard endpoint (repeatable) */
	WT_NODE_NAME = 10, /* printable node name */
	WT_KEY_MATERIAL = 11, /* opaque key material for the node (secret) */
	WT_PEER_SET = 12,     /* opaque encoded peer set */
	WT_CLUSTER_ID = 13, /* 32 bytes: the join service's cluster identity, bound in its quote */
	WT_FLAGS = 14,	    /* u32: JOIN_REQUEST flags (JOIN_SUBSCRIBE) */
	WT_GENERATION = 15, /* u64: peer-set generation */
	WT_OP = 16,	    /* u16: enum admin_op */
	WT_NODE_ID = 17,    /* u64: a node the request is about (0: none) */
	WT_POLICY = 18,	    /* a signed policy envelope */
	WT_SIGNATURE = 19,  /* 64 bytes: Ed25519 signature */
	WT_MEMBERS = 20,    /* encoded "CMBL" member list */
	WT_CA_CERT = 21,    /* DER of the cluster CA certificate */
	WT_NODE_CERT = 22,  /* DER of a node certificate issued by the cluster CA */
	WT_MAX,
};

/* Codes of VERDICT and ERROR. */
enum wire_code {
	WIRE_OK = 0,
	WIRE_REFUSED = 1,     /* attestation refused: the text names the failed checks */
	WIRE_BAD_MESSAGE = 2, /* malformed, oversized or unexpected message */
	WIRE_UNSUPPORTED = 3, /* protocol version or role we do not speak */
	WIRE_INTERNAL = 4,    /* the sender failed (TPM, memory): try again later */
	WIRE_NOT_READY = 5,   /* the join service has no master secret yet: init or recover it */
	WIRE_CODE_MAX,
};

#define JOIN_SUBSCRIBE 0x1u /* keep the session open for peer-set updates */

/* Operator requests; the ones that change the cluster carry the operator's signature. */
enum admin_op {
	ADMIN_STATUS = 1,	/* cluster identity, CA certificate and the signed member list */
	ADMIN_INIT = 2,		/* a fresh control plane takes a new master secret and salt */
	ADMIN_RECOVER = 3,	/* a restarted control plane takes its master secret back */
	ADMIN_REVOKE = 4,	/* node_id leaves the cluster */
	ADMIN_POLICY = 5,	/* replace the node policy with the attached signed one */
	ADMIN_REPLACE_DISK = 6, /* node_id's disk is released: its next join binds a new one */
	ADMIN_OP_MAX,
};

struct wire_msg {
	uint16_t type;
	uint16_t proto_version; /* HELLO */
	uint8_t role;		/* HELLO */
	uint16_t code;		/* VERDICT, ERROR, ADMIN_RESPONSE */
	uint32_t flags;		/* JOIN_REQUEST */
	uint64_t generation;	/* PEER_UPDATE, ADMIN_RESPONSE */
	uint16_t op;		/* ADMIN_REQUEST */
	uint64_t node_id;	/* ADMIN_REQUEST */
	struct blob challenge, evidence, wg_pubkey, disk_uuid, text, node_name, key_material,
	    peer_set, cluster_id, policy, signature, members, ca_cert, node_cert;
	struct blob endpoints[WIRE_MAX_ENDPOINTS];
	size_t n_endpoints;
	/* Set by a receiver whose buffer the blobs point into; wire_msg_free wipes and frees it. */
	uint8_t *owned;
	size_t owned_len;
};

/* Largest body a frame of this type may carry; 0 for unknown types. */
size_t wire_body_max(uint16_t type);

/* Largest frame of any type (header included): what a receiver must be ready for at most. */
size_t wire_frame_max(void);

/* Check a frame header: magic, version, known type, body length within the type's limit. */
int wire_decode_header(const uint8_t hdr[WIRE_HEADER_SIZE], uint16_t *type, uint32_t *body_len,
		       struct diag *d);

/* Decode one complete frame (header and body, nothing after it) into m. */
int wire_decode(const uint8_t *buf, size_t len, struct wire_msg *m, struct diag *d);

/* Encode m as one frame (malloc'ed). Scalars a type allows are always written (they are
 * required); a blob is written when its pointer is set. -EINVAL (with d) if m breaks its type's
 * schema. */
int wire_encode(const struct wire_msg *m, uint8_t **out, size_t *len, struct diag *d);

/* Wipe and free the buffer m points into (received messages may carry secrets); NULL is fine. */
void wire_msg_free(struct wire_msg *m);

const char *wire_type_name(uint16_t type);
const char *wire_code_name(uint16_t code);

#endif
