/* SPDX-License-Identifier: Apache-2.0 */
/* Node side of attestation: talk to a real TPM through tpm2-tss ESAPI. The TCTI string picks
 * the transport: "swtpm:path=SOCK" (tests, host) or "device:/dev/tpmrm0" (node VMs). */
#ifndef CONCLAVE_TPM_H
#define CONCLAVE_TPM_H

#include <stddef.h>
#include <stdint.h>

#include <tss2_esys.h>

#include "conclave/diag.h"
#include "conclave/secret.h"

#define TPM_NV_EK_CERT_RSA 0x01c00002u
#define TPM_NV_EK_CERT_ECC 0x01c0000au
/* TCG EK Credential Profile persistent handles of the RSA-2048 and ECC P-256 EKs. */
#define TPM_EK_HANDLE_RSA 0x81010001u
#define TPM_EK_HANDLE_ECC 0x81010002u
/* Persistent handle of the node's AK (owner range; kept for the node's lifetime). */
#define TPM_AK_HANDLE 0x81000a01u

struct tpm;

struct tpm_ak {
	uint32_t handle;  /* persistent handle */
	uint16_t ek_alg;  /* TPM2_ALG_RSA or TPM2_ALG_ECC: the EK it was created under */
	TPM2B_PUBLIC pub; /* the AK's public area as the TPM returned it */
};

/* Open the TPM behind tcti; sends TPM2_Startup(CLEAR) if the TPM was not started. */
int tpm_open(const char *tcti, struct tpm **out, struct diag *d);
void tpm_close(struct tpm *t);

/* Read the EK certificate (DER) from NV: RSA 0x01c00002 first, then ECC 0x01c0000a.
 * *alg gets TPM2_ALG_RSA or TPM2_ALG_ECC. The caller frees *der. */
int tpm_read_ek_cert(struct tpm *t, uint8_t **der, size_t *len, uint16_t *alg, struct diag *d);

/* Public area of the EK of type alg: the one persisted at TPM_EK_HANDLE_* if it is exactly the
 * key the TPM's EK certificate certifies, else recreated from the TCG default template (and,
 * if certified, persisted there when the handle is free and owner auth is empty). */
int tpm_ek_public(struct tpm *t, uint16_t alg, TPM2B_PUBLIC *pub, struct diag *d);

/* Load the AK from state_dir (its persistent handle and public area), or create a restricted
 * ECC P-256 / ECDSA-SHA256 signing key under the EK of type ek_alg, persist it at
 * TPM_AK_HANDLE and record it in state_dir (created 0700). A recorded AK whose public area no
 * longer matches the TPM's is an error, never silently replaced. */
/* For an AK record that lives in memory (a node without a state disk yet): a key at our AK
 * handle with no record in state_dir is a previous boot's; evict it so tpm_ak_ensure makes a new
 * one (which the verifier activates again). Nothing to do with a record or a free handle. */
int tpm_ak_forget_unrecorded(struct tpm *t, const char *state_dir, struct diag *d);

int tpm_ak_ensure(struct tpm *t, const char *state_dir, uint16_t ek_alg, struct tpm_ak *ak,
		  struct diag *d);

/* TPM2_ActivateCredential: recover the credential the verifier wrapped for (EK, AK name).
 * Fails unless this TPM holds both. */
int tpm_activate(struct tpm *t, const struct tpm_ak *ak, const TPM2B_ID_OBJECT *blob,
		 const TPM2B_ENCRYPTED_SECRET *enc, struct secret **credential, struct diag *d);

/* Read SHA-256 PCRs in mask (bit n = PCR n); loops because one PCR_Read returns at most 8. */
int tpm_pcr_read(struct tpm *t, uint32_t mask, uint8_t pcrs[24][32], uint32_t *update_counter,
		 struct diag *d);

/* Extend SHA-256 PCR pcr with digest (32 bytes). */
int tpm_pcr_extend(struct tpm *t, uint32_t pcr, const uint8_t digest[32], struct diag *d);

/* Quote SHA-256 PCRs in mask with qualifying data (<= 64 bytes) and read the same PCRs,
 * retrying if a PCR changed in between (pcrUpdateCounter), so the values match the quote.
 * *attest / *sig are the TPM's marshalled TPM2B_ATTEST body (TPMS_ATTEST bytes) and
 * marshalled TPMT_SIGNATURE; the caller frees both. */
int tpm_quote(struct tpm *t, const struct tpm_ak *ak, const uint8_t *qdata, size_t qlen,
	      uint32_t mask, uint8_t **attest, size_t *attest_len, uint8_t **sig, size_t *sig_len,
	      uint8_t pcrs[24][32], struct diag *d);

/* Parse a TPM2_ActivateCredential response (bytes from the TPM's transport, which a host may
 * control): *trc the response code; on success *info the credential. -EBADMSG if malformed, -EIO
 * for a TPM error. Public for its fuzz target. */
int tpm_activate_response(const uint8_t *rsp, size_t len, TSS2_RC *trc, TPM2B_DIGEST *info);

#endif
