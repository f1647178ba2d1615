/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster KMS: one master secret and salt in locked memory; every key is
 * HKDF-SHA256(master, salt, "conclave/v1/<purpose>/<id>") and nothing derived is stored.
 * The recovery file hands master and salt to the operator once (docs/kms.md). */
#ifndef CONCLAVE_KMS_H
#define CONCLAVE_KMS_H

#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"
#include "conclave/secret.h"

#define KMS_MASTER_LEN	      32
#define KMS_SALT_LEN	      32
#define KMS_LABEL_MAX	      64 /* longest purpose or id, in bytes */
#define KMS_KEY_MAX	      64 /* longest key kms_derive hands out */
#define KMS_DISK_KEY_LEN      32
#define KMS_NODE_ID_LEN	      32 /* SHA-256 of the EK certificate (evidence_node_id) */
#define KMS_UUID_LEN	      16
#define KMS_RECOVERY_FILE_LEN 178 /* the exact size of a recovery file */

struct kms {
	/* master (KMS_MASTER_LEN) followed by salt (KMS_SALT_LEN), in one locked mapping. */
	struct secret *keys;
};

/* A new cluster: master and salt from the CSPRNG. */
int kms_new_random(struct kms **out, struct diag *d);

/* The KMS of an existing cluster, from a master and salt the operator re-provisioned
 * (exactly KMS_MASTER_LEN and KMS_SALT_LEN bytes); the inputs are copied, not kept. */
int kms_from_secret(const struct secret *master, const struct secret *salt, struct kms **out,
		    struct diag *d);

/* Wipe and free; NULL is fine. */
void kms_free(struct kms *k);

static inline void kms_freep(struct kms **k)
{
	kms_free(*k);
}
#define _cleanup_kms_ __attribute__((cleanup(kms_freep)))

/* len bytes of HKDF-SHA256(master, salt, "conclave/v1/<purpose>/<id>"); purpose and id are
 * 1..KMS_LABEL_MAX printable ASCII characters without '/', len is 1..KMS_KEY_MAX. */
int kms_derive(const struct kms *k, const char *purpose, const char *id, size_t len,
	       struct secret **out, struct diag *d);

/* The state-disk key of the node with hardware identity node_id (its EK hash) for the disk
 * with LUKS2 UUID uuid: info "conclave/v1/disk/<64 hex node id>/<canonical lowercase uuid>".
 * Callers must first check that the membership registered exactly this pair. */
int kms_disk_key(const struct kms *k, const uint8_t node_id[KMS_NODE_ID_LEN],
		 const uint8_t uuid[KMS_UUID_LEN], struct secret **out, struct diag *d);

/* The KDF itself, exposed for the RFC 5869 known-answer tests: out_len bytes of
 * HKDF-SHA256(ikm, salt, info) via OpenSSL's EVP_KDF "HKDF". */
int kms_hkdf(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
	     const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len);

/* Write master and salt to a new recovery file at path (0600; an existing file is never
 * overwritten: -EEXIST). */
int kms_recovery_write(const struct kms *k, const char *path, struct diag *d);

/* Read a recovery file back into a KMS; refuses anything but the exact format. */
int kms_recovery_read(const char *path, struct kms **out, struct diag *d);

/* Parse the text of a recovery file (len bytes, not NUL-terminated); the parser behind
 * kms_recovery_read, separate for the fuzz target. */
int kms_recovery_parse(const uint8_t *buf, size_t len, struct kms **out, struct diag *d);

#endif
