/* SPDX-License-Identifier: Apache-2.0 */
/* Evidence and credential-challenge documents: versioned, self-describing, length-prefixed.
 *
 * Layout (all integers big-endian):
 *   magic[4] ("CEVD" evidence, "CCHL" challenge) | u16 version (1) | u16 field count |
 *   count x { u16 tag | u32 length | bytes[length] }
 * Every tag has a hard size limit; unknown tags, repeated tags (except EK_CHAIN), missing
 * required tags and trailing bytes are errors. Decoded fields point into the input buffer. */
#ifndef CONCLAVE_EVIDENCE_H
#define CONCLAVE_EVIDENCE_H

#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

#define EVIDENCE_VERSION   1
#define EVIDENCE_MAX_SIZE  (2u << 20)
#define EVIDENCE_MAX_CHAIN 4

enum evidence_tag {
	EV_TAG_QUOTE = 1,      /* TPMS_ATTEST bytes exactly as the TPM signed them */
	EV_TAG_SIGNATURE = 2,  /* marshalled TPMT_SIGNATURE */
	EV_TAG_AK_PUBLIC = 3,  /* marshalled TPMT_PUBLIC of the AK */
	EV_TAG_EK_CERT = 4,    /* DER X.509 EK certificate from the TPM's NV */
	EV_TAG_EK_CHAIN = 5,   /* DER intermediate CA certificate (repeatable) */
	EV_TAG_PCRS = 6,       /* u32 mask, then 32-byte SHA-256 values in ascending PCR order */
	EV_TAG_EVENT_LOG = 7,  /* raw TCG2 UEFI event log */
	EV_TAG_ACTIVATION = 8, /* 32-byte proof that the AK was activated (see verify.h) */
	EV_TAG_MAX,
};

struct blob {
	const uint8_t *p;
	size_t len;
};

struct evidence {
	struct blob quote, signature, ak_public, ek_cert, event_log, activation;
	struct blob ek_chain[EVIDENCE_MAX_CHAIN];
	size_t n_chain;
	uint32_t pcr_mask;
	uint8_t pcrs[24][32];
};

/* Encode ev into a malloc'ed buffer. */
int evidence_encode(const struct evidence *ev, uint8_t **out, size_t *len);

/* Decode untrusted bytes; on error d names the offset and the field. */
int evidence_decode(const uint8_t *buf, size_t len, struct evidence *ev, struct diag *d);

enum challenge_tag {
	CH_TAG_ID_OBJECT = 1,	     /* marshalled TPM2B_ID_OBJECT (credentialBlob) */
	CH_TAG_ENCRYPTED_SECRET = 2, /* marshalled TPM2B_ENCRYPTED_SECRET */
	CH_TAG_AK_NAME = 3,	     /* name of the AK the credential is bound to */
	CH_TAG_MAX,
};

/* A MakeCredential challenge for a node: only the TPM holding the EK can open it, only for the AK.
 */
struct challenge {
	struct blob id_object, encrypted_secret, ak_name;
};

int challenge_encode(const struct challenge *ch, uint8_t **out, size_t *len);
int challenge_decode(const uint8_t *buf, size_t len, struct challenge *ch, struct diag *d);

#endif
