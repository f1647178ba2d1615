/* SPDX-License-Identifier: Apache-2.0 */
/* Verifier side helpers for TPM structures, in software (OpenSSL): object names, AK template
 * checks, public keys, the TCG default EK template. Nothing here talks to a TPM. */
#ifndef CONCLAVE_TPMOBJ_H
#define CONCLAVE_TPMOBJ_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <tss2_tpm2_types.h>

#include "conclave/diag.h"

#define TPMOBJ_NAME_MAX (2 + 64)

/* Name of an object: nameAlg (u16 BE) || H_nameAlg(marshalled TPMT_PUBLIC). */
int tpmobj_name(const TPMT_PUBLIC *pub, uint8_t name[TPMOBJ_NAME_MAX], size_t *len);

/* Refuse anything but a TPM-resident restricted signing key: restricted|sign|fixedTPM|
 * fixedParent|sensitiveDataOrigin set, decrypt clear, nameAlg SHA-256, and either ECC P-256
 * with ECDSA-SHA256 or RSA-2048 with RSASSA-SHA256 as its fixed scheme. d names the attribute. */
int tpmobj_check_ak(const TPMT_PUBLIC *pub, struct diag *d);

/* OpenSSL public key for an RSA or ECC (P-256) public area. */
int tpmobj_pubkey(const TPMT_PUBLIC *pub, EVP_PKEY **out, struct diag *d);

/* The TCG default EK template (EK Credential Profile, template L-1 RSA 2048 / L-2 ECC P-256). */
int tpmobj_ek_template(uint16_t alg, TPM2B_PUBLIC *out);

/* The EK public area for the key in an EK certificate: the default template with the
 * certificate's key as unique. Refuses keys of other types or sizes. */
int tpmobj_ek_from_cert(X509 *cert, TPM2B_PUBLIC *out, struct diag *d);

/* Software TPM2_MakeCredential (TPM 2.0 Part 1, 24 "Credential Protection"): wrap credential so
 * that only the TPM holding ek (RSA-OAEP or ECDH seed) can release it, and only to the object
 * named name. credential is at most 64 bytes. */
int tpmobj_make_credential(const TPM2B_PUBLIC *ek, const uint8_t *name, size_t name_len,
			   const uint8_t *credential, size_t cred_len, TPM2B_ID_OBJECT *blob,
			   TPM2B_ENCRYPTED_SECRET *secret, struct diag *d);

#endif
